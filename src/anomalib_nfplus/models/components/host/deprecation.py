# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Renamed constructor arguments and module attributes: the old names keep working, with a ``FutureWarning``.

anomalib's ``anomalib.utils.deprecation.deprecate(args=...)`` needs the old names in the signature, where the
``anomalib`` CLI (jsonargparse) would offer them as arguments and Lightning's ``save_hyperparameters`` would store
them. :func:`renamed_arguments` keeps them out: it wraps ``__init__`` with ``functools.wraps`` (so
``inspect.signature`` shows the original, new names only), translates old keyword names, and runs the original
``__init__`` with the new ones, which is what ``save_hyperparameters`` records. The map stays on the class as
``renamed_arguments``, so code reading saved arguments (``cli_checkpoint``) can translate them too.

Example:
    >>> @renamed_arguments({"n_blocks": "coupling_blocks"})
    ... class Flow:
    ...     def __init__(self, coupling_blocks: int = 8) -> None:
    ...         self.coupling_blocks = coupling_blocks
    >>> import inspect, warnings
    >>> list(inspect.signature(Flow).parameters)
    ['coupling_blocks']
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     Flow(n_blocks=2).coupling_blocks
    2
    >>> str(caught[0].message)
    "Flow: argument 'n_blocks' is deprecated, use 'coupling_blocks'."
"""

import functools
import inspect
import sys
import warnings
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

__all__ = ["renamed_arguments", "renamed_attributes", "translate_arguments"]

_Class = TypeVar("_Class", bound=type)


def translate_arguments(
    arguments: Mapping[str, Any],
    renames: Mapping[str, str],
    owner: str,
    stacklevel: int = 2,
) -> dict[str, Any]:
    """A copy of ``arguments`` with each old name of ``renames`` replaced by its new name, warning for each.

    Args:
        arguments (Mapping[str, Any]): Keyword arguments as given.
        renames (Mapping[str, str]): Old name -> new name.
        owner (str): Class or function named in the warning.
        stacklevel (int, optional): Frame the warning points at, counted from the caller. Defaults to ``2``, the
            caller's caller.

    Returns:
        dict[str, Any]: The arguments under their new names.

    Raises:
        TypeError: An old name and its new name are both given (which one is meant cannot be told).
    """
    translated = dict(arguments)
    for old, new in renames.items():
        if old not in translated:
            continue
        if new in translated:
            msg = f"{owner} got both {old!r} and {new!r}; {old!r} is the deprecated name of {new!r}: pass {new!r} only."
            raise TypeError(msg)
        message = f"{owner}: argument {old!r} is deprecated, use {new!r}."
        warnings.warn(message, FutureWarning, stacklevel=stacklevel + 1)
        translated[new] = translated.pop(old)
    return translated


def renamed_arguments(renames: Mapping[str, str]) -> Callable[[_Class], _Class]:
    """Class decorator: ``__init__`` also takes the old names in ``renames`` (old -> new), with a warning.

    The class gets ``renamed_arguments``: its own map merged over that of its bases.

    Raises:
        TypeError: At decoration, a new name is not an ``__init__`` parameter or an old one still is.
    """

    def decorate(cls: _Class) -> _Class:
        init = cls.__dict__["__init__"]
        parameters = inspect.signature(init).parameters
        wrong = sorted({new for new in renames.values() if new not in parameters} | (set(renames) & set(parameters)))
        if wrong:
            msg = f"renamed_arguments of {cls.__name__}: {wrong} do not match the parameters of its __init__."
            raise TypeError(msg)
        table = MappingProxyType({**getattr(cls, "renamed_arguments", {}), **renames})

        @functools.wraps(init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
            init(self, *args, **translate_arguments(kwargs, table, type(self).__name__))

        setattr(cls, "__init__", __init__)  # noqa: B010
        setattr(cls, "renamed_arguments", table)  # noqa: B010
        return cls

    return decorate


def renamed_attributes(module: str, renames: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` serving each old name of ``renames`` as its new one, with a warning.

    Use as ``__getattr__ = renamed_attributes(__name__, {"OldName": "NewName"})`` at the end of the module.
    """

    def __getattr__(name: str) -> Any:  # noqa: N807
        if name not in renames:
            msg = f"module {module!r} has no attribute {name!r}"
            raise AttributeError(msg)
        new = renames[name]
        warnings.warn(f"{module}.{name} is deprecated, use {new}.", FutureWarning, stacklevel=2)
        return getattr(sys.modules[module], new)

    return __getattr__
