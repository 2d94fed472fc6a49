"""Benchmarks of Mesh R-CNN (Pix3D R50-FPN) end to end: inference and one training step.

Random weights, a 480x640 image, and a fixed number of detections (score threshold 0, one
detection per image) so that the shape heads always run on the same amount of work.
"""

import torch

from meshrecon.config import get_cfg
from meshrecon.model_zoo import get_config_file
from meshrecon.modeling import build_model
from meshrecon.ops import ico_sphere
from meshrecon.structures import Boxes, Instances
from meshrecon.structures.masks import BitMasks
from meshrecon.structures.shape_instances import MeshInstances, VoxelInstances
from meshrecon.utils.benchmark import BenchCase
from meshrecon.utils.events import EventStorage

SUITE = "meshrcnn"
H, W = 480, 640


def _cfg(config: str):
    cfg = get_cfg()
    cfg.merge_from_file(get_config_file(config))
    cfg.MODEL.WEIGHTS = ""
    cfg.TEST.DETECTIONS_PER_IMAGE = 1
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    return cfg


def _targets(device):
    sphere = ico_sphere(3, device)
    verts = sphere.verts_packed() * 0.4 + torch.tensor([0.1, 0.0, 3.0], device=device)
    inst = Instances((H, W))
    inst.gt_boxes = Boxes(torch.tensor([[220.0, 140.0, 420.0, 340.0]], device=device))
    inst.gt_classes = torch.tensor([2], device=device)
    mask = torch.zeros(1, H, W, dtype=torch.bool, device=device)
    mask[0, 140:340, 220:420] = True
    inst.gt_masks = BitMasks(mask)
    inst.gt_meshes = MeshInstances([(verts, sphere.faces_packed())])
    inst.gt_voxels = VoxelInstances([verts])
    inst.gt_K = torch.tensor([[500.0, W / 2, H / 2]], device=device)
    inst.gt_dz = torch.tensor([100.0], device=device)
    return inst


def _make(config: str, train: bool):
    def make(device: torch.device):
        torch.manual_seed(0)
        cfg = _cfg(config)
        cfg.MODEL.DEVICE = device.type
        model = build_model(cfg).to(device)
        g = torch.Generator().manual_seed(0)
        image = (torch.rand(3, H, W, generator=g) * 255).to(device)
        sample = {"image": image, "height": H, "width": W}
        if train:
            sample["instances"] = _targets(device)
            model.train()
            storage = EventStorage()

            def run(backward: bool):
                with storage:
                    losses = model([sample])
                    total = sum(losses.values())
                if backward:
                    total.backward()
                return total

        else:
            model.eval()

            def run(backward: bool):
                with torch.no_grad():
                    return model([sample])

        return run

    return make


CASES = [
    BenchCase(
        op="meshrcnn_R50_FPN inference",
        size="1 image 480x640, 1 detection",
        make=_make("pix3d/meshrcnn_R50_FPN.yaml", train=False),
        backward=False,
        reference_ms={"fwd": 800.0},
        repeats=3,
    ),
    BenchCase(
        op="meshrcnn_R50_FPN training step",
        size="1 image 480x640, 1 object",
        make=_make("pix3d/meshrcnn_R50_FPN.yaml", train=True),
        backward=True,
        repeats=3,
    ),
]
