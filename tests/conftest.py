import os
from pathlib import Path

import pytest
import torch

DATA_DIR = Path(__file__).parent / "data"
GOLDEN_P3D = DATA_DIR / "golden" / "pytorch3d"

# Two cores: keep the intra-op pool small and deterministic across machines.
torch.set_num_threads(min(2, os.cpu_count() or 1))


def load_golden(name: str) -> dict:
    """Load one of the PyTorch3D golden files copied into tests/data (see PROVENANCE.md)."""
    return torch.load(GOLDEN_P3D / f"{name}.pt", weights_only=True)


@pytest.fixture
def golden():
    return load_golden
