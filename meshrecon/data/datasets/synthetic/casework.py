"""Builders of the board-and-panel categories: table, desk, bookcase, wardrobe."""

from __future__ import annotations

import numpy as np

from . import primitives as pr
from .assembly import WOODS, Assembly, drawers, leg

__all__ = ["build_table", "build_desk", "build_bookcase", "build_wardrobe"]


def build_table(a: Assembly) -> str:
    """A table: round top on a pedestal or 3-4 legs, or rectangular top on four legs (with
    optional apron and lower shelf) or two trestles; sometimes a low coffee table.
    """
    low = a.chance(0.25)
    h, tt = (a.u(0.35, 0.5) if low else a.u(0.62, 0.78)), a.u(0.025, 0.05)
    wood = a.pick(WOODS)
    leg_mat = a.pick((wood, "metal"), p=(0.7, 0.3))
    under = h - tt
    if a.chance(0.4):
        rad = a.u(0.35, 0.6)
        a.add("top", pr.cylinder(rad, tt, (0, h - tt / 2, 0), 32), wood)
        support = a.pick(("pedestal", "three_legs", "four_legs"), p=(0.4, 0.3, 0.3))
        if support == "pedestal":
            cr = a.u(0.035, 0.07)
            a.add("column", pr.cylinder(cr, under, (0, under / 2, 0), 16), leg_mat)
            if a.chance(0.5):
                a.add(
                    "base",
                    pr.frustum(rad * a.u(0.45, 0.7), cr * 1.5, 0.04, (0, 0.02, 0), 24),
                    leg_mat,
                )
            else:
                for i in range(4):
                    ang = np.pi / 4 + i * np.pi / 2
                    foot = (rad * 0.6 * np.cos(ang), 0.025, rad * 0.6 * np.sin(ang))
                    a.add(f"foot_{i}", pr.cylinder_between((0, 0.025, 0), foot, 0.025, 8), leg_mat)
        else:
            n, lr = (3 if support == "three_legs" else 4), a.u(0.02, 0.035)
            for i in range(n):
                ang = 2 * np.pi * i / n + np.pi / n
                r0, r1 = rad * 0.7, rad * a.u(0.7, 0.85)
                top = (r0 * np.cos(ang), under, r0 * np.sin(ang))
                foot = (r1 * np.cos(ang), 0.0, r1 * np.sin(ang))
                a.add(f"leg_{i}", pr.cylinder_between(foot, top, lr, 10), leg_mat)
        return f"round/{support}"
    w, d = a.u(0.8, 1.8), a.u(0.5, 1.0)
    a.add("top", pr.box((w, tt, d), (0, h - tt / 2, 0)), wood)
    support = a.pick(("four_legs", "trestle"), p=(0.75, 0.25))
    lt = a.u(0.035, 0.07)
    if support == "four_legs":
        style = a.pick(("square", "round", "tapered"))
        for i, (sx, sz) in enumerate(((-1, -1), (1, -1), (-1, 1), (1, 1))):
            x, z = sx * (w / 2 - lt), sz * (d / 2 - lt)
            a.add(f"leg_{i}", leg((x, under, z), (x, 0.0, z), lt, style), leg_mat)
        if a.chance(0.5):
            ah = a.u(0.05, 0.1)
            a.add(
                "apron_front", pr.box((w - 2 * lt, ah, 0.02), (0, under - ah / 2, d / 2 - lt)), wood
            )
            a.add(
                "apron_back", pr.box((w - 2 * lt, ah, 0.02), (0, under - ah / 2, -d / 2 + lt)), wood
            )
        if a.chance(0.3):
            a.add(
                "lower_shelf",
                pr.box((w - 2 * lt, 0.02, d - 2 * lt), (0, under * a.u(0.15, 0.3), 0)),
                wood,
            )
    else:
        for sx in (-1, 1):
            x = sx * (w / 2 - 0.1)
            a.add("trestle", pr.box((0.04, under, d * 0.7), (x, under / 2, 0)), leg_mat)
            a.add("trestle_foot", pr.box((0.06, 0.05, d * 0.85), (x, 0.025, 0)), leg_mat)
        a.add("stretcher", pr.box((w - 0.2, 0.05, 0.04), (0, under * 0.35, 0)), leg_mat)
    return f"rect/{support}"


def build_desk(a: Assembly) -> str:
    """A desk: top on one or two drawer pedestals (2-4 drawers facing +Z) and legs or a side
    panel, optional modesty panel and hutch. Returns the variant name.
    """
    w, d, h, tt = a.u(1.0, 1.6), a.u(0.55, 0.75), a.u(0.72, 0.78), a.u(0.025, 0.04)
    wood = a.pick(WOODS)
    under = h - tt
    a.add("top", pr.box((w, tt, d), (0, h - tt / 2, 0)), wood)
    n_ped = int(a.pick((1, 2), p=(0.6, 0.4)))
    sides = (-1, 1) if n_ped == 2 else (a.pick((-1, 1)),)
    pw = a.u(0.35, 0.45)
    for s in sides:
        x = s * (w / 2 - pw / 2)
        a.add("pedestal", pr.box((pw, under, d - 0.04), (x, under / 2, -0.02)), wood)
        drawers(
            a, x - pw / 2, x + pw / 2, 0.04, under, d / 2 - 0.04, int(a.rng.integers(2, 5)), wood
        )
    other = "pedestal"
    if n_ped == 1:
        s = -sides[0]
        other = a.pick(("legs", "panel"))
        if other == "legs":
            for z in (-d / 2 + 0.04, d / 2 - 0.04):
                a.add(
                    "leg",
                    pr.box((0.05, under, 0.05), (s * (w / 2 - 0.04), under / 2, z)),
                    a.pick((wood, "metal")),
                )
        else:
            a.add(
                "side_panel",
                pr.box((0.03, under, d - 0.04), (s * (w / 2 - 0.015), under / 2, -0.02)),
                wood,
            )
    if a.chance(0.6):
        inner = w - n_ped * pw if n_ped == 2 else w - pw - 0.05
        cx = 0.0 if n_ped == 2 else -sides[0] * (pw - 0.05) / 2
        a.add(
            "modesty_panel",
            pr.box((inner, under * 0.45, 0.02), (cx, under * 0.75, -d / 2 + 0.04)),
            wood,
        )
    hutch = a.chance(0.25)
    if hutch:
        hh = a.u(0.25, 0.45)
        for sx in (-1, 1):
            a.add(
                "hutch_side",
                pr.box((0.02, hh, d * 0.35), (sx * (w / 2 - 0.01), h + hh / 2, -d * 0.325)),
                wood,
            )
        a.add("hutch_shelf", pr.box((w, 0.02, d * 0.35), (0, h + hh + 0.01, -d * 0.325)), wood)
    return f"{n_ped}_pedestal/{other}" + ("/hutch" if hutch else "")


def build_bookcase(a: Assembly) -> str:
    """A bookcase open to +Z: sides, top, plinth, 2-6 shelves, optional back and divider,
    books on some shelves. Returns the variant name.
    """
    w, h, d, t = a.u(0.6, 1.2), a.u(0.9, 2.0), a.u(0.25, 0.4), a.u(0.015, 0.03)
    wood = a.pick(WOODS)
    plinth = a.u(0.03, 0.1)
    for sx in (-1, 1):
        a.add("side", pr.box((t, h, d), (sx * (w / 2 - t / 2), h / 2, 0)), wood)
    inner = w - 2 * t
    a.add("top", pr.box((inner, t, d), (0, h - t / 2, 0)), wood)
    a.add("bottom", pr.box((inner, t, d), (0, plinth + t / 2, 0)), wood)
    a.add("kick", pr.box((inner, plinth, t), (0, plinth / 2, d / 2 - t / 2)), wood)
    n = int(a.rng.integers(2, 7))
    levels = np.linspace(plinth + t, h - t, n + 2)
    for i, y in enumerate(levels[1:-1]):
        a.add(f"shelf_{i}", pr.box((inner, t, d - 0.01), (0, y, 0.005)), wood)
    back = a.chance(0.7)
    if back:
        a.add(
            "back",
            pr.box((inner, h - plinth - 2 * t, 0.008), (0, (h + plinth) / 2, -d / 2 + 0.004)),
            wood,
        )
    divider = w > 0.8 and a.chance(0.3)
    bays = [(-inner / 2, inner / 2)]
    if divider:
        a.add(
            "divider", pr.box((t, h - plinth - 2 * t, d - 0.01), (0, (h + plinth) / 2, 0.005)), wood
        )
        bays = [(-inner / 2, -t / 2), (t / 2, inner / 2)]
    books = 0
    for y0, y1 in zip(levels[:-1], levels[1:]):
        gap = y1 - y0 - t
        for x0, x1 in bays:
            if books >= 40 or not a.chance(0.55):
                continue
            x = x0 + a.u(0.0, 0.1)
            for _ in range(int(a.rng.integers(3, 10))):
                bw, bh = a.u(0.02, 0.05), min(gap * a.u(0.6, 0.9), 0.32)
                if x + bw > x1 or books >= 40:
                    break
                bd = d * a.u(0.6, 0.85)
                mesh = pr.box(
                    (bw, bh, bd), (x + bw / 2, y0 + t / 2 + bh / 2, d / 2 - bd / 2 - 0.02)
                )
                a.add(f"book_{books}", mesh, a.pick(("paper", "leather", "fabric", "plastic")))
                x, books = x + bw + 0.002, books + 1
    return f"{n}_shelves" + ("/back" if back else "/open") + ("/divider" if divider else "")


def build_wardrobe(a: Assembly) -> str:
    """A wardrobe: closed body on legs or a plinth, 1-3 doors on +Z with handles or knobs,
    0-2 rows of drawers below, optional crown. Returns the variant name.
    """
    w, h, d = a.u(0.8, 1.8), a.u(1.7, 2.2), a.u(0.5, 0.65)
    wood = a.pick(WOODS)
    legs = a.chance(0.5)
    fh = a.u(0.08, 0.15) if legs else a.u(0.04, 0.08)
    if legs:
        for sx in (-1, 1):
            for sz in (-1, 1):
                a.add(
                    "foot",
                    pr.frustum(
                        0.02, 0.03, fh, (sx * (w / 2 - 0.06), fh / 2, sz * (d / 2 - 0.06)), 10
                    ),
                    wood,
                )
    else:
        a.add("plinth", pr.box((w - 0.04, fh, d - 0.04), (0, fh / 2, -0.01)), wood)
    a.add("body", pr.box((w, h - fh, d), (0, (h + fh) / 2, 0)), wood)
    if a.chance(0.5):
        a.add("crown", pr.box((w + 0.04, 0.05, d + 0.03), (0, h + 0.025, 0.0)), wood)
    door_mat = a.pick((wood, wood, "light_wood", "dark_wood"))
    zf = d / 2
    y_doors = fh
    rows = int(a.pick((0, 1, 2), p=(0.6, 0.25, 0.15)))
    if rows:
        dh = a.u(0.18, 0.25)
        drawers(a, -w / 2, w / 2, fh, fh + rows * dh, zf, rows, door_mat)
        y_doors = fh + rows * dh
    n = 1 if w < 0.9 else int(a.rng.integers(2, 4))
    step, gap = w / n, 0.006
    bar = a.chance(0.6)
    for i in range(n):
        x0 = -w / 2 + i * step
        yc = (y_doors + h) / 2
        a.add(
            f"door_{i}",
            pr.box((step - 2 * gap, h - y_doors - 2 * gap, 0.02), (x0 + step / 2, yc, zf + 0.01)),
            door_mat,
        )
        hx = x0 + (step - 0.06 if i % 2 == 0 else 0.06)
        if bar:
            a.add(
                f"handle_{i}", pr.cylinder(0.008, a.u(0.15, 0.35), (hx, yc, zf + 0.035), 8), "metal"
            )
        else:
            a.add(f"knob_{i}", pr.ellipsoid((0.016, 0.016, 0.014), (hx, yc, zf + 0.03), 2), "metal")
    return f"{n}_doors/{rows}_drawer_rows" + ("/legs" if legs else "/plinth")
