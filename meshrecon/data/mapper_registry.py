"""Which mapper turns a dataset's records into model inputs: chosen by config or by dataset.

``INPUT.MAPPER`` names a mapper in ``MAPPER_REGISTRY``. Left empty, the mapper follows the
dataset's ``evaluator_type`` metadata, i.e. its record format (docs/DATA_FORMATS.md), so that a
new method needs only a config: Pix3D-style data goes through ``MeshRCNNMapper``, ShapeNet-style
view records through ``ShapeNetMapper``, grouped multi-view records through ``MultiViewMapper``
and depth records through ``DepthMapper``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from meshrecon.utils.registry import Registry

from .catalog import MetadataCatalog
from .mappers import DepthMapper, MeshRCNNMapper, MultiViewMapper, ShapeNetMapper
from .multiview_depth_mapper import MultiViewDepthMapper

__all__ = ["MAPPER_REGISTRY", "build_mapper", "mapper_name_for_dataset"]

logger = logging.getLogger(__name__)

MAPPER_REGISTRY = Registry("MAPPER")
MAPPER_REGISTRY.__doc__ = "Mappers: record -> model input; built with (cfg, is_train)."
for _mapper in (MeshRCNNMapper, ShapeNetMapper, MultiViewMapper, DepthMapper):
    MAPPER_REGISTRY.register(_mapper)
# OptimizeMVS: multi-view items whose missing depth maps are rendered from the mesh.
MAPPER_REGISTRY.register(MultiViewDepthMapper)

# Record format (the dataset's evaluator_type) -> the mapper that reads it.
_MAPPER_BY_EVALUATOR = {
    "pix3d": "MeshRCNNMapper",
    "shapenet": "ShapeNetMapper",
    "multiview": "MultiViewMapper",
    "depth": "DepthMapper",
}


def mapper_name_for_dataset(dataset_name: str) -> str | None:
    """Return the mapper that reads ``dataset_name``'s records, or None for model-ready records.

    A dataset's ``mapper`` metadata wins; otherwise its ``evaluator_type`` (record format)
    decides. A dataset of another format is taken to hold model inputs already.
    """
    meta = MetadataCatalog.get(dataset_name)
    name = meta.get("mapper") or _MAPPER_BY_EVALUATOR.get(meta.get("evaluator_type"))
    return name


def build_mapper(
    cfg, is_train: bool, dataset_names: str | Sequence[str] | None = None
) -> Callable[[dict], Any] | None:
    """Return the mapper for ``cfg``: ``INPUT.MAPPER`` or the one the datasets' format needs.

    None means the records are model inputs already (the loaders then pass copies through).

    Args:
        cfg: the config.
        is_train: training (augmentations, targets) or inference mapping.
        dataset_names: the datasets the mapper will read; by default ``DATASETS.TRAIN`` when
            ``is_train`` else ``DATASETS.TEST``. All must share one record format.
    """
    name = cfg.INPUT.MAPPER
    if not name:
        if dataset_names is None:
            dataset_names = cfg.DATASETS.TRAIN if is_train else cfg.DATASETS.TEST
        if isinstance(dataset_names, str):
            dataset_names = [dataset_names]
        if not dataset_names:
            raise ValueError("INPUT.MAPPER is empty and there is no dataset to infer it from")
        names = {mapper_name_for_dataset(d) for d in dataset_names}
        if len(names) > 1:
            raise ValueError(
                f"datasets {list(dataset_names)} need different mappers "
                f"{sorted(map(str, names))}; set INPUT.MAPPER or use datasets of one format"
            )
        name = names.pop()
        if name is None:
            logger.info(
                "Datasets %s name no mapper: their records go to the model as they are",
                list(dataset_names),
            )
            return None
    return MAPPER_REGISTRY.get(name, cfg_key="INPUT.MAPPER")(cfg, is_train)
