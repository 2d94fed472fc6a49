"""``PROPOSAL_GENERATOR_REGISTRY`` and ``build_proposal_generator``."""

from __future__ import annotations

from typing import Any

from torch import nn

from meshrecon.utils.registry import Registry

__all__ = ["PROPOSAL_GENERATOR_REGISTRY", "build_proposal_generator"]

PROPOSAL_GENERATOR_REGISTRY = Registry("PROPOSAL_GENERATOR")
PROPOSAL_GENERATOR_REGISTRY.__doc__ = """
Proposal generators (RPN). A registered class is called as ``cls(cfg, input_shape)`` with
``input_shape`` a dict of feature name -> ``ShapeSpec``.
"""

# Proposals read from files (DATASETS.PROPOSAL_FILES_*) instead of computed by a module.
PRECOMPUTED_PROPOSALS = "PrecomputedProposals"


def build_proposal_generator(cfg, input_shape: Any) -> nn.Module | None:
    """Build ``cfg.MODEL.PROPOSAL_GENERATOR.NAME``; ``None`` for ``"PrecomputedProposals"``."""
    name = cfg.MODEL.PROPOSAL_GENERATOR.NAME
    if name == PRECOMPUTED_PROPOSALS:
        return None
    cls = PROPOSAL_GENERATOR_REGISTRY.get(name, cfg_key="MODEL.PROPOSAL_GENERATOR.NAME")
    return cls(cfg, input_shape)
