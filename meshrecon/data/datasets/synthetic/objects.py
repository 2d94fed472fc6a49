"""Builders of the small-object categories: tool (hand tools) and misc (lamps, vases, plants)."""

from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator

from . import primitives as pr
from .assembly import Assembly, along_x

__all__ = ["build_tool", "build_misc"]


def build_tool(a: Assembly) -> str:
    """A hand tool in the XY plane, long axis along X: claw hammer or mallet, combination
    wrench, or screwdriver. Returns the variant name.
    """
    kind = a.pick(("hammer", "wrench", "screwdriver"), p=(0.35, 0.3, 0.35))
    grip = a.pick(("rubber", "plastic", "wood"))
    if kind == "hammer":
        length, r = a.u(0.25, 0.36), a.u(0.012, 0.018)
        a.add("handle", along_x(pr.capsule(r, length, 0, 12), (length / 2, 0, 0)), grip)
        hl, hw = a.u(0.1, 0.15), a.u(0.022, 0.032)
        if a.chance(0.6):  # claw hammer: a bar head, a round face and a split claw
            a.add("head", pr.box((hw * 1.3, hl * 0.55, hw), (length, hl * 0.1, 0)), "metal")
            a.add("face", pr.cylinder(hw * 0.75, hl * 0.25, (length, hl * 0.45, 0), 12), "metal")
            for sz in (-1, 1):
                claw = pr.box((hw * 0.9, hl * 0.4, hw * 0.35), (0, 0, 0))
                a.add(
                    "claw",
                    pr.transform(
                        claw, pr.rotation_z(-0.4), (length + 0.01, -hl * 0.3, sz * hw * 0.3)
                    ),
                    "metal",
                )
            return "hammer/claw"
        a.add("head", pr.cylinder(hw, hl, (length, 0, 0), 12), "metal")
        return "hammer/mallet"
    if kind == "wrench":
        length, bw = a.u(0.18, 0.3), a.u(0.018, 0.03)
        a.add("shank", pr.rounded_box((length, bw, bw * 0.35), bw * 0.15), "metal")
        ring_r = bw * a.u(0.9, 1.2)
        ring = pr.transform(
            pr.torus(ring_r, ring_r * 0.32, 0, 16, 6),
            pr.rotation_x(np.pi / 2),
            (-length / 2 - ring_r * 0.8, 0, 0),
        )
        a.add("ring_end", ring, "metal")
        jaw = bw * a.u(0.9, 1.2)
        for sy in (-1, 1):
            mesh = pr.box((jaw * 1.2, jaw * 0.6, bw * 0.35), (0, 0, 0))
            a.add(
                "jaw",
                pr.transform(
                    mesh, pr.rotation_z(sy * 0.2), (length / 2 + jaw * 0.45, sy * jaw * 0.5, 0)
                ),
                "metal",
            )
        return "wrench/combination"
    hl, hr = a.u(0.08, 0.12), a.u(0.012, 0.02)
    ys = np.linspace(0, hl, 6)
    bulge = 1.0 + 0.15 * np.sin(np.linspace(0, np.pi, 6))
    profile = [[hr * 0.6, 0.0]] + [[hr * b, y] for b, y in zip(bulge, ys[1:-1])] + [[hr * 0.7, hl]]
    a.add("handle", along_x(pr.lathe(profile, 12), (0, 0, 0)), grip)
    sl, sr = a.u(0.08, 0.18), a.u(0.003, 0.005)
    a.add("shaft", along_x(pr.cylinder(sr, sl, 0, 8), (hl + sl / 2, 0, 0)), "metal")
    a.add("tip", along_x(pr.frustum(sr, sr * 0.35, 0.012, 0, 8), (hl + sl + 0.006, 0, 0)), "metal")
    return "screwdriver"


def build_misc(a: Assembly) -> str:
    """A small object: a table or floor lamp, a hollow vase (a revolved random profile) or
    a potted plant. Returns the variant name.
    """
    kind = a.pick(("lamp", "vase", "plant"))
    if kind == "lamp":
        tall = a.chance(0.4)
        pole = a.u(1.1, 1.6) if tall else a.u(0.25, 0.45)
        br = a.u(0.08, 0.16) * (1.4 if tall else 1.0)
        a.add(
            "base", pr.frustum(br, br * 0.8, 0.03, (0, 0.015, 0), 24), a.pick(("metal", "ceramic"))
        )
        a.add("pole", pr.cylinder(0.012, pole, (0, 0.03 + pole / 2, 0), 10), "metal")
        sr = a.u(0.12, 0.22) * (1.3 if tall else 1.0)
        sh = sr * a.u(0.7, 1.2)
        shade = pr.frustum(sr, sr * a.u(0.45, 0.85), sh, (0, 0.03 + pole + sh * 0.3, 0), 24)
        a.add("shade", shade, a.pick(("linen", "paper", "fabric")))
        return "lamp/floor" if tall else "lamp/table"
    if kind == "vase":
        height, r = a.u(0.2, 0.45), a.u(0.06, 0.14)
        # Radius multipliers at foot, lower body, belly, shoulder, neck and lip; a monotone
        # cubic through them gives a smooth silhouette that never overshoots the controls.
        knots = np.array([0.0, 0.2, 0.45, 0.7, 0.87, 1.0])
        ranges = ((0.5, 0.8), (0.8, 1.2), (0.9, 1.5), (0.6, 1.1), (0.3, 0.6), (0.4, 0.8))
        ctrl = np.array([a.u(lo, hi) for lo, hi in ranges]) * r
        ts = np.linspace(0.0, 1.0, 12)
        radii = PchipInterpolator(knots, ctrl)(ts)
        wall, floor = min(0.006, 0.3 * float(radii.min())), height * 0.12
        outer = [[0.0, 0.0]] + [[float(q), float(t * height)] for q, t in zip(radii, ts)]
        # The inside follows the outside at a constant wall down to the floor, so the two
        # surfaces never cross.
        inner = [
            [float(q) - wall, float(t * height)]
            for q, t in zip(radii[::-1], ts[::-1])
            if t * height > floor + 1e-9
        ]
        inner.append([float(np.interp(floor / height, ts, radii)) - wall, floor])
        inner.append([0.0, floor])
        a.add("vase", pr.lathe(outer + inner, 20), "ceramic")
        return "vase"
    pr_, ph = a.u(0.08, 0.15), a.u(0.12, 0.25)
    a.add("pot", pr.frustum(pr_ * 0.7, pr_, ph, (0, ph / 2, 0), 20), "ceramic")
    for i in range(int(a.rng.integers(3, 8))):
        c = (a.u(-1, 1) * pr_, ph + a.u(0.05, 0.35), a.u(-1, 1) * pr_)
        rad = (a.u(0.05, 0.14), a.u(0.06, 0.18), a.u(0.05, 0.14))
        a.add(f"foliage_{i}", pr.ellipsoid(rad, c, 2), "foliage")
    return "plant"
