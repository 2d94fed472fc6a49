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
from meshrecon.modeling.heads import HEAD_REGISTRIES, register_head_kind
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


ROI_BUILDERS = {
    "roi_heads": (modeling.build_roi_heads, "ROI_HEADS"),
    "roi_box": (modeling.build_box_head, "ROI_BOX_HEAD"),
    "roi_mask": (modeling.build_mask_head, "ROI_MASK_HEAD"),
    "roi_voxel": (modeling.build_voxel_head, "ROI_VOXEL_HEAD"),
    "roi_mesh": (modeling.build_mesh_head, "ROI_MESH_HEAD"),
    "roi_z": (modeling.build_z_head, "ROI_Z_HEAD"),
}


def test_build_head_builds_every_kind_and_detectron2_names_are_the_same_call(registered):
    whole_image = ["voxel", "mesh", "point", "depth", "multiview"]
    assert sorted(HEAD_REGISTRIES) == sorted(whole_image + list(ROI_BUILDERS))
    cfg = get_cfg()
    for kind, (registry, node) in HEAD_REGISTRIES.items():

        class Part(nn.Module):
            def __init__(self, cfg, input_shape, kind=kind):
                super().__init__()
                self.made = (kind, input_shape)

        registered(registry, f"_Test_{kind}", Part)
        cfg.MODEL[node].NAME = f"_Test_{kind}"
        assert build_head(cfg, kind, "shape").made == (kind, "shape")
    for kind, (builder, _) in ROI_BUILDERS.items():
        assert builder(cfg, {"p2": 1}).made == (kind, {"p2": 1})


@pytest.mark.parametrize("kind", ["voxel", "mesh", "point", "depth", "multiview", *ROI_BUILDERS])
def test_unknown_head_name_names_the_key_and_lists_the_registered(kind):
    registry, node = HEAD_REGISTRIES[kind]
    cfg = get_cfg()
    cfg.MODEL[node].NAME = "NoSuchHead"
    builders = [lambda: build_head(cfg, kind, None)]
    if kind in ROI_BUILDERS:
        builders.append(lambda: ROI_BUILDERS[kind][0](cfg, None))
    for build in builders:
        with pytest.raises(KeyError) as e:
            build()
        msg = str(e.value)
        assert f"MODEL.{node}.NAME='NoSuchHead'" in msg
        assert f"Registered: {', '.join(registry.names())}" in msg and registry.names()


def test_single_view_heads_come_from_build_head():
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "SingleViewReconstructor"
    cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.MESH_ON = True
    cfg.MODEL.MESH_HEAD.NAME = "VoxMeshHed"
    with pytest.raises(
        KeyError, match="MODEL.MESH_HEAD.NAME='VoxMeshHed'.*Did you mean VoxMeshHead"
    ):
        build_model(cfg)
    cfg.MODEL.MESH_HEAD.NAME = ""
    with pytest.raises(ValueError, match="MODEL.MESH_HEAD.NAME is empty"):
        build_model(cfg)


def test_default_name_fills_only_an_empty_name(registered):
    made = []

    class Part(nn.Module):
        def __init__(self, cfg, input_shape):
            super().__init__()
            made.append(type(self).__name__)

    registered(VOXEL_HEAD_REGISTRY, "_TestDefault", type("_TestDefault", (Part,), {}))
    registered(VOXEL_HEAD_REGISTRY, "_TestNamed", type("_TestNamed", (Part,), {}))
    cfg = get_cfg()
    cfg.MODEL.VOXEL_HEAD.NAME = ""
    build_head(cfg, "voxel", None, default_name="_TestDefault")
    cfg.MODEL.VOXEL_HEAD.NAME = "_TestNamed"
    build_head(cfg, "voxel", None, default_name="_TestDefault")
    assert made == ["_TestDefault", "_TestNamed"]


def test_a_head_kind_cannot_change_its_registry():
    registry, node = HEAD_REGISTRIES["roi_z"]
    register_head_kind("roi_z", registry, node)  # the same again: nothing changes
    assert HEAD_REGISTRIES["roi_z"] == (registry, node)
    with pytest.raises(ValueError, match="'roi_z' is already the ROI_Z_HEAD registry"):
        register_head_kind("roi_z", VOXEL_HEAD_REGISTRY, "VOXEL_HEAD")
    with pytest.raises(ValueError, match="'roi_z' is already"):
        register_head_kind("roi_z", registry, "ROI_MESH_HEAD")
