"""Export models for deployment: ``torch.export`` programs (``.pt2``) and ONNX files.

``meshrecon export --config-file CFG --format torch.export --output DIR MODEL.WEIGHTS PATH``
(:func:`meshrecon.cli.export.main`) writes one program per exportable part
of the model and ``export_info.json``. Exported programs take and return plain tensors; meshes
leave them in the padded form described in :mod:`meshrecon.export.mesh_tensors`, which
:func:`meshes_from_tensors` turns back into ``Meshes``.
"""

from .depth import DepthProgram
from .exporter import (
    FORMATS,
    TOLERANCES,
    ProgramSpec,
    compare_outputs,
    eager_outputs,
    export_model,
    export_programs,
    run_exported,
)
from .mesh_tensors import (
    MESH_KEYS,
    MeshTopology,
    PackedMeshes,
    UniformMeshes,
    meshes_from_tensors,
    meshes_to_tensors,
)
from .rcnn import RCNNBackboneProgram, RCNNBoxHeadProgram
from .single_view import SingleViewProgram

__all__ = [
    "FORMATS",
    "MESH_KEYS",
    "TOLERANCES",
    "DepthProgram",
    "MeshTopology",
    "PackedMeshes",
    "ProgramSpec",
    "RCNNBackboneProgram",
    "RCNNBoxHeadProgram",
    "SingleViewProgram",
    "UniformMeshes",
    "compare_outputs",
    "eager_outputs",
    "export_model",
    "export_programs",
    "meshes_from_tensors",
    "meshes_to_tensors",
    "run_exported",
]
