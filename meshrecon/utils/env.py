"""Process-level environment helpers: seeding every random generator, describing the setup."""

from __future__ import annotations

import os
import platform
import random
import sys
from datetime import datetime

import numpy as np
import torch

import meshrecon

__all__ = ["collect_env_info", "seed_all_rng"]


def seed_all_rng(seed: int | None = None) -> int:
    """Seed Python's, NumPy's and PyTorch's random generators.

    Args:
        seed: the seed; None draws one from the clock, the process id and OS randomness.

    Returns:
        The seed used, so that it can be logged and the run reproduced.
    """
    if seed is None:
        seed = (
            os.getpid()
            + int(datetime.now().strftime("%S%f"))
            + int.from_bytes(os.urandom(2), "big")
        ) % (2**31)
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (code using the legacy global generator needs it)
    torch.manual_seed(seed)
    return seed


def collect_env_info() -> str:
    """Return a plain-text table of versions and devices, for the log of every run."""
    rows: list[tuple[str, str]] = [
        ("sys.platform", sys.platform),
        ("Python", sys.version.replace("\n", " ")),
        ("platform", platform.platform()),
        ("meshrecon", f"{meshrecon.__version__} @ {os.path.dirname(meshrecon.__file__)}"),
        ("numpy", np.__version__),
        ("PyTorch", f"{torch.__version__} @ {os.path.dirname(torch.__file__)}"),
        ("PyTorch debug build", str(torch.version.debug)),
        ("CUDA available", str(torch.cuda.is_available())),
    ]
    if torch.cuda.is_available():
        rows.append(("CUDA (PyTorch built with)", str(torch.version.cuda)))
        for i in range(torch.cuda.device_count()):
            rows.append((f"GPU {i}", torch.cuda.get_device_name(i)))
    for name in ("torchvision", "fvcore", "iopath"):
        try:
            module = __import__(name)
            rows.append((name, getattr(module, "__version__", "unknown")))
        except ImportError:
            rows.append((name, "not found"))
    rows.append(("torch.distributed", str(torch.distributed.is_available())))
    rows.append(("CPU threads (torch)", str(torch.get_num_threads())))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
