# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Train and test models side by side on one dataset and append one result row per model to a CSV.

Every model in a run shares backbone, layers, input size, epochs, batch size, seed and metrics; anomalib's
``Cflow``/``Fastflow`` and the plugin's models are built by ``anomalib_nfplus.baselines``. Next to the CSV a
markdown table is regenerated from all rows, with the command that produced each one.
See ``benchmarks/README.md`` for usage.

Example:
    python benchmarks/run.py --models Cflow Fastflow --root ../shared/data/mtd --category magnetic_tile \
        --image-size 256 --epochs 1
    python benchmarks/run.py --preset configs/cflow_ad_cpu.yaml --no-baselines --root ../shared/data/mtd \
        --category magnetic_tile --seed 1
"""

import argparse
import importlib
import inspect
import json
import os
import resource
import shlex
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from anomalib_nfplus.baselines import OFFLINE_BACKBONES, ModelSpec, build_model

if __package__:
    from . import data_setup, isolation, report
else:  # run as a script: benchmarks/ is sys.path[0]
    import data_setup
    import isolation
    import report

__all__ = ["Preset", "load_preset", "main", "parse_args", "run_one", "seed_summary"]

DEFAULT_LAYERS = ("blocks.2", "blocks.4", "blocks.6")
BASELINES = ("Cflow", "Fastflow")  # anomalib's flows, run beside every plugin model so tables compare like with like
SPEC_KEYS = ("backbone", "layers", "pre_trained", "backbone_weights", "image_size")  # shared by the whole run
SUMMARY_COLUMNS = ("image_AUROC", "pixel_AUROC", "pixel_AUPRO", "train_s", "test_s")  # mean ± std over seeds


@dataclass(frozen=True)
class Preset:
    """A model config (``configs/*.yaml``: ``trainer`` and ``model`` sections) as benchmark settings.

    Args:
        model (str): Class name of the model, e.g. ``"CflowAD"``.
        defaults (dict[str, Any]): Defaults of the runner's options: ``models``, ``backbone``, ``layers``,
            ``image_size``, ``weights``, ``epochs``.
        init_args (dict[str, Any]): The model's other constructor arguments.
        parameters (frozenset[str]): The model's constructor arguments; ``seed`` gets ``--seed`` and
            ``image_size`` the run's ``--image-size`` (so its checkpoint records the size it was trained at).
    """

    model: str
    defaults: dict[str, Any]
    init_args: dict[str, Any]
    parameters: frozenset[str]


def load_preset(path: Path) -> Preset:
    """Read a model config: the model class and its arguments, and ``trainer.max_epochs`` as ``--epochs``."""
    config = yaml.safe_load(path.read_text()) or {}
    model = config.get("model") or {}
    class_path = model.get("class_path")
    if not isinstance(class_path, str):
        msg = f"{path} has no model.class_path"
        raise ValueError(msg)  # noqa: TRY004 (a bad file, not a bad argument type)
    module_name, _, class_name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    init_args = dict(model.get("init_args") or {})
    spec = {key: init_args.pop(key) for key in SPEC_KEYS if key in init_args}
    if spec.get("backbone_weights") is not None:
        msg = f"{path}: backbone_weights is not supported here; the runner picks weights with --weights"
        raise ValueError(msg)
    defaults: dict[str, Any] = {"models": [class_name]}
    if "backbone" in spec:
        defaults["backbone"] = spec["backbone"]
    if "layers" in spec:
        defaults["layers"] = list(spec["layers"])
    if spec.get("image_size") is not None:
        size = spec["image_size"]
        defaults["image_size"] = [size] if isinstance(size, int) else list(size)
    backbone = defaults.get("backbone", "tf_efficientnet_lite0")
    if not spec.get("pre_trained", True):
        defaults["weights"] = "random"
    elif backbone not in OFFLINE_BACKBONES:
        defaults["weights"] = "hub"
    max_epochs = (config.get("trainer") or {}).get("max_epochs")
    if max_epochs is not None:
        defaults["epochs"] = int(max_epochs)
    init_args.pop("seed", None)  # replaced by --seed
    return Preset(class_name, defaults, init_args, frozenset(inspect.signature(cls).parameters))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line (see ``--help``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--preset",
        type=Path,
        help="model config (configs/*.yaml): its model, backbone, layers, image size, other init args and\n"
        "trainer.max_epochs become the defaults; the model's seed argument gets --seed",
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=list(BASELINES),
        help="models to run; anomalib's Cflow and Fastflow are always added (see --no-baselines)",
    )
    p.add_argument("--no-baselines", action="store_true", help="run only --models, without Cflow and Fastflow")
    p.add_argument("--root", required=True, type=Path, help="dataset root (mvtec: holds <category>/)")
    p.add_argument("--category", required=True, help="MVTec category, or the dataset name for --format folder")
    p.add_argument("--format", choices=["mvtec", "folder"], default="mvtec")
    p.add_argument("--normal-dir", default="train/good", help="folder format: normal training images")
    p.add_argument("--abnormal-dirs", nargs="*", default=[], help="folder format: anomalous test image dirs")
    p.add_argument("--normal-test-dir", default="test/good", help="folder format: normal test images")
    p.add_argument("--mask-dirs", nargs="*", default=[], help="folder format: masks, one dir per abnormal dir")
    p.add_argument("--dataset", help="name in the dataset column (default: name of --root)")
    p.add_argument("--backbone", default="tf_efficientnet_lite0")
    p.add_argument("--layers", nargs="+", default=list(DEFAULT_LAYERS))
    p.add_argument("--weights", choices=["offline", "random", "hub"], default="offline", help="backbone weights")
    p.add_argument("--image-size", nargs="+", type=int, default=[256], help="S or H W")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-workers", type=int, default=min(8, (os.cpu_count() or 2) // 2))
    p.add_argument("--accelerator", default="cpu", help="Lightning accelerator (cpu, gpu, auto)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--limit-train", type=int, help="use N training images (seeded subsample)")
    p.add_argument("--max-test", type=int, help="use at most N test images (seeded, stratified per folder)")
    p.add_argument("--out", type=Path, help="CSV to append to (default benchmarks/results/<dataset>_<category>.csv)")
    p.add_argument("--runs-dir", type=Path, help="keep checkpoints here (default: a temporary directory)")
    p.add_argument("--in-process", action="store_true", help="run all models in this process (default: one each)")
    p.add_argument(
        "--init-args",
        nargs=2,
        action="append",
        default=[],
        metavar=("MODEL", "JSON"),
        help="extra constructor arguments of one model, e.g. --init-args DifferNet '{\"n_test_transforms\": 8}'",
    )
    known, _ = p.parse_known_args(argv)
    preset = _read_preset(p, known.preset) if known.preset else None
    if preset is not None:
        p.set_defaults(**preset.defaults)
    args = p.parse_args(argv)
    args.preset_model = preset
    _check(p, args)
    args.models = _with_baselines(p, args.models, add=not args.no_baselines)
    args.image_size = tuple(args.image_size * 2 if len(args.image_size) == 1 else args.image_size)
    args.dataset = args.dataset or args.root.resolve().name
    args.out = args.out or Path(__file__).parent / "results" / f"{args.dataset}_{args.category}.csv"
    args.command = shlex.join(["benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)])
    return args


def _read_preset(p: argparse.ArgumentParser, path: Path) -> Preset:
    try:
        return load_preset(path)
    except (OSError, ValueError, ImportError, AttributeError, yaml.YAMLError) as err:
        p.error(f"--preset {path}: {err}")


def _with_baselines(p: argparse.ArgumentParser, models: list[str], *, add: bool) -> list[str]:
    """The requested models plus the built-in baselines (once each), every name checked against what exists."""
    from anomalib.models import list_models

    from anomalib_nfplus.plugin import register

    register()  # plugin models must be known even with auto-registration switched off
    known = {name.replace("_", "") for name in list_models()}
    unknown = [name for name in models if name.lower() not in known]
    if unknown:
        p.error(f"unknown model(s) {unknown}; known: {sorted(list_models())}")
    requested = {name.lower() for name in models}
    baselines = [name for name in BASELINES if name.lower() not in requested] if add else []
    return [*baselines, *models]


def _check(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if len(args.image_size) not in {1, 2} or min(args.image_size) < 32:
        p.error(f"--image-size takes S or H W with values >= 32, got {args.image_size}")
    for name in ("epochs", "batch_size", "limit_train", "max_test", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.format == "folder" and not args.abnormal_dirs:
        p.error("--format folder needs --abnormal-dirs (e.g. test/defective test/likely_defective)")
    if args.mask_dirs and len(args.mask_dirs) != len(args.abnormal_dirs):
        p.error(f"--mask-dirs needs one dir per --abnormal-dirs entry, got {args.mask_dirs} for {args.abnormal_dirs}")
    if args.weights == "offline" and args.backbone not in OFFLINE_BACKBONES:
        p.error(
            f"no offline weights for {args.backbone!r} (have {sorted(OFFLINE_BACKBONES)}); use --weights random|hub"
        )
    base = args.root / args.category if args.format == "mvtec" else args.root
    if not base.is_dir():
        p.error(f"dataset folder {base} does not exist")


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run every requested model, append its row to ``--out``, regenerate the markdown table, return the rows."""
    args = parse_args(argv)
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    for name in args.models:
        if args.in_process or len(args.models) == 1:
            row = run_one(name, args)
        else:
            # A fresh process per model: peak RSS is that model's own, and no state leaks between models.
            try:
                with isolation.model_process() as pool:
                    row = pool.submit(run_one, name, args).result()
            except Exception:  # report, then go on with the other models
                traceback.print_exc()
                failed.append(name)
                continue
        report.append_row(args.out, row)
        rows.append(row)
        print(report.summary(row), flush=True)
    markdown = report.write_markdown(args.out)
    if args.preset:
        with markdown.open("a") as handle:
            handle.write("\n" + seed_summary(report.read_rows(args.out)))
    if failed:
        msg = f"models failed: {failed} (tracebacks above); rows of the others are in {args.out}"
        raise RuntimeError(msg)
    return rows


def run_one(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Fit and test one model; return its result row."""
    import torch
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed, workers=True)
    with tempfile.TemporaryDirectory(prefix="nfplus_bench_") as tmp:
        data_root = data_setup.materialise(args, Path(tmp) / "data")
        datamodule = data_setup.make_datamodule(args, data_root)
        spec = ModelSpec(
            backbone=args.backbone,
            layers=tuple(args.layers),
            image_size=args.image_size,
            weights=args.weights,
            pixel_metrics=data_setup.has_masks(args),
        )
        model = build_model(name, spec, init_args_for(name, args))
        timer = report.ValidationTimer()
        engine = Engine(
            max_epochs=args.epochs,
            logger=False,
            default_root_dir=args.runs_dir or Path(tmp) / "runs",
            accelerator=args.accelerator,
            devices=1,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[timer],
        )
        start = time.perf_counter()
        engine.fit(model, datamodule=datamodule)
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        metrics = engine.test(model, datamodule=datamodule, verbose=False)[0]
        test_s = time.perf_counter() - start
        n_train = len(datamodule.train_data)
    return report.make_row(name, args, metrics, n_train, train_s, timer.seconds, test_s, _peak_rss_mb(), spec)


def init_args_for(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The ``--init-args`` JSON objects given for ``name`` (case-insensitive), merged in order.

    With ``--preset``, the preset's model starts from the preset's init args, with ``seed`` set to ``--seed``
    and ``image_size`` to ``--image-size``.
    """
    merged: dict[str, Any] = {}
    preset: Preset | None = getattr(args, "preset_model", None)
    if preset is not None and preset.model.lower() == name.lower():
        merged.update(preset.init_args)
        run_values = {"seed": args.seed, "image_size": list(args.image_size)}
        merged.update({key: value for key, value in run_values.items() if key in preset.parameters})
    for model, text in args.init_args:
        if model.lower() == name.lower():
            value = json.loads(text)
            if not isinstance(value, dict):
                msg = f"--init-args {model} must be a JSON object, got {text!r}"
                raise ValueError(msg)
            merged.update(value)
    return merged


def _without_seed(command: str) -> str:
    words = shlex.split(command)
    if "--seed" in words:
        at = words.index("--seed")
        del words[at : at + 2]
    return shlex.join(words)


def _mean_std(values: list[float], digits: int) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def seed_summary(rows: list[dict[str, str]]) -> str:
    """Markdown table: per model and command (seed left out), mean ± sample std of the metrics and times."""
    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in rows:
        groups.setdefault((row["model"], _without_seed(row["command"])), []).append(row)
    lines = [
        "## Mean ± standard deviation over seeds",
        "",
        "Sample standard deviation (n - 1) over the rows of one model and command that differ only in `--seed`.",
        "",
        "| model | seeds | " + " | ".join(SUMMARY_COLUMNS) + " | command |",
        "|---|---|" + "---|" * (len(SUMMARY_COLUMNS) + 1),
    ]
    for (model, command), members in groups.items():
        seeds = " ".join(row["seed"] for row in members)
        cells = [
            _mean_std([float(row[c]) for row in members if row[c] != ""], 1 if c.endswith("_s") else 4)
            for c in SUMMARY_COLUMNS
        ]
        lines.append(f"| {model} | {seeds} | " + " | ".join(cells) + f" | `{command}` |")
    return "\n".join(lines) + "\n"


def _peak_rss_mb() -> float:
    """Peak resident memory of this process or of its largest finished child (dataloader workers), in MiB."""
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return peak * scale / 2**20


if __name__ == "__main__":
    main()
