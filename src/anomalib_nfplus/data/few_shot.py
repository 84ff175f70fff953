# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
r"""Few-shot training: keep a seeded random subset of ``N`` training images of any anomalib datamodule.

DifferNet's paper trains on as few as 16 images per category. Three ways to get that, all drawing the same images
for the same ``(n_images, seed)`` and dataset (a seeded permutation of the training set in its loader order):

* :func:`subsample_training_set` - on a datamodule that has been set up (Python);
* :class:`FewShot` - a Lightning callback that subsamples whatever datamodule the trainer uses, right after
  its ``setup`` (Python ``Engine(callbacks=[FewShot(16)])`` or the CLI, see below);
* :class:`FewShotMVTecAD` - ``MVTecAD`` with a ``train_images`` option (``--data`` on the CLI).

Only the training split shrinks; validation and test splits stay as they are.

CLI example::

    anomalib train --model DifferNet --data anomalib_nfplus.data.few_shot.FewShotMVTecAD \\
        --data.root ./datasets/MVTecAD --data.category bottle --data.train_images 16 --data.train_images_seed 0
"""

from typing import Any

import torch
from anomalib.data import AnomalibDataModule, MVTecAD
from lightning.pytorch import Callback, LightningModule, Trainer

__all__ = ["FewShot", "FewShotMVTecAD", "few_shot_indices", "subsample_training_set"]


def few_shot_indices(n_available: int, n_images: int, seed: int = 0) -> list[int]:
    """Sorted indices of ``n_images`` of ``n_available`` items, drawn without replacement with ``seed``.

    Raises:
        ValueError: If ``n_images`` is not in ``[1, n_available]``.
    """
    if n_images < 1:
        msg = f"A few-shot training set needs at least one image, got n_images={n_images}."
        raise ValueError(msg)
    if n_images > n_available:
        msg = (
            f"Cannot keep {n_images} training images: the training set has only {n_available}. Lower n_images "
            "(train_images) or drop the few-shot option to train on all images."
        )
        raise ValueError(msg)
    generator = torch.Generator().manual_seed(int(seed))
    return sorted(torch.randperm(n_available, generator=generator)[:n_images].tolist())


def subsample_training_set(datamodule: AnomalibDataModule, n_images: int, seed: int = 0) -> AnomalibDataModule:
    """Keep ``n_images`` seeded random training images of a datamodule that has been set up (in place).

    Calling it again with the same arguments changes nothing, so it is safe after every ``setup``.

    Args:
        datamodule (AnomalibDataModule): A datamodule after ``setup()``.
        n_images (int): Training images to keep.
        seed (int, optional): Seed of the choice. Defaults to ``0``.

    Returns:
        AnomalibDataModule: The same datamodule.

    Raises:
        RuntimeError: If the datamodule has no training data yet.
    """
    train_data = getattr(datamodule, "train_data", None)
    if train_data is None:
        msg = f"{type(datamodule).__name__} has no training data yet: call datamodule.setup() before subsampling."
        raise RuntimeError(msg)
    chosen = getattr(train_data, "_few_shot", None)
    if chosen == (n_images, seed) and len(train_data) == n_images:
        return datamodule
    indices = few_shot_indices(len(train_data), n_images, seed)
    datamodule.train_data = train_data.subsample(indices)
    datamodule.train_data._few_shot = (n_images, seed)  # type: ignore[attr-defined]  # marker read back above
    return datamodule


class FewShot(Callback):
    """Subsample the trainer's datamodule to ``n_images`` training images once it is set up.

    Args:
        n_images (int, optional): Training images to keep. Defaults to ``16`` (the paper's few-shot setting).
        seed (int, optional): Seed of the choice. Defaults to ``0``.
    """

    def __init__(self, n_images: int = 16, seed: int = 0) -> None:
        few_shot_indices(n_images, n_images, seed)  # validates n_images early
        self.n_images = n_images
        self.seed = seed

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Lightning sets the datamodule up before the callbacks, so ``train_data`` exists here."""
        del pl_module, stage
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is None or getattr(datamodule, "train_data", None) is None:
            return
        subsample_training_set(datamodule, self.n_images, self.seed)


class FewShotMVTecAD(MVTecAD):
    """``MVTecAD`` whose training split keeps only ``train_images`` seeded random images (``None``: all).

    Args:
        *args (Any): As ``MVTecAD``.
        train_images (int | None, optional): Training images to keep. Defaults to ``None``.
        train_images_seed (int, optional): Seed of the choice. Defaults to ``0``.
        **kwargs (Any): As ``MVTecAD`` (root, category, batch sizes, ...).
    """

    def __init__(self, *args: Any, train_images: int | None = None, train_images_seed: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if train_images is not None:
            few_shot_indices(train_images, train_images, train_images_seed)
        self.train_images = train_images
        self.train_images_seed = train_images_seed

    @property
    def name(self) -> str:  # type: ignore[override]  # a plain attribute in Lightning, a property in anomalib
        """Results are filed under ``MVTecAD``, as for the full data set."""
        return MVTecAD.__name__

    def setup(self, stage: str | None = None) -> None:
        """Set up the splits, then shrink the training split."""
        super().setup(stage)
        if self.train_images is not None and getattr(self, "train_data", None) is not None:
            subsample_training_set(self, self.train_images, self.train_images_seed)
