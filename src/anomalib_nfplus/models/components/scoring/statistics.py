# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Score statistics collected on training data and stored as buffers.

The official CFLOW-AD and HGAD code normalise each scale's map by the maximum over the *test set*, and anomalib's
Cflow by the maximum over the *batch*, so a score depends on the other images scored with it. Here every model
normalises with statistics of its *training* images, frozen into buffers: checkpoints and exported graphs carry
them, and one image scored alone gets the same score as inside any batch.

Until they are collected the buffers hold placeholders (mean 0, std 1), which would give scores that mean nothing:
eager scoring refuses them (:meth:`TrainingStatistics.require_fitted`).
"""

import torch
from torch import nn

from anomalib_nfplus.flows import is_tracing

__all__ = ["TrainingStatistics", "UnfittedStatisticsError", "supports_float64"]


class UnfittedStatisticsError(RuntimeError):
    """A model was asked to score or export with training statistics that were never collected for its weights."""


def supports_float64(device: torch.device) -> bool:
    """Whether tensors on ``device`` can be float64 (Apple's MPS backend has no float64)."""
    return device.type != "mps"


class TrainingStatistics(nn.Module):
    """Streaming count, mean, standard deviation, minimum and maximum of ``n_maps`` raw score maps.

    Use :meth:`reset`, then :meth:`update` once per map and batch, then :meth:`finalize`. Sums are kept in
    float64 so millions of positions do not lose precision: on the buffers' device, or on the CPU for devices
    without float64 (MPS), which then reduce each batch in float32 and send only its sums to the CPU.

    Args:
        n_maps (int): Number of independent maps (e.g. feature levels, or levels x map kinds).

    Example:
        >>> stats = TrainingStatistics(2)
        >>> stats.reset()
        >>> stats.update(0, torch.tensor([1.0, 3.0])); stats.update(1, torch.tensor([0.0, 0.0]))
        >>> stats.finalize()
        >>> stats.mean.tolist(), stats.maximum.tolist()
        ([2.0, 0.0], [3.0, 0.0])
    """

    # Buffers registered in ``__init__`` (declared for type checkers: ``nn.Module.__getattr__`` is untyped).
    mean: torch.Tensor
    std: torch.Tensor
    minimum: torch.Tensor
    maximum: torch.Tensor
    fitted: torch.Tensor

    def __init__(self, n_maps: int) -> None:
        super().__init__()
        if n_maps < 1:
            msg = f"TrainingStatistics needs at least one map, got n_maps={n_maps}."
            raise ValueError(msg)
        self.n_maps = n_maps
        self.register_buffer("mean", torch.zeros(n_maps))
        self.register_buffer("std", torch.ones(n_maps))
        self.register_buffer("minimum", torch.zeros(n_maps))
        self.register_buffer("maximum", torch.ones(n_maps))
        self.register_buffer("fitted", torch.tensor(False))
        self._sums: torch.Tensor | None = None

    def reset(self) -> None:
        """Start a new collection; the current buffers stay usable until :meth:`finalize`."""
        device = self.mean.device if supports_float64(self.mean.device) else torch.device("cpu")
        self._sums = torch.zeros(self.n_maps, 3, dtype=torch.float64, device=device)
        self._min = torch.full((self.n_maps,), float("inf"), dtype=torch.float64, device=device)
        self._max = torch.full((self.n_maps,), float("-inf"), dtype=torch.float64, device=device)

    @torch.no_grad()
    def update(self, index: int, values: torch.Tensor) -> None:
        """Add every element of ``values`` (any shape) to map ``index``."""
        if self._sums is None:
            msg = "TrainingStatistics.update called before reset()."
            raise RuntimeError(msg)
        v = values.detach().flatten()
        v = v.double() if supports_float64(v.device) else v.float()
        if not torch.isfinite(v).all():
            msg = (
                f"Non-finite training scores for map {index}: the flow diverged (NaN/inf log-likelihoods). "
                "Lower the learning rate or check the input images."
            )
            raise RuntimeError(msg)
        low, high = torch.aminmax(v)
        batch = torch.stack([v.sum(), (v * v).sum(), low, high]).to(self._sums.device).double()  # move, then cast
        self._sums[index, 0] += v.numel()
        self._sums[index, 1:] += batch[:2]
        self._min[index] = torch.minimum(self._min[index], batch[2])
        self._max[index] = torch.maximum(self._max[index], batch[3])

    def all_reduce(self) -> None:
        """Combine the running sums, minima and maxima of every process (``torch.distributed``), before finalising.

        Under DDP each process scores its own share of the training images; counts and sums add up and the
        extremes take the minimum and maximum, so every process then finalises the statistics of the whole
        training set, the ones a single process would give (up to the order of the float64 additions). Every
        process of the default group must call it.
        """
        if self._sums is None:
            msg = "TrainingStatistics.all_reduce called before reset()."
            raise RuntimeError(msg)
        distributed = torch.distributed
        distributed.all_reduce(self._sums, op=distributed.ReduceOp.SUM)
        distributed.all_reduce(self._min, op=distributed.ReduceOp.MIN)
        distributed.all_reduce(self._max, op=distributed.ReduceOp.MAX)

    def empty_maps(self) -> list[int]:
        """Maps that received no values since :meth:`reset` (``finalize`` refuses them), to name what is missing."""
        if self._sums is None:
            msg = "TrainingStatistics.empty_maps called before reset()."
            raise RuntimeError(msg)
        return [int(index) for index in torch.nonzero(self._sums[:, 0] == 0).flatten().tolist()]

    def finalize(self) -> None:
        """Turn the sums into the buffers used for scoring."""
        if self._sums is None or bool((self._sums[:, 0] == 0).any()):
            msg = "TrainingStatistics.finalize: some maps received no values; no training images were scored."
            raise RuntimeError(msg)
        count, total, squares = self._sums.unbind(dim=1)
        mean = total / count
        var = (squares / count - mean * mean).clamp_min(0.0)
        self.mean.copy_(mean.to(self.mean.dtype))
        self.std.copy_(var.sqrt().clamp_min(1e-6).to(self.std.dtype))
        self.minimum.copy_(self._min.to(self.minimum.dtype))
        self.maximum.copy_(self._max.to(self.maximum.dtype))
        self.fitted.fill_(True)
        self._sums = None

    def standardize(self, index: int, values: torch.Tensor) -> torch.Tensor:
        """``(values - mean) / std`` of map ``index``: a z-score against the training images."""
        return (values - self.mean[index]) / self.std[index]

    def require_fitted(self, owner: str) -> None:
        """Raise :class:`UnfittedStatisticsError` unless the buffers hold collected statistics.

        Called by the torch models' ``forward``; skipped while tracing (:func:`~anomalib_nfplus.flows.is_tracing`),
        so ``torch.export`` records no check (the export itself refuses unfitted statistics before tracing).

        Args:
            owner (str): The model named in the error (``"CflowADModel"``).

        Example:
            >>> stats = TrainingStatistics(1)
            >>> stats.require_fitted("Model")
            Traceback (most recent call last):
            ...
            anomalib_nfplus.models.components.scoring.statistics.UnfittedStatisticsError: Model has no training ...
        """
        if is_tracing() or bool(self.fitted):
            return
        msg = (
            f"{owner} has no training statistics: they were never collected for its weights, and the placeholders "
            "(mean 0, std 1) would give scores that mean nothing. Collect them from training images first: fit the "
            "Lightning model (engine.fit), run engine.validate/test/predict with a datamodule (its training images "
            "are used), call collect_training_statistics(train_loader) on the Lightning model, or load a checkpoint "
            "written by training. On the torch model alone: statistics.reset(), update_statistics(batch) for every "
            "pre-processed training batch, then statistics.finalize()."
        )
        raise UnfittedStatisticsError(msg)

    def extra_repr(self) -> str:
        """Shown by ``print(module)``."""
        return f"n_maps={self.n_maps}, fitted={bool(self.fitted)}"
