"""Farthest-point sampling (PyTorch3D's ``sample_farthest_points``), vectorized over the batch."""

from __future__ import annotations

import torch

__all__ = ["sample_farthest_points"]


def sample_farthest_points(
    points: torch.Tensor,
    lengths: torch.Tensor | None = None,
    K: int | list[int] | torch.Tensor = 50,
    random_start_point: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy farthest-point sampling (PointNet++'s), PyTorch3D's ``sample_farthest_points``.

    Each step adds the point whose distance to the nearest point chosen so far is largest,
    starting from the first point of each cloud or, with ``random_start_point``, a random one.
    PyTorch3D's arguments and outputs; the points keep their dtype (PyTorch3D casts to float32).
    Ties go to the lowest index.

    Args:
        points: (N, P, D) padded clouds.
        lengths: (N,) int64 points of each cloud (default: all P); points past a cloud's length
            are never chosen.
        K: points to choose per cloud: an int, or a list / (N,) tensor, one per cloud.
        random_start_point: start each cloud at a uniformly random point of it.

    Returns:
        selected_points: (N, max(K), D); entries past ``min(K_n, lengths_n)`` are 0.
        selected_indices: (N, max(K)) int64 indices into ``points``, padded with -1.
    """
    if not torch.is_tensor(points) or points.dim() != 3:
        shape = tuple(points.shape) if torch.is_tensor(points) else type(points).__name__
        raise ValueError(f"points must be (N, P, D), got {shape}")
    N, P, D = points.shape
    device = points.device
    fixed_length = lengths is None
    if lengths is None:
        lengths = torch.full((N,), P, dtype=torch.int64, device=device)
    else:
        lengths = torch.as_tensor(lengths, device=device)
        if lengths.shape != (N,):
            raise ValueError(f"lengths must be ({N},), got {tuple(lengths.shape)}")
        if N and (int(lengths.max()) > P or int(lengths.min()) < 0):
            raise ValueError(f"lengths must lie in [0, {P}], got {lengths.tolist()}")
        lengths = lengths.long()
    if isinstance(K, int):
        Ks = torch.full((N,), K, dtype=torch.int64, device=device)
    else:
        Ks = torch.as_tensor(K, dtype=torch.int64, device=device)
        if Ks.shape != (N,):
            raise ValueError(f"K must be an int or have shape ({N},), got {tuple(Ks.shape)}")
    if N and int(Ks.min()) < 1:
        raise ValueError(f"K must be >= 1, got {Ks.tolist() if Ks.numel() > 1 else int(Ks)}")
    max_K = int(Ks.max()) if N else (K if isinstance(K, int) else 0)
    # PyTorch3D's draws: randint over P for equal lengths, floor(length * U) otherwise.
    if random_start_point:
        if fixed_length:
            cur = torch.randint(P, (N,), device=device)
        else:
            cur = (lengths * torch.rand(N, device=device)).long()
    else:
        cur = torch.zeros(N, dtype=torch.long, device=device)
    counts = torch.minimum(Ks, lengths)  # points chosen per cloud
    idx = torch.full((N, max_K), -1, dtype=torch.long, device=device)
    # Distances to the chosen set; padding starts at -inf so that it is never the farthest.
    valid = torch.arange(P, device=device)[None] < lengths[:, None]
    dist = torch.full((N, P), float("inf"), device=device, dtype=points.dtype)
    dist = dist.masked_fill(~valid, float("-inf"))
    rows = torch.arange(N, device=device)
    steps = int(counts.max()) if N else 0
    # Clouds choosing fewer points than others keep -1 past their count (one `where` a step);
    # the common case, every cloud choosing the same number, skips it.
    uneven = bool((counts != steps).any())
    for k in range(steps):
        idx[:, k] = torch.where(k < counts, cur, -1) if uneven else cur
        if k + 1 == steps:
            break
        d = ((points - points[rows, cur][:, None]) ** 2).sum(-1)
        dist = torch.minimum(dist, d)
        cur = dist.argmax(dim=1)
    gather = idx.clamp(min=0)[..., None].expand(-1, -1, D)
    selected = torch.gather(points, 1, gather).masked_fill((idx < 0)[..., None], 0.0)
    return selected, idx
