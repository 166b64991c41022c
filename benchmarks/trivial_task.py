"""The trivial task every launcher benchmark runs: write one small JSON file."""

import json
import os


def main(cfg):
    with open(os.path.join(os.environ.get("BENCH_OUT", "."), f"r{cfg.x}.json"), "w") as f:
        json.dump({"x": cfg.x}, f)
    return {"x": cfg.x}
