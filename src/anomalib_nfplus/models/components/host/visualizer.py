# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""anomalib's image visualizer with one folder per category when a batch carries class indices.

anomalib names a visualisation after the part of the image path below the dataset's name and category. A
multi-category datamodule has no single name or category in its paths, so anomalib keeps only the last folder:
``images/<defect>/<stem>.png``, where categories with the same defect and file names overwrite each other. Here
images of a batch with ``class_index`` (``Unified``) go to ``images/<category>/<defect>/<stem>.png``; other
batches are saved exactly as anomalib saves them.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from anomalib.visualization import ImageVisualizer

from anomalib_nfplus.batch import class_index_of

__all__ = ["CategoryImageVisualizer"]


def _class_names(trainer: Any) -> list[str] | None:
    names = getattr(getattr(trainer, "datamodule", None), "class_names", None)
    if isinstance(names, Sequence) and not isinstance(names, str) and len(names) > 1:
        return [str(name) for name in names]
    return None


class CategoryImageVisualizer(ImageVisualizer):
    """:class:`~anomalib.visualization.ImageVisualizer` that keeps categories of a unified run apart."""

    def _per_category(self, hook: Any, trainer: Any, pl_module: Any, outputs: Any, batch: Any, *rest: Any) -> None:
        index = class_index_of(batch)
        names = _class_names(trainer)
        if index is None or names is None:
            hook(trainer, pl_module, outputs, batch, *rest)
            return
        root = Path(self.output_dir) if self.output_dir is not None else Path(trainer.default_root_dir) / "images"
        items = list(batch)
        try:
            for value in index.unique().tolist():
                self.output_dir = root / names[value]
                chosen = [item for item, i in zip(items, index.tolist(), strict=True) if i == value]
                hook(trainer, pl_module, outputs, chosen, *rest)
        finally:
            self.output_dir = root

    def on_test_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, *args: Any, **kwargs: Any
    ) -> None:
        """Save the batch's visualisations, one folder per category when the batch has class indices.

        anomalib's ``on_predict_batch_end`` calls this method, so predictions are kept apart the same way.
        """
        self._per_category(super().on_test_batch_end, trainer, pl_module, outputs, batch, *args, *kwargs.values())
