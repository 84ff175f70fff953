# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""What every benchmark shares: the model options of the command line, ``--init-args`` merging, and one timed fit.

Each script (``run``, ``unified``, ``edge``, ``ddp_throughput``, ``export_time``, ``int8_scopes``) adds its own
options to these and calls :func:`fit_and_time`, so a number in one results file was measured the same way as in
the others: the same Engine settings, the same clock around ``fit`` and ``test``, validation time kept apart.
"""

import argparse
import json
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

__all__ = [
    "DEFAULT_BACKBONE",
    "DEFAULT_LAYERS",
    "FitTiming",
    "ValidationTimer",
    "add_model_options",
    "check_model_options",
    "fit_and_time",
    "init_args_for",
    "peak_rss_mb",
]

DEFAULT_BACKBONE = "tf_efficientnet_lite0"
DEFAULT_LAYERS = ("blocks.2", "blocks.4", "blocks.6")


def add_model_options(p: argparse.ArgumentParser, *, num_workers: int = 0) -> None:
    """Backbone, layers, weights, input size, schedule, seed, loader, accelerator and ``--init-args``."""
    p.add_argument("--backbone", default=DEFAULT_BACKBONE)
    p.add_argument("--layers", nargs="+", default=list(DEFAULT_LAYERS))
    p.add_argument("--weights", choices=["offline", "random", "hub"], default="offline", help="backbone weights")
    p.add_argument("--image-size", nargs="+", type=int, default=[256], help="S or H W")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-workers", type=int, default=num_workers)
    p.add_argument("--accelerator", default="cpu", help="Lightning accelerator (cpu, gpu, auto)")
    p.add_argument(
        "--init-args",
        nargs=2,
        action="append",
        default=[],
        metavar=("MODEL", "JSON"),
        help="extra constructor arguments of one model, e.g. --init-args DifferNet '{\"n_test_transforms\": 8}'",
    )


def check_model_options(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse bad values as usage errors and make ``args.image_size`` an ``(H, W)`` tuple."""
    from benchmarks.baselines import OFFLINE_BACKBONES

    if len(args.image_size) not in {1, 2} or min(args.image_size) < 32:
        p.error(f"--image-size takes S or H W with values >= 32, got {args.image_size}")
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.weights == "offline" and args.backbone not in OFFLINE_BACKBONES:
        p.error(
            f"no offline weights for {args.backbone!r} (have {sorted(OFFLINE_BACKBONES)}); use --weights random|hub"
        )
    for option in ("init_args", "variants"):
        for _, text in getattr(args, option, []):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as error:
                p.error(f"invalid JSON {text!r}: {error}")
            if not isinstance(value, dict):
                p.error(f"--{option.replace('_', '-')} takes a JSON object, got {text!r}")
    args.image_size = tuple(args.image_size * 2 if len(args.image_size) == 1 else args.image_size)


def init_args_for(name: str, pairs: Sequence[Sequence[str]]) -> dict[str, Any]:
    """The ``(MODEL, JSON)`` pairs given for ``name`` (case-insensitive), merged in order."""
    merged: dict[str, Any] = {}
    for model, text in pairs:
        if model.lower() == name.lower():
            value = json.loads(text)
            if not isinstance(value, dict):
                msg = f"--init-args {model} must be a JSON object, got {text!r}"
                raise ValueError(msg)
            merged.update(value)
    return merged


class ValidationTimer(Callback):
    """Sum the validation time inside ``fit`` (post-processing statistics), so throughput can leave it out."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        del trainer, pl_module
        self._start = time.perf_counter()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        del trainer, pl_module
        self.seconds += time.perf_counter() - self._start


@dataclass
class FitTiming:
    """One timed fit (and test): the engine (for export), the test metrics and the wall seconds of each part."""

    engine: Any
    train_s: float
    val_s: float
    test_s: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)


def fit_and_time(
    model: Any,
    datamodule: Any,
    *,
    epochs: int,
    root_dir: Path,
    accelerator: str = "cpu",
    devices: int = 1,
    callbacks: Sequence[Callback] = (),
    test: bool = True,
    **engine_options: Any,
) -> FitTiming:
    """``engine.fit`` then (unless ``test=False``) ``engine.test``, each on the wall clock.

    No logger, progress bar or model summary: their output would be timed too. ``train_s`` is the whole ``fit``
    (epochs, the validation pass the post-processor needs, checkpointing); ``val_s`` is its validation part.
    """
    from anomalib.engine import Engine

    timer = ValidationTimer()
    engine = Engine(
        max_epochs=epochs,
        logger=False,
        default_root_dir=root_dir,
        accelerator=accelerator,
        devices=devices,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer, *callbacks],
        **engine_options,
    )
    start = time.perf_counter()
    engine.fit(model, datamodule=datamodule)
    timing = FitTiming(engine, train_s=time.perf_counter() - start, val_s=timer.seconds)
    if test:
        start = time.perf_counter()
        timing.metrics = engine.test(model, datamodule=datamodule, verbose=False)[0]
        timing.test_s = time.perf_counter() - start
    return timing


def peak_rss_mb() -> float:
    """Peak resident memory of this process or of its largest finished child (dataloader workers), in MiB."""
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return peak * scale / 2**20
