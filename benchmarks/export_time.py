# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""How long ``anomalib export --export_type openvino`` takes per CPU preset, and how much it prints.

For each preset (``configs/<model>_cpu.yaml``) the model is built from the config, fitted for a few batches on
generated images at the preset's size (HGAD's prior and every model's statistics need a fit), and checkpointed.
Then, for the direct route (``torch.export`` -> OpenVINO, the default) and anomalib's ONNX route (taken with
``--onnx_kwargs '{}'``), it measures:

- ``to_openvino`` in this process: wall and CPU seconds;
- ``anomalib export --model <Name> --ckpt_path <ckpt> --export_type openvino --export_root <dir>`` as a real
  subprocess: wall and CPU seconds (Python and anomalib start-up included) and the lines it prints.

CPU seconds are the honest figure on a shared machine: wall seconds grow with other processes' load.

    python -m benchmarks.export_time                 # all three presets, writes benchmarks/results/export_time.*
    python -m benchmarks.export_time --models CflowAD --routes direct
"""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import harness, report

__all__ = ["FIELDS", "main"]

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {"CflowAD": "cflow_ad_cpu.yaml", "HGAD": "hgad_cpu.yaml", "DifferNet": "differnet_cpu.yaml"}
ROUTES = {"direct": [], "onnx": ["--onnx_kwargs", "{}"]}
#: One row per (model, route), as in the recorded ``results/export_time*.csv``.
FIELDS = ["model", "route", "image_size", "to_openvino_wall_s", "to_openvino_cpu_s", "cli_wall_s", "cli_cpu_s",
          "cli_output_lines", "cli_rc", "load_avg_1min", "command"]  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Models, routes, output files and the fit's size."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    p.add_argument("--routes", nargs="+", default=list(ROUTES), choices=list(ROUTES))
    p.add_argument("--batches", type=int, default=2, help="training batches of the quick fit")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "export_time.csv")
    p.add_argument("--keep", type=Path, default=None, help="folder to keep checkpoints and exports in")
    return p.parse_args(argv)


def _timed(function: Callable[[], Any]) -> tuple[Any, float, float]:
    """``function()``, its wall seconds and the CPU seconds this process spent on it."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fit_preset(name: str, work: Path, batches: int) -> tuple[Any, Path, int]:
    """The preset's model fitted for ``batches`` batches on generated images, and its checkpoint."""
    from anomalib.data import MVTecAD
    from anomalib.models import AnomalibModule

    from anomalib_nfplus.data.synthetic import make_mvtec_like

    model = AnomalibModule.from_config(str(ROOT / "configs" / PRESETS[name]))
    size = int(model.input_size[0])
    data = make_mvtec_like(work / "data", categories=("stripes",), n_train=4 * batches, n_test_good=2,
                           n_test_bad=1, image_size=size)  # fmt: skip
    datamodule = MVTecAD(root=data, category="stripes", train_batch_size=4, eval_batch_size=4, num_workers=0)
    engine = harness.fit_and_time(model, datamodule, epochs=1, root_dir=work / "runs", test=False,
                                  limit_train_batches=batches, limit_val_batches=1).engine  # fmt: skip
    checkpoint = work / f"{name}.ckpt"
    engine.trainer.save_checkpoint(checkpoint)
    return model, checkpoint, size


def cli_export(name: str, checkpoint: Path, export_root: Path, route: str) -> dict[str, Any]:
    """``anomalib export`` in a subprocess: wall and CPU seconds, printed lines, exit code, the command."""
    anomalib = Path(sys.executable).with_name("anomalib")
    command = [str(anomalib), "export", "--model", name, "--ckpt_path", str(checkpoint), "--export_type", "openvino",
               "--export_root", str(export_root), *ROUTES[route]]  # fmt: skip
    cpu, wall = _children_cpu(), time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=export_root.parent)
    wall, cpu = time.perf_counter() - wall, _children_cpu() - cpu
    output = done.stdout + done.stderr
    (export_root.parent / f"{name}_{route}_cli.log").write_text(output)
    if done.returncode != 0:
        print(output[-3000:], file=sys.stderr)
    shown = " ".join(["anomalib", *command[1:]]).replace(str(export_root.parent), "<work>")
    lines, rc = len(output.splitlines()), done.returncode
    return {"cli_wall_s": wall, "cli_cpu_s": cpu, "cli_output_lines": lines, "cli_rc": rc, "command": shown}


def measure(name: str, work: Path, routes: Sequence[str], batches: int) -> list[dict[str, Any]]:
    """One row per route for the preset ``name``."""
    model, checkpoint, size = fit_preset(name, work, batches)
    rows = []
    for route in routes:
        onnx_kwargs = {} if route == "onnx" else None
        _, wall, cpu = _timed(lambda: model.to_openvino(work / f"inproc_{route}", onnx_kwargs=onnx_kwargs))  # noqa: B023
        row = {"model": name, "route": route, "image_size": size, "to_openvino_wall_s": wall, "to_openvino_cpu_s": cpu}
        row.update(cli_export(name, checkpoint, work / f"cli_{route}", route))
        row["load_avg_1min"] = os.getloadavg()[0]
        print({key: round(value, 1) if isinstance(value, float) else value for key, value in row.items()}, flush=True)
        rows.append(row)
    return rows


def write(rows: list[dict[str, Any]], path: Path) -> None:
    """The rows (this run only) as CSV, and the markdown table beside it."""
    report.write_rows(path, ({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()} for row in rows),
                      FIELDS)  # fmt: skip
    report.write_markdown(path, FIELDS[:-1], title="OpenVINO export time")


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Measure every requested preset and route; write the CSV and markdown table."""
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="export_time_")) if args.keep is None else args.keep
    rows: list[dict[str, Any]] = []
    try:
        for name in args.models:
            rows += measure(name, work / name, args.routes, args.batches)
            write(rows, args.out)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return rows


if __name__ == "__main__":
    main()
