import pytest
import torch
from torch import nn

import meshrecon.modeling as modeling
from meshrecon.config import get_cfg
from meshrecon.modeling import (
    BACKBONE_REGISTRY,
    META_ARCH_REGISTRY,
    PROPOSAL_GENERATOR_REGISTRY,
    ROI_HEADS_REGISTRY,
    ROI_Z_HEAD_REGISTRY,
    VOXEL_HEAD_REGISTRY,
    build_backbone,
    build_head,
    build_model,
    build_proposal_generator,
    build_roi_heads,
    build_z_head,
)
from meshrecon.utils.registry import Registry

ALL_REGISTRIES = [
    "META_ARCH_REGISTRY",
    "BACKBONE_REGISTRY",
    "PROPOSAL_GENERATOR_REGISTRY",
    "ROI_HEADS_REGISTRY",
    "ROI_BOX_HEAD_REGISTRY",
    "ROI_MASK_HEAD_REGISTRY",
    "ROI_VOXEL_HEAD_REGISTRY",
    "ROI_MESH_HEAD_REGISTRY",
    "ROI_Z_HEAD_REGISTRY",
    "VOXEL_HEAD_REGISTRY",
    "MESH_HEAD_REGISTRY",
    "POINT_HEAD_REGISTRY",
    "DEPTH_HEAD_REGISTRY",
    "MULTIVIEW_HEAD_REGISTRY",
]


@pytest.fixture
def registered():
    """Register test classes and remove them afterwards (registries are process-global)."""
    added = []

    def add(registry, name, obj):
        registry._do_register(name, obj)
        added.append((registry, name))
        return obj

    yield add
    for registry, name in added:
        registry._obj_map.pop(name, None)


class _TinyModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg_lr = cfg.SOLVER.BASE_LR
        self.linear = nn.Linear(2, 3)


def test_registries_are_exported_and_distinct():
    regs = [getattr(modeling, name) for name in ALL_REGISTRIES]
    assert all(isinstance(r, Registry) for r in regs)
    assert len({id(r) for r in regs}) == len(regs)
    assert [r._name for r in regs] == [n.removesuffix("_REGISTRY") for n in ALL_REGISTRIES]


def test_build_model_on_cpu(registered):
    registered(META_ARCH_REGISTRY, "_TestTinyModel", _TinyModel)
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "_TestTinyModel"
    cfg.SOLVER.BASE_LR = 0.125
    model = build_model(cfg)
    assert isinstance(model, _TinyModel) and model.cfg_lr == 0.125
    assert model.linear.weight.device == torch.device("cpu")


def test_unknown_name_lists_registered_names(registered):
    registered(META_ARCH_REGISTRY, "_TestTinyModel", _TinyModel)
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "_TestTinyModle"
    with pytest.raises(KeyError) as e:
        build_model(cfg)
    msg = str(e.value)
    assert "MODEL.META_ARCHITECTURE='_TestTinyModle'" in msg
    assert "META_ARCH" in msg and "Did you mean _TestTinyModel" in msg


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_cuda_without_cuda_is_a_clear_error(registered):
    registered(META_ARCH_REGISTRY, "_TestTinyModel", _TinyModel)
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "_TestTinyModel"
    cfg.MODEL.DEVICE = "cuda"
    with pytest.raises(RuntimeError, match="MODEL.DEVICE='cuda'.*not available"):
        build_model(cfg)


def test_invalid_device_string():
    cfg = get_cfg()
    cfg.MODEL.DEVICE = "gpu0"
    with pytest.raises(ValueError, match="gpu0"):
        build_model(cfg)


def test_non_module_is_rejected(registered):
    registered(META_ARCH_REGISTRY, "_TestNotAModule", lambda cfg: object())
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "_TestNotAModule"
    with pytest.raises(TypeError, match="not an nn.Module"):
        build_model(cfg)


def test_component_builders_pass_cfg_and_input_shape(registered):
    seen = {}

    def make(kind):
        class Part(nn.Module):
            def __init__(self, cfg, input_shape):
                super().__init__()
                seen[kind] = input_shape

        return Part

    registered(BACKBONE_REGISTRY, "_test_backbone", make("backbone"))
    registered(PROPOSAL_GENERATOR_REGISTRY, "_TestRPN", make("rpn"))
    registered(ROI_HEADS_REGISTRY, "_TestROIHeads", make("roi"))
    registered(ROI_Z_HEAD_REGISTRY, "_TestZHead", make("z"))
    registered(VOXEL_HEAD_REGISTRY, "_TestVoxelHead", make("voxel"))
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "_test_backbone"
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = "_TestRPN"
    cfg.MODEL.ROI_HEADS.NAME = "_TestROIHeads"
    cfg.MODEL.ROI_Z_HEAD.NAME = "_TestZHead"
    cfg.MODEL.VOXEL_HEAD.NAME = "_TestVoxelHead"
    build_backbone(cfg, input_shape="img")
    build_proposal_generator(cfg, {"p2": 1})
    build_roi_heads(cfg, {"p3": 2})
    build_z_head(cfg, "z-shape")
    build_head(cfg, "voxel", "v-shape")
    assert seen == {
        "backbone": "img",
        "rpn": {"p2": 1},
        "roi": {"p3": 2},
        "z": "z-shape",
        "voxel": "v-shape",
    }


def test_precomputed_proposals_build_nothing():
    cfg = get_cfg()
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = "PrecomputedProposals"
    assert build_proposal_generator(cfg, {}) is None


def test_build_head_errors():
    cfg = get_cfg()
    with pytest.raises(ValueError, match="MODEL.MESH_HEAD.NAME is empty"):
        build_head(cfg, "mesh")
    with pytest.raises(ValueError, match="Unknown head kind 'meshes'"):
        build_head(cfg, "meshes")
    cfg.MODEL.DEPTH_HEAD.NAME = "NoSuchHead"
    with pytest.raises(KeyError, match="MODEL.DEPTH_HEAD.NAME='NoSuchHead'"):
        build_head(cfg, "depth")


def test_empty_registry_error_says_nothing_registered():
    reg = Registry("EMPTY_TEST")
    with pytest.raises(KeyError, match="none: is the module imported"):
        reg.get("X")
    reg.register(_TinyModel)
    assert reg.get("_TinyModel") is _TinyModel and reg.names() == ["_TinyModel"]
