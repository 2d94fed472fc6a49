import os
import textwrap

import pytest

from meshrecon.config import CfgNode, configurable, get_cfg


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_defaults_hold_framework_keys():
    cfg = get_cfg()
    assert isinstance(cfg, CfgNode) and isinstance(cfg.SOLVER.CLIP_GRADIENTS, CfgNode)
    for key in [
        "VERSION",
        "MODEL.DEVICE",
        "MODEL.META_ARCHITECTURE",
        "MODEL.WEIGHTS",
        "MODEL.PIXEL_MEAN",
        "MODEL.PIXEL_STD",
        "MODEL.BACKBONE.NAME",
        "MODEL.BACKBONE.FREEZE_AT",
        "MODEL.MASK_ON",
        "MODEL.VOXEL_ON",
        "MODEL.MESH_ON",
        "MODEL.ZPRED_ON",
        "DATALOADER.NUM_WORKERS",
        "DATALOADER.ASPECT_RATIO_GROUPING",
        "DATALOADER.SAMPLER_TRAIN",
        "DATALOADER.FILTER_EMPTY_ANNOTATIONS",
        "SOLVER.OPTIMIZER",
        "SOLVER.LR_SCHEDULER_NAME",
        "SOLVER.CLIP_GRADIENTS.CLIP_TYPE",
        "SOLVER.CLIP_GRADIENTS.NORM_TYPE",
        "SOLVER.AMP.ENABLED",
        "SOLVER.WEIGHT_DECAY_BIAS",
        "SOLVER.BIAS_LR_FACTOR",
        "TEST.EVAL_PERIOD",
        "OUTPUT_DIR",
        "SEED",
        "CUDNN_BENCHMARK",
    ]:
        node = cfg
        for part in key.split("."):
            assert part in node, key
            node = node[part]
    assert cfg.MODEL.DEVICE == "cpu"
    assert cfg.SOLVER.OPTIMIZER == "SGD"
    assert cfg.SOLVER.LR_SCHEDULER_NAME == "WarmupMultiStepLR"


def test_get_cfg_returns_independent_copies():
    a, b = get_cfg(), get_cfg()
    a.SOLVER.BASE_LR = 123.0
    assert b.SOLVER.BASE_LR != 123.0


def test_base_chain_relative_paths_and_order(tmp_path):
    _write(
        tmp_path / "bases" / "root.yaml",
        """
        SOLVER:
          BASE_LR: 0.5
          MAX_ITER: 7
        INPUT:
          MIN_SIZE_TRAIN: (10, 20)
        """,
    )
    _write(
        tmp_path / "bases" / "mid.yaml",
        """
        _BASE_: "root.yaml"
        SOLVER:
          MAX_ITER: 8
          STEPS: (3, 5)
        """,
    )
    leaf = _write(
        tmp_path / "exp" / "leaf.yaml",
        """
        _BASE_: "../bases/mid.yaml"
        SOLVER:
          WARMUP_FACTOR: 1e-3
        DATASETS:
          TRAIN: ("a_train",)
        """,
    )
    cfg = get_cfg()
    cfg.merge_from_file(leaf)
    assert cfg.SOLVER.BASE_LR == 0.5
    assert cfg.SOLVER.MAX_ITER == 8  # child overrides base
    assert cfg.SOLVER.STEPS == (3, 5)
    assert cfg.INPUT.MIN_SIZE_TRAIN == (10, 20)
    assert cfg.SOLVER.WARMUP_FACTOR == pytest.approx(1e-3)
    assert cfg.DATASETS.TRAIN == ("a_train",)


def test_base_loop_is_reported(tmp_path):
    a = _write(tmp_path / "a.yaml", '_BASE_: "b.yaml"\n')
    _write(tmp_path / "b.yaml", '_BASE_: "a.yaml"\n')
    with pytest.raises(ValueError, match="loops"):
        get_cfg().merge_from_file(a)


def test_unknown_key_in_file_names_key_file_and_suggestion(tmp_path):
    path = _write(tmp_path / "bad.yaml", "SOLVER:\n  BASE_LRR: 0.1\n")
    with pytest.raises(KeyError) as e:
        get_cfg().merge_from_file(path)
    msg = str(e.value)
    assert "SOLVER.BASE_LRR" in msg and "bad.yaml" in msg and "SOLVER.BASE_LR" in msg


def test_unknown_key_in_list_suggests_closest():
    with pytest.raises(KeyError) as e:
        get_cfg().merge_from_list(["MODEL.ROI_HEAD.NAME", "X"])
    assert "MODEL.ROI_HEAD.NAME" in str(e.value) and "MODEL.ROI_HEADS.NAME" in str(e.value)


def test_merge_from_list_parses_literals_and_keeps_strings():
    cfg = get_cfg()
    cfg.merge_from_list(
        ["SOLVER.BASE_LR", "0.25", "SOLVER.STEPS", "[10, 20]", "MODEL.META_ARCHITECTURE", "Foo"]
    )
    cfg.merge_from_list(["SOLVER.AMP.ENABLED", "True", "OUTPUT_DIR", "2017", "SOLVER.MAX_ITER", 9])
    assert cfg.SOLVER.BASE_LR == 0.25
    assert cfg.SOLVER.STEPS == (10, 20)  # converted to the default's type
    assert cfg.MODEL.META_ARCHITECTURE == "Foo"
    assert cfg.SOLVER.AMP.ENABLED is True
    assert cfg.OUTPUT_DIR == "2017"
    assert cfg.SOLVER.MAX_ITER == 9
    with pytest.raises(ValueError, match="odd"):
        cfg.merge_from_list(["SOLVER.BASE_LR"])


def test_type_mismatch_names_key():
    with pytest.raises(TypeError, match="SOLVER.MAX_ITER"):
        get_cfg().merge_from_list(["SOLVER.MAX_ITER", "'many'"])
    with pytest.raises(TypeError, match="SOLVER.AMP"):
        get_cfg().merge_from_list(["SOLVER.AMP", "1"])


def test_unsafe_yaml_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = _write(
        tmp_path / "evil.yaml",
        f'SEED: !!python/object/apply:os.system ["touch {marker}"]\n',
    )
    with pytest.raises(ValueError, match="evil.yaml"):
        get_cfg().merge_from_file(path, allow_unsafe=True)
    assert not marker.exists()


@pytest.mark.parametrize(
    "data, where",
    [
        (
            'SEED: 1\nOUTPUT_DIR: "caf\u00e9"\n'.encode("latin-1"),
            "byte b'\\xe9' at offset 24 (line 2)",
        ),
        ("SEED: 3\n".encode("utf-16"), "offset 0 (line 1)"),
        (b"SEED: 1\n" * 2000 + b'OUTPUT_DIR: "\xff"\n', "(line 2001)"),
    ],
)
def test_non_utf8_yaml_names_the_file_and_the_byte(tmp_path, data, where):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(data)
    with pytest.raises(ValueError, match="is not UTF-8 text") as err:
        get_cfg().merge_from_file(str(path))
    assert str(path) in str(err.value) and where in str(err.value)
    # Through a _BASE_ chain, the message names the base file at fault.
    child = tmp_path / "child.yaml"
    child.write_text('_BASE_: "latin1.yaml"\nSEED: 2\n', encoding="utf-8")
    with pytest.raises(ValueError, match="latin1.yaml is not UTF-8"):
        get_cfg().merge_from_file(str(child))


def test_dump_round_trip(tmp_path):
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.STEPS", "(5, 9)", "DATASETS.TEST", "('x',)", "SEED", "3"])
    path = tmp_path / "dumped.yaml"
    path.write_text(cfg.dump())
    again = get_cfg()
    again.merge_from_file(str(path))
    assert again == cfg


def test_frozen_config_rejects_merges():
    cfg = get_cfg()
    cfg.freeze()
    with pytest.raises(AttributeError):
        cfg.merge_from_list(["SEED", "1"])


MANIFEST_FRAMEWORK_PART = """
CUDNN_BENCHMARK: false
DATALOADER: {ASPECT_RATIO_GROUPING: false, FILTER_EMPTY_ANNOTATIONS: true, NUM_WORKERS: 4,
  REPEAT_SQRT: true, REPEAT_THRESHOLD: 0.0, SAMPLER_TRAIN: TrainingSampler}
DATASETS: {PRECOMPUTED_PROPOSAL_TOPK_TEST: 1000, PRECOMPUTED_PROPOSAL_TOPK_TRAIN: 2000,
  PROPOSAL_FILES_TEST: [], PROPOSAL_FILES_TRAIN: [], TEST: [pix3d_s1_test], TRAIN: [pix3d_s1_train]}
FLOAT32_PRECISION: ''
GLOBAL: {HACK: 1.0}
INPUT:
  CROP: {ENABLED: false, SIZE: [0.9, 0.9], TYPE: relative_range}
  FORMAT: BGR
  MASK_FORMAT: polygon
  MAX_SIZE_TEST: 1333
  MAX_SIZE_TRAIN: 1333
  MIN_SIZE_TEST: 800
  MIN_SIZE_TRAIN: [800]
  MIN_SIZE_TRAIN_SAMPLING: choice
  RANDOM_FLIP: horizontal
MODEL:
  BACKBONE: {FREEZE_AT: 2, NAME: build_resnet_fpn_backbone}
  DEVICE: cpu
  KEYPOINT_ON: false
  LOAD_PROPOSALS: false
  MASK_ON: true
  MESH_ON: true
  META_ARCHITECTURE: GeneralizedRCNN
  PIXEL_MEAN: [103.53, 116.28, 123.675]
  PIXEL_STD: [1.0, 1.0, 1.0]
  PROPOSAL_GENERATOR: {MIN_SIZE: 0, NAME: RPN}
  VIS_MINIBATCH: false
  VOXEL_ON: true
  WEIGHTS: ''
  ZPRED_ON: true
OUTPUT_DIR: ./output
SEED: -1
SOLVER:
  AMP: {ENABLED: false}
  BASE_LR: 0.02
  BASE_LR_END: 0.0
  BIAS_LR_FACTOR: 1.0
  CHECKPOINT_PERIOD: 5000
  CLIP_GRADIENTS: {CLIP_TYPE: value, CLIP_VALUE: 1.0, ENABLED: false, NORM_TYPE: 2.0}
  GAMMA: 0.1
  IMS_PER_BATCH: 16
  LR_SCHEDULER_NAME: WarmupMultiStepLR
  MAX_ITER: 11000
  MOMENTUM: 0.9
  NESTEROV: false
  NUM_DECAYS: 3
  REFERENCE_WORLD_SIZE: 0
  RESCALE_INTERVAL: false
  STEPS: [8000, 10000]
  WARMUP_FACTOR: 0.1
  WARMUP_ITERS: 1000
  WARMUP_METHOD: linear
  WEIGHT_DECAY: 0.0001
  WEIGHT_DECAY_BIAS: null
  WEIGHT_DECAY_NORM: 0.0
TEST:
  AUG: {ENABLED: false, FLIP: true, MAX_SIZE: 4000,
    MIN_SIZES: [400, 500, 600, 700, 800, 900, 1000, 1100, 1200]}
  DETECTIONS_PER_IMAGE: 100
  EVAL_PERIOD: 0
  EXPECTED_RESULTS: []
  KEYPOINT_OKS_SIGMAS: []
  PRECISE_BN: {ENABLED: false, NUM_ITER: 200}
VERSION: 2
VIS_PERIOD: 0
"""


def test_mesh_rcnn_framework_keys_merge(tmp_path):
    """The framework part of Mesh R-CNN's Pix3D config (as dumped by Detectron2) merges as is."""
    path = _write(tmp_path / "pix3d_framework.yaml", MANIFEST_FRAMEWORK_PART)
    cfg = get_cfg()
    cfg.merge_from_file(path)
    assert cfg.SOLVER.STEPS == (8000, 10000)
    assert cfg.DATASETS.TRAIN == ("pix3d_s1_train",)
    assert cfg.MODEL.ZPRED_ON is True and cfg.SOLVER.WARMUP_FACTOR == 0.1


class _Head:
    @configurable
    def __init__(self, *, in_channels: int, num_classes: int, scale: float = 1.0):
        self.in_channels, self.num_classes, self.scale = in_channels, num_classes, scale

    @classmethod
    def from_config(cls, cfg, in_channels):
        return {"in_channels": in_channels, "num_classes": cfg.MODEL.BACKBONE.FREEZE_AT}


def test_configurable_on_init():
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.FREEZE_AT = 5
    h = _Head(cfg, 16)
    assert (h.in_channels, h.num_classes, h.scale) == (16, 5, 1.0)
    h = _Head(cfg, in_channels=8, scale=2.0)  # extra kwarg passes through
    assert (h.in_channels, h.num_classes, h.scale) == (8, 5, 2.0)
    h = _Head(cfg=cfg, in_channels=4)
    assert h.num_classes == 5
    h = _Head(in_channels=3, num_classes=7)
    assert (h.in_channels, h.num_classes) == (3, 7)


def test_configurable_on_function_and_errors():
    @configurable(from_config=lambda cfg, scale=1: {"lr": cfg.SOLVER.BASE_LR * scale})
    def make(lr, momentum=0.0):
        return lr, momentum

    cfg = get_cfg()
    cfg.SOLVER.BASE_LR = 0.5
    assert make(cfg, scale=2) == (1.0, 0.0)
    assert make(cfg, momentum=0.9) == (0.5, 0.9)
    assert make(0.1) == (0.1, 0.0)

    class NoFromConfig:
        @configurable
        def __init__(self, a=1):
            self.a = a

    with pytest.raises(AttributeError, match="from_config"):
        NoFromConfig(cfg)
    assert NoFromConfig(a=2).a == 2

    class BadFromConfig:
        @configurable
        def __init__(self, a=1):
            self.a = a

        @classmethod
        def from_config(cls, config):
            return {}

    with pytest.raises(TypeError, match="cfg"):
        BadFromConfig(cfg)


def test_new_allowed_nodes_accept_new_keys(tmp_path):
    cfg = get_cfg()
    cfg.EXTRA = CfgNode(new_allowed=True)
    path = _write(tmp_path / "x.yaml", "EXTRA:\n  ANY: 3\n  SUB: {A: 1}\n")
    cfg.merge_from_file(path)
    assert cfg.EXTRA.ANY == 3 and cfg.EXTRA.SUB.A == 1
    assert os.path.basename(path) == "x.yaml"


def test_renamed_keys_exist_under_their_new_names_only():
    from meshrecon.config.config import RENAMED_KEYS

    cfg = get_cfg()
    assert cfg.VERSION == max(v for _, v in RENAMED_KEYS.values())
    for old, (new, _) in RENAMED_KEYS.items():
        node = cfg
        for part in new.split("."):
            node = node[part]  # the new key exists
        with pytest.raises(KeyError):
            node = cfg
            for part in old.split("."):
                node = node[part]


def test_an_old_file_loads_with_its_keys_renamed(tmp_path, caplog):
    """A VERSION 2 file with the evaluator keys under MODEL.* loads, each rename logged."""
    path = _write(
        tmp_path / "old.yaml",
        "VERSION: 2\nMODEL:\n  R2N2:\n    IOU_THRESH: 0.3\n    EVAL_MESH_SAMPLES: 77\n"
        "  OPTIMIZE_MVS:\n    EVAL_FPS_POINTS: [64, 128]\n    EVAL_VIEW_COUNTS: [1, 2]\n",
    )
    cfg = get_cfg()
    with caplog.at_level("WARNING", logger="meshrecon.config.config"):
        cfg.merge_from_file(path)
    assert cfg.TEST.R2N2.IOU_THRESH == 0.3
    assert cfg.TEST.R2N2.MESH_SAMPLES == 77
    assert list(cfg.TEST.OPTIMIZE_MVS.FPS_POINTS) == [64, 128]
    assert list(cfg.TEST.OPTIMIZE_MVS.VIEW_COUNTS) == [1, 2]
    assert cfg.VERSION == 3
    logged = caplog.text
    for old in ("MODEL.R2N2.IOU_THRESH", "MODEL.R2N2.EVAL_MESH_SAMPLES", "EVAL_FPS_POINTS"):
        assert old in logged
    assert "TEST.R2N2.IOU_THRESH" in logged
    # From the command line too.
    cfg = get_cfg()
    with caplog.at_level("WARNING", logger="meshrecon.config.config"):
        cfg.merge_from_list(["MODEL.R2N2.IOU_THRESH", "0.25"])
    assert cfg.TEST.R2N2.IOU_THRESH == 0.25


def test_a_file_setting_both_old_and_new_names_is_an_error(tmp_path):
    path = _write(
        tmp_path / "both.yaml",
        "MODEL:\n  R2N2:\n    IOU_THRESH: 0.3\nTEST:\n  R2N2:\n    IOU_THRESH: 0.5\n",
    )
    with pytest.raises(ValueError, match="MODEL.R2N2.IOU_THRESH.*TEST.R2N2.IOU_THRESH"):
        get_cfg().merge_from_file(path)
