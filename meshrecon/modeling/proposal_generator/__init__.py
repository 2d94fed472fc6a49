"""Proposal generators, registered in ``PROPOSAL_GENERATOR_REGISTRY``."""

from meshrecon.modeling.proposal_generator.build import (
    PROPOSAL_GENERATOR_REGISTRY,
    build_proposal_generator,
)
from meshrecon.modeling.proposal_generator.proposal_utils import (
    add_ground_truth_to_proposals,
    find_top_rpn_proposals,
)
from meshrecon.modeling.proposal_generator.rpn import (
    RPN,
    RPN_HEAD_REGISTRY,
    StandardRPNHead,
    build_rpn_head,
)

__all__ = [
    "PROPOSAL_GENERATOR_REGISTRY",
    "build_proposal_generator",
    "RPN",
    "RPN_HEAD_REGISTRY",
    "StandardRPNHead",
    "build_rpn_head",
    "find_top_rpn_proposals",
    "add_ground_truth_to_proposals",
]
