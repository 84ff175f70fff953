# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""``anomalib <subcommand> --ckpt_path X`` builds the plugin's models with the arguments saved in ``X``.

anomalib's CLI builds the model from the command line before it loads a checkpoint, so a checkpoint trained at
64 px with a small backbone was rebuilt with the defaults (a 1024 px pre-processor, a hub backbone that needs the
network) unless every training argument was typed again; the result ran without an error and scored nonsense.
For the plugin's models (subclasses of :class:`FlowModuleMixin`), every model argument the user did not give (on
the command line or in a ``--config`` file) takes the checkpoint's saved value, and a given value that differs
from the checkpoint's is refused with a message naming both, except for the scoring-only arguments
(:data:`SCORING_ARGUMENTS`): those use the given value, with a log line naming the saved one. Argument names saved
by an older release are read under their current names (the model's ``renamed_arguments``). anomalib's own models
are not touched.

"Given" means given by the user, not "different from the default": a value typed equal to the model's default
(``--model.scoring label_free``) is given too. jsonargparse's parsed config holds every default, so
:func:`given_model_arguments` parses the same command line again without the defaults to find which model
arguments it sets.

anomalib's post-processor keeps, in the checkpoint, the thresholds and normalisation bounds it fitted on validation
scores computed with the saved scoring-only values. When ``test``, ``predict`` or ``export`` is given other values,
:func:`_refit_thresholds` makes the command refit them on the validation set of its ``--data`` first, and refuses
to run without one: labels and normalised scores from the stale values would be silently wrong.

:func:`extend_cli` installs this on ``anomalib.cli.cli.AnomalibCLI``; the start-up hook calls it right after that
module is imported (and :func:`anomalib_nfplus.plugin.register` calls it where it already was).
"""

import argparse
import contextlib
import functools
import importlib
import inspect
import logging
import pickle
import sys
import warnings
from collections.abc import Collection, Iterator, Mapping
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from anomalib_nfplus.models.components import FlowModuleMixin

__all__ = [
    "SCORING_ARGUMENTS",
    "apply_checkpoint_arguments",
    "extend_cli",
    "given_model_arguments",
    "saved_arguments",
    "scoring_arguments",
]

logger = logging.getLogger(__name__)

_MARK = "_anomalib_nfplus_checkpoint_arguments"
#: CLI attribute: the given scoring-only values that differ from the checkpoint's, ``{name: (given, saved)}``.
_CHANGED_SCORING = "_anomalib_nfplus_changed_scoring"
#: The subcommands that would use the checkpoint's post-processor as it was saved (fit and validate refit it).
_SCORING_SUBCOMMANDS = frozenset({"test", "predict", "export"})

#: Per model (class name; subclasses inherit their base's entry), the arguments that only change how the trained
#: weights and training statistics are turned into scores, so ``--ckpt_path`` lets the user's value differ from the
#: checkpoint's. Each one changes no parameter, no saved buffer and no training statistic:
#:
#: - ``CflowAD``: ``scoring`` (its ``TrainingStatistics`` always hold the mean and standard deviation ``"zscore"``
#:   needs and the minimum ``"likelihood"`` needs) and ``top_k`` (how the image score is read from the map).
#: - ``HGAD``: ``scoring`` and ``use_entropy`` (the statistics hold every map kind of every level: negative entropy,
#:   label-free and per-class likelihood, whatever the scoring) and ``top_k``.
#: - ``DifferNet``: ``n_test_transforms`` (the score is the mean over the test rotations and the model has no
#:   training statistics; the rotations are not saved in the checkpoint).
#:
#: Every other saved argument given differently is refused: most shape the weights or the statistics (the
#: architecture, the features), the rest record how the checkpoint was trained. anomalib's post-processor keeps the
#: thresholds and normalisation bounds it fitted on validation scores in the checkpoint; those were computed with
#: the saved values, so the CLI refits them for given ones (:func:`_refit_thresholds`).
SCORING_ARGUMENTS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "CflowAD": ("scoring", "top_k"),
        "HGAD": ("scoring", "top_k", "use_entropy"),
        "DifferNet": ("n_test_transforms",),
    }
)


def scoring_arguments(model_class: type) -> tuple[str, ...]:
    """The scoring-only arguments of ``model_class`` (:data:`SCORING_ARGUMENTS`, looked up along its bases).

    Example:
        >>> from anomalib_nfplus import HGAD
        >>> scoring_arguments(HGAD)
        ('scoring', 'top_k', 'use_entropy')
    """
    for base in model_class.__mro__:
        if base.__name__ in SCORING_ARGUMENTS:
            return SCORING_ARGUMENTS[base.__name__]
    return ()


def extend_cli() -> None:
    """Make ``AnomalibCLI`` fill the plugin models' arguments from ``--ckpt_path`` (idempotent).

    A no-op while ``anomalib.cli.cli`` is not imported yet or is half-way through its import.
    """
    cli_class = getattr(sys.modules.get("anomalib.cli.cli"), "AnomalibCLI", None)
    if cli_class is None or getattr(cli_class.before_instantiate_classes, _MARK, False):
        return
    original = cli_class.before_instantiate_classes
    original_instantiate = cli_class.instantiate_classes

    @functools.wraps(original)
    def before_instantiate_classes(self: Any) -> None:
        subcommand = self.config.get("subcommand")
        section = self.config.get(subcommand) if subcommand else None
        if hasattr(section, "get"):  # a trainer/anomalib subcommand's Namespace (install and pipelines too)
            try:
                if _checkpoint_model_class(section) is not None:
                    _, changed = _apply(section, given_model_arguments(self, subcommand))
                    setattr(self, _CHANGED_SCORING, changed if subcommand in _SCORING_SUBCOMMANDS else {})
            except ValueError as error:
                self._parser(subcommand).error(str(error))
        original(self)

    @functools.wraps(original_instantiate)
    def instantiate_classes(self: Any) -> None:
        original_instantiate(self)
        changed = getattr(self, _CHANGED_SCORING, None)
        engine = getattr(self, "engine", None)
        if changed and engine is not None:
            subcommand = self.config.get("subcommand")
            try:
                _refit_thresholds(engine, subcommand, getattr(self, "datamodule", None), changed)
            except ValueError as error:
                self._parser(subcommand).error(str(error))

    setattr(before_instantiate_classes, _MARK, True)
    setattr(instantiate_classes, _MARK, True)
    cli_class.before_instantiate_classes = before_instantiate_classes
    cli_class.instantiate_classes = instantiate_classes


def _refit_thresholds(engine: Any, subcommand: str, data: Any, changed: Mapping[str, tuple[Any, Any]]) -> None:
    """Make ``engine.<subcommand>(model=..., ckpt_path=...)`` refit the post-processor for ``changed`` scoring first.

    anomalib's PostProcessor fitted its thresholds and normalisation bounds on validation scores computed with the
    checkpoint's scoring-only values and keeps them in the checkpoint; anomalib's ``Engine.test``/``predict``
    validate first only for zero-/few-shot models and ``export`` never does, so with other values the labels and
    normalised scores would be wrong. The wrapped call validates on ``data`` with ``ckpt_path`` (Lightning loads the
    checkpoint's weights into the CLI's model, built with the given values; the PostProcessor refits at validation
    epoch end), then runs on that model without ``ckpt_path``, which would load the stale values back.
    ``Engine.test``/``predict`` set up their output folder and trainer before they ask ``_should_run_validation``
    whether to validate, so the validation runs there (outputs land where they always do); ``export`` sets up
    nothing and validates before.

    Args:
        engine (Any): The CLI's ``Engine``; its ``subcommand`` method is replaced on this instance.
        subcommand (str): ``"test"``, ``"predict"`` or ``"export"``.
        data (Any): What the CLI passes as the data (a datamodule, a path, a dataloader or ``None``).
        changed (Mapping[str, tuple[Any, Any]]): The given scoring-only values that differ from the checkpoint's,
            ``{name: (given, saved)}``.

    Raises:
        ValueError: ``data`` is not a datamodule, so there is no validation set to refit on.
    """
    from anomalib.data import AnomalibDataModule

    given = ", ".join(f"{key}={value!r}" for key, (value, _) in changed.items())
    saved = ", ".join(f"{key}={value!r}" for key, (_, value) in changed.items())
    if not isinstance(data, AnomalibDataModule):
        msg = (
            f"--ckpt_path holds thresholds and normalisation fitted with {saved}, not the given {given}: they must "
            "be refitted on validation data, which --data does not give here. Add --data <datamodule> (e.g. --data "
            "MVTecAD --data.root <dir> --data.category <name>) so they are refitted, or leave "
            f"{' '.join(f'--model.{key}' for key in changed)} out to use the saved value."
        )
        raise ValueError(msg)  # noqa: TRY004 - a usage error, refused like the other argument errors
    original = getattr(engine, subcommand)

    @functools.wraps(original)
    def run(*args: Any, **kwargs: Any) -> Any:
        model, ckpt_path = kwargs.get("model"), kwargs.get("ckpt_path")
        if args or model is None or not ckpt_path:
            return original(*args, **kwargs)
        refitted: list[bool] = []

        def validate(*_: Any) -> bool:
            engine.validate(model, datamodule=data, ckpt_path=ckpt_path, verbose=False)
            logger.info(
                "%s: thresholds and normalisation refitted on the validation set for %s (%s holds those of %s).",
                type(model).__name__,
                given,
                ckpt_path,
                saved,
            )
            refitted.append(True)
            return False  # validated: the engine goes on without validating again

        kwargs["ckpt_path"] = None
        if subcommand == "export":
            validate()
            return original(**kwargs)
        engine_logger = logging.getLogger("anomalib.engine.engine")
        engine_logger.addFilter(_weights_loaded)
        engine._should_run_validation = validate
        try:
            result = original(**kwargs)
        finally:
            del engine._should_run_validation
            engine_logger.removeFilter(_weights_loaded)
        if not refitted:  # an anomalib that no longer asks: never a result from the stale thresholds
            msg = f"Engine.{subcommand} did not call _should_run_validation: the thresholds were not refitted."
            raise RuntimeError(msg)
        return result

    setattr(engine, subcommand, run)


def _weights_loaded(record: logging.LogRecord) -> bool:
    """Drop ``Engine.predict``'s warning that weights are not loaded without ``ckpt_path`` (the validation did)."""
    return not record.getMessage().startswith("ckpt_path is not provided")


def apply_checkpoint_arguments(section: Any, given: Collection[str] | None = None) -> list[str]:
    """Fill a subcommand's ``model.init_args`` from its ``ckpt_path`` for the plugin's models.

    Arguments in ``given`` keep their value: it must equal the checkpoint's, except for the model's
    :func:`scoring_arguments`, whose given value is used (logged when it differs). The others take the
    checkpoint's value.

    Args:
        section (Any): The parsed subcommand section (a ``jsonargparse.Namespace`` with ``model`` and
            ``ckpt_path``); changed in place.
        given (Collection[str] | None, optional): Names of the model arguments the user gave (command line or
            config file), as :func:`given_model_arguments` finds them. ``None``: unknown, so an argument counts as
            given when its value differs from the model's default. Defaults to ``None``.

    Returns:
        list[str]: Names of the arguments taken from the checkpoint (empty when nothing applies).

    Raises:
        ValueError: The checkpoint cannot be read, was saved by another model, or was trained with arguments
            that differ from the ones given.
    """
    return _apply(section, given)[0]


def _apply(section: Any, given: Collection[str] | None) -> tuple[list[str], dict[str, tuple[Any, Any]]]:
    """:func:`apply_checkpoint_arguments`, and the given scoring-only values that differ from the checkpoint's.

    Those are returned as ``{name: (given, saved)}``.
    """
    model_class = _checkpoint_model_class(section)
    if model_class is None:
        return [], {}
    ckpt_path, model = section["ckpt_path"], section["model"]
    saved = saved_arguments(ckpt_path)
    if not saved:
        return [], {}
    parameters = inspect.signature(model_class.__init__).parameters
    name = model_class.__name__
    renames = getattr(model_class, "renamed_arguments", {})
    saved = _current_names(saved, renames, name, ckpt_path)
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
    given_now = None if given is None else {renames.get(key, key) for key in given}
    scoring = scoring_arguments(model_class)
    filled: list[str] = []
    conflicts: list[str] = []
    kept: dict[str, tuple[Any, Any]] = {}
    for key, value in saved.items():
        current = init_args.get(key)
        if key in init_args and _plain(current) == _plain(value):
            continue
        if given_now is None:  # unknown: the old rule, a value other than the default was given
            is_given = key in init_args and _plain(current) != _plain(parameters[key].default)
        else:
            is_given = key in given_now and key in init_args
        if not is_given:
            init_args[key] = value
            filled.append(key)
        elif key in scoring:
            kept[key] = (current, value)
        else:
            conflicts.append(f"{key}={value!r} (given: {current!r})")
    if conflicts:
        msg = (
            f"--ckpt_path {ckpt_path} was trained with other {name} arguments than the ones given: "
            f"{'; '.join(conflicts)}. Leave these model arguments out to use the checkpoint's values (a trained model "
            "only works with the arguments it was trained with)."
        )
        raise ValueError(msg)
    if filled:
        logger.info("%s arguments taken from %s: %s", name, ckpt_path, ", ".join(filled))
    if kept:
        logger.info(
            "%s uses the given %s rather than the values saved in %s: scoring-only arguments share the weights and "
            "training statistics (the thresholds and normalisation saved with them are refitted on validation data).",
            name,
            "; ".join(f"{key}={value!r} (saved: {old!r})" for key, (value, old) in kept.items()),
            ckpt_path,
        )
    return filled, kept


def given_model_arguments(cli: Any, subcommand: str) -> set[str] | None:
    """Names of the model arguments the user gave to ``cli`` (on the command line or in ``--config`` files).

    jsonargparse's parsed config holds every default, so the command line the parser read (``parser.args``) is
    parsed again with ``defaults=False`` onto the parsed config without its ``model`` (the other sections stay, so
    argument links still find their sources): what ``model.init_args`` then holds was given, whatever its value.

    Args:
        cli (Any): An ``AnomalibCLI`` after parsing (``parser``, ``config``).
        subcommand (str): The parsed subcommand.

    Returns:
        set[str] | None: The given ``model.init_args`` names; ``None`` (with a warning) when this version of
        anomalib or jsonargparse does not have the expected structure, or the second parse fails.
    """
    try:
        return _given_model_arguments(cli, subcommand)
    except _CannotTellError as error:
        warnings.warn(
            f"--ckpt_path: cannot tell which model arguments were given ({error}); arguments equal to the model's "
            "default are treated as left out and take the checkpoint's value.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


class _CannotTellError(Exception):
    """The CLI does not have the structure :func:`given_model_arguments` reads."""


def _given_model_arguments(cli: Any, subcommand: str) -> set[str]:
    parser = getattr(cli, "parser", None)
    args = getattr(parser, "args", None)  # jsonargparse keeps the command line it parsed
    config: Any = getattr(cli, "config", None)
    if parser is None or not callable(getattr(parser, "parse_args", None)) or not hasattr(config, "clone"):
        msg = "the CLI has no jsonargparse parser and parsed config"
        raise _CannotTellError(msg)
    if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args):
        msg = "the parser does not keep the command line it parsed (jsonargparse's parser.args)"
        raise _CannotTellError(msg)
    without_model = config.clone()
    try:
        without_model[subcommand].pop("model", None)
        with _raising_errors(parser, _subcommand_parser(cli, subcommand)):
            reparsed = parser.parse_args(list(args), namespace=without_model, defaults=False)
        model = reparsed[subcommand].get("model")
    # SystemExit: a parser that still exits on errors; the second parse must never end the command.
    except (argparse.ArgumentError, LookupError, AttributeError, TypeError, ValueError, SystemExit) as error:
        msg = f"parsing the command line again without defaults failed: {error}"
        raise _CannotTellError(msg) from error
    given: set[str] = set()
    for part in ("init_args", "dict_kwargs"):
        values = model.get(part) if hasattr(model, "get") else None
        if isinstance(values, Mapping):
            given.update(map(str, values))
        elif values is not None:
            given.update(vars(values))  # a Namespace: its top-level names (``keys()`` would list nested leaves)
    return {name for name in given if not name.startswith("__")}  # not jsonargparse's ``__path__``


def _subcommand_parser(cli: Any, subcommand: str) -> Any:
    """The subcommand's parser (anomalib's ``_parser``), or ``None``."""
    get_parser = getattr(cli, "_parser", None)
    try:
        return get_parser(subcommand) if callable(get_parser) else None
    except (KeyError, AttributeError):
        return None


@contextlib.contextmanager
def _raising_errors(*parsers: Any) -> Iterator[None]:
    """Within the block, the parsers raise ``argparse.ArgumentError`` instead of printing usage and exiting."""
    parsers = tuple(p for p in parsers if p is not None and hasattr(p, "exit_on_error"))
    old = [p.exit_on_error for p in parsers]
    for p in parsers:
        p.exit_on_error = False
    try:
        yield
    finally:
        for p, value in zip(parsers, old, strict=True):
            p.exit_on_error = value


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


def _checkpoint_model_class(section: Any) -> "type[FlowModuleMixin] | None":
    """The plugin model class of a parsed section that has a ``ckpt_path``, else ``None``."""
    model = section.get("model")
    if not section.get("ckpt_path") or model is None or not isinstance(model.get("class_path"), str):
        return None
    return _plugin_model_class(model["class_path"])


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
