# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""``MVTec``: the datamodule name anomalib's docs still use (``--data MVTec``).

anomalib 2.x renamed ``MVTec`` to ``MVTecAD`` and removed the deprecated alias (PR #3469), so in 2.7
``--data MVTec`` fails. This module restores the name as a plain subclass of ``MVTecAD``. If a future anomalib
brings ``anomalib.data.MVTec`` back, we re-export that class instead of defining a second one, because two
subclasses with one name make jsonargparse fail with "Multiple subclasses with name MVTec".
"""

import anomalib.data
from anomalib.data import MVTecAD

__all__ = ["MVTec"]

_upstream = getattr(anomalib.data, "MVTec", None)

if _upstream is not None and not getattr(_upstream, "_anomalib_nfplus_alias", False):
    MVTec = _upstream
else:

    class MVTec(MVTecAD):
        """MVTec AD datamodule under its pre-2.0 name; identical to :class:`anomalib.data.MVTecAD`.

        Results are written under the ``MVTecAD`` name so paths match runs made with ``--data MVTecAD``.

        Example:
            >>> from anomalib_nfplus.data import MVTec
            >>> datamodule = MVTec(root="./datasets/MVTecAD", category="bottle")
        """

        _anomalib_nfplus_alias = True

        @property
        def name(self) -> str:
            """Name used in result paths: the upstream class name."""
            return MVTecAD.__name__
