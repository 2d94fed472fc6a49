"""Builders of the soft and seating categories: chair, sofa, bed."""

from __future__ import annotations

import numpy as np

from . import primitives as pr
from .assembly import SOFT, WOODS, Assembly, along_z, leg, pivot

__all__ = ["build_chair", "build_sofa", "build_bed"]


def build_chair(a: Assembly) -> str:
    """A chair: seat; four/three legs, a star base on casters or a sled frame; a solid,
    slatted or ladder back tilted backwards; optional arms. Returns the variant name.
    """
    w, d, sh, st = a.u(0.40, 0.56), a.u(0.38, 0.52), a.u(0.40, 0.50), a.u(0.03, 0.07)
    wood = a.pick(WOODS)
    soft = a.chance(0.5)
    seat_mat = a.pick(SOFT) if soft else wood
    base = a.pick(("four_legs", "three_legs", "star_base", "sled"), p=(0.5, 0.15, 0.2, 0.15))
    size = (w, st, d)
    seat = (
        pr.rounded_box(size, st * 0.45, (0, sh - st / 2, 0))
        if soft
        else pr.box(size, (0, sh - st / 2, 0))
    )
    a.add("seat", seat, seat_mat)
    frame = "metal" if base in ("star_base", "sled") else wood
    lt = a.u(0.025, 0.045)
    under = sh - st
    if base == "four_legs":
        style, splay = a.pick(("square", "round", "tapered")), a.u(0.0, 0.05)
        for i, (sx, sz) in enumerate(((-1, -1), (1, -1), (-1, 1), (1, 1))):
            x, z = sx * (w / 2 - lt), sz * (d / 2 - lt)
            top, foot = (x, under, z), (x + sx * splay, 0.0, z + sz * splay)
            a.add(
                f"leg_{i}",
                leg(top, foot, lt, style),
                wood,
            )
        if a.chance(0.4):
            for sx in (-1, 1):
                x = sx * (w / 2 - lt)
                a.add(
                    "stretcher",
                    pr.box((lt * 0.6, lt * 0.6, d - 2 * lt), (x, a.u(0.1, 0.2), 0)),
                    wood,
                )
    elif base == "three_legs":
        for i, (x, z) in enumerate(
            ((-w / 2 + lt, d / 2 - lt), (w / 2 - lt, d / 2 - lt), (0, -d / 2 + lt))
        ):
            foot = (x * 1.15, 0.0, z * 1.15)
            a.add(f"leg_{i}", pr.cylinder_between(foot, (x, under, z), lt / 2, 10), wood)
    elif base == "star_base":
        spokes, reach = int(a.rng.integers(4, 6)), a.u(0.24, 0.32)
        a.add(
            "column",
            pr.cylinder(a.u(0.02, 0.035), under - 0.06, (0, 0.06 + (under - 0.06) / 2, 0), 12),
            frame,
        )
        for i in range(spokes):
            ang = 2 * np.pi * i / spokes + np.pi / 2
            end = (reach * np.cos(ang), 0.04, reach * np.sin(ang))
            a.add(f"spoke_{i}", pr.cylinder_between((0, 0.07, 0), end, 0.015, 8), frame)
            a.add(f"caster_{i}", pr.ellipsoid(0.022, (end[0], 0.022, end[2]), 2), "rubber")
    else:  # sled: a bent tube on each side
        r = lt / 3
        for sx in (-1, 1):
            x = sx * (w / 2 - r)
            a.add("runner", pr.cylinder_between((x, r, -d / 2), (x, r, d / 2), r, 8), frame)
            a.add(
                "upright_front",
                pr.cylinder_between((x, r, d / 2 - r), (x, under, d / 2 - r), r, 8),
                frame,
            )
            a.add(
                "upright_back",
                pr.cylinder_between((x, r, -d / 2 + r), (x, under, -d / 2 + r), r, 8),
                frame,
            )

    back = a.pick(("solid", "slats", "ladder"), p=(0.45, 0.3, 0.25))
    bh, bt, tilt = a.u(0.30, 0.55), a.u(0.02, 0.05), a.u(0.0, 0.22)
    hinge, z0 = (0, sh, -d / 2), -d / 2 + bt / 2
    back_parts: list[tuple[str, pr.Mesh, str]] = []
    if back == "solid":
        panel = (w * a.u(0.8, 1.0), bh, bt)
        mesh = (
            pr.rounded_box(panel, bt * 0.45, (0, sh + bh / 2 + 0.02, z0))
            if soft
            else pr.box(panel, (0, sh + bh / 2, z0))
        )
        back_parts.append(("back", mesh, seat_mat))
        if base == "star_base" or soft:
            back_parts.append(
                ("back_support", pr.box((0.05, 0.06, bt * 0.8), (0, sh + 0.01, z0)), frame)
            )
    else:
        pw = bt
        for sx in (-1, 1):
            back_parts.append(
                ("back_post", pr.box((pw, bh, bt), (sx * (w / 2 - pw / 2), sh + bh / 2, z0)), wood)
            )
        rail_h = a.u(0.04, 0.09)
        back_parts.append(
            (
                "top_rail",
                pr.box((w - 2 * pw, rail_h, bt * 0.8), (0, sh + bh - rail_h / 2, z0)),
                wood,
            )
        )
        n = int(a.rng.integers(2, 6)) if back == "slats" else int(a.rng.integers(1, 4))
        inner = w - 2 * pw
        for i in range(n):
            if back == "slats":
                x = -inner / 2 + inner * (i + 1) / (n + 1)
                span = bh - rail_h - 0.04
                back_parts.append(
                    (
                        f"slat_{i}",
                        pr.box((inner / (3 * n), span, bt * 0.5), (x, sh + 0.04 + span / 2, z0)),
                        wood,
                    )
                )
            else:
                y = sh + 0.05 + (bh - rail_h - 0.05) * i / n
                back_parts.append(
                    (f"rail_{i}", pr.box((inner, 0.03, bt * 0.6), (0, y + 0.015, z0)), wood)
                )
    for name, mesh, mat in back_parts:
        a.add(name, pivot(mesh, pr.rotation_x(-tilt), hinge), mat)

    arms = a.chance(0.35)
    if arms:
        ah, at = a.u(0.17, 0.25), a.u(0.04, 0.07)
        for sx in (-1, 1):
            x = sx * (w / 2 - at / 2)
            a.add(
                "armrest",
                pr.box((at, 0.03, d * 0.8), (x, sh + ah, -d * 0.1)),
                seat_mat if soft else wood,
            )
            a.add(
                "arm_post", pr.box((at * 0.6, ah, 0.03), (x, sh + ah / 2 - 0.015, d * 0.25)), frame
            )
    return f"{base}/{back}" + ("/arms" if arms else "")


def build_sofa(a: Assembly) -> str:
    """A sofa of 1-4 seats: base, seat cushions, back (with or without back cushions), box,
    rolled or no arms, short legs or a plinth. Returns the variant name.
    """
    n, sw, depth = int(a.rng.integers(1, 5)), a.u(0.5, 0.65), a.u(0.8, 1.0)
    fabric = a.pick(("fabric", "leather", "fabric"))
    wood = a.pick(WOODS)
    arms = a.pick(("box", "rolled", "none"), p=(0.5, 0.35, 0.15))
    aw = a.u(0.1, 0.25) if arms != "none" else 0.0
    seat_w = n * sw
    total = seat_w + 2 * aw
    lh = a.pick((0.0, a.u(0.05, 0.15)), p=(0.3, 0.7))
    bh, ct, bt = a.u(0.15, 0.25), a.u(0.1, 0.18), a.u(0.15, 0.25)
    a.add("base", pr.box((seat_w, bh, depth), (0, lh + bh / 2, 0)), fabric)
    seat_top = lh + bh + ct
    cd = depth - bt - 0.02
    for i in range(n):
        x = -seat_w / 2 + sw * (i + 0.5)
        cushion = pr.rounded_box(
            (sw - 0.01, ct, cd), 0.04, (x, lh + bh + ct / 2, depth / 2 - cd / 2 - 0.01)
        )
        a.add(f"seat_cushion_{i}", cushion, fabric)
    back_h = a.u(0.4, 0.6)
    a.add(
        "back",
        pr.box(
            (seat_w, bh + ct + back_h * 0.7, bt),
            (0, lh + (bh + ct + back_h * 0.7) / 2, -depth / 2 + bt / 2),
        ),
        fabric,
    )
    if a.chance(0.7):
        n_back = n if a.chance(0.7) else 1
        bw = seat_w / n_back
        for i in range(n_back):
            x = -seat_w / 2 + bw * (i + 0.5)
            cushion = pr.rounded_box((bw - 0.01, back_h, 0.14), 0.05, (0, 0, 0))
            cushion = pr.transform(
                cushion,
                pr.rotation_x(-a.u(0.05, 0.2)),
                (x, seat_top + back_h / 2 - 0.02, -depth / 2 + bt + 0.06),
            )
            a.add(f"back_cushion_{i}", cushion, fabric)
    if arms != "none":
        ah = seat_top + a.u(0.1, 0.22) - lh
        for sx in (-1, 1):
            x = sx * (seat_w / 2 + aw / 2)
            if arms == "box":
                a.add(
                    "arm",
                    pr.rounded_box((aw, ah, depth), min(aw / 2, 0.05), (x, lh + ah / 2, 0)),
                    fabric,
                )
            else:
                r = aw * 0.6
                a.add("arm", pr.box((aw, ah - r, depth), (x, lh + (ah - r) / 2, 0)), fabric)
                a.add(
                    "arm_roll", along_z(pr.cylinder(r, depth, 0, 16), (x, lh + ah - r, 0)), fabric
                )
    if lh > 0:
        zs = (-depth / 2 + 0.06, depth / 2 - 0.06)
        xs = (-total / 2 + 0.06, total / 2 - 0.06) + ((0.0,) if n >= 3 else ())
        for x in xs:
            for z in zs:
                a.add("leg", pr.frustum(0.015, 0.025, lh, (x, lh / 2, z), 10), wood)
    return f"{n}_seat/{arms}_arms" + ("/legs" if lh > 0 else "/plinth")


def build_bed(a: Assembly) -> str:
    """A bed along Z: frame on legs or a plinth, mattress, panel/slatted/upholstered
    headboard at -Z, optional footboard and blanket, one or two pillows. Returns the variant.
    """
    w, length, top = a.u(0.9, 1.9), a.u(1.95, 2.2), a.u(0.25, 0.42)
    wood = a.pick(WOODS)
    base = a.pick(("legs", "plinth"), p=(0.6, 0.4))
    if base == "legs":
        ft = a.u(0.12, 0.2)
        a.add("frame", pr.box((w, ft, length), (0, top - ft / 2, 0)), wood)
        zs = (
            (-length / 2 + 0.05, 0.0, length / 2 - 0.05)
            if w > 1.4
            else (-length / 2 + 0.05, length / 2 - 0.05)
        )
        for sx in (-1, 1):
            for z in zs:
                a.add(
                    "leg",
                    pr.box((0.06, top - ft, 0.06), (sx * (w / 2 - 0.05), (top - ft) / 2, z)),
                    wood,
                )
    else:
        a.add("frame", pr.box((w, top, length), (0, top / 2, 0)), wood)
    mt = a.u(0.15, 0.26)
    a.add(
        "mattress",
        pr.rounded_box((w - 0.04, mt, length - 0.08), 0.05, (0, top + mt / 2, 0.02)),
        "linen",
    )
    head = a.pick(("panel", "slats", "upholstered"))
    hh = top + mt + a.u(0.3, 0.8)
    zh = -length / 2 - 0.03
    if head == "panel":
        a.add("headboard", pr.box((w + 0.04, hh, 0.05), (0, hh / 2, zh)), wood)
    elif head == "upholstered":
        a.add(
            "headboard",
            pr.rounded_box((w + 0.04, hh - top, 0.1), 0.04, (0, top + (hh - top) / 2, zh)),
            a.pick(SOFT),
        )
        for sx in (-1, 1):
            a.add("head_leg", pr.box((0.06, top, 0.06), (sx * (w / 2 - 0.02), top / 2, zh)), wood)
    else:
        for sx in (-1, 1):
            a.add("head_post", pr.box((0.07, hh, 0.07), (sx * (w / 2 + 0.01), hh / 2, zh)), wood)
        a.add("head_rail", pr.box((w, 0.08, 0.05), (0, hh - 0.06, zh)), wood)
        n = int(a.rng.integers(3, 9))
        span = hh - 0.1 - top
        for i in range(n):
            x = -w / 2 + w * (i + 1) / (n + 1)
            a.add(f"head_slat_{i}", pr.box((0.04, span, 0.03), (x, top + span / 2, zh)), wood)
    foot = a.chance(0.5)
    if foot:
        fh = top + a.u(0.1, 0.35)
        a.add("footboard", pr.box((w + 0.04, fh, 0.05), (0, fh / 2, length / 2 + 0.03)), wood)
    n_pillows = 1 if w < 1.2 else 2
    for i in range(n_pillows):
        x = 0.0 if n_pillows == 1 else (i - 0.5) * w / 2
        size = (min(0.6, w / n_pillows - 0.08), a.u(0.08, 0.14), a.u(0.3, 0.4))
        a.add(
            f"pillow_{i}",
            pr.rounded_box(size, 0.035, (x, top + mt + size[1] / 2 - 0.01, -length / 2 + 0.25)),
            "linen",
        )
    if a.chance(0.4):
        bl = length * a.u(0.5, 0.7)
        a.add(
            "blanket",
            pr.rounded_box((w, 0.04, bl), 0.015, (0, top + mt, length / 2 - bl / 2 - 0.02)),
            a.pick(SOFT),
        )
    return f"{base}/{head}" + ("/footboard" if foot else "")
