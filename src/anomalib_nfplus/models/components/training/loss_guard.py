# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The non-finite-loss guard: stop at the failing step with the last finite weights saved."""

from pathlib import Path

import torch

from ..host.distributed import finite_everywhere, process_grid
from ..host.lightning_host import LightningHost

__all__ = ["LossGuardMixin", "NonFiniteLossError"]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; training stopped before the optimizer applied it."""


class LossGuardMixin(LightningHost):
    """:meth:`check_loss`: a NaN or infinite loss stops training with the weights of the step before saved.

    Contract: call :meth:`check_loss` on every loss before it reaches the optimizer. While the guard saves those
    weights, :attr:`saving_last_finite` is true, so checkpoint hooks can tell that save from a regular one.
    """

    #: True while :meth:`check_loss` saves the weights of the last finite step (read by checkpoint hooks).
    saving_last_finite: bool = False

    def last_finite_note(self) -> str:
        """Appended to the error after the saved checkpoint's path: what it lacks and how to use it ("" here).

        :class:`~anomalib_nfplus.models.components.training.TrainingStatisticsMixin` says that it holds no training
        statistics and how to collect them.
        """
        return ""

    def check_loss(self, loss: torch.Tensor, what: str = "loss") -> torch.Tensor:
        """Return ``loss`` if finite; otherwise save the last finite weights and stop with the failing step.

        Under DDP the finite flags of all processes are gathered at every call, so when one process meets a
        non-finite loss every process saves (process 0 writes) and raises at the same step instead of waiting in
        the next gradient reduction for the one that stopped.
        """
        trainer = self._trainer
        failed = finite_everywhere(trainer, torch.isfinite(loss.detach()).all())
        if not failed:
            return loss
        rank, world = process_grid(trainer)
        where = "outside a Trainer"
        saved = ""
        if trainer is not None:
            where = f"at epoch {trainer.current_epoch}, global step {trainer.global_step}"
            if world > 1:
                where += f" on process(es) {failed} of {world}"
            path = Path(trainer.default_root_dir) / f"last_finite_step{trainer.global_step}.ckpt"
            if world > 1:  # process 0 writes; its folder is the one to name (the processes' folders may differ)
                path = trainer.strategy.broadcast(path)
            try:
                self.saving_last_finite = True
                trainer.save_checkpoint(path)
                saved = f" The weights before this step were saved to {path}.{self.last_finite_note()}"
            except (OSError, RuntimeError) as error:
                saved = f" (Saving the last finite weights failed: {error}.)"
            finally:
                self.saving_last_finite = False
        values = loss.detach().flatten()[:4].tolist() if rank in failed else f"this process (rank {rank}) was finite"
        msg = (
            f"{type(self).__name__}: non-finite {what} ({values}) {where}; the "
            f"optimizer step was not taken.{saved} Lower the learning rate, check the images for NaN/inf, or keep "
            "training in float32."
        )
        raise NonFiniteLossError(msg)
