# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""What the plugin adds to anomalib's CLI, installed when ``anomalib.cli.cli`` is imported (idempotent).

- ``--ckpt_path`` fills the plugin models' arguments from the checkpoint (:mod:`.cli_checkpoint`);
- errors of the plugin's models and datamodules print as a few lines (:mod:`.cli_errors`);
- ``anomalib ...`` runs with dependency noise filtered (:mod:`.quiet`): the console script's ``main`` is wrapped,
  so only the ``anomalib`` command is affected, not code that imports anomalib's CLI module.
"""

import functools
import sys
from collections.abc import Callable
from typing import Any

from anomalib_nfplus.cli_checkpoint import extend_cli
from anomalib_nfplus.cli_errors import install as install_short_errors
from anomalib_nfplus.quiet import third_party_noise_filtered

__all__ = ["extend_anomalib_cli"]

_MARK = "_anomalib_nfplus_quiet"


def _quiet(main: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(main)
    def quiet_main(*args: Any, **kwargs: Any) -> Any:
        with third_party_noise_filtered():
            return main(*args, **kwargs)

    setattr(quiet_main, _MARK, True)
    return quiet_main


def extend_anomalib_cli() -> None:
    """Install the three extensions on an imported ``anomalib.cli.cli``; a no-op before it is imported."""
    module = sys.modules.get("anomalib.cli.cli")
    if module is None or not hasattr(module, "AnomalibCLI"):
        return
    extend_cli()
    install_short_errors()
    main = getattr(module, "main", None)
    if callable(main) and not getattr(main, _MARK, False):
        vars(module)["main"] = _quiet(main)  # a module's attributes are its __dict__ (typed assignment)
