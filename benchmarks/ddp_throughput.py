# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Training throughput in several processes (Lightning ``strategy="ddp"``) versus one, per model.

For every model and every ``--processes`` count, a fresh Python process runs ``engine.fit`` on the same data with
``devices=N`` (``strategy="ddp"`` when ``N > 1``, gloo on the CPU). Each process gets ``--threads`` torch threads
(default: the machine's cores divided by ``N``, so every run uses the same cores). Throughput is the training
images of one epoch (over all processes) divided by that epoch's wall time on process 0, validation switched off
(so no statistics collection); with ``--epochs 2`` or more the first epoch (warm-up) is left out. Speed-up is
relative to the 1-process row of the same model. One CSV row per (model, processes), a markdown table beside it.

Data: a generated MVTec-like category (``--train-images`` images of ``--image-size``), or ``--root``/``--category``.

Example:
    python -m benchmarks.ddp_throughput --models CflowAD HGAD --processes 1 2 --image-size 128 \
        --train-images 32 --batch-size 8 --epochs 2 --out /tmp/ddp_throughput.csv
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from benchmarks import harness, report

__all__ = ["COLUMNS", "EpochTimer", "main", "parse_args"]

#: One row per (model, processes), as in the recorded ``results/ddp_throughput_cpu.csv``.
COLUMNS = (
    "model", "processes", "threads_per_process", "train_images_per_s", "speedup", "epoch_s", "train_images",
    "batch_size", "image_size", "backbone", "layers", "epochs", "init_args", "commit", "date", "host", "command",
)  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (see ``--help``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=["CflowAD", "HGAD"], help="plugin or anomalib model names")
    p.add_argument("--processes", nargs="+", type=int, default=[1, 2], help="DDP process counts to compare")
    p.add_argument("--threads", type=int, default=None, help="torch threads per process (default: cores / N)")
    p.add_argument("--root", type=Path, help="MVTec-layout root (with --category) instead of generated data")
    p.add_argument("--category", default="stripes")
    p.add_argument("--train-images", type=int, default=32, help="generated training images")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2, help="the first epoch is warm-up when there are several")
    p.add_argument("--backbone", default=harness.DEFAULT_BACKBONE)
    p.add_argument("--layers", nargs="+", default=list(harness.DEFAULT_LAYERS))
    p.add_argument("--init-args", nargs=2, action="append", default=[], metavar=("MODEL", "JSON"),
                   help="constructor arguments of MODEL, e.g. --init-args HGAD '{\"coupling_blocks\": 4}'")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ddp_throughput.csv")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # JSON job of one fit, run in a fresh process
    args = p.parse_args(argv)
    if any(n < 1 for n in args.processes):
        p.error("--processes must be positive")
    args.command = report.command_line("ddp_throughput", argv)
    return args


class EpochTimer(Callback):
    """Wall time of every training epoch, once every process has finished it."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        del trainer, pl_module
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        del pl_module
        trainer.strategy.barrier()
        self.seconds.append(time.perf_counter() - self._start)


def _fit(job: dict[str, Any]) -> None:
    """One fit in ``job["processes"]`` processes (this is process 0; Lightning re-launches this command line)."""
    import torch
    from anomalib.data import MVTecAD
    from lightning.pytorch import seed_everything

    from benchmarks.baselines import ModelSpec, build_model

    torch.set_num_threads(job["threads"])
    seed_everything(0, workers=True)
    size = (job["image_size"], job["image_size"])
    model = build_model(job["model"], ModelSpec(job["backbone"], tuple(job["layers"]), size), job["init_args"])
    data = MVTecAD(root=job["root"], category=job["category"], train_batch_size=job["batch_size"], num_workers=0)
    timer = EpochTimer()
    engine = harness.fit_and_time(
        model, data, epochs=job["epochs"], root_dir=Path(job["runs"]), devices=job["processes"], callbacks=[timer],
        test=False, strategy="ddp" if job["processes"] > 1 else "auto", limit_val_batches=0,
    ).engine  # fmt: skip
    if engine.trainer.global_rank == 0:
        timed = timer.seconds[1:] or timer.seconds
        epoch_s = sum(timed) / len(timed)
        images = len(data.train_data)
        Path(job["result"]).write_text(json.dumps({"epoch_s": epoch_s, "train_images": images}))


def _run_job(job: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(job["threads"])}
    command = [sys.executable, "-m", "benchmarks.ddp_throughput", "--worker", json.dumps(job)]
    subprocess.run(command, check=True, env=env, cwd=report.REPO)  # the repository root holds ``benchmarks``
    return json.loads(Path(job["result"]).read_text())


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run every (model, processes) fit and append the rows to ``--out``."""
    args = parse_args(argv)
    if args.worker:
        _fit(json.loads(args.worker))
        return []
    rows = []
    with tempfile.TemporaryDirectory(prefix="nfplus_ddp_") as tmp:
        root, category = args.root, args.category
        if root is None:
            from anomalib_nfplus.data.synthetic import make_mvtec_like

            root = make_mvtec_like(
                Path(tmp) / "data", [category], n_train=args.train_images, n_test_good=1, n_test_bad=1,
                image_size=args.image_size,
            )  # fmt: skip
        for name in args.models:
            init_args = harness.init_args_for(name, args.init_args)
            single = None
            for processes in args.processes:
                threads = args.threads or max(1, (os.cpu_count() or 1) // processes)
                job = {
                    "model": name, "processes": processes, "threads": threads, "root": str(root),
                    "category": category, "image_size": args.image_size, "batch_size": args.batch_size,
                    "epochs": args.epochs, "backbone": args.backbone, "layers": args.layers, "init_args": init_args,
                    "runs": str(Path(tmp) / f"runs_{name}_{processes}"),
                    "result": str(Path(tmp) / f"{name}_{processes}.json"),
                }  # fmt: skip
                result = _run_job(job)
                throughput = result["train_images"] / result["epoch_s"]
                single = throughput if processes == 1 else single
                row = {
                    "model": name, "processes": processes, "threads_per_process": threads,
                    "train_images_per_s": round(throughput, 3),
                    "speedup": round(throughput / single, 3) if single else "",
                    "epoch_s": round(result["epoch_s"], 3), "train_images": result["train_images"],
                    "batch_size": args.batch_size, "image_size": args.image_size, "backbone": args.backbone,
                    "layers": " ".join(args.layers), "epochs": args.epochs, "init_args": json.dumps(init_args),
                    "commit": report.commit(), "date": report.now(),
                    "host": report.host(torch_threads=False), "command": args.command,
                }  # fmt: skip
                report.append_rows(args.out, [row], COLUMNS)
                rows.append(row)
                label = f"{name}: {processes} process(es) x {threads} thread(s)"
                print(f"[ddp-throughput] {label}: {throughput:.2f} images/s", flush=True)
    report.write_markdown(args.out, [c for c in COLUMNS if c != "command"], title="DDP training throughput")
    return rows


if __name__ == "__main__":
    main()
