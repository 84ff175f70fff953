# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The offline main job: one unified model over several generated product categories, from data to the edge.

Steps: generate an MVTec-layout dataset of textured "products" with defects and masks
(:mod:`anomalib_nfplus.data.synthetic`), train one model on all categories at once (HGAD by default, the plugin's
unified model), test it per category, save the checkpoint and reload it into a fresh model, export the reloaded
model to OpenVINO, score test images with the torch-free edge runtime, and check that the three scores agree.
It writes a PNG grid of images, anomaly maps and ground-truth outlines. No network: the backbone is the packaged
ImageNet EfficientNet-Lite0.
"""

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEMO_CATEGORIES", "DEMO_DEFAULTS", "DemoResult", "print_result", "run_demo"]

#: Generated categories (keys of ``anomalib_nfplus.data.synthetic.CATEGORY_DEFECTS``).
DEMO_CATEGORIES: tuple[str, ...] = ("stripes", "dots", "gradient")

#: Run length and data size of the demo (also the ``anomalib-nfplus demo`` defaults).
DEMO_DEFAULTS: dict[str, int] = {"epochs": 2, "image_size": 128, "n_train": 40}

#: Model arguments of the demo: offline Lite0 and small flows, sized for a 2-core CPU.
DEMO_MODELS: dict[str, dict[str, Any]] = {
    "HGAD": {
        "layers": ["blocks.2", "blocks.4"],
        "coupling_blocks": 4,
        "condition_dim": 64,
        "n_intra": 4,
        "lr": 2e-3,
        "fiber_batch_size": 1024,
    },
    "CflowAD": {"layers": ["blocks.2", "blocks.4"], "coupling_blocks": 4, "condition_dim": 64, "lr": 1e-3},
    "DifferNet": {
        "layers": ["blocks.6"],
        "hidden": 256,
        "depth": 2,
        "lr": 1e-3,
        "n_train_transforms": 4,
        "rotation_steps": 4,
        "n_test_transforms": 4,
        "intermediate_validation": False,
    },
}


@dataclass
class DemoResult:
    """What the demo measured; ``print_result`` prints it as a table, ``result.json`` holds it all."""

    model: str
    data_root: str
    checkpoint: str
    openvino_model: str
    grid: str
    images_dir: str
    table: dict[str, dict[str, float]]
    scores: list[dict[str, Any]]
    max_score_difference: dict[str, float]
    seconds: dict[str, float] = field(default_factory=dict)


@contextmanager
def _step(name: str, seconds: dict[str, float], say: bool) -> Iterator[None]:
    if say:
        print(f"[demo] {name} ...", flush=True)
    start = time.perf_counter()
    yield
    seconds[name] = round(time.perf_counter() - start, 1)
    if say:
        print(f"[demo] {name}: {seconds[name]} s", flush=True)


def _model(name: str, image_size: int, seed: int) -> Any:
    import anomalib_nfplus

    if name not in DEMO_MODELS:
        msg = f"The demo runs the plugin's models {sorted(DEMO_MODELS)}, not {name!r}."
        raise ValueError(msg)
    arguments = {"backbone": "tf_efficientnet_lite0", "pre_trained": True, "image_size": image_size, "seed": seed}
    return getattr(anomalib_nfplus, name)(**arguments, **DEMO_MODELS[name])


def _datamodule(root: Path, categories: tuple[str, ...], image_size: int, seed: int) -> Any:
    from anomalib_nfplus.data.unified import Unified

    return Unified(
        root=root,
        categories=categories,
        image_size=image_size,
        train_batch_size=16,
        eval_batch_size=16,
        num_workers=0,
        seed=seed,
    )


def _table(metrics: dict[str, float], categories: tuple[str, ...]) -> dict[str, dict[str, float]]:
    rows = {}
    for name in (*categories, "mean"):
        rows[name] = {kind: float(metrics.get(f"{kind}_AUROC/{name}", float("nan"))) for kind in ("image", "pixel")}
    return rows


def _test_images(root: Path, categories: tuple[str, ...], per_kind: int) -> list[tuple[str, Path, Path | None]]:
    """``per_kind`` normal and ``per_kind`` defective test images per category, with their mask paths."""
    chosen = []
    for category in categories:
        test = root / category / "test"
        good = sorted((test / "good").glob("*.png"))[:per_kind]
        bad = sorted(p for p in test.glob("*/*.png") if p.parent.name != "good")[::4][:per_kind]
        for path in (*good, *bad):
            mask = root / category / "ground_truth" / path.parent.name / f"{path.stem}_mask.png"
            chosen.append((category, path, mask if mask.is_file() else None))
    return chosen


def _torch_scores(model: Any, images: np.ndarray) -> np.ndarray:
    import torch

    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(images).permute(0, 3, 1, 2)).pred_score.reshape(-1).numpy()


def run_demo(
    output: str | Path = "results/nfplus_demo",
    model: str = "HGAD",
    epochs: int = DEMO_DEFAULTS["epochs"],
    image_size: int = DEMO_DEFAULTS["image_size"],
    n_train: int = DEMO_DEFAULTS["n_train"],
    categories: tuple[str, ...] = DEMO_CATEGORIES,
    seed: int = 0,
    verbose: bool = True,
) -> DemoResult:
    """Generate data, train ``model`` on all ``categories`` at once, test, reload, export, score at the edge.

    Returns the per-category table, the three scores of each sample image (in-memory torch model, reloaded torch
    model, OpenVINO edge runtime) and the paths of everything written under ``output``.
    """
    from anomalib_nfplus.quiet import third_party_noise_filtered

    with third_party_noise_filtered(all_warnings=True, preload=("lightning.pytorch", "anomalib.engine")):
        return _run(Path(output).resolve(), model, epochs, image_size, n_train, tuple(categories), seed, verbose)


def _run(
    output: Path,
    name: str,
    epochs: int,
    image_size: int,
    n_train: int,
    categories: tuple[str, ...],
    seed: int,
    verbose: bool,
) -> DemoResult:
    from anomalib.deploy import ExportType
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    from anomalib_nfplus.data.synthetic import make_mvtec_like
    from anomalib_nfplus.deploy.runtime import EdgeModel, read_rgb

    seconds: dict[str, float] = {}
    with _step("generate data", seconds, verbose):
        data_root = make_mvtec_like(
            output / "data",
            categories,
            n_train=n_train,
            n_test_good=8,
            n_test_bad=4,
            image_size=image_size,
            seed=seed,
            overwrite=True,
        )
    seed_everything(seed, workers=True, verbose=False)
    model = _model(name, image_size, seed)
    datamodule = _datamodule(data_root, categories, image_size, seed)
    engine = Engine(
        max_epochs=epochs,
        default_root_dir=output / "run",
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_model_summary=False,
        check_val_every_n_epoch=epochs,  # thresholds once, from the final weights
    )
    with _step("train", seconds, verbose):
        engine.fit(model=model, datamodule=datamodule)
    with _step("test", seconds, verbose):
        metrics = engine.test(model=model, datamodule=datamodule, verbose=False)[0]
    checkpoint = output / "model.ckpt"
    engine.trainer.save_checkpoint(checkpoint)
    with _step("reload", seconds, verbose):
        reloaded = type(model).load_from_checkpoint(checkpoint)
    with _step("export", seconds, verbose):
        exported = engine.export(model=reloaded, export_type=ExportType.OPENVINO, export_root=output / "export")
        if exported is None:  # anomalib returns None for export types it does not support
            msg = "anomalib's Engine.export wrote no OpenVINO model."
            raise RuntimeError(msg)
        model_xml = Path(exported)
    samples = _test_images(data_root, categories, per_kind=2)
    images = np.stack([read_rgb(path) for _, path, _ in samples])
    with _step("edge runtime", seconds, verbose):
        edge = EdgeModel(model_xml)
        predictions = [edge.predict(image) for image in images]
    scores = _sample_scores(samples, _torch_scores(model, images), _torch_scores(reloaded, images), predictions)
    from anomalib_nfplus.demo_grid import write_grid

    grid = write_grid(output / "demo_grid.png", samples, images, predictions)
    result = DemoResult(
        model=name,
        data_root=str(data_root),
        checkpoint=str(checkpoint),
        openvino_model=str(model_xml),
        grid=str(grid),
        images_dir=str(Path(engine.trainer.default_root_dir) / "images"),
        table=_table({k: float(v) for k, v in metrics.items()}, categories),
        scores=scores,
        max_score_difference=_max_differences(scores),
        seconds=seconds,
    )
    (output / "result.json").write_text(json.dumps(asdict(result), indent=2))
    return result


def _sample_scores(
    samples: list[tuple[str, Path, Path | None]], trained: np.ndarray, reloaded: np.ndarray, edge: list[Any]
) -> list[dict[str, Any]]:
    return [
        {
            "category": category,
            "image": str(path),
            "defective": path.parent.name != "good",
            "torch": float(trained[i]),
            "reloaded": float(reloaded[i]),
            "openvino": float(edge[i].score),
            "label": bool(edge[i].label),
        }
        for i, (category, path, _) in enumerate(samples)
    ]


def _max_differences(scores: list[dict[str, Any]]) -> dict[str, float]:
    return {
        "reloaded": max(abs(s["reloaded"] - s["torch"]) for s in scores),
        "openvino": max(abs(s["openvino"] - s["torch"]) for s in scores),
    }


def print_result(result: DemoResult) -> None:
    """Print the per-category table, the score agreement and where the files are."""
    print(f"\n{result.model}, one model for {len(result.table) - 1} categories (test split, last epoch):")
    print(f"  {'category':<12} {'image AUROC':>11} {'pixel AUROC':>11}")
    for category, row in result.table.items():
        print(f"  {category:<12} {row['image']:>11.3f} {row['pixel']:>11.3f}")
    print(
        f"\nScores of {len(result.scores)} test images: trained model vs reloaded checkpoint: max |diff| "
        f"{result.max_score_difference['reloaded']:.2e}; vs OpenVINO edge runtime: "
        f"{result.max_score_difference['openvino']:.2e}"
    )
    print(f"\nPicture grid:    {result.grid}")
    print(f"anomalib images: {result.images_dir}")
    print(f"checkpoint:      {result.checkpoint}")
    print(f"OpenVINO model:  {result.openvino_model}")
    print(f"seconds:         {result.seconds}")
    print(
        f"try:             anomalib-nfplus infer --model {result.openvino_model} --input {result.data_root}/"
        f"{next(iter(result.table))}/test --output {Path(result.grid).parent / 'overlays'}"
    )
