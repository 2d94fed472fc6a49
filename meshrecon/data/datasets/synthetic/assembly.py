"""Assembly helpers shared by the category builders of the synthetic shape library.

Builders work in metres with the floor at y = 0, +Y up and the front towards +Z; an
:class:`Assembly` collects their parts and normalises them at the end (bounding-box centre to
the origin, bounding-box diagonal to 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import primitives as pr

__all__ = [
    "Assembly",
    "WOODS",
    "SOFT",
    "pivot",
    "along_x",
    "along_z",
    "leg",
    "drawers",
    "unit_diagonal_frame",
]

WOODS = ("wood", "dark_wood", "light_wood")
SOFT = ("fabric", "leather", "linen")


class Assembly:
    """Collects the parts of one object while a builder runs; all randomness comes from ``rng``.

    The small sampling helpers keep builders short and make every draw go through the one
    generator, which is what makes a shape a pure function of the generator's state.
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.parts: list[tuple[str, pr.Mesh, str]] = []

    def u(self, lo: float, hi: float) -> float:
        """A uniform float in [lo, hi)."""
        return float(self.rng.uniform(lo, hi))

    def pick(self, options: Sequence, p: Sequence[float] | None = None):
        """One element of ``options``, with probabilities ``p`` (uniform when None)."""
        return options[int(self.rng.choice(len(options), p=p))]

    def chance(self, p: float) -> bool:
        """True with probability ``p``."""
        return bool(self.rng.random() < p)

    def add(self, name: str, mesh: pr.Mesh, material: str) -> None:
        """Record a closed part mesh under ``name`` with a material hint."""
        self.parts.append((name, mesh, material))

    def normalized_parts(self) -> list[tuple[str, np.ndarray, np.ndarray, str]]:
        """``(name, verts float32, faces int64, material)`` per part, in the unit-diagonal frame.

        The shape is moved so its bounding-box centre is the origin and scaled (uniformly, so
        orientation is kept) so its bounding-box diagonal is 1, as ShapeNet models are.
        """
        if not self.parts:
            raise ValueError("the assembly has no parts")
        centre, diag = unit_diagonal_frame(np.concatenate([m[0] for _, m, _ in self.parts]))
        return [
            (name, ((v - centre) / diag).astype(np.float32), np.asarray(f, np.int64), mat)
            for name, (v, f), mat in self.parts
        ]


def unit_diagonal_frame(verts: np.ndarray) -> tuple[np.ndarray, float]:
    """``(centre (3,), diagonal)`` of the bounding box of ``verts`` (V, 3).

    ``(verts - centre) / diagonal`` is the ShapeNet-style normalisation of every synthetic
    shape (and of the meshes of ``render-shapes``): bounding-box centre at the origin,
    bounding-box diagonal 1, orientation kept.
    """
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    return (lo + hi) / 2.0, float(np.linalg.norm(hi - lo))


def pivot(mesh: pr.Mesh, rotation: np.ndarray, point: Sequence[float]) -> pr.Mesh:
    """Rotate a mesh about ``point`` instead of the origin (a chair back tilting at the seat)."""
    p = np.asarray(point, dtype=np.float64)
    return pr.transform(pr.transform(mesh, None, -p), rotation, p)


def along_x(mesh: pr.Mesh, at: Sequence[float]) -> pr.Mesh:
    """Turn a +Y-axis primitive so its axis runs along +X, then move it to ``at``."""
    return pr.transform(mesh, pr.rotation_z(-np.pi / 2), at)


def along_z(mesh: pr.Mesh, at: Sequence[float]) -> pr.Mesh:
    """Turn a +Y-axis primitive so its axis runs along +Z, then move it to ``at``."""
    return pr.transform(mesh, pr.rotation_x(np.pi / 2), at)


def leg(top: Sequence[float], bottom: Sequence[float], size: float, style: str) -> pr.Mesh:
    """A leg from ``top`` down to ``bottom``: square bar, round rod or tapered (thin foot).

    A square leg that is not vertical (splayed) becomes a round rod, which a box cannot follow.
    """
    top, bottom = np.asarray(top, float), np.asarray(bottom, float)
    if style == "square" and np.allclose(top[[0, 2]], bottom[[0, 2]]):
        return pr.box((size, top[1] - bottom[1], size), (top + bottom) / 2)
    if style == "tapered":
        length = float(np.linalg.norm(top - bottom))
        mesh = pr.frustum(size * 0.3, size * 0.5, length, (0, 0, 0), 10)
        return pr.transform(mesh, pr.rotation_between([0, 1, 0], top - bottom), (top + bottom) / 2)
    return pr.cylinder_between(bottom, top, size / 2, 10)


def drawers(
    a: Assembly, x0: float, x1: float, y0: float, y1: float, z: float, n: int, mat: str
) -> None:
    """A column of ``n`` drawer fronts with handles on the plane z, between x0..x1, y0..y1."""
    gap, step = 0.008, (y1 - y0) / n
    knob = a.chance(0.5)
    for i in range(n):
        yc = y0 + step * (i + 0.5)
        a.add(
            f"drawer_{i}",
            pr.box((x1 - x0 - 2 * gap, step - 2 * gap, 0.02), ((x0 + x1) / 2, yc, z + 0.01)),
            mat,
        )
        if knob:
            a.add(
                f"knob_{i}",
                pr.ellipsoid((0.015, 0.015, 0.012), ((x0 + x1) / 2, yc, z + 0.025), 2),
                "metal",
            )
        else:
            bar = along_x(pr.cylinder(0.007, (x1 - x0) * 0.4, 0, 8), ((x0 + x1) / 2, yc, z + 0.03))
            a.add(f"handle_{i}", bar, "metal")
