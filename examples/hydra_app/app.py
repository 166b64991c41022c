"""A plain Hydra app, unchanged for runner: ``python app.py -m hydra/launcher=runner ...``.

It "trains" for a few epochs on a toy objective so that its jobs have something to report: the
validation loss depends on the learning rate and the model, and each epoch is logged with the
standard ``logging`` module (Hydra writes it to ``<job dir>/app.log``).
"""

import logging
import math
import time

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

log = logging.getLogger(__name__)


@hydra.main(version_base=None, config_path="conf", config_name="config")
def train(cfg: DictConfig) -> dict:
    job = HydraConfig.get().job
    log.info(f"job #{job.num}: model={cfg.model.name} db={cfg.db.driver} lr={cfg.lr}")
    loss = 1.0
    for epoch in range(cfg.epochs):
        # the best learning rate is 10**-2 for the small model, 10**-2.5 for the large one
        gap = abs(math.log10(cfg.lr) - cfg.model.best_log_lr)
        loss = cfg.model.floor + (1.0 - cfg.model.floor) * math.exp(-(epoch + 1) / (1 + gap))
        log.info(f"epoch {epoch}: val/loss={loss:.4f}")
        time.sleep(cfg.sleep_s)
    return {"val/loss": loss, "epochs": cfg.epochs}


if __name__ == "__main__":
    train()
