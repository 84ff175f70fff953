# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Datamodules for the benchmark runner, and seeded subsets of a dataset for short smoke runs.

A subset is a copy of the chosen files in the same folder layout under a temporary root, so the unchanged
anomalib datamodule reads it (anomalib rejects symlinks that leave the dataset root, so files are hard-linked
or copied). Test images are sampled per folder in proportion to its size, keeping every defect type present.
"""

import argparse
import os
import random
import shutil
from pathlib import Path

from anomalib.data import Folder, MVTecAD
from anomalib.data.datamodules.base.image import AnomalibDataModule

__all__ = ["has_masks", "make_datamodule", "materialise", "stratified"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def has_masks(args: argparse.Namespace) -> bool:
    """MVTec layouts always have masks (``MVTecAD`` requires one per anomalous image); folders only if given."""
    return args.format == "mvtec" or bool(args.mask_dirs)


def make_datamodule(args: argparse.Namespace, root: Path) -> AnomalibDataModule:
    """``MVTecAD`` or ``Folder`` with validation on the test split (post-processing needs it for thresholds)."""
    common = {
        "train_batch_size": args.batch_size,
        "eval_batch_size": args.batch_size,
        "num_workers": args.num_workers,
        "seed": args.seed,
    }
    if args.format == "mvtec":
        return MVTecAD(root=root, category=args.category, **common)
    return Folder(
        name=args.category,
        root=root,
        normal_dir=args.normal_dir,
        abnormal_dir=args.abnormal_dirs,
        normal_test_dir=args.normal_test_dir,
        mask_dir=args.mask_dirs or None,
        val_split_mode="same_as_test",
        **common,
    )


def _folders(args: argparse.Namespace) -> tuple[Path, list[tuple[str, str | None]], list[tuple[str, str | None]]]:
    """Return the base directory and its (image dir, mask dir) pairs for training and for testing."""
    if args.format == "folder":
        masks = args.mask_dirs or [None] * len(args.abnormal_dirs)
        test = [(args.normal_test_dir, None)] if args.normal_test_dir else []
        return args.root, [(args.normal_dir, None)], test + list(zip(args.abnormal_dirs, masks, strict=True))
    base = args.root / args.category
    defects = sorted(d.name for d in (base / "test").iterdir() if d.is_dir() and d.name != "good")
    return base, [("train/good", None)], [("test/good", None)] + [(f"test/{d}", f"ground_truth/{d}") for d in defects]


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def stratified(groups: dict[str, list[Path]], total: int, rng: random.Random) -> dict[str, list[Path]]:
    """Draw ``total`` items across groups in proportion to group size, at least one per non-empty group."""
    sizes = {key: len(items) for key, items in groups.items() if items}
    if total >= sum(sizes.values()):
        return {key: list(items) for key, items in groups.items()}
    quota = {key: max(1, total * n // sum(sizes.values())) for key, n in sizes.items()}
    while sum(quota.values()) < total:  # hand out the rounding remainder to the least-served groups
        key = max((k for k in sizes if quota[k] < sizes[k]), key=lambda k: sizes[k] / quota[k])
        quota[key] += 1
    return {key: sorted(rng.sample(groups[key], quota[key])) for key in sizes}


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # other file system, or links not allowed
        shutil.copyfile(src, dst)


def _mask_for(image: Path, mask_dir: Path) -> Path:
    for name in (f"{image.stem}_mask{image.suffix}", image.name, f"{image.stem}_mask.png", f"{image.stem}.png"):
        if (mask_dir / name).is_file():
            return mask_dir / name
    msg = f"No mask for {image} in {mask_dir} (tried <stem>_mask and <stem>)."
    raise FileNotFoundError(msg)


def materialise(args: argparse.Namespace, dest: Path) -> Path:
    """Return the root to load: ``--root`` itself, or ``dest`` holding a seeded subset when limits are set."""
    if args.limit_train is None and args.max_test is None:
        return args.root
    base, train, test = _folders(args)
    rng = random.Random(args.seed)
    target = dest / args.category if args.format == "mvtec" else dest
    for pairs, limit in ((train, args.limit_train), (test, args.max_test)):
        groups = {image_dir: _images(base / image_dir) for image_dir, _ in pairs}
        chosen = stratified(groups, limit, rng) if limit is not None else groups
        masks = dict(pairs)
        for image_dir, images in chosen.items():
            for image in images:
                _link(image, target / image_dir / image.name)
                if masks[image_dir] is not None:
                    mask = _mask_for(image, base / masks[image_dir])
                    _link(mask, target / masks[image_dir] / mask.name)
    return dest
