"""Proposal generators, registered in ``PROPOSAL_GENERATOR_REGISTRY``."""

from meshrecon.modeling.proposal_generator.build import (
    PROPOSAL_GENERATOR_REGISTRY,
    build_proposal_generator,
)

__all__ = ["PROPOSAL_GENERATOR_REGISTRY", "build_proposal_generator"]
