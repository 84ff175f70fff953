# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Train and test models side by side on one dataset and append one result row per model to a CSV.

Every model in a run shares backbone, layers, input size, epochs, batch size, seed and metrics; anomalib's
``Cflow``/``Fastflow`` and the plugin's models are built by ``benchmarks.baselines``. Next to the CSV a
markdown table is regenerated from all rows, with the command that produced each one.
See ``benchmarks/README.md`` for usage.

Example:
    python -m benchmarks.run --models Cflow Fastflow --root ../shared/data/mtd --category magnetic_tile \
        --image-size 256 --epochs 1
    python -m benchmarks.run --preset configs/cflow_ad_cpu.yaml --no-baselines --root ../shared/data/mtd \
        --category magnetic_tile --seed 1
"""

import argparse
import importlib
import inspect
import os
import shlex
import statistics
import tempfile
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmarks import data_setup, harness, isolation, report
from benchmarks.baselines import OFFLINE_BACKBONES, ModelSpec, build_model

__all__ = [
    "COLUMNS",
    "Preset",
    "build_parser",
    "finish_args",
    "init_args_for",
    "load_preset",
    "main",
    "make_row",
    "parse_args",
    "run_one",
    "seed_summary",
]

RESULTS = Path(__file__).parent / "results"
BASELINES = ("Cflow", "Fastflow")  # anomalib's flows, run beside every plugin model so tables compare like with like
SPEC_KEYS = ("backbone", "layers", "pre_trained", "backbone_weights", "image_size")  # shared by the whole run
SUMMARY_COLUMNS = ("image_AUROC", "pixel_AUROC", "pixel_AUPRO", "train_s", "test_s")  # mean ± std over seeds
METRICS = ("image_AUROC", "pixel_AUROC", "pixel_AUPRO")
#: One row per (model, run); every recorded ``mtd_*``, ``elpv_*`` and ``presets_*`` CSV has these columns.
COLUMNS = (
    "model", "backbone", "layers", "image_size", "epochs", "batch_size", "dataset", "category",
    "image_AUROC", "pixel_AUROC", "pixel_AUPRO", "train_s", "val_s", "test_s", "train_images_per_s",
    "peak_rss_mb", "weights", "seed", "commit", "date", "host", "command",
)  # fmt: skip


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
    backbone = defaults.get("backbone", harness.DEFAULT_BACKBONE)
    if not spec.get("pre_trained", True):
        defaults["weights"] = "random"
    elif backbone not in OFFLINE_BACKBONES:
        defaults["weights"] = "hub"
    max_epochs = (config.get("trainer") or {}).get("max_epochs")
    if max_epochs is not None:
        defaults["epochs"] = int(max_epochs)
    init_args.pop("seed", None)  # replaced by --seed
    return Preset(class_name, defaults, init_args, frozenset(inspect.signature(cls).parameters))


def build_parser(description: str) -> argparse.ArgumentParser:
    """The runner's options: one dataset, the shared model options, the models and where rows go.

    ``benchmarks.edge`` extends this parser with its own options.
    """
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawTextHelpFormatter)
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
    harness.add_model_options(p, num_workers=min(8, (os.cpu_count() or 2) // 2))
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--limit-train", type=int, help="use N training images (seeded subsample)")
    p.add_argument("--max-test", type=int, help="use at most N test images (seeded, stratified per folder)")
    p.add_argument("--out", type=Path, help="CSV to append to (default benchmarks/results/<dataset>_<category>.csv)")
    p.add_argument("--runs-dir", type=Path, help="keep checkpoints here (default: a temporary directory)")
    p.add_argument("--in-process", action="store_true", help="run all models in this process (default: one each)")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line (see ``--help``)."""
    return finish_args(build_parser(__doc__.split("\n\n")[0]), argv, module="run")


def finish_args(
    p: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    *,
    module: str,
    baselines: bool = True,
    out_prefix: str = "",
) -> argparse.Namespace:
    """Parse with a ``--preset``'s defaults, check, add the baselines and fill the derived fields.

    ``baselines=False`` never adds ``Cflow``/``Fastflow`` (as ``--no-baselines`` does); ``module`` names the
    script in the recorded command; the default ``--out`` is ``results/<out_prefix><dataset>_<category>.csv``.
    """
    known, _ = p.parse_known_args(argv)
    preset = _read_preset(p, known.preset) if known.preset else None
    if preset is not None:
        p.set_defaults(**preset.defaults)
    args = p.parse_args(argv)
    args.preset_model = preset
    harness.check_model_options(p, args)
    _check(p, args)
    args.models = _with_baselines(p, args.models, add=baselines and not args.no_baselines)
    args.dataset = args.dataset or args.root.resolve().name
    args.out = args.out or RESULTS / f"{out_prefix}{args.dataset}_{args.category}.csv"
    args.command = report.command_line(module, argv)
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
    for name in ("limit_train", "max_test", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.format == "folder" and not args.abnormal_dirs:
        p.error("--format folder needs --abnormal-dirs (e.g. test/defective test/likely_defective)")
    if args.mask_dirs and len(args.mask_dirs) != len(args.abnormal_dirs):
        p.error(f"--mask-dirs needs one dir per --abnormal-dirs entry, got {args.mask_dirs} for {args.abnormal_dirs}")
    base = args.root / args.category if args.format == "mvtec" else args.root
    if not base.is_dir():
        p.error(f"dataset folder {base} does not exist")


def spec_for(args: argparse.Namespace) -> ModelSpec:
    """What every model of the run shares (backbone, layers, size, weights, pixel metrics when masks exist)."""
    return ModelSpec(
        backbone=args.backbone,
        layers=tuple(args.layers),
        image_size=args.image_size,
        weights=args.weights,
        pixel_metrics=data_setup.has_masks(args),
    )


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
        report.append_rows(args.out, [row], COLUMNS)
        rows.append(row)
        print(summary(row), flush=True)
    markdown = report.write_markdown(args.out, [c for c in COLUMNS if c != "command"], title="Benchmark results")
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
    from lightning.pytorch import seed_everything

    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed, workers=True)
    with tempfile.TemporaryDirectory(prefix="nfplus_bench_") as tmp:
        data_root = data_setup.materialise(args, Path(tmp) / "data")
        datamodule = data_setup.make_datamodule(args, data_root)
        spec = spec_for(args)
        model = build_model(name, spec, init_args_for(name, args))
        timing = harness.fit_and_time(
            model,
            datamodule,
            epochs=args.epochs,
            root_dir=args.runs_dir or Path(tmp) / "runs",
            accelerator=args.accelerator,
        )
        n_train = len(datamodule.train_data)
    return make_row(name, args, timing, n_train, harness.peak_rss_mb(), spec)


def _metric(metrics: dict[str, Any], key: str) -> float | str:
    value = metrics.get(key)
    return "" if value is None else round(float(value), 4)


def make_row(
    name: str,
    args: argparse.Namespace,
    timing: harness.FitTiming,
    n_train: int,
    peak_rss_mb: float,
    spec: ModelSpec,
) -> dict[str, Any]:
    """One CSV row. ``train_s`` is the whole ``engine.fit``; throughput uses it minus validation time."""
    fit_only = max(timing.train_s - timing.val_s, 1e-9)
    return {
        "model": name,
        "backbone": spec.backbone,
        "layers": " ".join(spec.layers),
        "image_size": "x".join(map(str, spec.image_size)),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "dataset": args.dataset,
        "category": args.category,
        **{key: _metric(timing.metrics, key) for key in METRICS},
        "train_s": round(timing.train_s, 2),
        "val_s": round(timing.val_s, 2),
        "test_s": round(timing.test_s, 2),
        "train_images_per_s": round(n_train * args.epochs / fit_only, 3),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "weights": spec.weights,
        "seed": args.seed,
        "commit": report.commit(),
        "date": report.now(),
        "host": report.host(args.accelerator),
        "command": args.command,
    }


def summary(row: dict[str, Any]) -> str:
    """One human-readable line per finished model."""
    metrics = " ".join(f"{key}={row[key]}" for key in METRICS if row[key] != "")
    return f"[benchmark] {row['model']}: {metrics} train_s={row['train_s']} test_s={row['test_s']}"


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
    return merged | harness.init_args_for(name, args.init_args)


#: How the runner's command has been recorded: as a script path, and as a module.
_PROGRAMS = (("benchmarks/run.py",), ("python", "-m", "benchmarks.run"))


def _without_seed(command: str) -> str:
    """The command's arguments without ``--seed N`` (and without the program, however it was started)."""
    words = shlex.split(command)
    for program in _PROGRAMS:
        if tuple(words[: len(program)]) == program:
            words = words[len(program) :]
            break
    if "--seed" in words:
        at = words.index("--seed")
        del words[at : at + 2]
    return shlex.join(["python", "-m", "benchmarks.run", *words])


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


if __name__ == "__main__":
    main()
