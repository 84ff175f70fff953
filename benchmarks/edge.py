# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Edge deployment benchmark: accuracy per precision and batch-1 latency, torch eager vs OpenVINO FP32/FP16/INT8.

For each model: train with anomalib's Engine (the options of ``benchmarks.run``), export OpenVINO IR in every
requested precision (INT8: NNCF post-training quantisation calibrated on the training images), then on the test
set measure image/pixel AUROC of torch eager and of each IR with the same inputs and metric code, and time
batch-1 inference (median, p95) and batch-N throughput. The model's feature extractor alone is timed too (torch
eager and OpenVINO FP32): the floor no flow model can beat. One CSV row per (model, runtime).

    python -m benchmarks.edge --models CflowAD --root ../shared/data/mtd --category magnetic_tile --epochs 1
"""

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import data_setup, edge_runners, harness, report, run
from benchmarks.baselines import build_model

__all__ = ["COLUMNS", "main", "parse_args"]

#: One row per (model, runtime), as in the recorded ``results/edge_*.csv``.
COLUMNS = (
    "model", "runtime", "image_AUROC", "pixel_AUROC", "median_ms", "p95_ms", "throughput_img_s",
    "image_size", "epochs", "dataset", "category", "commit", "date", "host", "command",
)  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``benchmarks.run``'s options (never adding the baselines) plus precisions and timing repetitions."""
    p = run.build_parser(__doc__.split("\n\n")[0])
    edge = p.add_argument_group("edge")
    edge.add_argument("--precisions", nargs="+", default=["fp32", "fp16", "int8"], choices=["fp32", "fp16", "int8"])
    edge.add_argument("--runs", type=int, default=50, help="timed batch-1 calls per runtime")
    edge.add_argument("--warmup", type=int, default=5)
    edge.add_argument("--throughput-batch", type=int, default=8)
    edge.add_argument("--precision-hint", default="f32", help="OpenVINO INFERENCE_PRECISION_HINT ('' for the default)")
    return run.finish_args(p, argv, module="edge", baselines=False, out_prefix="edge_")


def _export(engine: Any, model: Any, precision: str, datamodule: Any, root: Path, size: tuple) -> Path:
    from anomalib.deploy import CompressionType, ExportType

    compression = {"fp32": None, "fp16": CompressionType.FP16, "int8": CompressionType.INT8_PTQ}[precision]
    return Path(
        engine.export(
            model,
            ExportType.OPENVINO,
            export_root=root / precision,
            input_size=size,
            compression_type=compression,
            datamodule=datamodule if precision == "int8" else None,
            onnx_kwargs={"opset_version": 18},
        )
    )


def _measure(name: str, runner: Any, samples: list, args: argparse.Namespace, accuracy: bool = True) -> dict:
    import numpy as np

    one = samples[0].image
    batch = np.concatenate([s.image for s in samples[: args.throughput_batch]])
    row: dict[str, Any] = {"runtime": name}
    if accuracy:
        row |= edge_runners.accuracy(runner, samples)
    row |= edge_runners.latency(runner, one, args.runs, args.warmup)
    start = time.perf_counter()
    for _ in range(3):
        runner(batch)
    row["throughput_img_s"] = 3 * batch.shape[0] / (time.perf_counter() - start)
    return row


def evaluate(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Train one model, export it, and measure every runtime; returns one row per runtime."""
    import openvino as ov
    import torch
    from lightning.pytorch import seed_everything

    seed_everything(args.seed, workers=True)
    size = args.image_size
    config = {"INFERENCE_PRECISION_HINT": args.precision_hint} if args.precision_hint else {}
    if args.threads:  # the same number of threads for torch and OpenVINO
        torch.set_num_threads(args.threads)
        config["INFERENCE_NUM_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory(prefix="nfplus_edge_") as tmp:
        datamodule = data_setup.make_datamodule(args, data_setup.materialise(args, Path(tmp) / "data"))
        model = build_model(name, run.spec_for(args), run.init_args_for(name, args))
        fitted = harness.fit_and_time(model, datamodule, epochs=args.epochs, root_dir=Path(tmp) / "runs", test=False)
        engine = fitted.engine
        samples = list(edge_runners.load_test_samples(datamodule, size))
        rows = [_measure("torch", edge_runners.torch_runner(model), samples, args)]
        for precision in args.precisions:
            path = _export(engine, model, precision, datamodule, Path(tmp) / "export", size)
            rows.append(_measure(f"openvino_{precision}", edge_runners.openvino_runner(path, config), samples, args))
        backbone = edge_runners.backbone_of(model.model)
        if backbone is not None:
            example = torch.from_numpy(samples[0].image)
            rows.append(_measure("backbone_torch", lambda x: backbone(torch.as_tensor(x)), samples, args, False))
            ir = Path(tmp) / "backbone.xml"
            ov.save_model(ov.convert_model(backbone, example_input=example), ir)
            rows.append(
                _measure("backbone_openvino_fp32", edge_runners.openvino_runner(ir, config), samples, args, False)
            )
    common = {"model": name, "image_size": "x".join(map(str, size)), "epochs": args.epochs, "dataset": args.dataset,
              "category": args.category, "commit": report.commit(), "date": report.now(),
              "host": report.host("cpu"), "command": args.command}  # fmt: skip
    return [{c: _round((common | row).get(c, "")) for c in COLUMNS} for row in rows]


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run every model and write ``--out`` (CSV, this run only) plus a markdown table beside it."""
    args = parse_args(argv)
    rows = [row for name in args.models for row in evaluate(name, args)]
    report.write_rows(args.out, rows, COLUMNS)
    shown = [c for c in COLUMNS if c not in {"command", "host", "date"}]
    print(report.write_markdown(args.out, shown, title="Edge deployment").read_text(), flush=True)
    return rows


if __name__ == "__main__":
    main()
