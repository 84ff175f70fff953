# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The class the models' mixins are written against: ``AnomalibModule`` for type checkers, ``object`` at runtime.

Every mixin of :mod:`anomalib_nfplus.models.components` is combined with ``AnomalibModule`` in a model's bases
(``class CflowAD(..., FlowModuleMixin, AnomalibModule)``); anomalib only lists *direct* subclasses of
``AnomalibModule``, so the mixins cannot subclass it themselves. Declaring it as their base while type checking
lets checkers see the Lightning and anomalib methods the mixins call and extend (``self.trainer``,
``super().on_test_start()``) without a runtime base class in the way.
"""

from typing import TYPE_CHECKING

__all__ = ["LightningHost"]

if TYPE_CHECKING:
    from anomalib.models import AnomalibModule as LightningHost
else:
    LightningHost = object
