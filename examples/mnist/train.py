"""A small CNN on real MNIST digits, as a runner task.

    python -m runner +sweep=grid                       # from the repository root

It logs ``train/loss`` every ``task.log_every`` steps, ``val/loss`` and ``val/acc`` every
``task.eval_every`` steps and at the end of every epoch (with the epoch's ``samples_per_s``)
through ``runner.log``, saves a checkpoint at the end of every epoch into the run's
``checkpoints/`` directory, and continues from it when the run is resumed. It uses CUDA when a GPU
is visible (``task.device=auto``).

With ``launcher.nproc_per_run=N`` it trains with DistributedDataParallel on N ranks (gloo on
CPU, NCCL on GPUs, one GPU per rank): every rank takes its share of each batch of
``task.batch_size`` (the same global batch and number of steps as one process), rank 0 logs and
saves the checkpoint, and every rank resumes from it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import runner

DATA = Path(__file__).parent / "data" / "mnist_5k.npz"


def load_mnist(train_size: int, split_seed: int = 0) -> tuple[torch.Tensor, ...]:
    """5,000 real digits, shuffled once (the file is sorted by label), split train/val."""
    with np.load(DATA) as data:
        x, y = data["x"], data["y"]
    order = np.random.default_rng(split_seed).permutation(len(x))
    x = torch.from_numpy(x[order]).float().div_(255.0).unsqueeze(1)
    y = torch.from_numpy(y[order].astype(np.int64))
    x = (x - 0.1307) / 0.3081
    return x[:train_size], y[:train_size], x[train_size:], y[train_size:]


class Net(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * channels * 49, 64), nn.ReLU(),
                                  nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(f"cuda:{local_rank}" if name == "cuda" else name)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y).item()
    acc = (logits.argmax(1) == y).float().mean().item()
    model.train()
    return loss, acc


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill mid-save never leaves a torn checkpoint


def main(cfg: Any) -> dict[str, float]:
    task = cfg.task
    runner.seed_everything(cfg.seed)  # random, NumPy and torch
    if task.get("threads"):
        torch.set_num_threads(int(task.threads))
    run = runner.current_run()
    world, rank = run.world_size, run.rank
    device = pick_device(str(task.device), run.local_rank)
    dist = runner.distributed() if world > 1 else None  # (gloo on CPU, NCCL on GPUs)
    x_train, y_train, x_val, y_val = (t.to(device) for t in load_mnist(int(task.train_size)))
    model = Net(int(task.channels)).to(device)
    trained: nn.Module = model if dist is None else nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.Adam(model.parameters(), lr=float(task.lr))
    ckpt = run.checkpoint_dir / "last.pt"
    start_epoch, step = 0, 0
    if ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=True)  # (tensors, no pickle)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        torch.set_rng_state(state["rng"])
        start_epoch, step = state["epoch"] + 1, state["step"]
        print(f"resumed from {ckpt} at epoch {start_epoch}, step {step}")
    batch = int(task.batch_size)
    val_loss, val_acc = evaluate(model, x_val, y_val)
    for epoch in range(start_epoch, int(task.epochs)):
        t0, seen = time.perf_counter(), 0
        perm = torch.randperm(len(x_train), device=device)  # (the same on every rank)
        for i in range(0, len(perm), batch):
            if dist is None:
                idx = perm[i : i + batch]
                loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            else:  # this rank's share of the global batch; DDP averages the ranks' gradients,
                whole = perm[i : i + batch]  # so each rank's sum is scaled to make that the
                idx = whole[rank::world]     # global batch's mean (a share may be empty)
                total = nn.functional.cross_entropy(trained(x_train[idx]), y_train[idx],
                                                    reduction="sum")
                loss = total * (world / len(whole))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step, seen = step + 1, seen + len(idx) * world
            if step % int(task.log_every) == 0:
                runner.log({"train/loss": loss.item(), "epoch": epoch}, step=step)
            if task.get("eval_every") and step % int(task.eval_every) == 0:
                val_loss, val_acc = evaluate(model, x_val, y_val)
                runner.log({"val/loss": val_loss, "val/acc": val_acc}, step=step)
        val_loss, val_acc = evaluate(model, x_val, y_val)
        runner.log({"val/loss": val_loss, "val/acc": val_acc,
                    "samples_per_s": seen / (time.perf_counter() - t0)}, step=step)
        if rank == 0:  # (one writer; the others wait for it before the next epoch)
            save_checkpoint(ckpt, {"model": model.state_dict(), "opt": opt.state_dict(),
                                   "rng": torch.get_rng_state(), "epoch": epoch, "step": step})
        if dist is not None:
            dist.barrier()
    if dist is not None:  # a clean end: gloo can abort at exit without it
        del trained
        dist.barrier()
        dist.destroy_process_group()
    # params: the model's size, an objective to trade against accuracy (sweep.metric=[val/acc,
    # params] sweep.mode=[max,min])
    return {"val/loss": val_loss, "val/acc": val_acc, "steps": step,
            "params": sum(p.numel() for p in model.parameters())}
