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

# --- section: ResNet / FPN backbones (owner: backbones) ---
# MODEL.BACKBONE.NAME also takes "resnet18", "resnet34", "resnet50" (torchvision-layout ResNets
# of Mesh R-CNN's ShapeNet models, outputs res2..res5) and "vgg16" (Pixel2Mesh's encoder).
# Mesh R-CNN's ShapeNet configs write `MODEL.BACKBONE: resnet50`; that reads as
# MODEL.BACKBONE.NAME resnet50 with FREEZE_AT 0 (translate_meshrcnn_backbone_key does it).
_C.MODEL.RESNETS = CN()
# 18, 34, 50 or 101.
_C.MODEL.RESNETS.DEPTH = 50
# Stages returned by the ResNet: any of "stem", "res2" .. "res5".
_C.MODEL.RESNETS.OUT_FEATURES = ["res4"]
# Groups of the 3x3 convolutions: 1 for ResNet, 32 for ResNeXt-32xNd.
_C.MODEL.RESNETS.NUM_GROUPS = 1
# Normalization of every convolution: "FrozenBN", "BN", "SyncBN", "GN", "LN" or "".
_C.MODEL.RESNETS.NORM = "FrozenBN"
# Bottleneck width per group in res2 (doubles with each stage): 64 for ResNet, 4 or 8 for
# ResNeXt.
_C.MODEL.RESNETS.WIDTH_PER_GROUP = 64
# Stride on the first 1x1 convolution of a bottleneck (MSRA / Caffe2 models) instead of on the
# 3x3 one (torchvision models).
_C.MODEL.RESNETS.STRIDE_IN_1X1 = True
# Dilation of res5 (1 or 2); 2 keeps res5 at stride 16.
_C.MODEL.RESNETS.RES5_DILATION = 1
# Output channels of res2 (64 for ResNet-18/34) and of the stem.
_C.MODEL.RESNETS.RES2_OUT_CHANNELS = 256
_C.MODEL.RESNETS.STEM_OUT_CHANNELS = 64
# Deformable convolutions: not implemented; any True is an error. Kept so Detectron2 configs
# merge unchanged.
_C.MODEL.RESNETS.DEFORM_ON_PER_STAGE = [False, False, False, False]
_C.MODEL.RESNETS.DEFORM_MODULATED = False
_C.MODEL.RESNETS.DEFORM_NUM_GROUPS = 1

_C.MODEL.FPN = CN()
# Bottom-up maps the pyramid is built on, finest first; their strides must double.
_C.MODEL.FPN.IN_FEATURES = []
_C.MODEL.FPN.OUT_CHANNELS = 256
# Normalization of the lateral and output convolutions ("": none, the convolutions get biases).
_C.MODEL.FPN.NORM = ""
# How a lateral map and the upsampled coarser map combine: "sum" or "avg".
_C.MODEL.FPN.FUSE_TYPE = "sum"
# --- end section ---

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

# --- section: RPN, anchors, box and mask heads (owner: detection heads) ---
# Names and defaults are Detectron2's, so its and Mesh R-CNN's configs read unchanged.
_C.MODEL.ANCHOR_GENERATOR = CN()
# Name in ANCHOR_GENERATOR_REGISTRY (meshrecon/modeling/anchor_generator.py).
_C.MODEL.ANCHOR_GENERATOR.NAME = "DefaultAnchorGenerator"
# Anchor sizes (sqrt of area, input pixels): one list per feature map, or one list for all.
_C.MODEL.ANCHOR_GENERATOR.SIZES = [[32, 64, 128, 256, 512]]
# Anchor height / width ratios, broadcast like SIZES.
_C.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = [[0.5, 1.0, 2.0]]
# Rotated anchors only (not implemented); kept so Detectron2 configs merge.
_C.MODEL.ANCHOR_GENERATOR.ANGLES = [[-90, 0, 90]]
# Anchor centres at (offset * stride) within each cell; 0.0 is Detectron2's default.
_C.MODEL.ANCHOR_GENERATOR.OFFSET = 0.0

_C.MODEL.RPN = CN()
_C.MODEL.RPN.HEAD_NAME = "StandardRPNHead"
_C.MODEL.RPN.IN_FEATURES = ["res4"]
# Anchors further than this outside the image are ignored in training; negative: keep all.
_C.MODEL.RPN.BOUNDARY_THRESH = -1
# Anchor labelling by IoU: below 0.3 negative, 0.3-0.7 ignored, above 0.7 positive.
_C.MODEL.RPN.IOU_THRESHOLDS = [0.3, 0.7]
_C.MODEL.RPN.IOU_LABELS = [0, -1, 1]
# Anchors sampled per image for the losses, and the largest share of positives.
_C.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 256
_C.MODEL.RPN.POSITIVE_FRACTION = 0.5
# "smooth_l1" or "giou".
_C.MODEL.RPN.BBOX_REG_LOSS_TYPE = "smooth_l1"
_C.MODEL.RPN.BBOX_REG_LOSS_WEIGHT = 1.0
# (wx, wy, ww, wh) of the anchor -> box encoding.
_C.MODEL.RPN.BBOX_REG_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
# 0.0: L1 loss.
_C.MODEL.RPN.SMOOTH_L1_BETA = 0.0
_C.MODEL.RPN.LOSS_WEIGHT = 1.0
# Boxes kept per feature map before NMS, and per image after it (FPN: per image).
_C.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 12000
_C.MODEL.RPN.PRE_NMS_TOPK_TEST = 6000
_C.MODEL.RPN.POST_NMS_TOPK_TRAIN = 2000
_C.MODEL.RPN.POST_NMS_TOPK_TEST = 1000
_C.MODEL.RPN.NMS_THRESH = 0.7
# Widths of the head's hidden 3x3 convs; -1: the input's channels.
_C.MODEL.RPN.CONV_DIMS = [-1]

# Foreground classes (background is class NUM_CLASSES).
_C.MODEL.ROI_HEADS.NUM_CLASSES = 80
_C.MODEL.ROI_HEADS.IN_FEATURES = ["res4"]
# Proposal labelling by IoU with ground truth: below 0.5 background, else foreground.
_C.MODEL.ROI_HEADS.IOU_THRESHOLDS = [0.5]
_C.MODEL.ROI_HEADS.IOU_LABELS = [0, 1]
# ROIs sampled per image in training, and the largest share of foreground.
_C.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 512
_C.MODEL.ROI_HEADS.POSITIVE_FRACTION = 0.25
# Inference: detections scoring at or below this are dropped; per-class NMS threshold.
_C.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.05
_C.MODEL.ROI_HEADS.NMS_THRESH_TEST = 0.5
# Add the ground-truth boxes to the proposals in training.
_C.MODEL.ROI_HEADS.PROPOSAL_APPEND_GT = True

# "smooth_l1" or "giou".
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE = "smooth_l1"
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT = 1.0
# (wx, wy, ww, wh) of the proposal -> box encoding.
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
_C.MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA = 0.0
_C.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 14
# Samples per bin side of ROIAlign (0: adaptive).
_C.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = 0
# "ROIAlignV2" (half-pixel aligned), "ROIAlign" (Mesh R-CNN's released configs) or "ROIPool".
_C.MODEL.ROI_BOX_HEAD.POOLER_TYPE = "ROIAlignV2"
_C.MODEL.ROI_BOX_HEAD.NUM_FC = 0
_C.MODEL.ROI_BOX_HEAD.FC_DIM = 1024
_C.MODEL.ROI_BOX_HEAD.NUM_CONV = 0
_C.MODEL.ROI_BOX_HEAD.CONV_DIM = 256
# Normalization of the box head's convs ("": none).
_C.MODEL.ROI_BOX_HEAD.NORM = ""
_C.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = False
# Train the mask head on the predicted boxes rather than the proposals.
_C.MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES = False
# Federated loss / sigmoid classification (LVIS): not implemented, must stay False.
_C.MODEL.ROI_BOX_HEAD.USE_FED_LOSS = False
_C.MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE = False
_C.MODEL.ROI_BOX_HEAD.FED_LOSS_FREQ_WEIGHT_POWER = 0.5
_C.MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES = 50

_C.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = 14
_C.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO = 0
_C.MODEL.ROI_MASK_HEAD.POOLER_TYPE = "ROIAlignV2"
_C.MODEL.ROI_MASK_HEAD.CONV_DIM = 256
_C.MODEL.ROI_MASK_HEAD.NUM_CONV = 0
_C.MODEL.ROI_MASK_HEAD.NORM = ""
# One mask for all classes instead of one per class.
_C.MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK = False
# --- end section ---

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

# --- section: mapper keys (owner: mappers/transforms) ---
# How a resize reaches the camera. "meshrcnn": K stays [f, w/2, h/2] (f unchanged) and
# camera-space X, Y of meshes and voxels are scaled by the resize factors, as Mesh R-CNN's
# released Pix3D models expect; "scale_K": the geometry is untouched and fx, fy, cx, cy scale.
_C.INPUT.K_CONVENTION = "meshrcnn"
# Colour (RGB, 0..255) that RGBA images (R2N2 renders) are composited over.
_C.INPUT.BACKGROUND_COLOR = [255, 255, 255]
# Keep ground truth (instances / shape targets) when mapping for inference (evaluation).
_C.INPUT.LOAD_TEST_ANNOTATIONS = False
# Whole-image shape targets (ShapeNet-style view records).
_C.INPUT.SHAPENET = CN()
# Side of the occupancy grid "voxels" (0: no voxels).
_C.INPUT.SHAPENET.VOXEL_SIZE = 32
# "camera": Mesh R-CNN's grid over the view frustum, indexed [z, y, x] with x, y along image
# columns, rows and z along depth; "canonical": the model-frame grid as stored (R2N2).
_C.INPUT.SHAPENET.VOXEL_FRAME = "camera"
# Depth range (Blender NDC z) that the camera grid spans, and Blender's near / far planes.
_C.INPUT.SHAPENET.VOXEL_ZRANGE = [0.67, 0.92]
_C.INPUT.SHAPENET.NEAR_FAR = [0.1, 100.0]
# "header": binvox voxels placed by the file's translate/scale; "mesh_bbox": stretched onto the
# mesh's bounding box axis by axis (Mesh R-CNN's preprocessing).
_C.INPUT.SHAPENET.VOXEL_ALIGN = "mesh_bbox"
# Surface samples per item; taken from the record's `samples` file unless SAMPLE_ONLINE.
_C.INPUT.SHAPENET.NUM_SAMPLES = 5000
_C.INPUT.SHAPENET.SAMPLE_ONLINE = False
# Multi-view items (grouped model records): R2N2 / OptimizeMVS.
_C.INPUT.MULTIVIEW = CN()
# Most views per item; training draws 1..NUM_VIEWS views when RANDOM_NUM_VIEWS.
_C.INPUT.MULTIVIEW.NUM_VIEWS = 5
_C.INPUT.MULTIVIEW.RANDOM_NUM_VIEWS = True
# Square crop of each view (R2N2: 127 of 137), random in training, centred otherwise; 0: none.
_C.INPUT.MULTIVIEW.CROP_SIZE = 127
# Training composites RGBA views over a random colour (R2N2) instead of BACKGROUND_COLOR.
_C.INPUT.MULTIVIEW.RANDOM_BACKGROUND = True
_C.INPUT.MULTIVIEW.FLIP = True
# Eigen-style depth augmentation (DepthMapper, training only).
_C.INPUT.DEPTH = CN()
# Resize every image to this (H, W) first (K scales with it); empty: keep the size.
_C.INPUT.DEPTH.BASE_SIZE = []
# Image scaled by s ~ U(range), depth divided by s.
_C.INPUT.DEPTH.SCALE_RANGE = [1.0, 1.5]
# In-plane rotation, degrees, uniform in [-ROTATION, ROTATION].
_C.INPUT.DEPTH.ROTATION = 5.0
# Random crop (H, W) in training, centre crop otherwise; empty: no crop.
_C.INPUT.DEPTH.CROP_SIZE = []
# Per-channel colour gain, uniform in this range.
_C.INPUT.DEPTH.COLOR_RANGE = [0.8, 1.2]
_C.INPUT.DEPTH.FLIP = True
# --- end section ---

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

# --- section: synthetic datasets (owner: synthetic generator) ---
# The synthetic_* splits are generated on first use (meshrecon.data.datasets.synthetic) and
# cached under a folder keyed by these values. A key left at its default here keeps the value of
# its environment variable (MESHRECON_SYNTHETIC_<KEY>), since datasets register at import time;
# configure_synthetic(cfg) applies this node.
_C.DATASETS.SYNTHETIC = CN()
# Seed of every synthetic split: same seed, sizes and generator code give identical files.
_C.DATASETS.SYNTHETIC.SEED = 0
# Multiplies every default count (models per category, images); 0.1 for smoke runs.
_C.DATASETS.SYNTHETIC.SCALE = 1.0
# Datasets root of the generated splits; "" means $MESHRECON_DATASETS, else ./datasets.
_C.DATASETS.SYNTHETIC.ROOT = ""
# Views rendered per ShapeNet-style model (R2N2 renders 24).
_C.DATASETS.SYNTHETIC.SHAPENET_VIEWS = 24
# (width, height) of the Pix3D-style scenes and of the NYU-style rooms (NYU's 4:3).
_C.DATASETS.SYNTHETIC.PIX3D_IMAGE_SIZE = (320, 240)
_C.DATASETS.SYNTHETIC.NYU_IMAGE_SIZE = (160, 120)
# --- end section ---

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
