"""The TensorBoard tracker: real event files, read back record by record."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

pytest.importorskip("tensorboardX")


def read_events(path: Path) -> list:
    """TFRecord framing: length (u64), masked crc, data, masked crc; data is an Event proto."""
    from tensorboardX.proto.event_pb2 import Event

    data = path.read_bytes()
    pos, events = 0, []
    while pos + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[pos:pos + 8])
        payload = data[pos + 12:pos + 12 + length]
        pos += 12 + length + 4
        event = Event()
        event.ParseFromString(payload)
        events.append(event)
    return events


def scalars(run_log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(run_log_dir.glob("events.out.tfevents.*")):
        for event in read_events(path):
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


def test_one_log_dir_per_sweep_and_every_logged_step(project):
    proc = project.run("tracker=[tensorboard]", "task.lr=0.1,0.2", "task.steps=4")
    assert proc.returncode == 0, proc.stderr
    sweep = project.sweep_dir()
    log_root = sweep / "tensorboard"
    rows = project.status()["runs"]
    assert sorted(p.name for p in log_root.iterdir()) == sorted(Path(r["dir"]).name
                                                                   for r in rows)
    for row in rows:
        got = scalars(log_root / Path(row["dir"]).name)
        assert [s for s, _ in got["loss"]] == [0, 1, 2, 3]
        assert got["loss"][1][1] == pytest.approx(0.5)
        assert [v for _, v in got["lr"]] == pytest.approx([row["values"]["task.lr"]] * 4)


def test_tensorboard_and_wandb_side_by_side(project, monkeypatch, tmp_path):
    pytest.importorskip("wandb")
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    proc = project.run("tracker=[wandb,tensorboard]")
    assert proc.returncode == 0, proc.stderr
    (row,) = project.status()["runs"]
    assert list(Path(row["dir"]).glob("wandb/offline-run-*/run-*.wandb"))
    assert scalars(project.sweep_dir() / "tensorboard" / Path(row["dir"]).name)["loss"]
