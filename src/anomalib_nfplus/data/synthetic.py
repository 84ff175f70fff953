# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Small synthetic datasets in the MVTec AD folder layout, so tests and demos never need the network.

Each category is a textured surface (oriented stripes, a grid of dots, smooth gradients) redrawn with small random
phase, period and position jitter per image, so a density model has real structure to learn. Anomalies are local
(scratches, stains, colour patches, missing dots) of varying size and contrast, and every mask is exact: inside it
every pixel differs from the defect-free rendering of the same image, outside it none does.

Only numpy and Pillow are used here. Writes ``<root>/<category>/train/good/*.png``, ``test/good/*.png``,
``test/<defect>/*.png`` and ``ground_truth/<defect>/<stem>_mask.png`` (0/255), which anomalib's ``MVTecAD`` reads.

Example:
    >>> import tempfile
    >>> from anomalib_nfplus.data.synthetic import make_mvtec_like
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     root = make_mvtec_like(tmp, ["stripes"], n_train=2, n_test_good=1, n_test_bad=1)
    ...     sorted(p.name for p in (root / "stripes" / "test").iterdir())
    ['blob', 'good', 'patch', 'scratch']
"""

import shutil
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["CATEGORY_DEFECTS", "make_mvtec_like", "make_sample"]

Size = int | tuple[int, int]

# Defect types drawn for each category (directory names under ``test/`` and ``ground_truth/``).
CATEGORY_DEFECTS: dict[str, tuple[str, ...]] = {
    "stripes": ("blob", "patch", "scratch"),
    "dots": ("blob", "missing", "scratch"),
    "gradient": ("blob", "patch", "scratch"),
}

# Every masked pixel changes by at least this much (0-1 scale, ~20 grey levels) so masks stay exact after uint8.
_MIN_CHANGE = 0.08
_NOISE = 0.02
_LUMA = np.array([[0.299], [0.587], [0.114]], np.float32)  # RGB -> grey, ITU-R BT.601 weights


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w]
    return yy.astype(np.float32), xx.astype(np.float32)


def _blend(t: np.ndarray, c0: Sequence[float], c1: Sequence[float]) -> np.ndarray:
    """Map a scalar field in [0, 1] to colours between ``c0`` and ``c1``, shape (H, W, 3)."""
    lo, hi = np.asarray(c0, np.float32), np.asarray(c1, np.float32)
    return lo + t[..., None] * (hi - lo)


def _stripes(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, dict]:
    theta = np.deg2rad(35.0 + rng.uniform(-4.0, 4.0))
    period = max(5.0, min(h, w) / 7.0) * rng.uniform(0.93, 1.07)
    yy, xx = _grid(h, w)
    t = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + rng.uniform(0, 2 * np.pi))
    return _blend(t, (0.20, 0.25, 0.45), (0.85, 0.80, 0.55)), {}


def _dots(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, dict]:
    step = max(8.0, min(h, w) / 6.0)
    radius = 0.3 * step
    rows, cols = int(np.ceil(h / step)) + 1, int(np.ceil(w / step)) + 1
    offset = step / 2 + rng.uniform(-1.0, 1.0, size=2)
    # Dot centres on a jittered grid, shape (rows, cols, 2) in (y, x).
    base = np.stack(np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij"), axis=-1) * step + offset - step / 2
    centres = base + rng.uniform(-0.6, 0.6, size=base.shape)
    yy, xx = _grid(h, w)
    iy = np.clip(np.rint((yy - offset[0] + step / 2) / step), 0, rows - 1).astype(int)
    ix = np.clip(np.rint((xx - offset[1] + step / 2) / step), 0, cols - 1).astype(int)
    dist = np.hypot(yy - centres[iy, ix, 0], xx - centres[iy, ix, 1])
    coverage = np.clip(radius + 0.5 - dist, 0.0, 1.0)
    background = (0.90, 0.88, 0.80)
    return _blend(coverage, background, (0.15, 0.35, 0.30)), {"centres": centres, "radius": radius, "bg": background}


def _gradient(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, dict]:
    theta = np.deg2rad(120.0 + rng.uniform(-15.0, 15.0))
    yy, xx = _grid(h, w)
    proj = (xx / w - 0.5) * np.cos(theta) + (yy / h - 0.5) * np.sin(theta)
    wave = np.sin(2 * np.pi * (1.5 * xx / w + yy / h) + rng.uniform(0, 2 * np.pi))
    t = np.clip(0.5 + 0.6 * proj + 0.12 * wave, 0.0, 1.0)
    return _blend(t, (0.30, 0.55, 0.30), (0.95, 0.75, 0.45)), {}


_TEXTURES: dict[str, Callable[[np.random.Generator, int, int], tuple[np.ndarray, dict]]] = {
    "stripes": _stripes,
    "dots": _dots,
    "gradient": _gradient,
}


def _scratch_mask(rng: np.random.Generator, h: int, w: int, _aux: dict) -> np.ndarray:
    side = min(h, w)
    p0 = rng.uniform(0.15, 0.85, size=2) * (h, w)
    angle = rng.uniform(0, np.pi)
    p1 = p0 + rng.uniform(0.25, 0.55) * side * np.array([np.sin(angle), np.cos(angle)])
    yy, xx = _grid(h, w)
    d = p1 - p0
    # Distance of every pixel to the segment p0-p1.
    s = np.clip(((yy - p0[0]) * d[0] + (xx - p0[1]) * d[1]) / (d @ d), 0.0, 1.0)
    dist = np.hypot(yy - (p0[0] + s * d[0]), xx - (p0[1] + s * d[1]))
    return dist <= max(0.75, rng.uniform(0.008, 0.025) * side)


def _blob_mask(rng: np.random.Generator, h: int, w: int, _aux: dict) -> np.ndarray:
    radius = rng.uniform(0.07, 0.16) * min(h, w)
    cy, cx = rng.uniform(0.2, 0.8, size=2) * (h, w)
    yy, xx = _grid(h, w)
    aspect = rng.uniform(0.6, 1.0)
    angle = np.arctan2(yy - cy, xx - cx)
    wobble = 1.0 + 0.2 * np.sin(3 * angle + rng.uniform(0, 2 * np.pi)) + 0.1 * np.sin(5 * angle)
    return np.hypot((yy - cy) / aspect, xx - cx) <= radius * wobble


def _patch_mask(rng: np.random.Generator, h: int, w: int, _aux: dict) -> np.ndarray:
    ph, pw = (rng.uniform(0.08, 0.22, size=2) * min(h, w)).astype(int) + 2
    y0, x0 = rng.integers(0, h - ph), rng.integers(0, w - pw)
    mask = np.zeros((h, w), dtype=bool)
    mask[y0 : y0 + ph, x0 : x0 + pw] = True
    return mask


def _missing_mask(rng: np.random.Generator, h: int, w: int, aux: dict) -> np.ndarray:
    centres, radius = aux["centres"], aux["radius"]
    inside = np.argwhere(
        (centres[..., 0] > radius)
        & (centres[..., 0] < h - radius)
        & (centres[..., 1] > radius)
        & (centres[..., 1] < w - radius)
    )
    chosen = inside[rng.choice(len(inside), size=min(len(inside), int(rng.integers(1, 4))), replace=False)]
    yy, xx = _grid(h, w)
    mask = np.zeros((h, w), dtype=bool)
    for r, c in chosen:
        mask |= np.hypot(yy - centres[r, c, 0], xx - centres[r, c, 1]) <= radius
    return mask


_DEFECT_MASKS = {"scratch": _scratch_mask, "blob": _blob_mask, "patch": _patch_mask, "missing": _missing_mask}


def _apply_defect(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray, defect: str, aux: dict) -> np.ndarray:
    """Change the pixels under ``mask`` only; contrast is drawn per image so some defects are subtle."""
    out = img.copy()
    contrast = rng.uniform(0.15, 0.5)
    lum = img.mean(axis=-1, keepdims=True)
    if defect == "scratch":
        out = np.where(lum > 0.5, img - contrast, img + contrast)
    elif defect == "blob":
        mean = img[mask].mean(axis=0)
        out = 0.4 * img + 0.6 * (mean + np.where(mean.mean() > 0.5, -contrast, contrast))
    elif defect == "patch":
        alpha = rng.uniform(0.4, 0.85)
        out = (1 - alpha) * img + alpha * rng.uniform(0.0, 1.0, size=int(img.shape[-1])).astype(np.float32)
    else:  # missing dots: background colour where a dot was
        bg = np.asarray(aux["bg"], np.float32)
        bg = bg @ _LUMA if img.shape[-1] == 1 else bg
        out = np.broadcast_to(bg, img.shape) + rng.normal(0.0, _NOISE, size=img.shape)
    out = np.clip(out, 0.0, 1.0)
    # Guarantee every masked pixel visibly changes (a colour can coincide with the texture by chance).
    weak = (np.abs(out - img).max(axis=-1) < _MIN_CHANGE)[..., None]
    out = np.where(weak, np.where(lum > 0.5, img - 2 * _MIN_CHANGE, img + 2 * _MIN_CHANGE), out)
    return np.where(mask[..., None], out, img).astype(np.float32)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(img, 0.0, 1.0) * 255).astype(np.uint8)


def make_sample(
    category: str,
    defect: str | None = None,
    *,
    image_size: Size = 64,
    seed: int | Sequence[int] = 0,
    channels: int = 3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one image of ``category``: defect-free, with ``defect`` applied, and the defect mask.

    Args:
        category (str): Texture name, a key of ``CATEGORY_DEFECTS``.
        defect (str | None, optional): Defect type from ``CATEGORY_DEFECTS[category]``, or ``None`` for a normal
            image (then the second output equals the first and the mask is empty). Defaults to ``None``.
        image_size (int | tuple[int, int], optional): ``(H, W)`` or a square side. Defaults to ``64``.
        seed (int | Sequence[int], optional): Seed (or seed sequence) of this image. Defaults to ``0``.
        channels (int, optional): ``3`` for RGB, ``1`` for grayscale. Defaults to ``3``.

    Returns:
        tuple[np.ndarray, np.ndarray, np.ndarray]: ``normal`` and ``image`` as uint8 ``(H, W, 3)`` or ``(H, W)``,
        and ``mask`` as uint8 ``(H, W)`` with values 0 and 255.
    """
    _check_category(category)
    h, w = _as_hw(image_size)
    if channels not in {1, 3}:
        msg = f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}."
        raise ValueError(msg)
    if defect is not None and defect not in CATEGORY_DEFECTS[category]:
        msg = f"Unknown defect {defect!r} for category {category!r}; expected one of {CATEGORY_DEFECTS[category]}."
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    texture, aux = _TEXTURES[category](rng, h, w)
    if channels == 1:
        texture = texture @ _LUMA
    normal = np.clip(texture + rng.normal(0.0, _NOISE, size=texture.shape), 0.0, 1.0).astype(np.float32)
    mask = np.zeros((h, w), dtype=bool)
    image = normal
    if defect is not None:
        mask = _DEFECT_MASKS[defect](rng, h, w, aux)
        image = _apply_defect(rng, normal, mask, defect, aux)
    squeeze = (lambda a: a[..., 0]) if channels == 1 else (lambda a: a)
    return squeeze(_to_uint8(normal)), squeeze(_to_uint8(image)), mask.astype(np.uint8) * 255


def _as_hw(size: object) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (
        not isinstance(size, tuple | list)
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 16 for s in size)
    ):
        msg = f"image_size must be an int or (H, W) of ints >= 16, got {size!r}."
        raise ValueError(msg)
    return int(size[0]), int(size[1])


def _check_category(category: str) -> None:
    if category not in CATEGORY_DEFECTS:
        msg = f"Unknown synthetic category {category!r}; choose from {sorted(CATEGORY_DEFECTS)}."
        raise ValueError(msg)


def _sizes_for(categories: Sequence[str], image_size: Size | Mapping[str, Size]) -> dict[str, tuple[int, int]]:
    if isinstance(image_size, Mapping):
        missing = [c for c in categories if c not in image_size]
        if missing:
            msg = f"image_size mapping has no entry for categories {missing}; give one size per category."
            raise ValueError(msg)
        return {c: _as_hw(image_size[c]) for c in categories}
    return dict.fromkeys(categories, _as_hw(image_size))


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_mvtec_like(
    root: str | Path,
    categories: Sequence[str] = ("stripes", "dots"),
    *,
    n_train: int = 8,
    n_test_good: int = 4,
    n_test_bad: int = 2,
    image_size: Size | Mapping[str, Size] = 64,
    seed: int = 0,
    channels: int = 3,
    overwrite: bool = False,
) -> Path:
    """Write a small MVTec-layout dataset with one folder per category and return ``root``.

    Args:
        root (str | Path): Dataset root; ``MVTecAD(root=root, category=c)`` loads each category.
        categories (Sequence[str], optional): Texture names (keys of ``CATEGORY_DEFECTS``).
            Defaults to ``("stripes", "dots")``.
        n_train (int, optional): Normal training images per category. Defaults to ``8``.
        n_test_good (int, optional): Normal test images per category. Defaults to ``4``.
        n_test_bad (int, optional): Test images per defect type (each category has 3 types). Defaults to ``2``.
        image_size (int | tuple[int, int] | Mapping[str, int | tuple[int, int]], optional): ``(H, W)``, a square
            side, or one size per category (multi-class sets with differing sizes). Defaults to ``64``.
        seed (int, optional): Same seed, same bytes. Defaults to ``0``.
        channels (int, optional): ``3`` for RGB PNGs, ``1`` for grayscale PNGs. Defaults to ``3``.
        overwrite (bool, optional): Replace existing category folders instead of raising. Defaults to ``False``.

    Returns:
        Path: ``root``.

    Raises:
        ValueError: On an unknown category, a bad size or count, or ``channels`` not in {1, 3}.
        FileExistsError: When a category folder exists and ``overwrite`` is ``False``.
    """
    root = Path(root)
    if isinstance(categories, str) or not categories:
        msg = f"categories must be a non-empty sequence of names, got {categories!r}."
        raise ValueError(msg)
    for category in categories:
        _check_category(category)
    counts = {"n_train": n_train, "n_test_good": n_test_good, "n_test_bad": n_test_bad}
    for name, value in counts.items():
        if not isinstance(value, int) or value < 1:
            msg = f"{name} must be a positive int, got {value!r}."
            raise ValueError(msg)
    if not isinstance(seed, int) or seed < 0:
        msg = f"seed must be a non-negative int, got {seed!r}."
        raise ValueError(msg)
    sizes = _sizes_for(categories, image_size)
    for category in categories:
        target = root / category
        if target.exists() and not overwrite:
            msg = f"{target} already exists; pass overwrite=True to replace it or choose another root."
            raise FileExistsError(msg)
        shutil.rmtree(target, ignore_errors=True)
        _write_category(target, category, sizes[category], counts, seed, channels)
    return root


def _write_category(
    target: Path,
    category: str,
    size: tuple[int, int],
    counts: dict[str, int],
    seed: int,
    channels: int,
) -> None:
    # Seeds mix the run seed with stable hashes (crc32, not Python's salted hash) of category and folder.
    cat_key = zlib.crc32(category.encode())
    jobs: list[tuple[str, str, str | None, int]] = [
        ("train", "good", None, counts["n_train"]),
        ("test", "good", None, counts["n_test_good"]),
    ]
    jobs += [("test", defect, defect, counts["n_test_bad"]) for defect in CATEGORY_DEFECTS[category]]
    for split, folder, defect, count in jobs:
        width = max(3, len(str(count - 1)))
        for index in range(count):
            key = [seed, cat_key, zlib.crc32(f"{split}/{folder}".encode()), index]
            _, image, mask = make_sample(category, defect, image_size=size, seed=key, channels=channels)
            stem = f"{index:0{width}d}"
            _write(target / split / folder / f"{stem}.png", image)
            if defect is not None:
                _write(target / "ground_truth" / folder / f"{stem}_mask.png", mask)
