"""The mapper follows INPUT.MAPPER or the datasets' record format; multi-view twins group views."""

import pytest

from meshrecon.config import get_cfg
from meshrecon.data import (
    DatasetCatalog,
    DepthMapper,
    MeshRCNNMapper,
    MetadataCatalog,
    MultiViewMapper,
    ShapeNetMapper,
    build_mapper,
)
from meshrecon.data.datasets.builtin import register_multiview


@pytest.fixture
def formats():
    names = {}
    for kind in ("pix3d", "shapenet", "depth", "multiview", "toy"):
        name = f"_mapper_test_{kind}"
        if name not in DatasetCatalog:
            DatasetCatalog.register(name, lambda: [])
            MetadataCatalog.get(name).evaluator_type = kind
        names[kind] = name
    return names


@pytest.mark.parametrize(
    "kind, cls",
    [
        ("pix3d", MeshRCNNMapper),
        ("shapenet", ShapeNetMapper),
        ("depth", DepthMapper),
        ("multiview", MultiViewMapper),
    ],
)
def test_mapper_follows_record_format(formats, kind, cls):
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = (formats[kind],)
    cfg.DATASETS.TEST = (formats[kind],)
    assert isinstance(build_mapper(cfg, is_train=True), cls)
    assert isinstance(build_mapper(cfg, is_train=False), cls)


def test_config_names_the_mapper(formats):
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = (formats["pix3d"],)
    cfg.INPUT.MAPPER = "ShapeNetMapper"
    assert isinstance(build_mapper(cfg, is_train=True), ShapeNetMapper)
    cfg.INPUT.MAPPER = "ShapeNetMaper"
    with pytest.raises(KeyError, match="INPUT.MAPPER='ShapeNetMaper'.*Did you mean ShapeNetMapper"):
        build_mapper(cfg, is_train=True)


def test_mixed_formats_and_model_ready_records(formats):
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = (formats["pix3d"], formats["depth"])
    with pytest.raises(ValueError, match="different mappers"):
        build_mapper(cfg, is_train=True)
    cfg.DATASETS.TRAIN = (formats["toy"],)
    assert build_mapper(cfg, is_train=True) is None


def test_multiview_twin_groups_views_by_model():
    name = "_mapper_test_views"
    records = [
        {"model_id": m, "synset_id": "s", "view_index": v, "category_id": 0}
        for m in ("b", "a")
        for v in (2, 0, 1)
    ]
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(evaluator_type="shapenet", thing_classes=["thing"])
    twin = register_multiview(name)
    assert register_multiview(name) == twin  # idempotent
    grouped = DatasetCatalog.get(twin)
    assert len(grouped) == 2
    for model in grouped:
        assert [v["view_index"] for v in model["views"]] == [0, 1, 2]
    meta = MetadataCatalog.get(twin)
    assert meta.evaluator_type == "multiview" and meta.thing_classes == ["thing"]
