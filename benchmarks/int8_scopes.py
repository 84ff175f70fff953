# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Where an exported flow model's time goes, and how much INT8 can win: OpenVINO latency per quantisation scope.

Trains a CflowAD/HGAD (1 epoch on generated stripes, 256 px by default: latency does not depend on the data), exports
its FP32 IR, then times batch-1 inference of: the FP32 IR; INT8 with the plugin's scope (backbone convolutions
except depthwise); INT8 of every backbone convolution; INT8 of NNCF's default scope (everything it can quantise,
flows and map arithmetic included); and the backbone alone in FP32 and INT8. It also prints the FP32 IR's time per
OpenVINO op type (``PERF_COUNT``), which shows the share INT8 cannot touch.

    python -m benchmarks.int8_scopes --model CflowAD --threads 1
"""

import argparse
import collections
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import edge_runners, harness

__all__ = ["main"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Model, size, layers, threads and timing repetitions."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="CflowAD", choices=["CflowAD", "HGAD"])
    p.add_argument("--layers", nargs="+", default=list(harness.DEFAULT_LAYERS))
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=60)
    return p.parse_args(argv)


def _train_and_export(args: argparse.Namespace, work: Path) -> tuple[Path, Any, Any]:
    import torch
    from anomalib.data import MVTecAD
    from anomalib.deploy import ExportType
    from lightning.pytorch import seed_everything

    from anomalib_nfplus import HGAD, CflowAD
    from anomalib_nfplus.backbones import offline_weights
    from anomalib_nfplus.data.synthetic import make_mvtec_like

    seed_everything(0)
    torch.set_num_threads(args.threads)
    size = args.image_size
    make_mvtec_like(work / "data", categories=("stripes",), n_train=32, n_test_good=4, n_test_bad=2, image_size=size)
    datamodule = MVTecAD(root=work / "data", category="stripes", train_batch_size=16, eval_batch_size=16, num_workers=0)
    backbone = harness.DEFAULT_BACKBONE
    common = {"backbone": backbone, "layers": tuple(args.layers), "pre_trained": False,
              "backbone_weights": str(offline_weights(backbone)), "image_size": size, "visualizer": False}  # fmt: skip
    model = CflowAD(**common) if args.model == "CflowAD" else HGAD(**common, condition_dim=64, coupling_blocks=8)
    engine = harness.fit_and_time(model, datamodule, epochs=1, root_dir=work / "runs", test=False).engine
    path = engine.export(model, ExportType.OPENVINO, export_root=work / "fp32", input_size=(size, size),
                         onnx_kwargs={"opset_version": 18})  # fmt: skip
    return Path(path), model, datamodule


def _latency(model: Any, image: np.ndarray, args: argparse.Namespace) -> float:
    import openvino as ov

    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": str(args.threads)}
    compiled = ov.Core().compile_model(model, "CPU", config)
    for _ in range(5):
        compiled(image)
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        compiled(image)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _quantize(model: Any, data: list[np.ndarray], ignored_scope: Any) -> Any:
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    params = AdvancedQuantizationParameters(disable_bias_correction=True)
    kwargs = {} if ignored_scope is None else {"ignored_scope": ignored_scope}
    return nncf.quantize(model, nncf.Dataset(data), subset_size=len(data), advanced_parameters=params, **kwargs)


def _op_profile(model: Any, image: np.ndarray, args: argparse.Namespace, top: int = 12) -> list[tuple[str, float]]:
    import openvino as ov

    config = {"PERF_COUNT": "YES", "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": str(args.threads)}
    request = ov.Core().compile_model(model, "CPU", config).create_infer_request()
    totals: collections.Counter = collections.Counter()
    for repeat in range(25):
        request.infer({0: image})
        if repeat >= 5:
            for info in request.get_profiling_info():
                totals[info.node_type] += info.real_time.total_seconds() * 1e3 / 20
    return totals.most_common(top)


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Print and return the median latency (ms) of every variant."""
    import openvino as ov
    import torch

    from anomalib_nfplus.models.components.export.quantization import backbone_only_scope

    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nfplus_int8_") as tmp:
        path, model, datamodule = _train_and_export(args, Path(tmp))
        size = (args.image_size, args.image_size)
        data = [s.image for s in edge_runners.load_test_samples(datamodule, size)]
        datamodule.setup("fit")
        calibration = [b.image[i : i + 1].numpy() for b in datamodule.train_dataloader() for i in range(len(b.image))]
        calibration = [torch.nn.functional.interpolate(torch.from_numpy(c), size=size).numpy() for c in calibration]
        fp32 = ov.Core().read_model(path)
        backbone = edge_runners.backbone_of(model.model)
        backbone_ir = ov.convert_model(backbone, example_input=torch.from_numpy(data[0]))
        variants = {
            "fp32": fp32,
            "int8, plugin scope (backbone convs, no depthwise)": _quantize(
                fp32, calibration, backbone_only_scope(fp32)
            ),
            "int8, every backbone conv": _quantize(
                fp32, calibration, backbone_only_scope(fp32, op_types=("Convolution", "GroupConvolution"))
            ),
            "int8, NNCF default (flows and maps too)": _quantize(fp32, calibration, None),
            "backbone alone, fp32": backbone_ir,
            "backbone alone, int8 (NNCF default)": _quantize(backbone_ir, calibration, None),
        }
        results = {name: _latency(ir, data[0], args) for name, ir in variants.items()}
        profile = _op_profile(fp32, data[0], args)
    print(f"{args.model}, {size[0]} px, {args.threads} thread(s), median batch-1 latency:")
    for name, ms in results.items():
        print(f"  {ms:7.2f} ms  {name}  (x{results['fp32'] / ms:.2f} vs fp32)")
    print("FP32 IR, time per op type:")
    for op_type, ms in profile:
        print(f"  {ms:7.3f} ms  {op_type}")
    return results


if __name__ == "__main__":
    main()
