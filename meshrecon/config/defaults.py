"""Every config default of meshrecon, in one place.

YAML files only override what is declared here; a key that is not declared here is an error
(with a suggestion of the closest existing key). Key names follow Detectron2 and Mesh R-CNN so
that their configs read the same here. Each method adds its own keys in the section named after
its part of the model; a key belongs here, with a comment, before any code reads it.
"""

from meshrecon.config.config import CfgNode as CN

_C = CN()

# Bumped when a key is renamed or changes meaning, so that old files can be upgraded (the
# renames: meshrecon.config.config.RENAMED_KEYS). 3: evaluator settings moved under TEST.*.
_C.VERSION = 3

# -----------------------------------------------------------------------------
# MODEL
# -----------------------------------------------------------------------------
_C.MODEL = CN()
# "cpu", "cuda" or "cuda:N". Asking for CUDA on a machine without it is an error at build time.
_C.MODEL.DEVICE = "cpu"
# Layout of a detector's backbone activations: "channels_last" (NHWC; faster convolutions on
# CPU), "contiguous" (NCHW) or "auto" (channels_last when MODEL.DEVICE is a CPU). Results are
# the same up to rounding.
_C.MODEL.MEMORY_FORMAT = "auto"
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

# --- section: Mesh R-CNN ROI heads (owner: Mesh R-CNN Pix3D) ---
# Names and defaults are Mesh R-CNN's (meshrcnn/config/config.py); its released Pix3D yaml
# files override them (configs/pix3d/*.yaml).
# z head: regresses log(dz / box height), dz = (zmax - zmin) / zcenter * focal.
_C.MODEL.ROI_Z_HEAD.NUM_FC = 2
_C.MODEL.ROI_Z_HEAD.FC_DIM = 1024
_C.MODEL.ROI_Z_HEAD.POOLER_RESOLUTION = 7
_C.MODEL.ROI_Z_HEAD.POOLER_SAMPLING_RATIO = 2
_C.MODEL.ROI_Z_HEAD.POOLER_TYPE = "ROIAlign"
# One dz for all classes instead of one per class.
_C.MODEL.ROI_Z_HEAD.CLS_AGNOSTIC_Z_REG = False
# Weight of the z loss and its smooth-L1 transition point (0: L1).
_C.MODEL.ROI_Z_HEAD.Z_REG_WEIGHT = 5.0
_C.MODEL.ROI_Z_HEAD.SMOOTH_L1_BETA = 0.0
# voxel head: NUM_DEPTH^3 occupancy logits in the box's frustum (2x the pooled side).
_C.MODEL.ROI_VOXEL_HEAD.POOLER_RESOLUTION = 14
_C.MODEL.ROI_VOXEL_HEAD.POOLER_SAMPLING_RATIO = 0
_C.MODEL.ROI_VOXEL_HEAD.POOLER_TYPE = "ROIAlign"
# One voxel grid for all classes (required when MESH_ON: cubify needs one grid per box).
_C.MODEL.ROI_VOXEL_HEAD.CLS_AGNOSTIC_VOXEL = False
_C.MODEL.ROI_VOXEL_HEAD.NUM_CONV = 0
_C.MODEL.ROI_VOXEL_HEAD.CONV_DIM = 256
# Normalization of the voxel head's convs ("": none, "GN").
_C.MODEL.ROI_VOXEL_HEAD.NORM = ""
_C.MODEL.ROI_VOXEL_HEAD.NUM_DEPTH = 28
_C.MODEL.ROI_VOXEL_HEAD.LOSS_WEIGHT = 1.0
# Voxels with probability >= this become cubes of the initial mesh.
_C.MODEL.ROI_VOXEL_HEAD.CUBIFY_THRESH = 0.0
# mesh head: NUM_STAGES refinement stages of NUM_GRAPH_CONVS graph convs each.
_C.MODEL.ROI_MESH_HEAD.POOLER_RESOLUTION = 14
_C.MODEL.ROI_MESH_HEAD.POOLER_SAMPLING_RATIO = 0
_C.MODEL.ROI_MESH_HEAD.POOLER_TYPE = "ROIAlign"
_C.MODEL.ROI_MESH_HEAD.NUM_STAGES = 1
_C.MODEL.ROI_MESH_HEAD.NUM_GRAPH_CONVS = 1
_C.MODEL.ROI_MESH_HEAD.GRAPH_CONV_DIM = 256
# Graph-conv weight initialisation: "normal" or "zero".
_C.MODEL.ROI_MESH_HEAD.GRAPH_CONV_INIT = "normal"
# Points sampled from ground-truth and predicted meshes for the losses.
_C.MODEL.ROI_MESH_HEAD.GT_NUM_SAMPLES = 5000
_C.MODEL.ROI_MESH_HEAD.PRED_NUM_SAMPLES = 5000
_C.MODEL.ROI_MESH_HEAD.CHAMFER_LOSS_WEIGHT = 1.0
_C.MODEL.ROI_MESH_HEAD.NORMALS_LOSS_WEIGHT = 1.0
_C.MODEL.ROI_MESH_HEAD.EDGE_LOSS_WEIGHT = 1.0
# Zero the mesh losses of a batch whose box-normalized targets exceed this (0: never).
_C.MODEL.ROI_MESH_HEAD.GT_COORD_THRESH = 0.0
# Ico-sphere level of the initial mesh when VOXEL_ON is False (Sphere-Init, Pixel2Mesh+).
_C.MODEL.ROI_MESH_HEAD.ICO_SPHERE_LEVEL = -1
# Training only: refine at most this many foreground proposals per image, drawn at random
# (the other heads still see all of them). 0: every one, as Mesh R-CNN does. Proposals of one
# object are many and alike; a few of them carry nearly the same mesh gradient at a fraction of
# the cost (cubify, graph convolutions and Chamfer grow with the number of meshes).
_C.MODEL.ROI_MESH_HEAD.TRAIN_MAX_PROPOSALS_PER_IMAGE = 0

# Detectron2 sections that Mesh R-CNN's released yaml files carry: accepted for compatibility;
# not used. Values as in those files (Detectron2 0.6 defaults).
_C.MODEL.RETINANET = CN()
_C.MODEL.RETINANET.NUM_CLASSES = 80
_C.MODEL.RETINANET.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]
_C.MODEL.RETINANET.NUM_CONVS = 4
_C.MODEL.RETINANET.IOU_THRESHOLDS = [0.4, 0.5]
_C.MODEL.RETINANET.IOU_LABELS = [0, -1, 1]
_C.MODEL.RETINANET.PRIOR_PROB = 0.01
_C.MODEL.RETINANET.SCORE_THRESH_TEST = 0.05
_C.MODEL.RETINANET.TOPK_CANDIDATES_TEST = 1000
_C.MODEL.RETINANET.NMS_THRESH_TEST = 0.5
_C.MODEL.RETINANET.BBOX_REG_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
_C.MODEL.RETINANET.FOCAL_LOSS_GAMMA = 2.0
_C.MODEL.RETINANET.FOCAL_LOSS_ALPHA = 0.25
_C.MODEL.RETINANET.SMOOTH_L1_LOSS_BETA = 0.1
_C.MODEL.RETINANET.BBOX_REG_LOSS_TYPE = "smooth_l1"
_C.MODEL.RETINANET.NORM = ""
_C.MODEL.ROI_BOX_CASCADE_HEAD = CN()
# Lists rather than nested tuples: a dumped config then loads back equal.
_C.MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS = [
    [10.0, 10.0, 5.0, 5.0],
    [20.0, 20.0, 10.0, 10.0],
    [30.0, 30.0, 15.0, 15.0],
]
_C.MODEL.ROI_BOX_CASCADE_HEAD.IOUS = (0.5, 0.6, 0.7)
_C.MODEL.ROI_KEYPOINT_HEAD = CN()
_C.MODEL.ROI_KEYPOINT_HEAD.NAME = "KRCNNConvDeconvUpsampleHead"
_C.MODEL.ROI_KEYPOINT_HEAD.POOLER_RESOLUTION = 14
_C.MODEL.ROI_KEYPOINT_HEAD.POOLER_SAMPLING_RATIO = 0
_C.MODEL.ROI_KEYPOINT_HEAD.CONV_DIMS = tuple(512 for _ in range(8))
_C.MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS = 17
_C.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE = 1
_C.MODEL.ROI_KEYPOINT_HEAD.NORMALIZE_LOSS_BY_VISIBLE_KEYPOINTS = True
_C.MODEL.ROI_KEYPOINT_HEAD.LOSS_WEIGHT = 1.0
_C.MODEL.ROI_KEYPOINT_HEAD.POOLER_TYPE = "ROIAlignV2"
_C.MODEL.SEM_SEG_HEAD = CN()
_C.MODEL.SEM_SEG_HEAD.NAME = "SemSegFPNHead"
_C.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["p2", "p3", "p4", "p5"]
_C.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 255
_C.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 54
_C.MODEL.SEM_SEG_HEAD.CONVS_DIM = 128
_C.MODEL.SEM_SEG_HEAD.COMMON_STRIDE = 4
_C.MODEL.SEM_SEG_HEAD.NORM = "GN"
_C.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT = 1.0
_C.MODEL.PANOPTIC_FPN = CN()
_C.MODEL.PANOPTIC_FPN.INSTANCE_LOSS_WEIGHT = 1.0
_C.MODEL.PANOPTIC_FPN.COMBINE = CN({"ENABLED": True})
_C.MODEL.PANOPTIC_FPN.COMBINE.OVERLAP_THRESH = 0.5
_C.MODEL.PANOPTIC_FPN.COMBINE.STUFF_AREA_LIMIT = 4096
_C.MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH = 0.5
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

# --- section: 3D-R2N2 (owner: R2N2; MODEL.MULTIVIEW_HEAD.NAME "R2N2Head") ---
# How many views an item gets is INPUT.MULTIVIEW.NUM_VIEWS / RANDOM_NUM_VIEWS (training draws
# 1..NUM_VIEWS in random order); evaluation scores every view count 1..NUM_VIEWS.
_C.MODEL.R2N2 = CN()
# 2D encoder: "shallow" (conv-pool-lReLU blocks) or "residual" (conv pairs with shortcuts).
_C.MODEL.R2N2.ENCODER = "residual"
# Widths of the encoder's six conv blocks (7x7 first, then 3x3) and of its final FC layer.
_C.MODEL.R2N2.ENCODER_DIMS = [96, 128, 256, 256, 256, 256]
_C.MODEL.R2N2.FC_DIM = 1024
# Recurrent unit over the 3D hidden grid: "gru" or "lstm" (the paper's 3D-LSTM, no output gate).
_C.MODEL.R2N2.RNN = "gru"
# Kernel of the recurrent 3D convolutions (3 or 1; the paper compares 3x3x3 and 1x1x1).
_C.MODEL.R2N2.KERNEL = 3
# Hidden grid: GRID^3 cells of HIDDEN channels (paper: 4^3 x 128).
_C.MODEL.R2N2.HIDDEN = 128
_C.MODEL.R2N2.GRID = 4
# 3D decoder: "shallow" or "residual"; widths of its conv stages after the hidden grid (one
# per unpooling x2 stage, then one at full resolution), before the 2-way output.
_C.MODEL.R2N2.DECODER = "residual"
_C.MODEL.R2N2.DECODER_DIMS = [128, 128, 64, 32]
# Output grid side; must be GRID * 2^(len(DECODER_DIMS) - 1).
_C.MODEL.R2N2.VOXEL_SIZE = 32
# --- end section ---

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
# Name in MAPPER_REGISTRY of the mapper that turns records into model inputs
# (MeshRCNNMapper, ShapeNetMapper, MultiViewMapper, DepthMapper); "" picks it from the
# datasets' record format (their evaluator_type), see meshrecon/data/mapper_registry.py.
_C.INPUT.MAPPER = ""

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
# Depth range (Blender NDC z) that the camera grid spans, and Blender's near / far planes
# (meshrecon.render.frustum's SHAPENET_ZRANGE and BLENDER_NEAR_FAR; a test keeps them equal).
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
# Test and validation score each model this many times, from disjoint sets of NUM_VIEWS views
# (views s * NUM_VIEWS .. (s + 1) * NUM_VIEWS - 1 for set s): the metrics average over the sets,
# with less spread on a small split. 1: the first NUM_VIEWS views only.
_C.INPUT.MULTIVIEW.TEST_VIEW_SETS = 1
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
# Multiplies the training splits' counts once more (validation and test stay as they are), to
# measure what more training shapes / rooms / scenes buy on the same test split.
_C.DATASETS.SYNTHETIC.TRAIN_SCALE = 1.0
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
# Step with PyTorch's fused optimizer (one kernel over all parameters; the same update up to
# float rounding) when every parameter is a float tensor on one CPU or CUDA device. For a
# ResNet-18 on two CPU threads Adam's step takes ~5 ms instead of ~30 ms. False: the per-tensor
# loop.
_C.SOLVER.FUSED = True
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
# How many of those periodic checkpoints to keep, the most recent (older ones are deleted as
# new ones are written; model_final.pth and model_best.pth are never deleted); 0 keeps them
# all, as Detectron2 does.
_C.SOLVER.CHECKPOINT_MAX_KEEP = 0
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

# A step whose loss is NaN or infinite (e.g. one degenerate sample) is skipped: no update, its
# samples named in the log, counted as train/skipped_iterations. The run stops with a
# FloatingPointError when this many steps in a row are non-finite (a diverged run); 1 stops at
# the first one, as Detectron2 does. An integer >= 1.
_C.SOLVER.MAX_CONSECUTIVE_NONFINITE = 5

# -----------------------------------------------------------------------------
# TEST
# -----------------------------------------------------------------------------
_C.TEST = CN()
# Metrics a run must reach, as [[task, metric, value, tolerance], ...]; checked after evaluation.
_C.TEST.EXPECTED_RESULTS = []
# Evaluate every this many iterations during training (0: only at the end).
_C.TEST.EVAL_PERIOD = 0
# Evaluate on DATASETS.TEST once training ends (`meshrecon train --no-eval` turns it off).
_C.TEST.EVAL_AFTER_TRAIN = True
# Keypoint OKS sigmas for COCO keypoint evaluation; empty: COCO's defaults.
_C.TEST.KEYPOINT_OKS_SIGMAS = []
# Maximum number of detections kept per image.
_C.TEST.DETECTIONS_PER_IMAGE = 100

# R2N2Evaluator: a voxel counts as occupied when its probability is >= IOU_THRESH (R2N2
# evaluates at 0.4); the same threshold cubifies predictions into meshes for the mesh metrics.
# MESH_SAMPLES: surface points sampled per mesh for the mesh metrics (0: voxel IoU only).
# (MODEL.R2N2.IOU_THRESH / EVAL_MESH_SAMPLES before VERSION 3.)
_C.TEST.R2N2 = CN()
_C.TEST.R2N2.IOU_THRESH = 0.4
_C.TEST.R2N2.MESH_SAMPLES = 10000

_C.TEST.AUG = CN({"ENABLED": False})
_C.TEST.AUG.MIN_SIZES = (400, 500, 600, 700, 800, 900, 1000, 1100, 1200)
_C.TEST.AUG.MAX_SIZE = 4000
_C.TEST.AUG.FLIP = True

# Recompute the batch norms' running statistics on NUM_ITER training batches before each
# validation / evaluation (every TEST.EVAL_PERIOD iterations and after the last one), as
# Detectron2's PreciseBN hook (meshrecon.engine.hooks.PreciseBN).
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

# Weights & Biases logging beside TensorBoard and metrics.json (main process only). Needs the
# optional package wandb; ENABLED with wandb missing is an error at the start of training.
_C.WANDB = CN()
_C.WANDB.ENABLED = False
_C.WANDB.PROJECT = "meshrecon"
# Team or user; empty: wandb's default entity.
_C.WANDB.ENTITY = ""
# Run name; empty: the last component of OUTPUT_DIR.
_C.WANDB.NAME = ""
# "online", "offline" (files under OUTPUT_DIR/wandb, upload later with `wandb sync`) or
# "disabled"; empty: wandb's default (the WANDB_MODE environment variable, else online).
_C.WANDB.MODE = ""
_C.WANDB.TAGS = []

# Scratch space for experiments that need a value without a proper key (Detectron2 compat).
_C.GLOBAL = CN()
_C.GLOBAL.HACK = 1.0

# --- section: monocular depth, Eigen et al. (owner: depth; DepthEstimator, EigenMultiScaleHead) ---
_C.MODEL.DEPTH = CN()
# "coarse": train the coarse net alone; "fine": coarse frozen (load its checkpoint through
# MODEL.WEIGHTS), train the fine net; "joint": train both (sum of both losses).
_C.MODEL.DEPTH.PHASE = "coarse"
# Scale-invariant log loss weight: 0 plain L2 of log depth, 1 scale invariant, 0.5 the paper's.
_C.MODEL.DEPTH.LAMBDA = 0.5
# (H, W) the networks take (images are resized to it) and of the predicted log-depth map.
_C.MODEL.DEPTH.INPUT_SIZE = [228, 304]
_C.MODEL.DEPTH.OUTPUT_SIZE = [55, 74]
# Coarse convolutions: "alexnet" (the paper's widths, random init), "torchvision_alexnet",
# resnet18/34/50/101, vgg11..vgg19[_bn]; PRETRAINED e.g. "torchvision://resnet18" ("": none).
_C.MODEL.DEPTH.BACKBONE = "alexnet"
_C.MODEL.DEPTH.PRETRAINED = ""
# Coarse hidden FC width, its dropout, and the output layer's initial bias (log metres).
_C.MODEL.DEPTH.FC_DIM = 4096
_C.MODEL.DEPTH.DROPOUT = 0.5
_C.MODEL.DEPTH.INIT_LOG_DEPTH = 0.0
# The fine net adds its output to the coarse map instead of replacing it (not the paper's).
_C.MODEL.DEPTH.FINE_RESIDUAL = False
# Fine net initialization: "identity" (the paper's layers set up to output their coarse input
# exactly at the start; training learns only the refinement) or "random" (the paper does not
# say how it initialized them).
_C.MODEL.DEPTH.FINE_INIT = "identity"
# Per-layer LR = SOLVER.BASE_LR x factor (paper at BASE_LR 1e-3: conv 1e-3, FC 0.1, fine
# 1e-3 / 1e-2 / 1e-3); used by DepthEstimator.optimizer_param_groups.
_C.MODEL.DEPTH.COARSE_CONV_LR_FACTOR = 1.0
_C.MODEL.DEPTH.COARSE_FC_LR_FACTOR = 100.0
_C.MODEL.DEPTH.FINE_LR_FACTORS = [1.0, 10.0, 1.0]
# DepthEvaluator: median-scale predictions to the GT per image (monocular KITTI protocols);
# write colour-depth pictures and point-cloud PLYs of the first NUM_VIS test images.
_C.TEST.DEPTH = CN()
_C.TEST.DEPTH.MEDIAN_SCALING = False
_C.TEST.DEPTH.NUM_VIS = 0
# --- end section ---

# --- section: single-view reconstruction (owner: single-view; SingleViewReconstructor) ---
# Mesh R-CNN's ShapeNet voxel head (names as in its shapenet config): a VOXEL_SIZE^3 grid over
# the view frustum from the last backbone map. NAME "" means "VoxelHead" when VOXEL_ON.
_C.MODEL.VOXEL_HEAD.VOXEL_SIZE = 48
_C.MODEL.VOXEL_HEAD.CONV_DIM = 256
_C.MODEL.VOXEL_HEAD.NUM_CONV = 4
_C.MODEL.VOXEL_HEAD.NORM = ""
_C.MODEL.VOXEL_HEAD.LOSS_WEIGHT = 1.0
# Voxels with probability >= this become cubes; "topleft" is Mesh R-CNN's placement of the
# cubes (each one voxel off the targets' centres), "center" the geometrically exact one.
_C.MODEL.VOXEL_HEAD.CUBIFY_THRESH = 0.2
_C.MODEL.VOXEL_HEAD.CUBIFY_ALIGN = "topleft"
# Train only the voxel loss for this many iterations (VoxMesh).
_C.MODEL.VOXEL_HEAD.VOXEL_ONLY_ITERS = 0
# Written by Mesh R-CNN at build time; accepted so its yaml files merge, not read.
_C.MODEL.VOXEL_HEAD.COMPUTED_INPUT_CHANNELS = 0
# Mesh R-CNN's ShapeNet refinement heads: VoxMeshHead, SphereInitHead, Pixel2MeshHead (its
# Pixel2Mesh+), and Pixel2MeshGResNetHead / MeanShapeHead below.
_C.MODEL.MESH_HEAD.NUM_STAGES = 3
_C.MODEL.MESH_HEAD.NUM_GRAPH_CONVS = 3
_C.MODEL.MESH_HEAD.GRAPH_CONV_DIM = 128
_C.MODEL.MESH_HEAD.GRAPH_CONV_INIT = "normal"
# Initial icosphere of SphereInitHead (4) and Pixel2MeshHead (2).
_C.MODEL.MESH_HEAD.ICO_SPHERE_LEVEL = -1
_C.MODEL.MESH_HEAD.CHAMFER_LOSS_WEIGHT = 1.0
_C.MODEL.MESH_HEAD.NORMALS_LOSS_WEIGHT = 0.0
_C.MODEL.MESH_HEAD.EDGE_LOSS_WEIGHT = 0.2
_C.MODEL.MESH_HEAD.GT_NUM_SAMPLES = 5000
_C.MODEL.MESH_HEAD.PRED_NUM_SAMPLES = 5000
_C.MODEL.MESH_HEAD.COMPUTED_INPUT_CHANNELS = 0
# The original Pixel2Mesh (MESH_HEAD.NAME "Pixel2MeshGResNetHead"): ellipsoid (levels 0..2 =
# 156 / 618 / 2466 verts), NUM_BLOCKS G-ResNet blocks of NUM_GCONVS graph convs (shortcut
# every 2), perceptual pooling from every backbone output, unpooling between blocks.
_C.MODEL.PIXEL2MESH = CN()
_C.MODEL.PIXEL2MESH.NUM_BLOCKS = 3
_C.MODEL.PIXEL2MESH.NUM_GCONVS = 14
_C.MODEL.PIXEL2MESH.HIDDEN_DIM = 256
# Initial ellipsoid: semi-axes and centre (camera frame, +Z forward).
_C.MODEL.PIXEL2MESH.ELLIPSOID_AXES = [0.276, 0.194, 0.199]
_C.MODEL.PIXEL2MESH.ELLIPSOID_CENTER = [0.0, 0.0, 0.8]
# Loss weights of the authors' code (relative to Chamfer: normal 1.67e-4, edge 0.1, Laplacian
# 0.5; the paper quotes 1.6e-4, 0.1, 0.3). Chamfer = mean gt->pred + CHAMFER_PRED_WEIGHT *
# mean pred->gt over the vertices; Laplacian x LAPLACIAN_FIRST_BLOCK in block 1; vertex move
# from block 2 on.
_C.MODEL.PIXEL2MESH.CHAMFER_WEIGHT = 3000.0
_C.MODEL.PIXEL2MESH.CHAMFER_PRED_WEIGHT = 0.55
_C.MODEL.PIXEL2MESH.NORMAL_WEIGHT = 0.5
_C.MODEL.PIXEL2MESH.EDGE_WEIGHT = 300.0
_C.MODEL.PIXEL2MESH.LAPLACIAN_WEIGHT = 1500.0
_C.MODEL.PIXEL2MESH.LAPLACIAN_FIRST_BLOCK = 0.1
_C.MODEL.PIXEL2MESH.MOVE_WEIGHT = 100.0
# PSGN (POINT_HEAD.NAME "PSGNHead"): NUM_FC_POINTS from the FC branch plus one point per cell
# of a CONV_GRID (H, W) map from the deconv branch (256 + 24 x 32 = 1024).
_C.MODEL.PSGN = CN()
_C.MODEL.PSGN.NUM_FC_POINTS = 256
_C.MODEL.PSGN.CONV_GRID = [24, 32]
_C.MODEL.PSGN.FC_DIMS = [2048, 1024]
_C.MODEL.PSGN.DECONV_DIM = 128
# Random input r ~ N(0, I) of this size (0: none); Min-of-N trains with MON_SAMPLES draws per
# image and keeps the lowest loss. Inference uses r = 0.
_C.MODEL.PSGN.NOISE_DIM = 32
_C.MODEL.PSGN.MON_SAMPLES = 2
# "chamfer" (mean squared NN distance both ways, the paper's), "chamfer_l1" (mean Euclidean NN
# distance both ways) or "emd" (auction matching; slow on CPU).
_C.MODEL.PSGN.LOSS = "chamfer"
_C.MODEL.PSGN.LOSS_WEIGHT = 1.0
# Points are predicted around this camera-frame centre (R2N2 cameras sit 1.1-1.7 away).
_C.MODEL.PSGN.CENTER = [0.0, 0.0, 1.4]
# Initial points: each at its own random place in a ball of this radius about CENTER (a learned
# per-point offset); 0 starts them all at CENTER, where a Chamfer loss spreads them slowly.
_C.MODEL.PSGN.INIT_SPREAD = 0.3
# Mean-shape baseline (MESH_HEAD.NAME "MeanShapeHead"): majority vote of the training models'
# solid VOXEL_SIZE^3 occupancy in the model frame, cubified, placed in each view with (R, t).
_C.MODEL.MEAN_SHAPE = CN()
_C.MODEL.MEAN_SHAPE.VOXEL_SIZE = 32
_C.MODEL.MEAN_SHAPE.BOUNDS = [-0.5, 0.5]
_C.MODEL.MEAN_SHAPE.MAX_MODELS = 500
# Recognition baselines (Tatarchenko et al., CVPR 2019): MESH_HEAD.NAME "RetrievalHead",
# "ClusteringHead" or "OracleNNHead" (single view); MULTIVIEW_HEAD.NAME "MultiViewRetrievalHead",
# "MultiViewClusteringHead" or "MultiViewOracleNNHead". They search a database of the training
# shapes (DATASETS.TRAIN): one entry per model in its frame ("object"; answers are placed with
# the input's R, t) or one per training view in that view's camera frame ("viewer": an answer
# brings its own pose). Descriptor: distance from each point of a DESCRIPTOR_SIZE^3 lattice over
# BOUNDS ([xmin, ymin, zmin, xmax, ymax, zmax]; [] = the entries' bounding box + 5%) to the
# nearest of DESCRIPTOR_POINTS surface samples; Retrieval regresses its EMBED_DIM principal
# components, Clustering classifies into NUM_CLUSTERS k-means clusters of them.
_C.MODEL.RECOGNITION = CN()
_C.MODEL.RECOGNITION.FRAME = "viewer"
_C.MODEL.RECOGNITION.DESCRIPTOR_SIZE = 16
_C.MODEL.RECOGNITION.DESCRIPTOR_POINTS = 1000
_C.MODEL.RECOGNITION.BOUNDS = []
# Viewer frame: at most this many views per model (its first ones); 0: all.
_C.MODEL.RECOGNITION.VIEWS_PER_MODEL = 0
# At most this many training models (the first ones); 0: all.
_C.MODEL.RECOGNITION.MAX_MODELS = 0
_C.MODEL.RECOGNITION.EMBED_DIM = 64
_C.MODEL.RECOGNITION.NUM_CLUSTERS = 50
_C.MODEL.RECOGNITION.KMEANS_ITERS = 100
# Width of the hidden layer of the predictor on the pooled backbone features.
_C.MODEL.RECOGNITION.HIDDEN_DIM = 256
_C.MODEL.RECOGNITION.LOSS_WEIGHT = 1.0
# Seed of the database's surface samples, the PCA and k-means.
_C.MODEL.RECOGNITION.SEED = 0
# ShapeNetEvaluator: Mesh R-CNN's protocol (each pair scaled so the GT box's longest edge is
# 10, NUM_SAMPLES points per surface, F1 at THRESHOLDS) and, with P2M_PROTOCOL, Pixel2Mesh's
# (x0.57, F1 at sqrt(1e-4), sqrt(2e-4)); voxel IoU at VOXEL_IOU_THRESH.
_C.TEST.SHAPENET = CN()
_C.TEST.SHAPENET.NUM_SAMPLES = 10000
_C.TEST.SHAPENET.THRESHOLDS = [0.1, 0.2, 0.3, 0.4, 0.5]
_C.TEST.SHAPENET.GT_SCALE = 10.0
_C.TEST.SHAPENET.P2M_PROTOCOL = True
_C.TEST.SHAPENET.P2M_SCALE = 0.57
_C.TEST.SHAPENET.P2M_THRESHOLDS = [0.01, 0.014142]
_C.TEST.SHAPENET.VOXEL_IOU_THRESH = 0.4
# > 0: also the equal-density protocol (results "shapenet_points"): prediction and GT both as
# this many points, so point-set methods (1024 points) and meshes compare at the same density.
_C.TEST.SHAPENET.EQUAL_POINTS = 1024
# Seed of the surface sampling, so a checkpoint always gets the same numbers.
_C.TEST.SHAPENET.SEED = 0
# Tatarchenko et al.'s protocol (results "shapenet_fscore"): precision, recall and F-score at
# FSCORE_THRESHOLDS, fractions of the GT's size: its bounding box's longest edge ("side", the
# unit cube of their what3d code) or its diagonal ("diagonal").
_C.TEST.SHAPENET.FSCORE_PROTOCOL = True
_C.TEST.SHAPENET.FSCORE_THRESHOLDS = [0.01]
_C.TEST.SHAPENET.FSCORE_REFERENCE = "side"
# Occupancy Networks' protocol (results "shapenet_onet"): Chamfer-L1 in units of 1/10 of the GT
# box's longest edge, normal consistency, and volumetric IoU of closed meshes on an
# ONET_IOU_SIZE^3 grid over the GT's bounding cube enlarged by ONET_IOU_PADDING.
_C.TEST.SHAPENET.ONET_PROTOCOL = True
_C.TEST.SHAPENET.ONET_IOU_SIZE = 32
_C.TEST.SHAPENET.ONET_IOU_PADDING = 0.1
# --- end section ---

# ---- OptimizeMVS ----
# Conditional single-view generation + multi-view consistency (Wei et al., CVPR 2019;
# MODEL.META_ARCHITECTURE "MultiViewReconstructor", MODEL.MULTIVIEW_HEAD.NAME "OptimizeMVSHead").
# The backbone is MODEL.BACKBONE; views per object come from INPUT.MULTIVIEW.
_C.MODEL.OPTIMIZE_MVS = CN()
# Generator f(image, r): PSGN's two-branch decoder (keys as MODEL.PSGN), r ~ N(0, I) of NOISE_DIM.
_C.MODEL.OPTIMIZE_MVS.NOISE_DIM = 128
_C.MODEL.OPTIMIZE_MVS.NUM_FC_POINTS = 512
_C.MODEL.OPTIMIZE_MVS.CONV_GRID = [24, 32]
_C.MODEL.OPTIMIZE_MVS.FC_DIMS = [2048, 1024]
_C.MODEL.OPTIMIZE_MVS.DECONV_DIM = 128
_C.MODEL.OPTIMIZE_MVS.CENTER = [0.0, 0.0, 1.4]
# Training draws of r per view (the authors: 5); the diversity term needs >= 2.
_C.MODEL.OPTIMIZE_MVS.SAMPLES_PER_IMAGE = 5
# Front constraint: points seen by a ZBUFFER_SIZE^2 z-buffer vs the view's depth lifted to 3D
# (min-pooled to the same grid). FRONT_MODE "view": each view's own cloud (stage 1); "union":
# the union of all views' clouds of the object, seen from each view (stage 2).
# FRONT_DISTANCE: "emd" (stage 1 of the authors) or "chamfer" (stage 2).
_C.MODEL.OPTIMIZE_MVS.ZBUFFER_SIZE = 56
_C.MODEL.OPTIMIZE_MVS.FRONT_MODE = "view"
_C.MODEL.OPTIMIZE_MVS.FRONT_DISTANCE = "chamfer"
_C.MODEL.OPTIMIZE_MVS.FRONT_WEIGHT = 1.0
# EMD compares sets of equal size: sets of different sizes are resampled to EMD_POINTS.
_C.MODEL.OPTIMIZE_MVS.EMD_POINTS = 256
# Diversity: mean over pairs of draws of max(0, MARGIN * |r_i - r_j| / sqrt(2 NOISE_DIM) -
# D(S_i, S_j)), D = DIVERSITY_DISTANCE ("chamfer" or "emd").
_C.MODEL.OPTIMIZE_MVS.DIVERSITY_WEIGHT = 10.0
_C.MODEL.OPTIMIZE_MVS.DIVERSITY_MARGIN = 0.001
_C.MODEL.OPTIMIZE_MVS.DIVERSITY_DISTANCE = "chamfer"
# Optional Chamfer of every generated cloud to the full ground-truth surface (0: off).
_C.MODEL.OPTIMIZE_MVS.FULL_SHAPE_WEIGHT = 0.0
# Inference: NUM_CANDIDATES sets of r (also the N of the best-of-N oracle), the most consistent
# kept, then REFINE_STEPS steps of REFINE_OPTIMIZER ("adam" or "sgd") with REFINE_LR on the r's.
_C.MODEL.OPTIMIZE_MVS.NUM_CANDIDATES = 5
_C.MODEL.OPTIMIZE_MVS.REFINE_STEPS = 30
_C.MODEL.OPTIMIZE_MVS.REFINE_LR = 0.05
_C.MODEL.OPTIMIZE_MVS.REFINE_OPTIMIZER = "adam"
# Farthest-point sampling of the union to this many points (0: the whole union).
_C.MODEL.OPTIMIZE_MVS.OUTPUT_POINTS = 0
# Test-time settings (MODEL.OPTIMIZE_MVS.EVAL_VIEW_COUNTS / EVAL_FPS_POINTS before VERSION 3).
_C.TEST.OPTIMIZE_MVS = CN()
# The head also reconstructs from the first k views for each k listed (scored per k by the
# evaluator), as Detectron2's heads read TEST.DETECTIONS_PER_IMAGE.
_C.TEST.OPTIMIZE_MVS.VIEW_COUNTS = []
# Evaluator (OptimizeMVSEvaluator, chosen for this head on "multiview" datasets): also score
# the union thinned to each of these point counts by farthest-point sampling.
_C.TEST.OPTIMIZE_MVS.FPS_POINTS = [1024]
# ---- end OptimizeMVS ----

# --- section: validation, best checkpoint, plateau, pretrained backbones (owner: training) ---
# Validation splits (never test splits), evaluated every TEST.EVAL_PERIOD iterations and after
# the last one (meshrecon.engine.validation): metrics go to the event storage as "val/<name>"
# and to OUTPUT_DIR/validation.json. With a validation split the test splits are evaluated only
# after training. Empty: the test splits are evaluated every TEST.EVAL_PERIOD, as before.
_C.DATASETS.VAL = ()
# Keep OUTPUT_DIR/model_best.pth at the best value of this flattened validation metric, e.g.
# "shapenet/F1@0.300000" ("" keeps none); BEST_MODE "max" (higher is better) or "min".
_C.TEST.BEST_METRIC = ""
_C.TEST.BEST_MODE = "max"
# Evaluate the test splits after training with model_best.pth instead of the final model.
_C.TEST.EVAL_BEST = False
# Plateau rule (meshrecon.engine.plateau): the curve of TEST.BEST_METRIC is flat when the best
# value of the last WINDOW_FRAC of training beats the earlier best by less than MIN_DELTA, in
# the metric's units (F1 in %: 1.0 is a point; IoU, AP, delta<1.25 are fractions: use 0.01).
_C.TEST.PLATEAU_WINDOW_FRAC = 0.2
_C.TEST.PLATEAU_MIN_DELTA = 1.0
# Judge only the validations after this iteration: a first phase of the schedule that trains
# part of the model (VoxMesh's MODEL.VOXEL_HEAD.VOXEL_ONLY_ITERS) may be flat before the rest
# trains. Scaled with the schedule by the benchmark's iteration overrides.
_C.TEST.PLATEAU_START_ITER = 0
# End training at the first validation that finds the curve flat (SOLVER.MAX_ITER: the bound).
_C.SOLVER.STOP_ON_PLATEAU = False
# With STOP_ON_PLATEAU: a plateau first brings the next of SOLVER.STEPS forward to it (the LR
# drops there, and the curve is judged afresh); training stops at a plateau with no step left.
_C.SOLVER.PLATEAU_LR_STEP = False
# Weights of the model's ResNet image encoder (torchvision layout, e.g. torchvision's), loaded
# before MODEL.WEIGHTS when training starts, not when resuming; the first convolution is adapted
# to INPUT.FORMAT / MODEL.PIXEL_MEAN / PIXEL_STD. "" trains the encoder from scratch;
# "synthetic://resnet18_pretrained.pth": ResNet-18 pretrained on the synthetic world (made on
# first use, cached; meshrecon.pretrain); "torchvision://resnet18": ImageNet's, for real data.
_C.MODEL.BACKBONE.PRETRAINED = ""
# Mixed precision for the image encoder only (SOLVER.AMP.ENABLED is Detectron2's, for the whole
# model on CUDA with a gradient scaler): "bfloat16" runs the backbone's forward (and so its
# backward) under torch.autocast in bfloat16 on the model's device; its features come back as
# float32, the heads, losses, 3D ops and the weights stay float32. "auto": bfloat16 where
# MODEL.DEVICE has it in hardware (CPUs with AVX512-BF16 or AMX, CUDA 8.0+), float32 elsewhere
# (emulated bfloat16 is slower). "" (default): all float32. On a CPU with AVX512-BF16 a
# ResNet-18's forward + backward takes ~0.65x the time (the synthetic configs use "auto").
_C.MODEL.BACKBONE.AUTOCAST = ""
# --- end section ---
