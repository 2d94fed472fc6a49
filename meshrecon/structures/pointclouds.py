"""Pointclouds: a batch of point clouds with list, padded and packed views (PyTorch3D subset).

Mirrors ``pytorch3d.structures.Pointclouds``: points with optional per-point normals and
features, each available as a list, a zero-padded tensor or a packed tensor, computed lazily with
vectorized ops and cached.
"""

from collections.abc import Sequence

import torch

from ._inputs import as_rows
from .utils import _BatchStructure

__all__ = ["Pointclouds", "join_pointclouds_as_batch", "join_pointclouds_as_scene"]

_FIELDS = ("points", "normals", "features")
_INDEX_CACHE = ("_packed_to_cloud_idx", "_cloud_to_packed_first_idx", "_padded_to_packed_idx")


class Pointclouds(_BatchStructure):
    """A batch of N point clouds, possibly of different sizes and possibly empty.

    Views, as in PyTorch3D: ``points_list()[i]`` is (P_i, 3); ``points_padded()`` is
    (N, max(P_i), 3), zero-padded; ``points_packed()`` is (sum(P_i), 3). Normals (3 channels) and
    features (C channels) have the same three views when given, and are None otherwise.

    Args:
        points: list of N float tensors (P_i, 3), or a float tensor (N, P, 3) (every cloud then
            has P points). An empty cloud may be given as ``torch.tensor([])``.
        normals: optional, list of (P_i, 3) or tensor (N, P, 3). In a list, the entry of an
            empty cloud may be None.
        features: optional, list of (P_i, C) or tensor (N, P, C), the same C for every cloud;
            in a list, the entry of an empty cloud may be None.

    As in PyTorch3D, ``normals_*()`` and ``features_*()`` return None when none were given, when
    the batch has no clouds, or when every list entry was None. Unlike PyTorch3D, given normals
    and features of a batch whose clouds are all empty keep their (0, C) packed and (N, 0, C)
    padded views (PyTorch3D returns the list but None for those two views).

    Attributes:
        device: the device of all tensors.
        equisized: True when every cloud has the same number of points.
        valid: bool tensor (N,), True for non-empty clouds.
    """

    def __init__(
        self,
        points: Sequence[torch.Tensor] | torch.Tensor,
        normals: Sequence[torch.Tensor] | torch.Tensor | None = None,
        features: Sequence[torch.Tensor] | torch.Tensor | None = None,
    ) -> None:
        for field in _FIELDS:
            for form in ("list", "padded", "packed"):
                setattr(self, f"_{field}_{form}", None)
        for name in _INDEX_CACHE:
            setattr(self, name, None)

        if isinstance(points, (list, tuple)):
            self._N = len(points)
            # The batch's float type, for empty clouds given as torch.tensor([]) (float32).
            dtype = next(
                (p.dtype for p in points if torch.is_tensor(p) and p.numel()),
                None,
            )
            points = [as_rows(p, 3, f"points[{i}]", dtype) for i, p in enumerate(points)]
            self.device = points[0].device if self._N > 0 else torch.device("cpu")
            for i, p in enumerate(points):
                if not p.is_floating_point():
                    raise ValueError(f"points[{i}] must be a floating point tensor")
                if p.device != self.device:
                    raise ValueError("all points tensors must be on the same device")
            self._points_list = points
            self._num_points_list = [int(p.shape[0]) for p in points]
            self._P = max(self._num_points_list, default=0)
        elif torch.is_tensor(points):
            if points.ndim != 3 or points.shape[2] != 3 or not points.is_floating_point():
                raise ValueError("points must be a float tensor of shape (N, P, 3)")
            self._N, self._P = int(points.shape[0]), int(points.shape[1])
            self.device = points.device
            self._points_padded = points
            self._num_points_list = [self._P] * self._N
        else:
            raise ValueError("points must be a list of (P_i, 3) tensors or a tensor (N, P, 3)")
        self._num_points_per_cloud = torch.tensor(
            self._num_points_list, dtype=torch.int64, device=self.device
        )
        self.valid = self._num_points_per_cloud > 0
        self.equisized = len(set(self._num_points_list)) <= 1
        self._C = None
        self._set_aux("normals", normals)
        self._set_aux("features", features)

    def _set_aux(self, field: str, value: Sequence[torch.Tensor] | torch.Tensor | None) -> None:
        """Validate and store the optional per-point ``normals`` or ``features``.

        As in PyTorch3D, a batch of no clouds has no normals or features whatever was given,
        and a list entry of an empty cloud may be None (or ``torch.tensor([])``); it becomes a
        (0, C) tensor. If every entry is of that kind, the field is None.
        """
        if value is None or self._N == 0:
            return
        if torch.is_tensor(value):
            if value.ndim != 3 or value.shape[:2] != (self._N, self._P):
                raise ValueError(
                    f"{field} must have shape ({self._N}, {self._P}, C), got {tuple(value.shape)}"
                )
            if value.device != self.device:
                raise ValueError(f"{field} must be on {self.device}")
            channels = int(value.shape[2])
            setattr(self, f"_{field}_padded", value)
        elif isinstance(value, (list, tuple)):
            if len(value) != self._N:
                raise ValueError(f"{field} must have {self._N} entries, got {len(value)}")
            entries: list[torch.Tensor | None] = []
            for i, (v, size) in enumerate(zip(value, self._num_points_list)):
                usable = torch.is_tensor(v) and v.ndim == 2
                if size == 0 and not usable:
                    if v is not None and not (torch.is_tensor(v) and v.numel() == 0):
                        raise ValueError(f"{field}[{i}] of an empty cloud must be None or empty")
                    entries.append(None)
                    continue
                if not usable or v.shape[0] != size:
                    shape = tuple(v.shape) if torch.is_tensor(v) else type(v).__name__
                    raise ValueError(
                        f"{field}[{i}] must have as many rows as points[{i}], ({size}, C), "
                        f"got {shape}"
                    )
                if v.device != self.device:
                    raise ValueError(f"{field}[{i}] must be on {self.device}")
                entries.append(v)
            given = [v for v in entries if v is not None]
            if not given:
                return
            if len({int(v.shape[1]) for v in given}) > 1:
                raise ValueError(f"{field} must all have the same number of channels")
            channels = int(given[0].shape[1])
            empty = given[0].new_zeros((0, channels))
            setattr(self, f"_{field}_list", [empty if v is None else v for v in entries])
        else:
            raise ValueError(f"{field} must be None, a list of tensors or a padded tensor")
        if field == "normals" and channels != 3:
            raise ValueError(f"normals must have 3 channels, got {channels}")
        if field == "features":
            self._C = channels

    # ------------------------------------------------------------------ basics
    def _select(self, indices: list[int]) -> "Pointclouds":
        kwargs = {}
        for field in _FIELDS:
            values = self._field_list(field)
            kwargs[field] = None if values is None else [values[i] for i in indices]
        return self.__class__(**kwargs)

    def isempty(self) -> bool:
        """True when there are no clouds or every cloud is empty."""
        return self._N == 0 or not bool(self.valid.any())

    def get_cloud(
        self, index: int
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Return (points (P_i, 3), normals (P_i, 3) or None, features (P_i, C) or None)."""
        if not isinstance(index, int):
            raise ValueError(f"index must be an int, got {type(index).__name__}")
        if not -self._N <= index < self._N:
            raise ValueError(f"index must be in [-{self._N}, {self._N}), got {index}")
        out = [self._field_list(f) for f in _FIELDS]
        return tuple(None if v is None else v[index] for v in out)

    # ------------------------------------------------------------------ views
    def _has(self, field: str) -> bool:
        return any(getattr(self, f"_{field}_{form}") is not None for form in ("list", "padded"))

    def _field_list(self, field: str) -> list[torch.Tensor] | None:
        cached = getattr(self, f"_{field}_list")
        if cached is None and self._has(field):
            cached = list(self._field_packed(field).split(self._num_points_list, 0))
            setattr(self, f"_{field}_list", cached)
        return cached

    def _field_packed(self, field: str) -> torch.Tensor | None:
        cached = getattr(self, f"_{field}_packed")
        if cached is None and self._has(field):
            values = getattr(self, f"_{field}_list")
            if values is not None:
                channels = 3 if field != "features" else self._C
                cached = (
                    torch.cat(values, 0)
                    if self._N > 0
                    else torch.zeros((0, channels), device=self.device)
                )
            else:
                padded = getattr(self, f"_{field}_padded")
                cached = padded.reshape(-1, padded.shape[2])[self.padded_to_packed_idx()]
            setattr(self, f"_{field}_packed", cached)
        return cached

    def _field_padded(self, field: str) -> torch.Tensor | None:
        cached = getattr(self, f"_{field}_padded")
        if cached is None and self._has(field):
            packed = self._field_packed(field)
            flat = packed.new_zeros((self._N * self._P, packed.shape[1]))
            flat = flat.index_copy(0, self.padded_to_packed_idx(), packed)
            cached = flat.view(self._N, self._P, packed.shape[1])
            setattr(self, f"_{field}_padded", cached)
        return cached

    def points_list(self) -> list[torch.Tensor]:
        """List of N tensors (P_i, 3)."""
        return self._field_list("points")

    def points_packed(self) -> torch.Tensor:
        """Tensor (sum(P_i), 3) of all points, cloud after cloud."""
        return self._field_packed("points")

    def points_padded(self) -> torch.Tensor:
        """Tensor (N, max(P_i), 3), zero-padded."""
        return self._field_padded("points")

    def normals_list(self) -> list[torch.Tensor] | None:
        """List of N tensors (P_i, 3), or None without normals."""
        return self._field_list("normals")

    def normals_packed(self) -> torch.Tensor | None:
        """Tensor (sum(P_i), 3), or None without normals."""
        return self._field_packed("normals")

    def normals_padded(self) -> torch.Tensor | None:
        """Tensor (N, max(P_i), 3), zero-padded, or None without normals."""
        return self._field_padded("normals")

    def features_list(self) -> list[torch.Tensor] | None:
        """List of N tensors (P_i, C), or None without features."""
        return self._field_list("features")

    def features_packed(self) -> torch.Tensor | None:
        """Tensor (sum(P_i), C), or None without features."""
        return self._field_packed("features")

    def features_padded(self) -> torch.Tensor | None:
        """Tensor (N, max(P_i), C), zero-padded, or None without features."""
        return self._field_padded("features")

    # ------------------------------------------------------------------ index maps
    def num_points_per_cloud(self) -> torch.Tensor:
        """Int64 tensor (N,) with P_i."""
        return self._num_points_per_cloud

    def cloud_to_packed_first_idx(self) -> torch.Tensor:
        """Int64 tensor (N,): index in the packed views of the first point of each cloud."""
        if self._cloud_to_packed_first_idx is None:
            counts = self._num_points_per_cloud
            self._cloud_to_packed_first_idx = torch.cumsum(counts, 0) - counts
        return self._cloud_to_packed_first_idx

    def packed_to_cloud_idx(self) -> torch.Tensor:
        """Int64 tensor (sum(P_i),): the cloud of each packed point."""
        if self._packed_to_cloud_idx is None:
            ids = torch.arange(self._N, device=self.device)
            self._packed_to_cloud_idx = torch.repeat_interleave(ids, self._num_points_per_cloud)
        return self._packed_to_cloud_idx

    def padded_to_packed_idx(self) -> torch.Tensor:
        """Int64 tensor (sum(P_i),): each packed point's row in ``points_padded().view(-1, 3)``."""
        if self._padded_to_packed_idx is None:
            owner = self.packed_to_cloud_idx()
            local = torch.arange(owner.shape[0], device=self.device)
            local = local - self.cloud_to_packed_first_idx()[owner]
            self._padded_to_packed_idx = owner * self._P + local
        return self._padded_to_packed_idx

    def get_bounding_boxes(self) -> torch.Tensor:
        """Tensor (N, 3, 2) of per-cloud boxes: ``[:, :, 0]`` min, ``[:, :, 1]`` max; 0 if empty."""
        points = self.points_packed()
        idx = self.packed_to_cloud_idx().unsqueeze(1).expand(-1, 3)
        base = points.new_zeros((self._N, 3))
        lo = base.scatter_reduce(0, idx, points, "amin", include_self=False)
        hi = base.scatter_reduce(0, idx, points, "amax", include_self=False)
        return torch.stack([lo, hi], 2)

    def inside_box(self, box: torch.Tensor) -> torch.Tensor:
        """Which packed points lie inside an axis-aligned box (boundary included).

        Args:
            box: tensor (2, 3) for every cloud, or (N, 2, 3) (or (1, 2, 3)) per cloud;
                ``box[..., 0, :]`` holds the minimum and ``box[..., 1, :]`` the maximum x, y, z.

        Returns:
            bool tensor (sum(P_i),) parallel to ``points_packed()``.

        Raises:
            ValueError: if ``box`` has another shape, or a minimum exceeds its maximum.
        """
        if not torch.is_tensor(box) or box.ndim not in (2, 3) or tuple(box.shape[-2:]) != (2, 3):
            shape = tuple(box.shape) if torch.is_tensor(box) else type(box).__name__
            raise ValueError(f"box must have shape (2, 3) or (N, 2, 3), got {shape}")
        if box.ndim == 3 and box.shape[0] not in (1, self._N):
            raise ValueError(
                f"box must have shape (2, 3), (1, 2, 3) or ({self._N}, 2, 3), "
                f"got {tuple(box.shape)}"
            )
        if bool((box[..., 0, :] > box[..., 1, :]).any()):
            raise ValueError("box is invalid: a minimum is larger than its maximum")
        points = self.points_packed()
        box = box.to(points.device).view(-1, 2, 3)
        if box.shape[0] > 1:
            box = box[self.packed_to_cloud_idx()]
        return ((points >= box[:, 0]) & (points <= box[:, 1])).all(dim=-1)

    def estimate_normals(
        self,
        neighborhood_size: int = 50,
        disambiguate_directions: bool = True,
        assign_to_self: bool = False,
    ) -> torch.Tensor:
        """Estimate a normal at every point from its neighbourhood's covariance.

        See :func:`meshrecon.ops.estimate_pointcloud_normals` for the method.

        Args:
            neighborhood_size: neighbours per point; every cloud must have more points.
            disambiguate_directions: give neighbouring normals consistent signs.
            assign_to_self: store the estimates as this batch's normals (replacing any).

        Returns:
            (N, max(P_i), 3) padded unit normals.
        """
        from meshrecon.ops.points_normals import estimate_pointcloud_normals

        normals = estimate_pointcloud_normals(
            self,
            neighborhood_size=neighborhood_size,
            disambiguate_directions=disambiguate_directions,
        )
        if assign_to_self:
            self._normals_padded = normals
            self._normals_list = None
            self._normals_packed = None
        return normals

    def subsample(self, max_points: int | Sequence[int]) -> "Pointclouds":
        """Keep at most ``max_points`` randomly chosen points of each cloud.

        Each cloud with more points keeps a uniformly random subset of that size, without
        replacement and in random order, with its normals and features; smaller clouds are
        kept whole. The draws come from torch's generator (``torch.manual_seed`` repeats them),
        where PyTorch3D draws from NumPy's.

        Args:
            max_points: one bound for every cloud, or a sequence of N bounds (non-negative).

        Returns:
            a new Pointclouds, or ``self`` when no cloud exceeds its bound (as in PyTorch3D).

        Raises:
            ValueError: if there is not one bound per cloud or a bound is negative.
        """
        if isinstance(max_points, int) and not isinstance(max_points, bool):
            bounds = [max_points] * self._N
        else:
            bounds = [int(m) for m in max_points]
            if len(bounds) != self._N:
                raise ValueError(f"max_points must have {self._N} entries, got {len(bounds)}")
        if any(m < 0 for m in bounds):
            raise ValueError(f"max_points must be non-negative, got {max_points!r}")
        if all(n <= m for n, m in zip(self._num_points_list, bounds)):
            return self
        keep = []
        for n, m in zip(self._num_points_list, bounds):
            if n > m:
                keep.append(torch.randperm(n, device=self.device)[:m])
            else:
                keep.append(None)
        kwargs = {}
        for field in _FIELDS:
            values = self._field_list(field)
            kwargs[field] = (
                None if values is None else [v if k is None else v[k] for v, k in zip(values, keep)]
            )
        return self.__class__(**kwargs)

    # ------------------------------------------------------------------ point updates
    def _replace_points_packed(self, new_packed: torch.Tensor) -> None:
        self._points_packed = new_packed
        self._points_list = list(new_packed.split(self._num_points_list, 0))
        self._points_padded = None

    def offset_(self, offsets_packed: torch.Tensor) -> "Pointclouds":
        """Add offsets to the points in place.

        Args:
            offsets_packed: tensor (sum(P_i), 3) of per-point offsets, or (3,) for all points.

        Returns:
            self.
        """
        points = self.points_packed()
        if not torch.is_tensor(offsets_packed) or offsets_packed.shape not in (
            points.shape,
            (3,),
        ):
            shape = tuple(getattr(offsets_packed, "shape", ()))
            raise ValueError(
                f"offsets_packed must be a tensor of shape {tuple(points.shape)} or (3,), "
                f"got {shape}"
            )
        self._replace_points_packed(points + offsets_packed)
        return self

    def offset(self, offsets_packed: torch.Tensor) -> "Pointclouds":
        """Out-of-place ``offset_``."""
        return self.clone().offset_(offsets_packed)

    def scale_(self, scale: float | torch.Tensor) -> "Pointclouds":
        """Multiply the points in place by a scalar or a per-cloud factor.

        Args:
            scale: a Python number, a 0-d tensor, or a tensor (N,).

        Returns:
            self.
        """
        points = self.points_packed()
        if not torch.is_tensor(scale):
            factor = float(scale)
        elif scale.ndim == 0:
            factor = scale
        elif scale.shape == (self._N,):
            factor = scale.to(points.device)[self.packed_to_cloud_idx()].unsqueeze(1)
        else:
            raise ValueError(
                f"scale must be a number or a tensor of shape ({self._N},), "
                f"got {tuple(scale.shape)}"
            )
        self._replace_points_packed(points * factor)
        return self

    def scale(self, scale: float | torch.Tensor) -> "Pointclouds":
        """Out-of-place ``scale_``."""
        return self.clone().scale_(scale)

    def update_padded(
        self,
        new_points_padded: torch.Tensor,
        new_normals_padded: torch.Tensor | None = None,
        new_features_padded: torch.Tensor | None = None,
    ) -> "Pointclouds":
        """Return a new Pointclouds with the same sizes and new padded values.

        Args:
            new_points_padded: tensor (N, max(P_i), 3).
            new_normals_padded: optional tensor (N, max(P_i), 3); if None, normals are kept.
            new_features_padded: optional tensor (N, max(P_i), C); if None, features are kept.

        Returns:
            the new Pointclouds (values in padded rows are ignored).
        """
        expected = {
            "points": (self._N, self._P, 3),
            "normals": (self._N, self._P, 3),
            "features": (self._N, self._P, self._C),
        }
        new_values = dict(
            zip(_FIELDS, (new_points_padded, new_normals_padded, new_features_padded))
        )
        new = self.__class__.__new__(self.__class__)
        new.__dict__.update(self.__dict__)
        for field, value in new_values.items():
            if value is None and field != "points":
                continue
            if not torch.is_tensor(value) or tuple(value.shape) != expected[field]:
                shape = tuple(getattr(value, "shape", ()))
                raise ValueError(
                    f"new_{field}_padded must have shape {expected[field]}, got {shape}"
                )
            setattr(new, f"_{field}_padded", value)
            setattr(new, f"_{field}_list", None)
            setattr(new, f"_{field}_packed", None)
        return new

    # ------------------------------------------------------------------ batch operations
    def extend(self, N: int) -> "Pointclouds":
        """Batch of len(self) * N clouds: each cloud repeated N times in a row (cloned)."""
        if not isinstance(N, int) or N <= 0:
            raise ValueError(f"N must be a positive int, got {N!r}")
        kwargs = {}
        for field in _FIELDS:
            values = self._field_list(field)
            kwargs[field] = (
                None if values is None else [v.clone() for v in values for _ in range(N)]
            )
        return self.__class__(**kwargs)


def join_pointclouds_as_batch(pointclouds: Sequence[Pointclouds]) -> Pointclouds:
    """Concatenate a list of Pointclouds into one batch.

    Args:
        pointclouds: list of Pointclouds on one device; either all or none have normals, and
            likewise features (with the same C).

    Returns:
        Pointclouds whose lists are the inputs' lists, in order.
    """
    if isinstance(pointclouds, Pointclouds) or not isinstance(pointclouds, (list, tuple)):
        raise ValueError("pointclouds must be a list of Pointclouds (not a single Pointclouds)")
    if not pointclouds or not all(isinstance(p, Pointclouds) for p in pointclouds):
        raise ValueError("pointclouds must be a non-empty list of Pointclouds")
    if len({p.device for p in pointclouds}) > 1:
        raise ValueError("all pointclouds must be on the same device")
    kwargs = {}
    for field in _FIELDS:
        lists = [p._field_list(field) for p in pointclouds]
        if all(v is None for v in lists):
            kwargs[field] = None
        elif any(v is None for v in lists):
            raise ValueError(f"some pointclouds have {field} and some do not")
        else:
            kwargs[field] = [t for v in lists for t in v]
    return Pointclouds(**kwargs)


def join_pointclouds_as_scene(
    pointclouds: Pointclouds | Sequence[Pointclouds],
) -> Pointclouds:
    """Merge all clouds (of one batch, or of a list of batches) into a single cloud.

    Returns:
        Pointclouds of length 1 holding the packed points (and normals/features if present).
    """
    if isinstance(pointclouds, (list, tuple)):
        pointclouds = join_pointclouds_as_batch(pointclouds)
    if not isinstance(pointclouds, Pointclouds):
        raise ValueError("pointclouds must be a Pointclouds or a list of Pointclouds")
    if len(pointclouds) == 1:
        return pointclouds
    kwargs = {}
    for field in _FIELDS:
        packed = pointclouds._field_packed(field)
        kwargs[field] = None if packed is None else [packed]
    return Pointclouds(**kwargs)
