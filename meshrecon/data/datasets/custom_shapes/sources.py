"""The meshes of a user's folder: which files, which category, which model id, which split.

Two layouts (``docs/DATA_FORMATS.md``, "Your own shapes"):

* nested: ``MESH_FOLDER/<category>/**/<mesh>`` (the first folder level is the category; a
  model may sit deeper, as in ShapeNet's ``<synset>/<id>/models/model_normalized.obj``);
* flat with a CSV of ``file,category`` rows (``file`` relative to ``MESH_FOLDER``).

Every path, from the folder walk or from the CSV, is joined with the project's path policy
(:class:`meshrecon.utils.path_policy.DatasetRoot`): a CSV row naming ``../x``, an absolute path
or a symlink leading out of ``MESH_FOLDER`` is refused and reported, never read.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
import re
import zlib
from collections import Counter, defaultdict

import numpy as np

from meshrecon.io import SUPPORTED_MESH_EXTENSIONS
from meshrecon.utils.path_policy import DatasetRoot, UnsafePathError

__all__ = ["MeshSource", "Problem", "assign_splits", "find_sources", "slug"]

SPLIT_NAMES = ("train", "val", "test")
_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclasses.dataclass(frozen=True)
class MeshSource:
    """One mesh file of the input folder.

    Attributes:
        path: absolute path (checked by the path policy).
        rel: path relative to the input folder, ``/``-separated (how reports name the file).
        category: the category as the user wrote it (folder name or CSV value).
        category_dir: its folder name in the dataset (:func:`slug` of ``category``).
        model_id: unique within the category (see :func:`find_sources`).
    """

    path: str
    rel: str
    category: str
    category_dir: str
    model_id: str

    @property
    def key(self) -> str:
        """``<category_dir>/<model_id>``: the model's folder in the dataset."""
        return f"{self.category_dir}/{self.model_id}"


@dataclasses.dataclass(frozen=True)
class Problem:
    """An input file that is not used: ``rel`` and why (``kind``: a short word, ``reason``)."""

    rel: str
    kind: str
    reason: str


def slug(text: str) -> str:
    """A safe folder name: runs of characters other than ``A-Z a-z 0-9 _ . -`` become ``_``."""
    out = _SLUG.sub("_", text.strip()).strip("._") or "_"
    return out


def _is_mesh(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in SUPPORTED_MESH_EXTENSIONS


def _walk(folder: str, exclude: str | None = None) -> tuple[list[str], Counter]:
    """Relative paths of the mesh files below ``folder`` (sorted) and the other extensions.

    Hidden entries and the folder ``exclude`` (the datasets' own output, when it lies inside
    ``folder``) are not visited.
    """
    meshes, ignored = [], Counter()
    skip = os.path.realpath(exclude) if exclude else None
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".") and os.path.realpath(os.path.join(dirpath, d)) != skip
        )
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), folder).replace(os.sep, "/")
            if _is_mesh(name):
                meshes.append(rel)
            else:
                ignored[os.path.splitext(name)[1].lower() or "(none)"] += 1
    return meshes, ignored


def _read_csv(path: str) -> list[tuple[str, str]]:
    """``(file, category)`` rows of a CSV; a first row ``file,category`` is a header."""
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            if not row or all(not c.strip() for c in row) or row[0].lstrip().startswith("#"):
                continue
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise ValueError(
                    f"{path}:{lineno}: expected two non-empty columns 'file,category', got {row!r}"
                )
            file, category = row[0].strip(), row[1].strip()
            if lineno == 1 and (file.lower(), category.lower()) == ("file", "category"):
                continue
            rows.append((file, category))
    if not rows:
        raise ValueError(f"{path}: no 'file,category' rows")
    seen: dict[str, int] = {}
    for i, (file, _) in enumerate(rows):
        norm = file.replace("\\", "/")
        if norm in seen:
            rows_ = f"rows {seen[norm] + 1} and {i + 1}"
            raise ValueError(f"{path}: file {file!r} is listed twice ({rows_} of the data)")
        seen[norm] = i
    return rows


def _model_ids(rels: list[str]) -> list[str]:
    """Model ids of the files of one category (``rels`` relative to the category).

    The id is :func:`slug` of the path without its extension (``sub/a.obj`` -> ``sub_a``); files
    whose ids collide keep their extension (``a.obj``, ``a.ply`` -> ``a.obj``, ``a.ply``), and
    any id still shared gets 8 hex digits of the hash of its path.
    """
    ids = [slug(os.path.splitext(r)[0].replace("/", "_")) for r in rels]
    counts = Counter(ids)
    ids = [slug(r.replace("/", "_")) if counts[i] > 1 else i for i, r in zip(ids, rels)]
    counts = Counter(ids)
    return [
        f"{i}-{hashlib.sha256(r.encode()).hexdigest()[:8]}" if counts[i] > 1 else i
        for i, r in zip(ids, rels)
    ]


def find_sources(
    folder: str,
    csv_path: str | None = None,
    default_category: str | None = None,
    exclude: str | None = None,
) -> tuple[list[MeshSource], list[Problem], Counter]:
    """The meshes of ``folder`` with their categories and model ids.

    Args:
        folder: the input folder.
        csv_path: a CSV of ``file,category`` rows; only the files it lists are used.
        default_category: category of mesh files directly in ``folder`` (nested layout only).
        exclude: a folder the walk does not enter (where datasets are written, so that a
            dataset inside ``folder`` is not read back as input).

    Returns:
        ``(sources, problems, ignored)``: sources sorted by (category, model id); problems:
        CSV rows or files that cannot be used (missing file, unsafe path, not a mesh, no
        category), each with its reason; ignored: count of other files per extension (``.mtl``,
        ``.png``...; nested layout).

    Raises:
        NotADirectoryError: ``folder`` is not a folder.
        ValueError: a malformed CSV; two categories with the same folder name.
    """
    if not os.path.isdir(folder):
        raise NotADirectoryError(f"mesh folder not found: {folder}")
    root = DatasetRoot(folder, "mesh folder")
    problems: list[Problem] = []
    entries: list[tuple[str, str]] = []  # (rel, category)
    ignored: Counter = Counter()
    if csv_path is not None:
        if not os.path.isfile(csv_path):
            raise FileNotFoundError(f"--csv file not found: {csv_path}")
        for rel, category in _read_csv(csv_path):
            if not _is_mesh(rel):
                ext = os.path.splitext(rel)[1] or "(none)"
                problems.append(Problem(rel, "unsupported", f"{ext} is not a mesh format"))
                continue
            entries.append((rel.replace("\\", "/"), category))
    else:
        meshes, ignored = _walk(folder, exclude)
        for rel in meshes:
            if "/" in rel:
                entries.append((rel, rel.split("/", 1)[0]))
            elif default_category:
                entries.append((rel, default_category))
            else:
                problems.append(
                    Problem(
                        rel,
                        "no category",
                        "a mesh directly in the folder has no category: put it in a category "
                        "folder, list it in a --csv, or pass --default-category",
                    )
                )
    dirs: dict[str, str] = {}
    for _, category in entries:
        d = slug(category)
        if dirs.setdefault(d, category) != category:
            raise ValueError(
                f"categories {dirs[d]!r} and {category!r} both map to the folder name {d!r}; "
                "rename one"
            )
    by_category: dict[str, list[tuple[str, str]]] = defaultdict(list)  # category -> (rel, path)
    for rel, category in entries:
        try:
            path = root.join(rel, csv_path or "mesh folder")
        except UnsafePathError as err:
            problems.append(Problem(rel, "unsafe path", str(err)))
            continue
        if not os.path.isfile(path):
            problems.append(Problem(rel, "missing", f"file not found: {path}"))
            continue
        by_category[category].append((rel, path))
    sources = []
    for category in sorted(by_category, key=slug):
        files = by_category[category]
        # Ids from the path below the category folder when the file sits in it.
        prefix = category + "/"
        inner = [
            r[len(prefix) :] if csv_path is None and r.startswith(prefix) else r for r, _ in files
        ]
        for (rel, path), model_id in zip(files, _model_ids(inner)):
            sources.append(MeshSource(path, rel, category, slug(category), model_id))
    sources.sort(key=lambda s: (s.category_dir, s.model_id))
    return sources, problems, ignored


def assign_splits(
    keys: list[tuple[str, str]], fractions: tuple[float, float, float], seed: int
) -> dict[tuple[str, str], str]:
    """Split models into train / val / test, stratified by category and seeded.

    Each category's models are shuffled (seeded by ``seed`` and the category), and the i-th of
    n gets the key ``(i + 0.5) / n`` (its quantile); all models are sorted by that key (ties in
    a seeded order of the categories), the first ``round(N * test)`` go to test, the next
    ``round(N * val)`` to val and the rest to train. So every split takes its share from every
    category, and a category with a single model puts it in train unless test and val are
    large. Train keeps at least one model.

    Args:
        keys: ``(category_dir, model_id)`` of every model (any order; duplicates not allowed).
        fractions: ``(train, val, test)``, non-negative, summing to 1.
        seed: the seed.

    Returns:
        ``{(category_dir, model_id): "train" | "val" | "test"}``.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(
            f"split fractions must be 3 non-negative numbers summing to 1, got {fractions}"
        )
    by_category: dict[str, list[str]] = defaultdict(list)
    for category, model_id in sorted(set(keys)):
        by_category[category].append(model_id)
    order = {}
    tie = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED])).permutation(
        len(by_category)
    )
    for rank, category in zip(tie, sorted(by_category)):
        ids = by_category[category]
        rng = np.random.default_rng(
            np.random.SeedSequence([int(seed), zlib.crc32(category.encode("utf-8"))])
        )
        for i, j in enumerate(rng.permutation(len(ids))):
            order[(category, ids[j])] = ((i + 0.5) / len(ids), int(rank), ids[j])
    ranked = sorted(order, key=order.get)
    n = len(ranked)
    n_test = int(np.floor(n * fractions[2] + 0.5))
    n_val = int(np.floor(n * fractions[1] + 0.5))
    # Train keeps at least one model: val gives way first, then test.
    excess = max(0, n_test + n_val - (n - 1)) if n else 0
    cut = min(excess, n_val)
    n_val, n_test = n_val - cut, n_test - (excess - cut)
    splits = {}
    for i, key in enumerate(ranked):
        splits[key] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return splits
