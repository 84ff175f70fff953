# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Manual optimisation with several optimizer steps per image batch (CflowAD's fiber chunks, HGAD's positions).

The backbone runs once per image batch; its features are then cut into chunks and the flows take one optimizer
step per chunk, as the official CFLOW-AD code does. Lightning's automatic optimisation takes one step per batch,
so these models optimise manually: :meth:`ChunkedOptimizationMixin.training_step` is the loop, the model only says
what each chunk's loss is (:meth:`~ChunkedOptimizationMixin.chunk_losses`).
"""

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple, TypedDict

import torch
from anomalib.data import Batch
from lightning.pytorch.utilities.types import STEP_OUTPUT

from anomalib_nfplus.batch import batch_images

from ..host.distributed import process_grid
from .loss_guard import LossGuardMixin

__all__ = ["ChunkLoss", "ChunkedOptimizationMixin"]


class ChunkLoss(NamedTuple):
    """The loss of one chunk, the trainable parameters it does not reach, and terms to log (epoch means).

    ``idle`` matters under DDP (see :meth:`ChunkedOptimizationMixin.manual_step`); ``terms`` are logged as
    ``train_<name>``.
    """

    loss: torch.Tensor
    idle: list[torch.nn.Parameter]
    terms: dict[str, Any] = {}  # noqa: RUF012 - a NamedTuple default, never mutated


class _EpochLogging(TypedDict):
    """Keyword arguments of ``log``/``log_dict`` for epoch means."""

    on_step: bool
    on_epoch: bool
    batch_size: int
    sync_dist: bool


def _zero_weighted(parameters: list[torch.nn.Parameter]) -> torch.Tensor:
    """``0 * sum`` of the parameters: a zero term whose graph reaches each of them (see ``manual_step``)."""
    return torch.stack([parameter.sum() for parameter in parameters]).sum() * 0.0


def _drop_gradients(parameters: list[torch.nn.Parameter], reduced: bool) -> None:
    """Set the gradients of parameters the step's loss did not use back to ``None``, so the optimizer skips them.

    With ``reduced`` (DDP) a gradient is kept where it is not zero: another process used the parameter at this
    step. Gradients are identical on every process after the reduction, so all processes decide alike.
    """
    if not reduced:
        for parameter in parameters:
            parameter.grad = None
        return
    present = [(parameter, grad) for parameter in parameters if (grad := parameter.grad) is not None]
    if not present:
        return
    used = torch.stack([grad.detach().abs().amax() > 0 for _, grad in present]).tolist()
    for (parameter, _), nonzero in zip(present, used, strict=True):
        if not nonzero:
            parameter.grad = None


# misc: anomalib's AnomalibModule inherits two unrelated to_onnx (its ExportMixin's and LightningModule's).
class ChunkedOptimizationMixin(LossGuardMixin, ABC):  # type: ignore[misc]
    """One guarded optimizer step per chunk of an image batch, then one scheduler step per batch.

    Contract: the model sets ``automatic_optimization = False``, implements :meth:`chunk_losses`, and
    ``configure_optimizers`` returns one optimizer with one learning-rate scheduler.
    """

    @abstractmethod
    def chunk_losses(self, batch: Batch, batch_idx: int) -> Iterator[ChunkLoss]:
        """The losses of ``batch``'s chunks, one optimizer step each, computed lazily.

        The next chunk's loss is computed after the previous step, so a generator that encodes the batch once and
        yields a :class:`ChunkLoss` per chunk is what this expects.
        """

    def training_step(self, batch: Batch, batch_idx: int, *args: Any, **kwargs: Any) -> STEP_OUTPUT:
        """One :meth:`manual_step` per chunk; the schedule steps once per image batch; epoch means are logged."""
        del args, kwargs
        total: torch.Tensor | float = 0.0
        terms: dict[str, Any] = {}
        steps = 0
        for chunk in self.chunk_losses(batch, batch_idx):
            total, steps = total + self.manual_step(chunk.loss, chunk.idle), steps + 1
            terms = {name: terms.get(name, 0.0) + value for name, value in chunk.terms.items()}
        # One step-wise scheduler by the contract above (lr_schedulers() is typed for none, several, or plateau ones).
        self.lr_schedulers().step()  # type: ignore[union-attr]
        # sync_dist: the epoch's means over every process (one reduction at the epoch's end, not per step).
        epoch: _EpochLogging = {
            "on_step": False,
            "on_epoch": True,
            "batch_size": batch_images(batch).shape[0],
            "sync_dist": True,
        }
        self.log("train_loss", total / steps, prog_bar=True, **epoch)
        if terms:
            self.log_dict({f"train_{name}": value / steps for name, value in terms.items()}, **epoch)
        return {"loss": total / steps}

    def manual_step(self, loss: torch.Tensor, idle: Iterable[torch.nn.Parameter] = ()) -> torch.Tensor:
        """One optimizer step on ``loss`` under manual optimisation (checked finite first); returns it detached.

        ``idle`` names the trainable parameters this step's loss does not reach (the flow of a level absent from a
        chunk, the intra-class centres before their stage). DDP's reducer expects a gradient for every parameter
        at every backward, so they are tied to the loss with weight zero (the loss value does not change); their
        zero gradients are then dropped before the step, so the optimizer skips them exactly as in one process
        (with a zero gradient Adam would still advance their moments and step count and apply weight decay).
        """
        loss = self.check_loss(loss)
        idle = [parameter for parameter in idle if parameter.requires_grad]
        optimizer = self.optimizers()
        if isinstance(optimizer, list):
            msg = f"{type(self).__name__}: chunked training steps one optimizer; configure_optimizers returned several."
            raise TypeError(msg)
        optimizer.zero_grad()
        self.manual_backward(loss + _zero_weighted(idle) if idle else loss)
        if idle:
            _drop_gradients(idle, reduced=process_grid(self._trainer)[1] > 1)
        optimizer.step()
        return loss.detach()
