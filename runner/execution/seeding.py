"""One call that seeds every random number generator a run is likely to use.

``runner.seed_everything(cfg.seed)`` seeds Python's ``random``, NumPy's global generator and, when
the task has imported it, torch (CPU and every CUDA device). ``deterministic=True`` also asks
torch for deterministic algorithms (cuDNN's too, and the cuBLAS workspace setting CUDA needs), at
some cost in speed. ``PYTHONHASHSEED`` cannot change inside a running interpreter: set it in the
environment when set iteration order matters.
"""

from __future__ import annotations

import os
import random
import sys


def seed_everything(seed: int, *, deterministic: bool = False) -> int:
    """Seed ``random``, NumPy and (if imported) torch with ``seed``; returns the seed."""
    seed = int(seed)
    random.seed(seed)
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency of runner
        pass
    else:
        np.random.seed(seed % 2**32)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
    return seed
