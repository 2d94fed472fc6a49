"""``Instances``: per-object fields of one image, carried by name through the pipeline."""

from __future__ import annotations

import itertools
from typing import Any

import torch

__all__ = ["Instances"]


class Instances:
    """The objects of one image: ``image_size`` plus fields of equal length N.

    Fields are set as attributes (``inst.gt_boxes = Boxes(...)``) or with ``set``; each must
    support ``len`` and indexing (tensors, ``Boxes``, ``Meshes``, lists, ...). Indexing an
    ``Instances`` indexes every field.

    Args:
        image_size: ``(height, width)`` of the image.
        **fields: initial fields.
    """

    def __init__(self, image_size: tuple[int, int], **fields: Any):
        self._image_size = tuple(image_size)
        self._fields: dict[str, Any] = {}
        for name, value in fields.items():
            self.set(name, value)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)``."""
        return self._image_size

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            super().__setattr__(name, value)
        else:
            self.set(name, value)

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails; "_fields" guards against recursion in copies.
        if name == "_fields" or name not in self._fields:
            fields = sorted(self.__dict__.get("_fields", {}))
            raise AttributeError(f"Instances has no field {name!r}; fields: {fields}")
        return self._fields[name]

    def set(self, name: str, value: Any) -> None:
        """Set field ``name``; its length must equal that of the existing fields."""
        n = len(value)
        if self._fields and n != len(self):
            raise ValueError(
                f"Field {name!r} has length {n}, but this Instances has length {len(self)}"
            )
        self._fields[name] = value

    def has(self, name: str) -> bool:
        """Return whether field ``name`` exists."""
        return name in self._fields

    def remove(self, name: str) -> None:
        """Delete field ``name``."""
        if name not in self._fields:
            raise KeyError(f"Instances has no field {name!r}")
        del self._fields[name]

    def get(self, name: str) -> Any:
        """Return field ``name``."""
        if name not in self._fields:
            raise KeyError(f"Instances has no field {name!r}; fields: {sorted(self._fields)}")
        return self._fields[name]

    def get_fields(self) -> dict[str, Any]:
        """Return the name -> value dict of fields (not a copy)."""
        return self._fields

    def to(self, *args: Any, **kwargs: Any) -> Instances:
        """Return a copy whose fields with a ``.to`` method are moved (device/dtype args)."""
        out = Instances(self._image_size)
        for k, v in self._fields.items():
            out.set(k, v.to(*args, **kwargs) if hasattr(v, "to") else v)
        return out

    def __getitem__(self, item: int | slice | torch.Tensor) -> Instances:
        if isinstance(item, int):
            n = len(self)
            if not -n <= item < n:
                raise IndexError(f"Instances index {item} out of range for length {n}")
            # A one-element slice keeps every field a sequence of length 1.
            item = slice(item % n, item % n + 1)
        out = Instances(self._image_size)
        for k, v in self._fields.items():
            if isinstance(v, list) and isinstance(item, torch.Tensor):
                idx = item.nonzero().flatten() if item.dtype == torch.bool else item.flatten()
                out.set(k, [v[i] for i in idx.tolist()])
            else:
                out.set(k, v[item])
        return out

    def __len__(self) -> int:
        for v in self._fields.values():
            return len(v)
        raise NotImplementedError("An Instances without fields has no length")

    def __iter__(self):
        raise NotImplementedError("Instances is not iterable; index it instead")

    @staticmethod
    def cat(instance_lists: list[Instances]) -> Instances:
        """Concatenate ``Instances`` of the same image size and the same fields."""
        if not instance_lists:
            raise ValueError("Instances.cat needs at least one Instances")
        if len(instance_lists) == 1:
            return instance_lists[0]
        size = instance_lists[0].image_size
        for i in instance_lists[1:]:
            if i.image_size != size:
                raise ValueError(f"Instances.cat: image sizes differ, {size} vs {i.image_size}")
        out = Instances(size)
        for k, v0 in instance_lists[0]._fields.items():
            values = [i.get(k) for i in instance_lists]
            if isinstance(v0, torch.Tensor):
                merged = torch.cat(values, dim=0)
            elif isinstance(v0, list):
                merged = list(itertools.chain(*values))
            elif hasattr(type(v0), "cat"):
                merged = type(v0).cat(values)
            else:
                raise ValueError(f"Instances.cat: field {k!r} of type {type(v0)} cannot be merged")
            out.set(k, merged)
        return out

    def __repr__(self) -> str:
        n = len(self) if self._fields else 0
        h, w = self._image_size
        fields = ", ".join(self._fields)
        return f"Instances(num_instances={n}, image_height={h}, image_width={w}, fields=[{fields}])"
