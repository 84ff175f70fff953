# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Unified (one model for all categories) versus separate (one model per category) training, per category.

For every model (and every ``--variants`` entry of it) this trains (a) one model on the ``Unified`` set and
(b) one model per category, tests them, and writes one row per (model, mode, category) plus a ``mean`` row
(mean image AUROC over categories, mean pixel AUROC over categories with masks; train/test seconds summed) to
a CSV, and a markdown table beside it. Models are built like ``benchmarks/run.py`` builds them.

Example:
    python benchmarks/unified.py --models HGAD Fastflow --data configs/data/unified_shared.yaml --epochs 1 \
        --variants HGAD '{"scoring": "label_free"}' --variants HGAD '{}'
    python benchmarks/unified.py --models Fastflow --root ./datasets/MVTecAD --categories bottle cable
"""

import argparse
import csv
import json
import math
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from anomalib_nfplus.baselines import OFFLINE_BACKBONES, ModelSpec, build_model

if __package__:
    from . import report
else:  # run as a script: benchmarks/ is sys.path[0]
    import report

__all__ = ["COLUMNS", "main", "parse_args", "rows_for"]

COLUMNS = (
    "model", "mode", "category", "image_AUROC", "pixel_AUROC", "train_s", "test_s", "backbone", "layers",
    "image_size", "epochs", "batch_size", "seed", "data", "commit", "date", "command",
)  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line (see ``--help``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", required=True, help="model names (anomalib built-ins or plugin models)")
    p.add_argument("--data", type=Path, help="a Unified datamodule config (e.g. configs/data/unified_shared.yaml)")
    p.add_argument("--root", type=Path, help="MVTec-layout root (with --categories), instead of --data")
    p.add_argument("--categories", nargs="+", help="categories under --root")
    p.add_argument("--modes", nargs="+", choices=["unified", "separate"], default=["unified", "separate"])
    p.add_argument("--backbone", default="tf_efficientnet_lite0")
    p.add_argument("--layers", nargs="+", default=["blocks.2", "blocks.4", "blocks.6"])
    p.add_argument("--weights", choices=["offline", "random", "hub"], default="offline", help="backbone weights")
    p.add_argument("--image-size", nargs="+", type=int, default=[256], help="S or H W (also Unified's common size)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--init-args", nargs=2, action="append", default=[], metavar=("MODEL", "JSON"),
                   help="extra constructor arguments of one model (every run of it)")  # fmt: skip
    p.add_argument("--variants", nargs=2, action="append", default=[], metavar=("MODEL", "JSON"),
                   help="run MODEL once per JSON (over --init-args) instead of once; '{}': plain")  # fmt: skip
    p.add_argument("--out", type=Path, help="CSV to append to (default benchmarks/results/unified_<name>.csv)")
    args = p.parse_args(argv)
    if (args.data is None) == (args.root is None) or (args.root is not None and not args.categories):
        p.error("give either --data <Unified config> or --root <MVTec-layout root> --categories a b ...")
    if args.epochs < 1 or args.batch_size < 1 or len(args.image_size) not in {1, 2} or min(args.image_size) < 32:
        p.error("--epochs and --batch-size must be >= 1, --image-size S or H W with values >= 32")
    if args.weights == "offline" and args.backbone not in OFFLINE_BACKBONES:
        p.error(
            f"no offline weights for {args.backbone!r} (have {sorted(OFFLINE_BACKBONES)}); use --weights random|hub"
        )
    for _, text in [*args.init_args, *args.variants]:
        if not isinstance(_json(p, text), dict):
            p.error(f"--init-args/--variants take a JSON object, got {text!r}")
    args.image_size = tuple(args.image_size * 2 if len(args.image_size) == 1 else args.image_size)
    name = args.data.stem.removeprefix("unified_") if args.data else "_".join(args.categories)
    args.out = args.out or Path(__file__).parent / "results" / f"unified_{name}.csv"
    args.command = shlex.join(["benchmarks/unified.py", *(sys.argv[1:] if argv is None else argv)])
    return args


def _json(p: argparse.ArgumentParser, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        p.error(f"invalid JSON {text!r}: {error}")


def runs(args: argparse.Namespace) -> list[tuple[str, str, dict[str, Any]]]:
    """``(label, model name, init args)`` per run: one per model, or one per ``--variants`` entry."""
    result = []
    for name in args.models:
        base: dict[str, Any] = {}
        for model, text in args.init_args:
            if model.lower() == name.lower():
                base.update(json.loads(text))
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
    name: str, init_args: dict[str, Any], datamodule: Any, args: argparse.Namespace
) -> tuple[dict, float, float]:
    import tempfile

    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    seed_everything(args.seed, workers=True)
    datamodule.setup()
    masks = [
        bool(m) for m in getattr(datamodule.test_data, "has_masks", [datamodule.test_data.task.value == "segmentation"])
    ]
    spec = ModelSpec(args.backbone, tuple(args.layers), args.image_size, args.weights, pixel_metrics=any(masks))
    model = build_model(name, spec, init_args)
    with tempfile.TemporaryDirectory(prefix="nfplus_unified_") as tmp:
        engine = Engine(max_epochs=args.epochs, logger=False, default_root_dir=tmp, accelerator=args.accelerator,
                        devices=1, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
        start = time.perf_counter()
        engine.fit(model, datamodule=datamodule)
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        metrics = engine.test(model, datamodule=datamodule, verbose=False)[0]
        test_s = time.perf_counter() - start
    return {"metrics": metrics, "masks": masks}, train_s, test_s


def rows_for(label: str, mode: str, per_category: dict[str, dict[str, float]], args: argparse.Namespace) -> list[dict]:
    """Rows of one (model, mode): one per category, then ``mean`` (AUROC means, summed seconds)."""
    common = {
        "model": label, "mode": mode, "backbone": args.backbone, "layers": " ".join(args.layers),
        "image_size": "x".join(map(str, args.image_size)), "epochs": args.epochs, "batch_size": args.batch_size,
        "seed": args.seed, "data": str(args.data or args.root), "commit": report._commit(),
        "date": datetime.now().astimezone().isoformat(timespec="seconds"), "command": args.command,
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
    """One model on all categories; per-category AUROCs from the Unified test."""
    datamodule = make_unified(args)
    result, train_s, test_s = _fit_test(name, init_args, datamodule, args)
    metrics = result["metrics"]
    per_category = {}
    for category in datamodule.class_names:
        values = {"image_AUROC": metrics.get(f"image_AUROC/{category}", math.nan), "train_s": train_s, "test_s": test_s}
        if f"pixel_AUROC/{category}" in metrics:
            values["pixel_AUROC"] = metrics[f"pixel_AUROC/{category}"]
        per_category[category] = values
    return per_category


def separate_runs(name: str, init_args: dict[str, Any], args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """One model per category, each on that category's own datamodule."""
    per_category = {}
    names = make_unified(args).class_names
    for index, category in enumerate(names):
        datamodule = make_unified(args).datamodules[index]
        result, train_s, test_s = _fit_test(name, init_args, datamodule, args)
        values = {"image_AUROC": result["metrics"].get("image_AUROC", math.nan), "train_s": train_s, "test_s": test_s}
        if result["masks"][0] and "pixel_AUROC" in result["metrics"]:
            values["pixel_AUROC"] = result["metrics"]["pixel_AUROC"]
        per_category[category] = values
    return per_category


def append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows (header for a new file); refuse a file with other columns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        with path.open(newline="") as handle:
            header = next(csv.reader(handle), [])
        if tuple(header) != COLUMNS:
            msg = f"{path} has columns {header}, expected {list(COLUMNS)}; pass another --out."
            raise ValueError(msg)
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def write_markdown(path: Path) -> Path:
    """``<csv stem>.md``: one line per (model, mode, category) row, commands listed once below."""
    shown = ("model", "mode", "category", "image_AUROC", "pixel_AUROC", "train_s", "test_s", "epochs", "commit")
    return report.write_markdown(path, shown, title="Unified vs separate")


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run every (model, variant) in every mode, append the rows to ``--out``, regenerate the markdown."""
    args = parse_args(argv)
    modes: dict[str, Callable[..., dict[str, dict[str, float]]]] = {"unified": unified_run, "separate": separate_runs}
    all_rows: list[dict[str, Any]] = []
    for label, name, init_args in runs(args):
        for mode in args.modes:
            rows = rows_for(label, mode, modes[mode](name, init_args, args), args)
            append_rows(args.out, rows)
            all_rows += rows
            mean = rows[-1]
            print(f"[unified-benchmark] {label} {mode}: mean image_AUROC={mean.get('image_AUROC')} "
                  f"pixel_AUROC={mean.get('pixel_AUROC', '')} train_s={mean['train_s']}", flush=True)  # fmt: skip
    write_markdown(args.out)
    return all_rows


if __name__ == "__main__":
    main()
