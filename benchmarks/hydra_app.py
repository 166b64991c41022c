"""The same trivial task as a plain Hydra app, for `-m` multirun baselines."""

import json
import os

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path=None, config_name=None)
def main(cfg: DictConfig) -> None:
    with open(os.path.join(os.environ["BENCH_OUT"], f"r{cfg.x}.json"), "w") as f:
        json.dump({"x": cfg.x}, f)


if __name__ == "__main__":
    main()
