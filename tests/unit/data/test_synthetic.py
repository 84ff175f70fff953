# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Tests of the synthetic MVTec-layout dataset generator."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalib_nfplus.data.synthetic import CATEGORY_DEFECTS, make_mvtec_like, make_sample

SMALL = {"n_train": 3, "n_test_good": 2, "n_test_bad": 2}


def _pngs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.png"))


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_layout_and_counts(tmp_path):
    root = make_mvtec_like(tmp_path, ("stripes", "dots", "gradient"), image_size=(32, 48), **SMALL)
    assert root == tmp_path
    for category, defects in CATEGORY_DEFECTS.items():
        base = root / category
        assert _pngs(base / "train" / "good") == ["000.png", "001.png", "002.png"]
        assert len(_pngs(base / "test" / "good")) == 2
        assert sorted(p.name for p in (base / "test").iterdir()) == sorted(["good", *defects])
        assert sorted(p.name for p in (base / "ground_truth").iterdir()) == sorted(defects)
        for defect in defects:
            stems = [Path(n).stem for n in _pngs(base / "test" / defect)]
            assert len(stems) == 2
            assert _pngs(base / "ground_truth" / defect) == [f"{s}_mask.png" for s in stems]
        with Image.open(base / "test" / defects[0] / "000.png") as image:
            assert image.mode == "RGB"
            assert image.size == (48, 32)  # PIL reports (W, H)


def test_written_masks_are_binary_nonempty_and_sized(tmp_path):
    root = make_mvtec_like(tmp_path, ("dots",), image_size=(40, 56), **SMALL)
    masks = sorted((root / "dots" / "ground_truth").rglob("*_mask.png"))
    assert len(masks) == 2 * len(CATEGORY_DEFECTS["dots"])
    for path in masks:
        with Image.open(path) as mask:
            assert mask.mode == "L"
            assert mask.size == (56, 40)
            values = np.asarray(mask)
        assert set(np.unique(values)) == {0, 255}


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize(("category", "defect"), [(c, d) for c, ds in CATEGORY_DEFECTS.items() for d in ds])
def test_mask_covers_exactly_the_changed_pixels(category, defect, channels):
    for seed in range(4):
        normal, image, mask = make_sample(category, defect, image_size=(48, 64), seed=seed, channels=channels)
        inside = mask == 255
        assert 0 < inside.sum() < 0.25 * inside.size  # localised
        diff = np.abs(image.astype(int) - normal.astype(int))
        diff = diff if channels == 1 else diff.max(axis=-1)
        assert np.all(diff[~inside] == 0), "pixels outside the mask must equal the defect-free rendering"
        assert diff[inside].min() >= 15, "every masked pixel must visibly change"


def test_normal_images_have_structure_and_jitter():
    for category in CATEGORY_DEFECTS:
        first, image, mask = make_sample(category, None, image_size=64, seed=1)
        second, *_ = make_sample(category, None, image_size=64, seed=2)
        assert np.array_equal(first, image)
        assert not mask.any()
        assert first.std() > 20, f"{category} must be a texture, not a flat colour"
        assert not np.array_equal(first, second)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = _all_files(make_mvtec_like(tmp_path / "a", ("stripes", "dots"), seed=3, **SMALL))
    b = _all_files(make_mvtec_like(tmp_path / "b", ("stripes", "dots"), seed=3, **SMALL))
    c = _all_files(make_mvtec_like(tmp_path / "c", ("stripes", "dots"), seed=4, **SMALL))
    assert a == b
    assert a.keys() == c.keys()
    assert a != c


def test_grayscale_writes_single_channel_pngs(tmp_path):
    root = make_mvtec_like(tmp_path, ("stripes",), channels=1, **SMALL)
    images = [p for p in (root / "stripes").rglob("*.png") if "ground_truth" not in p.parts]
    assert images
    for path in images:
        with Image.open(path) as image:
            assert image.mode == "L"


def test_per_category_image_size(tmp_path):
    root = make_mvtec_like(tmp_path, ("stripes", "dots"), image_size={"stripes": 32, "dots": (40, 24)}, **SMALL)
    with Image.open(root / "stripes" / "train" / "good" / "000.png") as image:
        assert image.size == (32, 32)
    with Image.open(root / "dots" / "train" / "good" / "000.png") as image:
        assert image.size == (24, 40)
    with Image.open(root / "dots" / "ground_truth" / "missing" / "000_mask.png") as mask:
        assert mask.size == (24, 40)


def test_existing_folder_needs_overwrite(tmp_path):
    make_mvtec_like(tmp_path, ("stripes",), **SMALL)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        make_mvtec_like(tmp_path, ("stripes",), **SMALL)
    make_mvtec_like(tmp_path, ("stripes",), overwrite=True, n_train=1, n_test_good=1, n_test_bad=1)
    assert _pngs(tmp_path / "stripes" / "train" / "good") == ["000.png"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"categories": ("wood",)}, "Unknown synthetic category"),
        ({"categories": "stripes"}, "sequence of names"),
        ({"image_size": 8}, "image_size"),
        ({"image_size": {"dots": 32}}, "no entry"),
        ({"channels": 2}, "channels"),
        ({"n_train": 0}, "n_train"),
        ({"seed": -1}, "seed"),
    ],
)
def test_invalid_arguments_raise(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_mvtec_like(tmp_path, **{"categories": ("stripes",), **kwargs})


def test_unknown_defect_raises():
    with pytest.raises(ValueError, match="Unknown defect"):
        make_sample("stripes", "missing")


@pytest.mark.parametrize("channels", [3, 1])
def test_mvtecad_datamodule_loads_it(tmp_path, channels):
    from anomalib.data import MVTecAD

    root = make_mvtec_like(tmp_path, ("dots",), n_train=4, n_test_good=2, n_test_bad=2, channels=channels)
    datamodule = MVTecAD(root=root, category="dots", train_batch_size=4, eval_batch_size=8, num_workers=0)
    datamodule.setup()
    train = next(iter(datamodule.train_dataloader()))
    assert tuple(train.image.shape) == (4, 3, 64, 64)  # grayscale PNGs are read as RGB
    test = next(iter(datamodule.test_dataloader()))
    assert tuple(test.image.shape) == (8, 3, 64, 64)
    assert set(test.gt_label.tolist()) == {0, 1}
    for label, mask in zip(test.gt_label, test.gt_mask, strict=True):
        assert bool(mask.any()) == bool(label), "anomalous images need non-empty masks, normal ones empty"


def test_mixed_size_category_loads_with_resize(tmp_path):
    from anomalib.data import MVTecAD
    from torchvision.transforms.v2 import Resize

    root = make_mvtec_like(tmp_path, ("stripes", "gradient"), image_size={"stripes": 64, "gradient": (48, 80)}, **SMALL)
    datamodule = MVTecAD(root=root, category="gradient", eval_batch_size=4, num_workers=0, augmentations=Resize(64))
    datamodule.setup()
    batch = next(iter(datamodule.test_dataloader()))
    assert tuple(batch.image.shape[-2:]) == (64, 106)
    assert batch.gt_mask.shape[-2:] == batch.image.shape[-2:]
