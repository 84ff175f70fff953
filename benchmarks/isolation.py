# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""One fresh process per benchmarked model, so peak memory is that model's own and no state leaks between models.

Kept free of heavy imports: the spawned process unpickles these functions before it imports anything else.
"""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

__all__ = ["current_start_method", "model_process"]


def model_process() -> ProcessPoolExecutor:
    """A one-process pool started fresh ("spawn"), whose dataloader workers start like the parent's.

    A spawned process defaults to "spawn" for its own children too, so its dataloader workers would re-import
    torch and anomalib at every epoch and evaluation (tens of seconds each), timed as training and testing.
    """
    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_use_start_method,
        initargs=(multiprocessing.get_start_method(),),
    )


def _use_start_method(method: str) -> None:
    # A plain function on purpose: ``multiprocessing.set_start_method`` is a bound method of the default
    # context, and pickling it would set the method on an unpickled copy, not on the child's own context.
    multiprocessing.set_start_method(method, force=True)


def current_start_method() -> str:
    """The default start method of the calling process (a picklable probe for tests)."""
    return multiprocessing.get_start_method()
