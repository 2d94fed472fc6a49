"""render-shapes: a folder of meshes to a registered ShapeNet-style dataset.

The meshes are made here from trimesh's primitives: three categories (box, ball, slab) with
face colours (PLY), vertex colours (GLB), a UV texture (OBJ + MTL + PNG) and none (STL, OFF),
plus four that must be skipped with their reason: an unparsable OBJ, a PLY whose vertices all
sit at one point, an OBJ without faces and an OBJ with a NaN coordinate.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from meshrecon.data import DatasetCatalog, MetadataCatalog
from meshrecon.data.datasets.custom_shapes import (
    cli,
    register_all_custom,
    register_custom_dataset,
)
from meshrecon.data.datasets.custom_shapes.model import voxelize_mesh
from meshrecon.data.datasets.custom_shapes.sources import assign_splits, find_sources
from meshrecon.io import load_mesh
from meshrecon.render import unproject_depth

# Tiny renders so that a run takes seconds: 2 views of 64 px, 300 samples, 16^3 voxels.
TINY = ["--views", "2", "--image-size", "64", "--samples", "300", "--voxel-sizes", "16", "20"]
GOOD = {
    "ball/plain.off",
    "ball/rainbow.glb",
    "box/red.ply",
    "box/tall.stl",
    "slab/textured.obj",
    "slab/wide.obj",
}
SKIPPED = {
    "ball/flat.ply": ("degenerate", "zero extent"),
    "box/nan.obj": ("degenerate", "NaN"),
    "slab/broken.obj": ("unreadable", "corrupt OBJ face line"),
    "slab/points.obj": ("degenerate", "no faces"),
}
RECORD_KEYS = {
    "file_name", "height", "width", "image_id", "synset_id", "model_id", "category",
    "category_id", "view_index", "K", "R", "t", "azimuth", "elevation", "distance", "mesh",
    "samples", "voxel", "depth",
}  # fmt: skip


def make_meshes(root: str) -> None:
    """The input folder described in the module docstring."""
    for category in ("ball", "box", "slab"):
        os.makedirs(os.path.join(root, category), exist_ok=True)
    box = trimesh.creation.box((1.0, 0.5, 0.3))
    box.visual.face_colors = [220, 20, 20, 255]
    box.export(os.path.join(root, "box", "red.ply"))
    trimesh.creation.box((0.4, 1.0, 0.4)).export(os.path.join(root, "box", "tall.stl"))
    ball = trimesh.creation.icosphere(2)
    ball.visual.vertex_colors = (np.abs(ball.vertices) * 255).astype(np.uint8)
    ball.export(os.path.join(root, "ball", "rainbow.glb"))
    trimesh.creation.uv_sphere(0.5, count=[10, 10]).export(os.path.join(root, "ball", "plain.off"))
    slab = trimesh.creation.box((1.0, 1.0, 0.2))
    slab.unmerge_vertices()
    # Planar map along Z, v = y + 0.5: the upper half of the slab shows the image's top half
    # (red), the lower half its bottom half (blue), on the front, back and side faces.
    uv = slab.vertices[:, :2] + 0.5
    texture = np.zeros((8, 8, 3), np.uint8)
    texture[:4] = (250, 10, 10)
    texture[4:] = (10, 10, 250)
    slab.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(texture))
    slab.export(os.path.join(root, "slab", "textured.obj"))  # + material.mtl, material_0.png
    trimesh.creation.box((1.0, 0.1, 0.6)).export(os.path.join(root, "slab", "wide.obj"))
    with open(os.path.join(root, "slab", "broken.obj"), "w") as f:
        f.write("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 three\n")
    with open(os.path.join(root, "slab", "points.obj"), "w") as f:
        f.write("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    with open(os.path.join(root, "box", "nan.obj"), "w") as f:
        f.write("v 0 0 0\nv 1 nan 0\nv 0 1 0\nf 1 2 3\n")
    flat = trimesh.Trimesh([[0.2, 0.2, 0.2]] * 3, [[0, 1, 2]], process=False)
    flat.export(os.path.join(root, "ball", "flat.ply"))
    with open(os.path.join(root, "notes.txt"), "w") as f:
        f.write("not a mesh\n")


def tree_digest(folder: str) -> dict[str, str]:
    """Relative path -> SHA-1 of every file below ``folder``."""
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "**", "*"), recursive=True)):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha1(f.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def meshes(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("meshes"))
    make_meshes(root)
    return root


@pytest.fixture(scope="module")
def reference(meshes, tmp_path_factory):
    """One uninterrupted run with a pool of two workers: (datasets root, printed summary)."""
    root = str(tmp_path_factory.mktemp("datasets"))
    argv = [meshes, "--name", "rs_ref", "--root", root, "--workers", "2", "--no-progress"]
    out = _run_main(argv + TINY)
    return root, out


def _run_main(argv) -> str:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert cli.main(argv) == 0
    return buffer.getvalue()


def test_summary_counts_and_names_the_skipped_meshes(reference):
    root, out = reference
    assert "10 found, 6 written, 0 already done, 4 skipped" in out
    for rel, (kind, reason) in SKIPPED.items():
        line = next(line for line in out.splitlines() if line.strip().startswith(rel))
        assert f"{kind}:" in line and reason in line, line
    assert "categories (3): ball, box, slab" in out
    assert "1 x .mtl" in out and "1 x .png" in out and "1 x .txt" in out
    meta = json.load(open(os.path.join(root, "custom", "rs_ref", "dataset.json")))
    listing = json.load(open(os.path.join(root, "custom", "rs_ref", "models.json")))
    assert {m["source"] for m in listing["models"].values()} == GOOD
    skipped = {s["rel"]: s["kind"] for s in listing["skipped"]}
    assert skipped == {k: v[0] for k, v in SKIPPED.items()}
    assert meta["num_models"] == 6 and meta["num_skipped"] == 4
    assert meta["recipe"]["views"] == 2 and meta["recipe"]["voxel_sizes"] == [16, 20]
    assert sum(s["models"] for s in meta["splits"].values()) == 6
    assert all(meta["splits"][s]["models"] >= 1 for s in ("train", "val", "test"))


def test_records_and_files_follow_the_synthetic_shapenet_format(reference):
    root, _ = reference
    meta = MetadataCatalog.get("rs_ref_train")
    assert meta.evaluator_type == "shapenet" and meta.thing_classes == ["ball", "box", "slab"]
    records = sum((DatasetCatalog.get(f"rs_ref_{s}") for s in ("train", "val", "test")), [])
    assert len(records) == 12 and all(set(r) == RECORD_KEYS for r in records)
    assert "rs_ref_test_multiview" in DatasetCatalog
    for r in records:
        assert r["category_id"] == meta.thing_classes.index(r["category"])
        verts, faces = load_mesh(r["mesh"])
        v = verts.double()
        # Normalised as the synthetic shapes are: box centre at 0, box diagonal 1.
        lo, hi = v.min(0).values, v.max(0).values
        assert torch.allclose((lo + hi) / 2, torch.zeros(3, dtype=v.dtype), atol=1e-6)
        assert abs(float((hi - lo).norm()) - 1.0) < 1e-5
        samples = torch.load(r["samples"])
        assert samples["points_sampled"].shape == (300, 3)
        assert torch.allclose(samples["normals_sampled"].norm(dim=1), torch.ones(300), atol=1e-5)
        grids = np.load(r["voxel"])
        assert grids["occupancy"].shape == (16,) * 3 and grids["occupancy_20"].shape == (20,) * 3
        assert grids["occupancy"].any() and str(grids["align"]) == "corner"
        # Depth and alpha agree, and the depth unprojects onto the model's surface.
        rgba = np.asarray(Image.open(r["file_name"]))
        depth = np.asarray(Image.open(r["depth"]["path"])).astype(np.float64) / 1000.0
        assert rgba.shape == (64, 64, 4) and ((rgba[..., 3] > 0) == (depth > 0)).all()
        points_cam, valid = unproject_depth(torch.from_numpy(depth), torch.tensor(r["K"]))
        points_cam = points_cam[valid]
        R, t = torch.tensor(r["R"], dtype=torch.float64), torch.tensor(r["t"], dtype=torch.float64)
        points = (points_cam - t) @ R  # camera -> model frame
        dist = torch.cdist(points.float(), samples["points_sampled"]).min(dim=1).values
        assert float(dist.median()) < 0.05, r["image_id"]


def _pixels(records, model_id):
    r = next(r for r in records if r["model_id"] == model_id)
    rgba = np.asarray(Image.open(r["file_name"])).astype(np.float64) / 255.0
    return rgba[..., :3][rgba[..., 3] > 0]


def test_views_carry_the_files_colours(reference):
    records = sum((DatasetCatalog.get(f"rs_ref_{s}") for s in ("train", "val", "test")), [])
    red = _pixels(records, "red")  # PLY face colours (220, 20, 20), shaded
    assert (red[:, 0] > 3 * red[:, 1]).all() and (red[:, 1] == red[:, 2]).all()
    plain = _pixels(records, "plain")  # OFF without colours: shaded grey
    assert np.allclose(plain[:, 0], plain[:, 1], atol=1 / 255) and np.allclose(
        plain[:, 1], plain[:, 2], atol=1 / 255
    )
    rainbow = _pixels(records, "rainbow")  # GLB vertex colours |x|, |y|, |z|: many hues
    hues = np.unique(np.round(rainbow / rainbow.max(1, keepdims=True).clip(1e-6), 1), axis=0)
    assert len(hues) > 20
    # OBJ with a texture: the two halves of the image, red and blue, both show.
    textured = _pixels(records, "textured")
    assert (textured[:, 0] > 3 * textured[:, 2]).sum() > 10
    assert (textured[:, 2] > 3 * textured[:, 0]).sum() > 10


def test_interrupted_run_resumes_to_the_same_files(meshes, reference, tmp_path):
    """Killed (SIGKILL) while writing the third model; the rerun keeps the two finished ones,
    redoes the half-written one and ends with exactly the files of an uninterrupted run."""
    root = str(tmp_path)
    argv = [meshes, "--name", "rs_ref", "--root", root, "--workers", "1", "--no-progress"]
    # Each model writes its depth PNGs one view after the other: die at the first depth PNG
    # of the third model (2 views per model), after its mesh, samples, voxels and one view.
    script = (
        "import os, signal, sys\n"
        "from meshrecon.data.datasets.synthetic import scenes\n"
        "from meshrecon.data.datasets.custom_shapes import cli\n"
        "real, calls = scenes.save_depth_png16, [0]\n"
        "def save(*a, **k):\n"
        "    calls[0] += 1\n"
        "    if calls[0] == 5:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    real(*a, **k)\n"
        "scenes.save_depth_png16 = save\n"
        f"sys.exit(cli.main({argv + TINY!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    folder = os.path.join(root, "custom", "rs_ref")
    finished = sorted(glob.glob(os.path.join(folder, "*", "*", "model.json")))
    half = glob.glob(os.path.join(folder, "*", ".tmp-*"))
    assert len(finished) == 2 and len(half) == 1
    assert os.path.isfile(os.path.join(half[0], "rendering", "00.png"))
    assert not os.path.exists(os.path.join(half[0], "model.json"))
    assert not os.path.exists(os.path.join(folder, "dataset.json"))  # never registered
    assert register_all_custom(root) == []
    stamps = {
        p: (os.stat(p).st_ino, os.stat(p).st_mtime_ns)
        for m in finished
        for p in glob.glob(os.path.join(os.path.dirname(m), "**", "*"), recursive=True)
    }

    try:
        out = _run_main(argv + TINY)
    finally:
        # The rerun registered rs_ref from this test's folder, which pytest deletes after a
        # pass: point the name back at the reference run's, which later tests train on.
        register_custom_dataset(os.path.join(reference[0], "custom", "rs_ref"), replace=True)
    assert "2 written" not in out and "4 written, 2 already done, 4 skipped" in out
    assert not glob.glob(os.path.join(folder, "*", ".tmp-*"))
    # The finished models were not rewritten ...
    assert {p: (os.stat(p).st_ino, os.stat(p).st_mtime_ns) for p in stamps} == stamps
    # ... and the result is the uninterrupted run's, file for file, byte for byte.
    expected = tree_digest(os.path.join(reference[0], "custom", "rs_ref"))
    assert tree_digest(folder) == expected


def test_csv_layout_and_refused_paths(meshes, tmp_path):
    csv = tmp_path / "cats.csv"
    csv.write_text(
        "file,category\n"
        "box/red.ply,Red things\n"
        "ball/rainbow.glb,Round things\n"
        "ball/plain.off,Round things\n"
        "../outside.obj,Round things\n"
        "box/missing.ply,Red things\n"
    )
    (tmp_path / "outside.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    sources, problems, _ = find_sources(meshes, str(csv))
    assert [(s.category, s.category_dir, s.model_id) for s in sources] == [
        ("Red things", "Red_things", "box_red"),
        ("Round things", "Round_things", "ball_plain"),
        ("Round things", "Round_things", "ball_rainbow"),
    ]
    assert {p.rel: p.kind for p in problems} == {
        "../outside.obj": "unsafe path",
        "box/missing.ply": "missing",
    }
    out = _run_main(
        [meshes, "--name", "rs_csv", "--root", str(tmp_path / "ds"), "--csv", str(csv)]
        + ["--split", "0.5", "0.0", "0.5", "--workers", "1", "--no-progress"]
        + TINY
    )
    assert "5 found, 3 written" in out
    assert "unsafe path" in next(x for x in out.splitlines() if "../outside.obj" in x)
    assert MetadataCatalog.get("rs_csv_test").thing_classes == ["Red things", "Round things"]
    assert MetadataCatalog.get("rs_csv_test").synset_to_name["Red_things"] == "Red things"
    with pytest.raises(ValueError, match="no val models"):
        DatasetCatalog.get("rs_csv_val")
    bad = tmp_path / "bad.csv"
    bad.write_text("file,category\nbox/red.ply\n")
    with pytest.raises(ValueError, match=r"bad.csv:2: expected two non-empty columns"):
        find_sources(meshes, str(bad))


def test_loose_meshes_need_a_category_and_names_are_checked(tmp_path, capsys):
    ds = str(tmp_path / "ds")
    tmp_path = tmp_path / "in"
    tmp_path.mkdir()
    trimesh.creation.box().export(tmp_path / "cube.stl")
    sources, problems, _ = find_sources(str(tmp_path))
    assert not sources and problems[0].kind == "no category"
    sources, _, _ = find_sources(str(tmp_path), default_category="things")
    assert [(s.category, s.model_id) for s in sources] == [("things", "cube")]
    # A dataset written inside the mesh folder is not read back as input.
    os.makedirs(tmp_path / "datasets" / "custom" / "x" / "cube", exist_ok=True)
    trimesh.creation.box().export(tmp_path / "datasets" / "custom" / "x" / "cube" / "model.obj")
    exclude = str(tmp_path / "datasets" / "custom")
    assert len(find_sources(str(tmp_path), exclude=exclude)[0]) == 0
    assert len(find_sources(str(tmp_path))[0]) == 1  # category "datasets"
    shutil.rmtree(tmp_path / "datasets")
    for name in ("synthetic_shapenet", "../x", "9lives", ""):
        assert cli.main([str(tmp_path), "--name", name, "--root", ds]) == 1
        assert "--name" in capsys.readouterr().err
    assert cli.main([str(tmp_path / "nope"), "--name", "ok", "--root", ds]) == 1
    assert "mesh folder not found" in capsys.readouterr().err
    # No usable mesh at all: an error, and nothing registered.
    assert cli.main([str(tmp_path), "--name", "rs_none", "--root", ds]) == 1
    assert "no usable mesh" in capsys.readouterr().err and "rs_none_train" not in DatasetCatalog


def test_model_ids_are_unique_and_splits_stratified_and_seeded(tmp_path):
    for rel in ("a/x.obj", "a/x.ply", "a/sub/x.obj", "a/sub_x.obj", "a/y z.obj"):
        os.makedirs(os.path.dirname(tmp_path / rel), exist_ok=True)
        (tmp_path / rel).write_text("v 0 0 0\n")
    ids = sorted(s.model_id for s in find_sources(str(tmp_path))[0])
    assert ids == sorted(["x.obj", "x.ply", "y_z"] + [f"sub_x.obj-{h}" for h in _hashes()])

    keys = [("big", f"m{i}") for i in range(20)] + [("small", "s0"), ("small", "s1")]
    splits = assign_splits(keys, (0.7, 0.1, 0.2), seed=0)
    assert splits == assign_splits(list(reversed(keys)), (0.7, 0.1, 0.2), seed=0)
    assert splits != assign_splits(keys, (0.7, 0.1, 0.2), seed=1)
    count = {s: [k for k in keys if splits[k] == s] for s in ("train", "val", "test")}
    assert [len(count[s]) for s in ("train", "val", "test")] == [16, 2, 4]  # round(22 x f)
    assert any(k[0] == "small" for k in count["train"])  # every category trains
    assert set(assign_splits([("c", "only")], (0.0, 0.5, 0.5), 0).values()) == {"train"}
    with pytest.raises(ValueError, match="summing to 1"):
        assign_splits(keys, (0.5, 0.5, 0.5), 0)


def _hashes():
    return [hashlib.sha256(r.encode()).hexdigest()[:8] for r in ("sub/x.obj", "sub_x.obj")]


def test_voxelize_open_walls_closed_parts_and_open_shells():
    # Six separate walls of a cube (no shared vertices, every edge open): the enclosed cavity
    # is filled, like the closed cube.
    cube = trimesh.creation.box((0.6, 0.6, 0.6))
    walls = cube.copy()
    walls.unmerge_vertices()
    # Moved apart a little (far below a voxel) so that welding does not close them again.
    walls.vertices += np.random.default_rng(0).normal(0, 1e-5, walls.vertices.shape)
    solid = voxelize_mesh(np.asarray(cube.vertices), np.asarray(cube.faces), [10])[10]
    filled = voxelize_mesh(np.asarray(walls.vertices), np.asarray(walls.faces), [10])[10]
    assert solid.sum() == 6**3  # parity: the voxel centres inside the 0.6 cube
    assert filled[2:8, 2:8, 2:8].all() and filled.sum() >= solid.sum()
    # A cup (cylinder without its top) stays a shell: its inside is open to the outside.
    cup = trimesh.creation.cylinder(0.3, 0.8, sections=24)
    top = cup.vertices[cup.faces].mean(1)[:, 2] > 0.39
    cup = trimesh.Trimesh(cup.vertices, cup.faces[~top], process=False)
    shell = voxelize_mesh(np.asarray(cup.vertices), np.asarray(cup.faces), [16])[16]
    assert shell.any() and not shell[10:14, 8, 8].any()  # [z, y, x]: the middle stays empty


def test_a_few_training_steps_on_the_dataset(reference, tmp_path):
    """VoxMesh (the synthetic config, narrowed) trains 3 iterations on rs_ref_train through
    the normal trainer, reading the records, voxels and samples render-shapes wrote."""
    from meshrecon.config import get_cfg
    from meshrecon.engine import DefaultTrainer
    from meshrecon.model_zoo import get_config_file

    cfg = get_cfg()
    cfg.merge_from_file(get_config_file("synthetic/voxmesh.yaml"))
    cfg.merge_from_list(
        ["DATASETS.TRAIN", ("rs_ref_train",), "DATASETS.TEST", (), "SOLVER.MAX_ITER", 3]
        + ["SOLVER.IMS_PER_BATCH", 2, "DATALOADER.NUM_WORKERS", 0, "OUTPUT_DIR", str(tmp_path)]
        + ["MODEL.VOXEL_HEAD.CONV_DIM", 8, "MODEL.MESH_HEAD.GRAPH_CONV_DIM", 8]
        + ["MODEL.MESH_HEAD.NUM_STAGES", 1, "SOLVER.WARMUP_ITERS", 1]
        + ["MODEL.VOXEL_HEAD.VOXEL_ONLY_ITERS", 0, "MODEL.VOXEL_HEAD.VOXEL_SIZE", 12]
        + ["INPUT.SHAPENET.VOXEL_SIZE", 12, "INPUT.SHAPENET.NUM_SAMPLES", 200]
        + ["MODEL.MESH_HEAD.GT_NUM_SAMPLES", 200, "MODEL.MESH_HEAD.PRED_NUM_SAMPLES", 200]
    )
    trainer = DefaultTrainer(cfg)
    trainer.train()
    assert trainer.iter == 3  # as in Detectron2: MAX_ITER after the loop
    lines = [json.loads(x) for x in open(os.path.join(str(tmp_path), "metrics.json"))]
    losses = [v for x in lines for k, v in x.items() if k.startswith("loss_")]
    assert losses and all(np.isfinite(losses))


def test_rerun_follows_recipe_and_input_changes(tmp_path, monkeypatch):
    """Another recipe redoes every model, a removed file removes its model, and a mesh the
    preparation fails on is reported as "failed" while the run goes on."""
    from meshrecon.data.datasets.custom_shapes import model as model_module

    src = tmp_path / "in"
    for name in ("a", "b"):
        os.makedirs(src / "cat", exist_ok=True)
        trimesh.creation.box((1.0, 0.5 if name == "a" else 0.8, 0.3)).export(
            src / "cat" / f"{name}.stl"
        )
    base = [str(src), "--name", "rs_rerun", "--root", str(tmp_path / "ds"), "--workers", "1"]
    base += ["--no-progress", "--split", "1", "0", "0"] + TINY
    assert "2 written, 0 already done" in _run_main(base)
    assert "0 written, 2 already done" in _run_main(base)
    assert "2 written, 0 already done" in _run_main(base + ["--seed", "1"])
    os.remove(src / "cat" / "b.stl")
    out = _run_main(base + ["--seed", "1"])
    assert "0 written, 1 already done" in out and "1 stale models removed" in out
    assert not os.path.exists(tmp_path / "ds" / "custom" / "rs_rerun" / "cat" / "b")
    trimesh.creation.icosphere().export(src / "cat" / "c.stl")

    def broken(*args, **kwargs):
        raise RuntimeError("voxelizer bug")

    monkeypatch.setattr(model_module, "voxelize_mesh", broken)
    out = _run_main(base + ["--seed", "1"])
    assert "0 written, 1 already done, 1 skipped" in out
    assert "failed: RuntimeError: voxelizer bug" in out
