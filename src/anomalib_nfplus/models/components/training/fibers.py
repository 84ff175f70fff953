# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Validation of the ``fiber_batch_size`` argument shared by CflowAD and HGAD."""

__all__ = ["check_fiber_batch_size"]


def check_fiber_batch_size(fiber_batch_size: int | None) -> None:
    """Refuse a ``fiber_batch_size`` that is neither ``None`` nor a positive int.

    ``None`` trains on all fibers of an image batch in one step; an int ``N`` takes about ``N`` fibers per step
    (see :meth:`anomalib_nfplus.flows.PositionalFlows.position_chunks`).
    """
    if fiber_batch_size is not None and (isinstance(fiber_batch_size, bool) or fiber_batch_size < 1):
        msg = (
            "fiber_batch_size must be None (all fibers in one step per image batch) or a positive int, "
            f"got {fiber_batch_size!r}."
        )
        raise ValueError(msg)
