# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""``MVTec``: the datamodule name anomalib's docs still use (``--data MVTec``).

anomalib 2.x renamed ``MVTec`` to ``MVTecAD`` and removed the deprecated alias (PR #3469), so in 2.7
``--data MVTec`` fails. This module restores the name as a subclass of ``MVTecAD``. If a future anomalib
brings ``anomalib.data.MVTec`` back, we re-export that class instead of defining a second one, because two
subclasses with one name make jsonargparse fail with "Multiple subclasses with name MVTec".

Unlike ``MVTecAD``, the alias checks its folders before training: a ``root`` given by the user that lacks the
category fails at once instead of starting a 5 GB download, and a category without training images fails at
set-up instead of in the sampler.
"""

from pathlib import Path

import anomalib.data
from anomalib.data import MVTecAD
from anomalib.data.datasets.image.mvtecad import CATEGORIES
from anomalib.utils.path import get_datasets_dir

__all__ = ["MVTec", "MVTecDataError"]

#: ``MVTecAD``'s default ``root``; only there (or with ``root=None``) is the official dataset downloaded.
DEFAULT_ROOT = "./datasets/MVTecAD"
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


class MVTecDataError(FileNotFoundError):
    """The MVTec-layout folders of a category are missing or hold no training images."""


def is_default_root(root: str | Path) -> bool:
    """Whether ``root`` is where ``MVTecAD`` puts its download (its default or the anomalib datasets folder)."""
    path = Path(root).expanduser().resolve()
    return path in {Path(DEFAULT_ROOT).resolve(), (get_datasets_dir() / "MVTecAD").resolve()}


def check_category_folder(root: Path, category: str) -> None:
    """Refuse a missing ``root/category`` before anything is downloaded or read; the message says how to fix it."""
    folder = (root / category).absolute()
    if folder.is_dir():
        return
    if not root.is_dir():
        found = f"the root {root} does not exist"
    else:
        names = sorted(p.name for p in root.iterdir() if (p / "train").is_dir())
        found = f"{root} holds the categories {names}" if names else f"{root} holds no MVTec-layout category"
    msg = (
        f"MVTec data not found: looked for {folder} ({found}).\n"
        f"Pass --data.root <folder holding {category}/train/good>, or keep the default root {DEFAULT_ROOT}, where "
        "prepare_data() (run by anomalib train) downloads the official MVTec AD (about 5 GB)."
    )
    raise MVTecDataError(msg)


def check_category_name(category: str) -> None:
    """Refuse a category MVTec AD does not have before a download that could not provide it."""
    if category not in CATEGORIES:
        msg = (
            f"MVTec AD has no category {category!r}; its categories are {list(CATEGORIES)}. For your own data, "
            "pass --data.root <folder holding the category>."
        )
        raise MVTecDataError(msg)


def check_training_images(root: Path, category: str, count: int) -> None:
    """Refuse a category with no training images (the training sampler would fail with ``num_samples=0``)."""
    if count > 0:
        return
    folder = (root / category / "train" / "good").absolute()
    msg = (
        f"MVTec category {category!r} has no training images: {folder} holds no "
        f"{'/'.join(sorted(_IMAGE_SUFFIXES))} files. Put the normal training images there or choose another "
        "category."
    )
    raise MVTecDataError(msg)


_upstream = getattr(anomalib.data, "MVTec", None)

if _upstream is not None and not getattr(_upstream, "_anomalib_nfplus_alias", False):
    MVTec = _upstream
else:

    class MVTec(MVTecAD):  # type: ignore[no-redef]  # defined here only when anomalib has no MVTec
        """MVTec AD datamodule under its pre-2.0 name; ``MVTecAD`` with its folders checked before training.

        Results are written under the ``MVTecAD`` name so paths match runs made with ``--data MVTecAD``.

        Download rule: the official dataset (about 5 GB) is downloaded only into the default root
        (``./datasets/MVTecAD``, or anomalib's datasets folder with ``root=None``), and only for one of its 15
        categories, as ``MVTecAD`` does. Any other ``root`` is the user's own data: if ``root/category`` does
        not exist, :meth:`prepare_data` fails at once naming the path looked for. At set-up, a category without
        training images fails naming its ``train/good`` folder. Both raise :class:`MVTecDataError`.

        Example:
            >>> from anomalib_nfplus.data import MVTec
            >>> datamodule = MVTec(root="./datasets/MVTecAD", category="bottle")
        """

        _anomalib_nfplus_alias = True

        @property
        def name(self) -> str:  # type: ignore[override]  # a plain attribute in Lightning, a property in anomalib
            """Name used in result paths: the upstream class name."""
            return MVTecAD.__name__

        def prepare_data(self) -> None:
            """Download MVTec AD into the default root only; elsewhere require ``root/category`` to exist."""
            if not (self.root / self.category).is_dir():
                if not is_default_root(self.root):
                    check_category_folder(self.root, self.category)
                check_category_name(self.category)
            super().prepare_data()

        def _setup(self, _stage: str | None = None) -> None:
            """Set up like ``MVTecAD``, after checking the folder exists and before any split needs images."""
            check_category_folder(self.root, self.category)
            super()._setup(_stage)
            check_training_images(self.root, self.category, len(self.train_data))
