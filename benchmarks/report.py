# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Result rows of the benchmark runner: assembly, CSV append and the markdown table regenerated beside it."""

import argparse
import csv
import os
import subprocess
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

__all__ = ["COLUMNS", "ValidationTimer", "append_row", "make_row", "summary", "write_markdown"]

COLUMNS = (
    "model",
    "backbone",
    "layers",
    "image_size",
    "epochs",
    "batch_size",
    "dataset",
    "category",
    "image_AUROC",
    "pixel_AUROC",
    "pixel_AUPRO",
    "train_s",
    "val_s",
    "test_s",
    "train_images_per_s",
    "peak_rss_mb",
    "weights",
    "seed",
    "commit",
    "date",
    "host",
    "command",
)
METRICS = ("image_AUROC", "pixel_AUROC", "pixel_AUPRO")


class ValidationTimer(Callback):
    """Sum the validation time inside ``fit`` (post-processing statistics), so throughput excludes it."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        del trainer, pl_module
        self._start = time.perf_counter()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        del trainer, pl_module
        self.seconds += time.perf_counter() - self._start


def _commit() -> str:
    """Short commit of the checkout holding this file, ``+dirty`` when the code that ran differs from it."""
    here = Path(__file__).parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        # Changes, tracked or untracked, to the code that ran (package, runner, dependency pins); not the result
        # files a run writes itself (they made every row after the first of a new CSV look dirty).
        status = ["git", "status", "--porcelain", "--", ":/src", ":/benchmarks/*.py", ":/pyproject.toml", ":/uv.lock"]
        dirty = subprocess.run(status, cwd=here, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}+dirty" if dirty else sha


def _host(accelerator: str) -> str:
    device = torch.cuda.get_device_name(0) if accelerator != "cpu" and torch.cuda.is_available() else "cpu"
    return f"cpus={os.cpu_count()} torch_threads={torch.get_num_threads()} device={device}"


def _metric(metrics: dict[str, Any], key: str) -> float | str:
    value = metrics.get(key)
    return "" if value is None else round(float(value), 4)


def make_row(
    name: str,
    args: argparse.Namespace,
    metrics: dict[str, Any],
    n_train: int,
    train_s: float,
    val_s: float,
    test_s: float,
    peak_rss_mb: float,
    spec: Any,
) -> dict[str, Any]:
    """One CSV row. ``train_s`` is the whole ``engine.fit``; throughput uses it minus validation time."""
    fit_only = max(train_s - val_s, 1e-9)
    return {
        "model": name,
        "backbone": spec.backbone,
        "layers": " ".join(spec.layers),
        "image_size": "x".join(map(str, spec.image_size)),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "dataset": args.dataset,
        "category": args.category,
        **{key: _metric(metrics, key) for key in METRICS},
        "train_s": round(train_s, 2),
        "val_s": round(val_s, 2),
        "test_s": round(test_s, 2),
        "train_images_per_s": round(n_train * args.epochs / fit_only, 3),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "weights": spec.weights,
        "seed": args.seed,
        "commit": _commit(),
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": _host(args.accelerator),
        "command": args.command,
    }


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append ``row``, writing the header for a new file; refuse a file with other columns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size > 0:
        with path.open(newline="") as handle:
            header = next(csv.reader(handle), [])
        if tuple(header) != COLUMNS:
            msg = f"{path} has columns {header}, expected {list(COLUMNS)}; pass another --out."
            raise ValueError(msg)
        new = False
    else:
        new = True
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def read_rows(path: Path) -> list[dict[str, str]]:
    """All rows of a results CSV (empty list when it does not exist)."""
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def write_markdown(path: Path, columns: Sequence[str] | None = None, title: str = "Benchmark results") -> Path:
    """Regenerate ``<csv stem>.md``: one table row per CSV row, commands listed once below, numbered."""
    rows = read_rows(path)
    commands = list(dict.fromkeys(row["command"] for row in rows))
    shown = list(columns) if columns is not None else [c for c in COLUMNS if c != "command"]
    lines = [f"# {title}: `{path.name}`", "", "| " + " | ".join([*shown, "cmd"]) + " |"]
    lines.append("|" + "---|" * (len(shown) + 1))
    for row in rows:
        cells = [row[c].replace("|", "\\|") for c in shown] + [f"[{commands.index(row['command']) + 1}]"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Commands:", ""] + [f"{i}. `{cmd}`" for i, cmd in enumerate(commands, start=1)]
    markdown = path.with_suffix(".md")
    markdown.write_text("\n".join(lines) + "\n")
    return markdown


def summary(row: dict[str, Any]) -> str:
    """One human-readable line per finished model."""
    metrics = " ".join(f"{key}={row[key]}" for key in METRICS if row[key] != "")
    return f"[benchmark] {row['model']}: {metrics} train_s={row['train_s']} test_s={row['test_s']}"
