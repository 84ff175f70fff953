# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Short CLI errors for the plugin's models and datamodules: the plugin's own message, not a 200-line dump.

anomalib types ``--model`` as ``AnomalibModule | None`` (and ``--data`` likewise). jsonargparse builds such a value
by trying each type of the union and catching every exception; when all fail it raises a new "Does not validate
against any of the Union subtypes" error that repeats the whole configuration and chains only the first type's
error (``Expected a NoneType``), and anomalib's rich traceback handler prints the chain: a screenful of lines around a
one-line message such as "Unknown timm backbone ...". The original exception is no longer reachable from the
one jsonargparse raises.

:func:`install` wraps ``AnomalibCLI``: while it builds its classes, an instantiator records the exceptions the
plugin's classes raise in their constructors; when building then fails, the CLI prints that message in a few
lines and exits with status 2, as for a bad argument. The plugin's data errors raised later, at set-up
(:class:`~anomalib_nfplus.data.mvtec.MVTecDataError`, ``UnifiedDataError``) and backbone weight errors are printed
the same way (status 1). Everything else, anomalib's own classes included, keeps its full traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["PluginClassError", "install", "short_message"]

_MARK = "_anomalib_nfplus_short_errors"
_PACKAGE = "anomalib_nfplus"
#: Constructor errors that are the user's to fix (bad argument values, missing files, unusable weights).
_USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)


class PluginClassError(Exception):
    """A plugin class given on the command line could not be built; ``cause`` is its own error."""

    def __init__(self, option: str, class_type: type, cause: BaseException) -> None:
        super().__init__(f"{option} {class_type.__name__}: {cause}")
        self.option = option
        self.class_type = class_type
        self.cause = cause


def install() -> None:
    """Make ``anomalib.cli.cli.AnomalibCLI`` print the plugin's errors in a few lines (idempotent).

    A no-op while ``anomalib.cli.cli`` is not imported yet or is half-way through its import.
    """
    cli_class = getattr(sys.modules.get("anomalib.cli.cli"), "AnomalibCLI", None)
    if cli_class is None or getattr(cli_class.instantiate_classes, _MARK, False):
        return
    cli_class.instantiate_classes = _short_instantiation_errors(cli_class.instantiate_classes)
    cli_class._run_subcommand = _short_run_errors(cli_class._run_subcommand)


def short_message(error: BaseException, recorded: list[PluginClassError]) -> str | None:
    """The plugin's own message behind a failed ``instantiate_classes``, or ``None`` if the failure is not ours.

    A recorded constructor error counts only if ``error`` is it or repeats its message (jsonargparse's union
    error does), so an error a later union member recovered from is never shown instead of the real one.
    """
    flat = " ".join(str(error).split())
    for failure in reversed(recorded):
        if error is failure.cause or " ".join(str(failure.cause).split()) in flat:
            return str(failure)
    return None


def _short_instantiation_errors(original: Callable[[Any], None]) -> Callable[[Any], None]:
    @functools.wraps(original)
    def instantiate_classes(self: Any) -> None:
        recorded: list[PluginClassError] = []
        _add_recorder(self, recorded)
        try:
            original(self)
        except Exception as error:
            message = short_message(error, recorded)
            if message is None:
                raise
            _exit(self, message, status=2, cause=error)

    setattr(instantiate_classes, _MARK, True)
    return instantiate_classes


def _short_run_errors(original: Callable[[Any], None]) -> Callable[[Any], None]:
    @functools.wraps(original)
    def run_subcommand(self: Any) -> None:
        try:
            original(self)
        except Exception as error:
            if not _is_plugin_data_error(error):
                raise
            _exit(self, str(error), status=1, cause=error)

    setattr(run_subcommand, _MARK, True)
    return run_subcommand


def _add_recorder(cli: Any, recorded: list[PluginClassError]) -> None:
    """Register, on every parser of ``cli``, an instantiator that records the plugin classes' constructor errors."""
    from anomalib.data import AnomalibDataModule
    from anomalib.models import AnomalibModule

    def instantiate(class_type: type, *args: Any, **kwargs: Any) -> Any:
        try:
            return class_type(*args, **kwargs)
        except _USER_ERRORS as error:
            if _is_plugin_class(class_type):
                option = "--model" if issubclass(class_type, AnomalibModule) else "--data"
                recorded.append(PluginClassError(option, class_type, error))
            raise

    parsers = [getattr(cli, "parser", None), *getattr(cli, "subcommand_parsers", {}).values()]
    for parser in parsers:
        if parser is None or not hasattr(parser, "add_instantiator"):
            continue
        for base in (AnomalibModule, AnomalibDataModule):
            parser.add_instantiator(instantiate, base, subclasses=True)


def _is_plugin_class(class_type: type) -> bool:
    module = getattr(class_type, "__module__", "") or ""
    return module == _PACKAGE or module.startswith(f"{_PACKAGE}.")


def _is_plugin_data_error(error: BaseException) -> bool:
    """The plugin's errors whose message is complete.

    Missing data folders, unusable backbone weights, and statistics that were never collected (the export of an
    untrained model or of a last-finite checkpoint).
    """
    from anomalib_nfplus.backbones.weights import BackboneWeightsError
    from anomalib_nfplus.data.mvtec import MVTecDataError
    from anomalib_nfplus.data.unified import UnifiedDataError
    from anomalib_nfplus.models.components import UnfittedStatisticsError

    return isinstance(error, MVTecDataError | UnifiedDataError | BackboneWeightsError | UnfittedStatisticsError)


def _exit(cli: Any, message: str, status: int, cause: BaseException) -> None:
    subcommand = getattr(cli, "subcommand", None) or (getattr(cli, "config", None) or {}).get("subcommand")
    prog = f"anomalib {subcommand}" if subcommand else "anomalib"
    sys.stderr.write(f"{prog}: error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(status) from cause
