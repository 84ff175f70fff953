# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Filter third-party noise a user cannot act on, inside the plugin's commands only.

Tracing warnings, deprecation notices raised inside dependencies and exporter INFO logs are written for the
authors of those dependencies; printed by the thousand they hide what the user needs to see. The filters are a
context manager entered by the ``anomalib-nfplus`` commands and around anomalib's CLI, never at import time, so
code that imports the library keeps Python's and its own warning settings. Warnings raised by the plugin's own
code stay visible, and so does every error.
"""

import importlib
import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

__all__ = ["NOISY_LOGGERS", "third_party_noise_filtered"]

#: Loggers whose INFO/WARNING lines describe the tools (tracing, ONNX rewriting, quantisation), not the model.
NOISY_LOGGERS: tuple[str, ...] = (
    "onnx_ir",
    "onnxscript",
    "torch.onnx",
    "torch.export",
    "torch._export",
    "torch._dynamo",
    "torch._functorch",
    "torch._subclasses",
    "torch.fx",
    "nncf",
    "openvino",
)
#: Lightning's start-up notes (devices found, tips, callbacks replaced), dropped where a command prints its own steps.
LIGHTNING_LOGGERS: tuple[str, ...] = ("lightning.pytorch", "lightning.fabric")


def _tracer_warning() -> type[Warning] | None:
    try:
        from torch.jit import TracerWarning
    except ImportError:  # torch-free edge installs
        return None
    return TracerWarning


@contextmanager
def _loggers_at_least(names: tuple[str, ...], level: int) -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(level, logger.level))
    try:
        yield
    finally:
        for logger, old in zip(loggers, levels, strict=True):
            logger.setLevel(old)


@contextmanager
def third_party_noise_filtered(
    all_warnings: bool = False, torch: bool = True, preload: Sequence[str] = ()
) -> Iterator[None]:
    """Within the block, drop dependency noise; restore every filter and logger level after.

    Args:
        all_warnings (bool, optional): ``False`` (anomalib's CLI): drop deprecation and future warnings and torch's
            ``TracerWarning``, keep other warnings (a dependency's ``UserWarning`` may be advice the user can
            follow). ``True`` (the demo, which chooses every setting itself): drop every warning not raised by
            ``anomalib_nfplus`` and Lightning's INFO notes too. Defaults to ``False``.
        torch (bool, optional): ``False`` never imports torch to find ``TracerWarning`` (the edge runtime's
            commands, which run without torch). Defaults to ``True``.
        preload (Sequence[str], optional): Modules to import first, with their import-time warnings filtered:
            libraries such as Lightning set their loggers' levels when imported, which would undo the raised
            levels if the import came later. Defaults to ``()``.
    """
    loggers = NOISY_LOGGERS + (LIGHTNING_LOGGERS if all_warnings else ())
    with warnings.catch_warnings(), ExitStack() as levels:
        for category in (Warning,) if all_warnings else (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category)
        warnings.filterwarnings("default", module=r"anomalib_nfplus(\.|$)")  # the plugin's own warnings stay ...
        tracer = _tracer_warning() if torch else None
        if tracer is not None:  # ... except the tracer's, which name the traced (plugin) line but are about tracing
            warnings.filterwarnings("ignore", category=tracer)
        for module in preload:
            importlib.import_module(module)
        levels.enter_context(_loggers_at_least(loggers, logging.ERROR))
        yield
