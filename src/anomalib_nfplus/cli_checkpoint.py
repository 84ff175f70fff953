# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""``anomalib <subcommand> --ckpt_path X`` builds the plugin's models with the arguments saved in ``X``.

anomalib's CLI builds the model from the command line before it loads a checkpoint, so a checkpoint trained at
64 px with a small backbone was rebuilt with the defaults (a 1024 px pre-processor, a hub backbone that needs the
network) unless every training argument was typed again; the result ran without an error and scored nonsense.
For the plugin's models (subclasses of :class:`FlowModuleMixin`), every model argument the command line or config
leaves at its default now takes the checkpoint's saved value, and a value that differs from the checkpoint's is
refused with a message naming both. Argument names saved by an older release are read under their current names
(the model's ``renamed_arguments``). anomalib's own models are not touched.

:func:`extend_cli` installs this on ``anomalib.cli.cli.AnomalibCLI``; the start-up hook calls it right after that
module is imported (and :func:`anomalib_nfplus.plugin.register` calls it where it already was).
"""

import functools
import importlib
import inspect
import logging
import pickle
import sys
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from anomalib_nfplus.models.components import FlowModuleMixin

__all__ = ["apply_checkpoint_arguments", "extend_cli", "saved_arguments"]

logger = logging.getLogger(__name__)

_MARK = "_anomalib_nfplus_checkpoint_arguments"


def extend_cli() -> None:
    """Make ``AnomalibCLI`` fill the plugin models' arguments from ``--ckpt_path`` (idempotent).

    A no-op while ``anomalib.cli.cli`` is not imported yet or is half-way through its import.
    """
    cli_class = getattr(sys.modules.get("anomalib.cli.cli"), "AnomalibCLI", None)
    if cli_class is None or getattr(cli_class.before_instantiate_classes, _MARK, False):
        return
    original = cli_class.before_instantiate_classes

    @functools.wraps(original)
    def before_instantiate_classes(self: Any) -> None:
        subcommand = self.config.get("subcommand")
        section = self.config.get(subcommand) if subcommand else None
        if hasattr(section, "get"):  # a trainer/anomalib subcommand's Namespace (install and pipelines too)
            try:
                apply_checkpoint_arguments(section)
            except ValueError as error:
                self._parser(subcommand).error(str(error))
        original(self)

    setattr(before_instantiate_classes, _MARK, True)
    cli_class.before_instantiate_classes = before_instantiate_classes


def apply_checkpoint_arguments(section: Any) -> list[str]:
    """Fill a subcommand's ``model.init_args`` from its ``ckpt_path`` for the plugin's models.

    Args:
        section (Any): The parsed subcommand section (a ``jsonargparse.Namespace`` with ``model`` and
            ``ckpt_path``); changed in place.

    Returns:
        list[str]: Names of the arguments taken from the checkpoint (empty when nothing applies).

    Raises:
        ValueError: The checkpoint cannot be read, was saved by another model, or was trained with arguments
            that differ from the ones given.
    """
    ckpt_path = section.get("ckpt_path")
    model = section.get("model")
    if not ckpt_path or model is None or not isinstance(model.get("class_path"), str):
        return []
    model_class = _plugin_model_class(model["class_path"])
    if model_class is None:
        return []
    saved = saved_arguments(ckpt_path)
    if not saved:
        return []
    parameters = inspect.signature(model_class.__init__).parameters
    name = model_class.__name__
    saved = _current_names(saved, getattr(model_class, "renamed_arguments", {}), name, ckpt_path)
    unknown = sorted(set(saved) - set(parameters))
    if unknown:
        msg = (
            f"--ckpt_path {ckpt_path} was not saved by {name}: it holds arguments {unknown[:5]} that {name} does "
            "not take. Pass the --model the checkpoint was trained with."
        )
        raise ValueError(msg)
    init_args = model.get("init_args")
    if init_args is None:
        model["init_args"] = init_args = type(model)()
    filled, conflicts = [], []
    for key, value in saved.items():
        given, default = init_args.get(key), parameters[key].default
        if _plain(given) == _plain(value):
            continue
        if key not in init_args or _plain(given) == _plain(default):
            init_args[key] = value
            filled.append(key)
        else:
            conflicts.append(f"{key}={value!r} (given: {given!r})")
    if conflicts:
        msg = (
            f"--ckpt_path {ckpt_path} was trained with other {name} arguments than the ones given: "
            f"{'; '.join(conflicts)}. Leave these model arguments out to use the checkpoint's values (a trained model "
            "only works with the arguments it was trained with)."
        )
        raise ValueError(msg)
    if filled:
        logger.info("%s arguments taken from %s: %s", name, ckpt_path, ", ".join(filled))
    return filled


def saved_arguments(ckpt_path: str | Path) -> dict[str, Any]:
    """The hyper-parameters a Lightning checkpoint saved (memory-mapped: the weights are not read).

    Args:
        ckpt_path (str | Path): Checkpoint file.

    Returns:
        dict[str, Any]: ``checkpoint["hyper_parameters"]`` (empty if it has none).

    Raises:
        ValueError: The file is missing or is not a checkpoint ``torch.load(weights_only=True)`` can read.
    """
    path = Path(ckpt_path)
    if not path.is_file():
        msg = f"--ckpt_path {path} does not exist or is not a file."
        raise ValueError(msg)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (OSError, RuntimeError, ValueError, pickle.UnpicklingError) as error:
        msg = f"Cannot read the saved model arguments of --ckpt_path {path}: {error}"
        raise ValueError(msg) from error
    hyper_parameters = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    return dict(hyper_parameters or {})


def _current_names(
    saved: dict[str, Any], renames: Mapping[str, str], name: str, ckpt_path: str | Path
) -> dict[str, Any]:
    """``saved`` with the argument names of an older release replaced by the current ones (the model's map).

    Only the checkpoint can be fixed (by re-saving it), so this is logged, not warned like a renamed argument typed
    by the user.
    """
    old = sorted(key for key in saved if key in renames)
    if not old:
        return saved
    logger.info("%s arguments saved under old names in %s: %s", name, ckpt_path, ", ".join(old))
    return {renames.get(key, key): value for key, value in saved.items()}


def _plugin_model_class(class_path: str) -> "type[FlowModuleMixin] | None":
    """The class ``class_path`` names if it is one of the plugin's models, else ``None``."""
    from anomalib_nfplus.models.components import FlowModuleMixin

    module_name, _, attribute = class_path.rpartition(".")
    try:
        candidate = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError):
        return None
    return candidate if isinstance(candidate, type) and issubclass(candidate, FlowModuleMixin) else None


def _plain(value: Any) -> Any:
    """Comparable plain data: sequences as lists, paths as strings, enums as values."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    return value
