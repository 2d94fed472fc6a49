"""Every config default of meshrecon, in one place.

YAML files only override what is declared here; a key that is not declared here is an error
(with a suggestion of the closest existing key). Key names follow Detectron2 and Mesh R-CNN so
that their configs read the same here. Each method adds its own keys in the section named after
its part of the model; a key belongs here, with a comment, before any code reads it.
"""

from meshrecon.config.config import CfgNode as CN

_C = CN()

# Bumped when a key is renamed or changes meaning, so that old files can be upgraded.
_C.VERSION = 2

# -----------------------------------------------------------------------------
# MODEL
# -----------------------------------------------------------------------------
_C.MODEL = CN()
# "cpu", "cuda" or "cuda:N". Asking for CUDA on a machine without it is an error at build time.
_C.MODEL.DEVICE = "cpu"
# Name of a class in META_ARCH_REGISTRY (meshrecon/modeling/meta_arch).
_C.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
# Initial weights: a path or a URL prefix understood by meshrecon.checkpoint.PathManager
# (detectron2://, meshrcnn://, shapenet://, torchvision://NAME). Empty: train from scratch.
_C.MODEL.WEIGHTS = ""
# Precomputed proposals instead of a proposal generator (Fast R-CNN style).
_C.MODEL.LOAD_PROPOSALS = False
# Which optional heads a GeneralizedRCNN-style model runs.
_C.MODEL.MASK_ON = False
_C.MODEL.KEYPOINT_ON = False
# Mesh R-CNN heads: voxel branch, mesh refinement branch, and depth-extent (z) regression.
_C.MODEL.VOXEL_ON = False
_C.MODEL.MESH_ON = False
_C.MODEL.ZPRED_ON = False
# Store a visualization of the sampled training minibatch (Mesh R-CNN debugging aid).
_C.MODEL.VIS_MINIBATCH = False

# Per-channel image normalization, in the channel order of INPUT.FORMAT. The defaults are the
# statistics of the MSRA ImageNet models (BGR, 0..255, unit std) used by Detectron2 / Mesh R-CNN.
_C.MODEL.PIXEL_MEAN = [103.530, 116.280, 123.675]
_C.MODEL.PIXEL_STD = [1.0, 1.0, 1.0]

# ---------------------------------------------------------------------------- #
# Backbone
# ---------------------------------------------------------------------------- #
_C.MODEL.BACKBONE = CN()
# Name of a builder function in BACKBONE_REGISTRY, called as f(cfg, input_shape).
_C.MODEL.BACKBONE.NAME = "build_resnet_backbone"
# Freeze the first N stages (1 = stem only, 2 = stem + res2, ...); 0 trains everything.
_C.MODEL.BACKBONE.FREEZE_AT = 2

# ---------------------------------------------------------------------------- #
# Proposal generator
# ---------------------------------------------------------------------------- #
_C.MODEL.PROPOSAL_GENERATOR = CN()
# Name in PROPOSAL_GENERATOR_REGISTRY; "PrecomputedProposals" builds none.
_C.MODEL.PROPOSAL_GENERATOR.NAME = "RPN"
# Proposals smaller than this (in input-image pixels, either side) are dropped.
_C.MODEL.PROPOSAL_GENERATOR.MIN_SIZE = 0

# ---------------------------------------------------------------------------- #
# ROI heads and the per-ROI heads they run (one registry each)
# ---------------------------------------------------------------------------- #
_C.MODEL.ROI_HEADS = CN()
_C.MODEL.ROI_HEADS.NAME = "StandardROIHeads"

_C.MODEL.ROI_BOX_HEAD = CN()
_C.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"

_C.MODEL.ROI_MASK_HEAD = CN()
_C.MODEL.ROI_MASK_HEAD.NAME = "MaskRCNNConvUpsampleHead"

_C.MODEL.ROI_VOXEL_HEAD = CN()
_C.MODEL.ROI_VOXEL_HEAD.NAME = "VoxelRCNNConvUpsampleHead"

_C.MODEL.ROI_MESH_HEAD = CN()
_C.MODEL.ROI_MESH_HEAD.NAME = "MeshRCNNGraphConvHead"

_C.MODEL.ROI_Z_HEAD = CN()
_C.MODEL.ROI_Z_HEAD.NAME = "FastRCNNFCHead"

# ---------------------------------------------------------------------------- #
# Whole-image heads (single- and multi-view reconstructors); empty name: not used
# ---------------------------------------------------------------------------- #
_C.MODEL.VOXEL_HEAD = CN()
_C.MODEL.VOXEL_HEAD.NAME = ""

_C.MODEL.MESH_HEAD = CN()
_C.MODEL.MESH_HEAD.NAME = ""

_C.MODEL.POINT_HEAD = CN()
_C.MODEL.POINT_HEAD.NAME = ""

_C.MODEL.DEPTH_HEAD = CN()
_C.MODEL.DEPTH_HEAD.NAME = ""

_C.MODEL.MULTIVIEW_HEAD = CN()
_C.MODEL.MULTIVIEW_HEAD.NAME = ""

# -----------------------------------------------------------------------------
# INPUT
# -----------------------------------------------------------------------------
_C.INPUT = CN()
# Shorter-side sizes to resize training images to; one is picked per image according to
# MIN_SIZE_TRAIN_SAMPLING ("choice": one of the list; "range": uniform in [min, max]).
_C.INPUT.MIN_SIZE_TRAIN = (800,)
_C.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice"
# Longer side is capped at this size after the shorter-side resize.
_C.INPUT.MAX_SIZE_TRAIN = 1333
# Shorter-side size at test time; 0 disables resizing.
_C.INPUT.MIN_SIZE_TEST = 800
_C.INPUT.MAX_SIZE_TEST = 1333
# "horizontal", "vertical" or "none". Flips move meshes, voxels and K with the image.
_C.INPUT.RANDOM_FLIP = "horizontal"
# Channel order of the image tensor the model receives: "BGR" or "RGB".
_C.INPUT.FORMAT = "BGR"
# Instance masks as "polygon" or "bitmask".
_C.INPUT.MASK_FORMAT = "polygon"

_C.INPUT.CROP = CN({"ENABLED": False})
# "relative_range", "relative", "absolute" or "absolute_range", as in Detectron2.
_C.INPUT.CROP.TYPE = "relative_range"
_C.INPUT.CROP.SIZE = [0.9, 0.9]

# -----------------------------------------------------------------------------
# DATASETS
# -----------------------------------------------------------------------------
_C.DATASETS = CN()
# Names registered in meshrecon.data.DatasetCatalog.
_C.DATASETS.TRAIN = ()
_C.DATASETS.TEST = ()
# Proposal files, one per dataset name above, used when MODEL.LOAD_PROPOSALS is on.
_C.DATASETS.PROPOSAL_FILES_TRAIN = ()
_C.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN = 2000
_C.DATASETS.PROPOSAL_FILES_TEST = ()
_C.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST = 1000

# -----------------------------------------------------------------------------
# DATALOADER
# -----------------------------------------------------------------------------
_C.DATALOADER = CN()
# Worker processes per data loader (0: load in the main process).
_C.DATALOADER.NUM_WORKERS = 4
# Batch images of similar aspect ratio together (less padding).
_C.DATALOADER.ASPECT_RATIO_GROUPING = True
# "TrainingSampler" (infinite, shuffled, distributed-aware) or "RepeatFactorTrainingSampler".
_C.DATALOADER.SAMPLER_TRAIN = "TrainingSampler"
# RepeatFactorTrainingSampler: repeat images with rare categories (threshold on frequency).
_C.DATALOADER.REPEAT_THRESHOLD = 0.0
_C.DATALOADER.REPEAT_SQRT = True
# Drop training images without annotations.
_C.DATALOADER.FILTER_EMPTY_ANNOTATIONS = True

# -----------------------------------------------------------------------------
# SOLVER
# -----------------------------------------------------------------------------
_C.SOLVER = CN()
# "SGD" or "ADAM" (case-insensitive). SGD uses MOMENTUM and NESTEROV; ADAM uses torch's betas.
_C.SOLVER.OPTIMIZER = "SGD"
# "WarmupMultiStepLR" (decay by GAMMA at STEPS) or "WarmupCosineLR" (to BASE_LR_END at MAX_ITER).
_C.SOLVER.LR_SCHEDULER_NAME = "WarmupMultiStepLR"
_C.SOLVER.MAX_ITER = 40000
_C.SOLVER.BASE_LR = 0.001
# Final learning rate of the cosine schedule.
_C.SOLVER.BASE_LR_END = 0.0
_C.SOLVER.MOMENTUM = 0.9
_C.SOLVER.NESTEROV = False
_C.SOLVER.WEIGHT_DECAY = 0.0001
# Weight decay of normalization layers' parameters (BatchNorm, GroupNorm, ...).
_C.SOLVER.WEIGHT_DECAY_NORM = 0.0
# Multiplier of the learning rate at each of STEPS.
_C.SOLVER.GAMMA = 0.1
# Iterations at which the learning rate is multiplied by GAMMA.
_C.SOLVER.STEPS = (30000,)
# Number of decays of a step schedule whose steps are derived from MAX_ITER (Detectron2 compat).
_C.SOLVER.NUM_DECAYS = 3
# Warm-up: the learning rate goes from BASE_LR * WARMUP_FACTOR to BASE_LR over WARMUP_ITERS,
# "linear"ly or held "constant".
_C.SOLVER.WARMUP_FACTOR = 1.0 / 1000
_C.SOLVER.WARMUP_ITERS = 1000
_C.SOLVER.WARMUP_METHOD = "linear"
# Rescale STEPS with MAX_ITER when the latter is changed by REFERENCE_WORLD_SIZE scaling.
_C.SOLVER.RESCALE_INTERVAL = False
# Save a checkpoint every this many iterations.
_C.SOLVER.CHECKPOINT_PERIOD = 5000
# Images per batch summed over all processes (so 16 on 8 GPUs is 2 per GPU).
_C.SOLVER.IMS_PER_BATCH = 16
# If > 0, scale IMS_PER_BATCH, BASE_LR, MAX_ITER, STEPS linearly from this world size to the
# actual one (Detectron2's auto-scaling). 0 disables it.
_C.SOLVER.REFERENCE_WORLD_SIZE = 0
# Bias parameters get BASE_LR * BIAS_LR_FACTOR and WEIGHT_DECAY_BIAS (None: WEIGHT_DECAY).
_C.SOLVER.BIAS_LR_FACTOR = 1.0
_C.SOLVER.WEIGHT_DECAY_BIAS = None

_C.SOLVER.CLIP_GRADIENTS = CN({"ENABLED": False})
# "value": clamp each gradient element to +-CLIP_VALUE; "norm": clip each parameter's gradient
# norm (of order NORM_TYPE, inf allowed) to CLIP_VALUE; "full_model": clip the total norm.
_C.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "value"
_C.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1.0
_C.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0

# Automatic mixed precision (CUDA only; ignored with a warning on CPU).
_C.SOLVER.AMP = CN({"ENABLED": False})

# -----------------------------------------------------------------------------
# TEST
# -----------------------------------------------------------------------------
_C.TEST = CN()
# Metrics a run must reach, as [[task, metric, value, tolerance], ...]; checked after evaluation.
_C.TEST.EXPECTED_RESULTS = []
# Evaluate every this many iterations during training (0: only at the end).
_C.TEST.EVAL_PERIOD = 0
# Keypoint OKS sigmas for COCO keypoint evaluation; empty: COCO's defaults.
_C.TEST.KEYPOINT_OKS_SIGMAS = []
# Maximum number of detections kept per image.
_C.TEST.DETECTIONS_PER_IMAGE = 100

_C.TEST.AUG = CN({"ENABLED": False})
_C.TEST.AUG.MIN_SIZES = (400, 500, 600, 700, 800, 900, 1000, 1100, 1200)
_C.TEST.AUG.MAX_SIZE = 4000
_C.TEST.AUG.FLIP = True

# Recompute BatchNorm statistics on training data before evaluation.
_C.TEST.PRECISE_BN = CN({"ENABLED": False})
_C.TEST.PRECISE_BN.NUM_ITER = 200

# -----------------------------------------------------------------------------
# Misc options
# -----------------------------------------------------------------------------
# Where checkpoints, logs, metrics and predictions go.
_C.OUTPUT_DIR = "./output"
# Seed of python, numpy and torch RNGs; negative: a random seed, logged so a run can be redone.
_C.SEED = -1
# cudnn.benchmark: faster convolutions for fixed input sizes, slower when sizes vary.
_C.CUDNN_BENCHMARK = False
# torch.backends float32 matmul precision ("highest", "high", "medium"); empty: torch's default.
_C.FLOAT32_PRECISION = ""
# Write visualizations of training samples every this many iterations (0: never).
_C.VIS_PERIOD = 0

# Scratch space for experiments that need a value without a proper key (Detectron2 compat).
_C.GLOBAL = CN()
_C.GLOBAL.HACK = 1.0
