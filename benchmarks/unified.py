# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Unified (one model for all categories) versus separate (one model per category) training, per category.

For every model (and every ``--variants`` entry of it) this trains (a) one model on the ``Unified`` set and
(b) one model per category, tests them, and writes one row per (model, mode, category) plus a ``mean`` row
(mean image AUROC over categories, mean pixel AUROC over categories with masks; train/test seconds summed) to
a CSV, and a markdown table beside it. Models are built and timed as ``benchmarks.run`` builds and times them.

Example:
    python -m benchmarks.unified --models HGAD Fastflow --data configs/data/unified_shared.yaml --epochs 1 \
        --variants HGAD '{"scoring": "label_free"}' --variants HGAD '{}'
    python -m benchmarks.unified --models Fastflow --root ./datasets/MVTecAD --categories bottle cable
"""

import argparse
import json
import math
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import harness, report
from benchmarks.baselines import ModelSpec, build_model

__all__ = ["COLUMNS", "main", "parse_args", "rows_for", "runs"]

#: One row per (model, mode, category), as in the recorded ``results/unified_*.csv``.
COLUMNS = (
    "model", "mode", "category", "image_AUROC", "pixel_AUROC", "train_s", "test_s", "backbone", "layers",
    "image_size", "epochs", "batch_size", "seed", "data", "commit", "date", "command",
)  # fmt: skip
SHOWN = ("model", "mode", "category", "image_AUROC", "pixel_AUROC", "train_s", "test_s", "epochs", "commit")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The shared model options, plus the categories, the modes and ``--variants`` (see ``--help``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", required=True, help="model names (anomalib built-ins or plugin models)")
    p.add_argument("--data", type=Path, help="a Unified datamodule config (e.g. configs/data/unified_shared.yaml)")
    p.add_argument("--root", type=Path, help="MVTec-layout root (with --categories), instead of --data")
    p.add_argument("--categories", nargs="+", help="categories under --root")
    p.add_argument("--modes", nargs="+", choices=["unified", "separate"], default=["unified", "separate"])
    harness.add_model_options(p, num_workers=0)
    p.add_argument("--variants", nargs=2, action="append", default=[], metavar=("MODEL", "JSON"),
                   help="run MODEL once per JSON (over --init-args) instead of once; '{}': plain")  # fmt: skip
    p.add_argument("--out", type=Path, help="CSV to append to (default benchmarks/results/unified_<name>.csv)")
    args = p.parse_args(argv)
    if (args.data is None) == (args.root is None) or (args.root is not None and not args.categories):
        p.error("give either --data <Unified config> or --root <MVTec-layout root> --categories a b ...")
    harness.check_model_options(p, args)
    name = args.data.stem.removeprefix("unified_") if args.data else "_".join(args.categories)
    args.out = args.out or Path(__file__).parent / "results" / f"unified_{name}.csv"
    args.command = report.command_line("unified", argv)
    return args


def runs(args: argparse.Namespace) -> list[tuple[str, str, dict[str, Any]]]:
    """``(label, model name, init args)`` per run: one per model, or one per ``--variants`` entry."""
    result = []
    for name in args.models:
        base = harness.init_args_for(name, args.init_args)
        variants = [json.loads(text) for model, text in args.variants if model.lower() == name.lower()]
        for variant in variants or [{}]:
            label = name + (f"[{','.join(f'{k}={v}' for k, v in variant.items())}]" if variant else "")
            result.append((label, name, {**base, **variant}))
    return result


def make_unified(args: argparse.Namespace) -> Any:
    """A fresh ``Unified`` (fresh category datamodules too: a used datamodule keeps its trainer's transforms)."""
    from anomalib.data import AnomalibDataModule

    from anomalib_nfplus.data.unified import Unified

    if args.data is not None:
        unified = AnomalibDataModule.from_config(args.data)
        if not isinstance(unified, Unified):
            msg = f"{args.data} does not configure anomalib_nfplus.data.unified.Unified"
            raise ValueError(msg)
        unified.image_size = args.image_size
    else:
        unified = Unified(root=args.root, categories=args.categories, image_size=args.image_size, seed=args.seed)
    for datamodule in [unified, *unified.datamodules]:
        datamodule.train_batch_size = datamodule.eval_batch_size = args.batch_size
        datamodule.num_workers = args.num_workers
    return unified


def _fit_test(
    name: str, init_args: dict[str, Any], datamodule: Any, args: argparse.Namespace, callbacks: Sequence[Any] = ()
) -> tuple[harness.FitTiming, list[bool]]:
    """One model fitted and tested on ``datamodule``; also which of its categories have masks."""
    from lightning.pytorch import seed_everything

    seed_everything(args.seed, workers=True)
    datamodule.setup()
    test_data = datamodule.test_data
    masks = [bool(m) for m in getattr(test_data, "has_masks", [test_data.task.value == "segmentation"])]
    spec = ModelSpec(args.backbone, tuple(args.layers), args.image_size, args.weights, pixel_metrics=any(masks))
    model = build_model(name, spec, init_args)
    with tempfile.TemporaryDirectory(prefix="nfplus_unified_") as tmp:
        timing = harness.fit_and_time(
            model, datamodule, epochs=args.epochs, root_dir=Path(tmp), accelerator=args.accelerator, callbacks=callbacks
        )
    return timing, masks


def rows_for(label: str, mode: str, per_category: dict[str, dict[str, float]], args: argparse.Namespace) -> list[dict]:
    """Rows of one (model, mode): one per category, then ``mean`` (AUROC means, summed seconds)."""
    common = {
        "model": label, "mode": mode, "backbone": args.backbone, "layers": " ".join(args.layers),
        "image_size": "x".join(map(str, args.image_size)), "epochs": args.epochs, "batch_size": args.batch_size,
        "seed": args.seed, "data": str(args.data or args.root), "commit": report.commit(), "date": report.now(),
        "command": args.command,
    }  # fmt: skip
    rows = [{**common, "category": category, **_rounded(values)} for category, values in per_category.items()]
    mean: dict[str, float] = {}
    for key in ("image_AUROC", "pixel_AUROC"):
        finite = [v[key] for v in per_category.values() if key in v and not math.isnan(v[key])]
        if finite:
            mean[key] = sum(finite) / len(finite)
    for key in ("train_s", "test_s"):
        values = [v[key] for v in per_category.values() if key in v]
        mean[key] = values[0] if mode == "unified" else sum(values)  # unified: one model for all categories
    return [*rows, {**common, "category": "mean", **_rounded(mean)}]


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {key: round(float(value), 4 if "AUROC" in key else 2) for key, value in values.items()}


def unified_run(name: str, init_args: dict[str, Any], args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """One model on all categories; per-category AUROCs from the Unified test.

    ``PerCategoryMetrics`` is passed to every model: the plugin's models would add it themselves, anomalib's own
    would not (a trainer that has one keeps it).
    """
    from anomalib_nfplus.callbacks import PerCategoryMetrics

    datamodule = make_unified(args)
    timing, _ = _fit_test(name, init_args, datamodule, args, callbacks=[PerCategoryMetrics()])
    metrics, train_s, test_s = timing.metrics, timing.train_s, timing.test_s
    per_category = {}
    for category in datamodule.class_names:
        values = {"image_AUROC": metrics.get(f"image_AUROC/{category}", math.nan), "train_s": train_s, "test_s": test_s}
        if f"pixel_AUROC/{category}" in metrics:
            values["pixel_AUROC"] = metrics[f"pixel_AUROC/{category}"]
        per_category[category] = values
    return per_category


def separate_runs(name: str, init_args: dict[str, Any], args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """One model per category, each on that category's own datamodule; AUROCs of the models' own scores.

    ``PerCategoryMetrics`` with the one category name scores the model's raw outputs, as in :func:`unified_run`
    (anomalib's own metrics read normalised scores, clamped to ``[0, 1]``).
    """
    from anomalib_nfplus.callbacks import PerCategoryMetrics

    per_category = {}
    names = make_unified(args).class_names
    for index, category in enumerate(names):
        datamodule = make_unified(args).datamodules[index]
        callback = PerCategoryMetrics(class_names=[category])
        timing, masks = _fit_test(name, init_args, datamodule, args, callbacks=[callback])
        metrics = timing.metrics
        values = {"image_AUROC": metrics.get(f"image_AUROC/{category}", math.nan), "train_s": timing.train_s}
        values["test_s"] = timing.test_s
        if masks[0] and f"pixel_AUROC/{category}" in metrics:
            values["pixel_AUROC"] = metrics[f"pixel_AUROC/{category}"]
        per_category[category] = values
    return per_category


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run every (model, variant) in every mode, append the rows to ``--out``, regenerate the markdown."""
    args = parse_args(argv)
    modes: dict[str, Callable[..., dict[str, dict[str, float]]]] = {"unified": unified_run, "separate": separate_runs}
    all_rows: list[dict[str, Any]] = []
    for label, name, init_args in runs(args):
        for mode in args.modes:
            rows = rows_for(label, mode, modes[mode](name, init_args, args), args)
            report.append_rows(args.out, rows, COLUMNS)
            all_rows += rows
            mean = rows[-1]
            print(f"[unified-benchmark] {label} {mode}: mean image_AUROC={mean.get('image_AUROC')} "
                  f"pixel_AUROC={mean.get('pixel_AUROC', '')} train_s={mean['train_s']}", flush=True)  # fmt: skip
    report.write_markdown(args.out, SHOWN, title="Unified vs separate")
    return all_rows


if __name__ == "__main__":
    main()
