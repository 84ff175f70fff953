# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""What the models do differently when a Lightning trainer runs several processes (DDP).

- :func:`process_grid`: this process's rank and the number of processes, ``(0, 1)`` outside a distributed trainer;
- :func:`rank_share`: the part of a training loader this process scores for the statistics, every image once
  over all processes, so the statistics are reduced sums rather than ``world_size`` copies of the same work;
- :func:`keep_buffers_local`: DDP's per-step broadcast of buffers switched off (the models' buffers are constant
  rotations, or statistics that are reduced explicitly);
- :func:`finite_everywhere`: one collective flag per step, so a non-finite loss on one process stops all of them.
"""

from collections.abc import Iterable, Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset

__all__ = ["finite_everywhere", "keep_buffers_local", "process_grid", "rank_share"]


def process_grid(trainer: Any) -> tuple[int, int]:
    """``(global_rank, world_size)`` of ``trainer``; ``(0, 1)`` without a trainer or a process group."""
    if trainer is None or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return 0, 1
    world = int(getattr(trainer, "world_size", 1) or 1)
    return (int(getattr(trainer, "global_rank", 0)), world) if world > 1 else (0, 1)


def rank_share(loader: Iterable, rank: int, world: int) -> Iterable:
    """The batches of ``loader`` that process ``rank`` of ``world`` scores: together, every sample exactly once.

    A map-style ``DataLoader`` is rebuilt over the same dataset with Lightning's ``UnrepeatedDistributedSampler``
    (samples ``rank, rank + world, ...``, in dataset order): unlike ``DistributedSampler`` it pads no process with
    repeated samples, and unlike the training loader it does not depend on each process's shuffling. Any other
    iterable gives every ``world``-th batch, which assumes the same batch order on every process.
    """
    if world <= 1:
        return loader
    dataset = loader.dataset if isinstance(loader, DataLoader) else None
    if isinstance(loader, DataLoader) and isinstance(dataset, Sized) and not isinstance(dataset, IterableDataset):
        from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

        batch_size = loader.batch_size or getattr(loader.batch_sampler, "batch_size", None) or 1
        sampler = UnrepeatedDistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
        )
    return _every_nth(loader, rank, world)


def _every_nth(loader: Iterable, rank: int, world: int) -> Iterator:
    for index, batch in enumerate(loader):
        if index % world == rank:
            yield batch


def keep_buffers_local(trainer: Any) -> None:
    """Ask a DDP strategy not to broadcast the module's buffers before every forward (unless the user chose).

    DDP's default ``broadcast_buffers=True`` copies every buffer from process 0 at each training step. The flows'
    buffers are fixed rotations (identical everywhere: seeded, and synchronised once when DDP wraps the model),
    the backbone's normalisation statistics never change (it stays in eval mode), and the training statistics are
    reduced explicitly; broadcasting them each step only costs time. Must run before the strategy wraps the model.
    """
    kwargs = getattr(getattr(trainer, "strategy", None), "_ddp_kwargs", None)
    if isinstance(kwargs, dict):
        kwargs.setdefault("broadcast_buffers", False)


def finite_everywhere(trainer: Any, finite: torch.Tensor) -> list[int]:
    """Ranks whose ``finite`` flag (a 0-d bool tensor) is false, gathered from every process (one collective).

    Every process must call it at the same step; all then agree whether to stop, so none is left waiting in a
    collective for a process that raised.
    """
    rank, world = process_grid(trainer)
    flag = finite.reshape(1).to(torch.int32)
    if world == 1:
        return [] if bool(flag) else [rank]
    flags = trainer.strategy.all_gather(flag).reshape(-1)
    return [index for index, value in enumerate(flags.tolist()) if not value]
