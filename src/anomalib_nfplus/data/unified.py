# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""``Unified``: several categories in one training set and one test set, for "unified" (multi-class) models.

Each category is an ordinary anomalib image datamodule (``MVTecAD``, ``Folder``, ...), which keeps its own file
layout, splits and masks. ``Unified`` sets them up, resizes every image to one ``image_size`` (masks: nearest),
makes grayscale RGB and tags each image with its class index, so batches are anomalib ``ImageBatch`` es with an
extra ``class_index`` field (:class:`UnifiedImageBatch`). Models that ignore the field train and test unchanged.

Training batches mix categories (shuffled). Evaluation batches hold one category each, so categories without
masks give ``gt_mask=None`` and anomalib's pixel metrics skip them: the overall pixel scores cover the categories
that have masks only. The per-category table (``image_AUROC/<category>``, ``pixel_AUROC/<category>`` for categories
with masks, and their ``/mean``) comes from :class:`~anomalib_nfplus.callbacks.PerCategoryMetrics`, which the
plugin's models add by themselves (see :class:`Unified`).

Example:
    >>> from anomalib.data import Folder, MVTecAD
    >>> from anomalib_nfplus.data.unified import Unified
    >>> datamodule = Unified(datamodules=[MVTecAD(root="./datasets/MVTecAD", category="bottle"),
    ...                                   Folder(name="cells", root="./cells", normal_dir="good",
    ...                                          abnormal_dir="bad")])  # doctest: +SKIP
    >>> Unified(root="./datasets/MVTecAD", categories=["bottle", "cable"]).class_names  # doctest: +SKIP
    ['bottle', 'cable']

    CLI: ``anomalib train --model Padim --data anomalib_nfplus.data.unified.Unified --data.root R
    --data.categories '[bottle, cable]'`` or ``--data.datamodules '[{class_path: MVTecAD, init_args: {...}}]'``.
"""

from collections.abc import Sequence
from pathlib import Path

from anomalib.data import AnomalibDataModule, MVTecAD
from anomalib.data.utils import ValSplitMode
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.data import DataLoader, SequentialSampler
from torchvision.transforms.v2 import Transform

from .unified_batch import UnifiedImageBatch, UnifiedImageItem, class_names_of
from .unified_dataset import CategoryBatchSampler, UnifiedDataset

__all__ = ["Unified", "UnifiedDataset", "UnifiedImageBatch", "UnifiedImageItem", "class_names_of"]


class UnifiedDataError(ValueError):
    """The categories given to :class:`Unified` cannot be combined as they are."""


class Unified(AnomalibDataModule):
    """Several anomalib image datamodules as one multi-class datamodule (class index = position in the list).

    Per-category metrics: the datamodule never changes the trainer. The plugin's models (CflowAD, DifferNet,
    HGAD) return :class:`~anomalib_nfplus.callbacks.PerCategoryMetrics` from ``configure_callbacks``, Lightning's
    hook for the callbacks a model needs, whenever their trainer's datamodule has ``class_names``, as this one has;
    ``category_metrics=False`` opts out. With other models, pass the callback to the trainer:
    ``Engine(callbacks=[PerCategoryMetrics()])``, or on the command line
    ``--trainer.callbacks anomalib_nfplus.callbacks.PerCategoryMetrics``.

    Args:
        datamodules (Sequence[AnomalibDataModule] | None, optional): One image datamodule per category.
        root (str | Path | None, optional): Convenience form: an MVTec-layout root; with ``categories`` it builds
            ``MVTecAD(root=root, category=c)`` for each. Use either this or ``datamodules``.
        categories (Sequence[str] | None, optional): Category folders under ``root``.
        names (Sequence[str] | None, optional): Class names (default: each datamodule's ``category``, else its
            ``name``); must be unique.
        image_size (int | Sequence[int], optional): Common ``(H, W)`` (or side) every image is resized to before
            batching; the model's pre-processor then resizes to its own size. Defaults to ``(256, 256)``.
        train_batch_size (int, optional): Defaults to ``32``.
        eval_batch_size (int, optional): Defaults to ``32``.
        num_workers (int, optional): Defaults to ``8``.
        train_augmentations (Transform | None, optional): Applied after the common resize. Defaults to ``None``.
        val_augmentations (Transform | None, optional): Defaults to ``None``.
        test_augmentations (Transform | None, optional): Defaults to ``None``.
        augmentations (Transform | None, optional): For every split without its own. Defaults to ``None``.
        seed (int | None, optional): Seed of the datamodules built from ``root``/``categories``. Defaults to ``None``.
        val_split_mode (ValSplitMode | str, optional): Validation split of the datamodules built from
            ``root``/``categories`` (with ``datamodules``, each keeps its own). ``"same_as_test"`` (anomalib's
            default) fits the post-processor's thresholds on the test images and their labels; ``"synthetic"``
            carves ``val_split_ratio`` of each category's training images and adds synthetic defects, so no test
            label is used. Defaults to ``"same_as_test"``.
        val_split_ratio (float, optional): Share of training images for a ``"synthetic"`` or ``"from_train"``
            validation split. Defaults to ``0.5``.
        category_metrics (bool, optional): Let the plugin's models add
            :class:`~anomalib_nfplus.callbacks.PerCategoryMetrics` when they run on this datamodule.
            Defaults to ``True``.
    """

    # Set by ``_setup`` (anomalib declares them as ``AnomalibDataset``).
    train_data: UnifiedDataset
    val_data: UnifiedDataset
    test_data: UnifiedDataset

    def __init__(
        self,
        datamodules: Sequence[AnomalibDataModule] | None = None,
        root: str | Path | None = None,
        categories: Sequence[str] | None = None,
        names: Sequence[str] | None = None,
        image_size: int | Sequence[int] = (256, 256),
        train_batch_size: int = 32,
        eval_batch_size: int = 32,
        num_workers: int = 8,
        train_augmentations: Transform | None = None,
        val_augmentations: Transform | None = None,
        test_augmentations: Transform | None = None,
        augmentations: Transform | None = None,
        seed: int | None = None,
        category_metrics: bool = True,
        val_split_mode: ValSplitMode | str = ValSplitMode.SAME_AS_TEST,
        val_split_ratio: float = 0.5,
    ) -> None:
        super().__init__(
            train_batch_size=train_batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            train_augmentations=train_augmentations,
            val_augmentations=val_augmentations,
            test_augmentations=test_augmentations,
            augmentations=augmentations,
            seed=seed,
        )
        split = {"val_split_mode": ValSplitMode(val_split_mode), "val_split_ratio": val_split_ratio}
        self.datamodules = _datamodules(datamodules, root, categories, seed, split)
        self._class_names = _names(self.datamodules, names)
        self.image_size = _size(image_size)
        self.category_metrics = category_metrics
        self._category = "+".join(self._class_names)

    @property
    def class_names(self) -> list[str]:
        """Category names; a batch's ``class_index`` indexes this list."""
        return list(self._class_names)

    @property
    def num_classes(self) -> int:
        """Number of categories."""
        return len(self._class_names)

    def setup(self, stage: str | None = None) -> None:
        """Set up every category and build the unified splits."""
        if not self._is_setup or not hasattr(self, "train_data"):
            self._setup(stage)
            if isinstance(stage, TrainerFn):
                self._is_setup = True
        self._update_augmentations()

    def _setup(self, _stage: str | None = None) -> None:
        for name, datamodule in zip(self._class_names, self.datamodules, strict=True):
            try:
                datamodule.setup()
            except (FileNotFoundError, ValueError, RuntimeError) as error:
                msg = f"Category {name!r} ({type(datamodule).__name__}) could not be set up: {error}"
                raise UnifiedDataError(msg) from error
            train = getattr(datamodule, "train_data", None)
            if train is None or len(train) == 0:
                msg = (
                    f"Category {name!r} ({type(datamodule).__name__}) has no training images in "
                    f"{_training_folder(datamodule)}; put its normal images there, fix its root, or leave the "
                    "category out."
                )
                raise UnifiedDataError(msg)
        self.train_data = self._split("train")
        self.test_data = self._split("test")
        if any(getattr(datamodule, "val_data", None) is not None for datamodule in self.datamodules):
            self.val_data = self._split("val")

    def _split(self, split: str) -> UnifiedDataset:
        sources = [getattr(datamodule, f"{split}_data", None) for datamodule in self.datamodules]
        return UnifiedDataset(sources, self._class_names, self.image_size, split)

    def val_dataloader(self) -> DataLoader | list:
        """Validation batches, one category per batch (none when no category has validation data)."""
        if getattr(self, "val_data", None) is None:
            return []
        return self._eval_loader(self.val_data)

    def test_dataloader(self) -> DataLoader:
        """Test batches, one category per batch (so masks are present in a whole batch or absent)."""
        return self._eval_loader(self.test_data)

    def _eval_loader(self, dataset: UnifiedDataset) -> DataLoader:
        sampler = CategoryBatchSampler(SequentialSampler(dataset), batch_size=self.eval_batch_size, drop_last=False)
        return DataLoader(
            dataset=dataset,
            batch_sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=self.external_collate_fn or dataset.collate_fn,
        )


def _datamodules(
    datamodules: Sequence[AnomalibDataModule] | None,
    root: str | Path | None,
    categories: Sequence[str] | None,
    seed: int | None,
    split: dict,
) -> list[AnomalibDataModule]:
    if datamodules is not None and (root is not None or categories is not None):
        msg = "Give either datamodules=[...] or root=... with categories=[...], not both."
        raise UnifiedDataError(msg)
    if datamodules is not None and split["val_split_mode"] != ValSplitMode.SAME_AS_TEST:
        msg = "val_split_mode applies to root=/categories=; with datamodules=[...], set it on each datamodule."
        raise UnifiedDataError(msg)
    if datamodules is None:
        if root is None or categories is None or isinstance(categories, str) or not categories:
            msg = (
                "Unified needs the categories: datamodules=[MVTecAD(...), Folder(...), ...], or root=<MVTec-layout "
                f"root> with categories=[<name>, ...] (got root={root!r}, categories={categories!r})."
            )
            raise UnifiedDataError(msg)
        return [MVTecAD(root=root, category=str(category), seed=seed, **split) for category in categories]
    datamodules = list(datamodules)
    if not datamodules:
        msg = "datamodules is empty; give at least one anomalib image datamodule."
        raise UnifiedDataError(msg)
    for position, datamodule in enumerate(datamodules):
        if not isinstance(datamodule, AnomalibDataModule) or isinstance(datamodule, Unified):
            msg = (
                f"datamodules[{position}] must be an anomalib image datamodule (MVTecAD, Folder, ...), got "
                f"{datamodule!r}."
            )
            raise UnifiedDataError(msg)
    return datamodules


def _training_folder(datamodule: AnomalibDataModule) -> str:
    """Where ``datamodule`` reads its normal training images (MVTec layout or ``Folder``), for error messages."""
    root = getattr(datamodule, "root", None)
    normal_dir = getattr(datamodule, "normal_dir", None)
    category = getattr(datamodule, "category", None)
    if isinstance(normal_dir, str | Path):  # Folder: normal_dir is relative to root unless absolute
        path = Path(normal_dir) if root is None else Path(root) / normal_dir
    elif isinstance(datamodule, MVTecAD) and root is not None and category is not None:
        path = Path(root) / str(category) / "train" / "good"
    elif root is not None:
        path = Path(root)
    else:
        return "its training folder"
    return str(path.absolute())


def _names(datamodules: Sequence[AnomalibDataModule], names: Sequence[str] | None) -> list[str]:
    if names is None:
        resolved = [class_names_of(datamodule)[0] for datamodule in datamodules]
    else:
        resolved = [str(name) for name in names]
        if isinstance(names, str) or len(resolved) != len(datamodules):
            msg = f"names must give one name per datamodule ({len(datamodules)}), got {names!r}."
            raise UnifiedDataError(msg)
    duplicates = sorted({name for name in resolved if resolved.count(name) > 1})
    if duplicates or not all(resolved) or "mean" in resolved:
        msg = (
            f"Class names must be unique, non-empty and not 'mean' (the metrics' average), got {resolved}; pass "
            "names=[...] to tell them apart."
        )
        raise UnifiedDataError(msg)
    return resolved


def _size(image_size: int | Sequence[int]) -> tuple[int, int]:
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in size):
        msg = f"image_size must be a positive int or (H, W), got {image_size!r}."
        raise UnifiedDataError(msg)
    return int(size[0]), int(size[1])
