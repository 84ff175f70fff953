# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Every model exports to OpenVINO in FP16 and INT8 through ``Engine.export``, and the IRs run in the edge runtime.

INT8 must quantise the backbone's (non-depthwise) convolutions and nothing of the flows, whose log-likelihoods need
float. One tiny
model per plugin model; ONNX tracing (covered by each model's FP32 parity test) runs once per model and is reused
by the three exports, so each model costs one training and one trace. The models output raw (un-normalised) scores
and maps: a barely trained model's scores are nearly equal, and anomalib's min-max normalisation would magnify any
difference between precisions into noise.
"""

from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.deploy import CompressionType, ExportType
from anomalib.engine import Engine
from anomalib.post_processing import PostProcessor

from anomalib_nfplus.backbones import offline_weights
from anomalib_nfplus.deploy import EdgeModel
from anomalib_nfplus.models.cflow_ad import CflowAD
from anomalib_nfplus.models.components.quantization import feature_ops
from anomalib_nfplus.models.differnet import DifferNet
from anomalib_nfplus.models.hgad import HGAD

pytestmark = pytest.mark.export

SIZE = 64
TINY: dict[str, tuple[type, dict[str, Any]]] = {
    # One backbone level and one scale each: the ONNX trace, most of each model's cost here, grows with the graph.
    "CflowAD": (CflowAD, {"layers": ["blocks.2"], "coupling_blocks": 2, "condition_dim": 32, "reflect_padding": False}),
    "DifferNet": (DifferNet, {"layers": ["blocks.2"], "scales": (1.0,), "n_blocks": 2, "hidden": 32, "depth": 1,
                              "n_test_transforms": 2, "n_train_transforms": 2, "blur_sigma": 1.0}),
    "HGAD": (HGAD, {"layers": ["blocks.2"], "pyramid_scales": (1.0,), "n_blocks": 2, "cond_dim": 32, "n_intra": 3,
                    "blur_sigma": 1.0}),
}  # fmt: skip
PRECISIONS = {"fp32": None, "fp16": CompressionType.FP16, "int8": CompressionType.INT8_PTQ}
QUANTISED_TYPES = {"Convolution"}  # depthwise (GroupConvolution) stays float, as do the flows


@pytest.fixture(scope="module", params=sorted(TINY))
def exported(request: pytest.FixtureRequest, synthetic_root: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny trained model, its IR in each precision and every IR's outputs on eight test images."""
    cls, kwargs = TINY[request.param]
    torch.manual_seed(0)
    model = cls(
        backbone="tf_efficientnet_lite0",
        pre_trained=False,
        backbone_weights=str(offline_weights("tf_efficientnet_lite0")),
        image_size=SIZE,
        visualizer=False,
        post_processor=PostProcessor(enable_normalization=False),
        **kwargs,
    )
    datamodule = MVTecAD(root=synthetic_root, category="stripes", train_batch_size=4, eval_batch_size=8, num_workers=0)
    root = tmp_path_factory.mktemp(f"precisions_{request.param}")
    engine = Engine(default_root_dir=root / "runs", max_epochs=1, logger=False, enable_progress_bar=False,
                    enable_model_summary=False, accelerator="cpu")  # fmt: skip
    engine.fit(model, datamodule=datamodule)
    images = next(iter(datamodule.test_dataloader())).image.numpy()
    paths, outputs = {}, {}
    for precision, compression in PRECISIONS.items():
        paths[precision] = Path(
            engine.export(
                model,
                ExportType.OPENVINO,
                export_root=root / precision,
                input_size=(SIZE, SIZE),
                compression_type=compression,
                datamodule=datamodule if precision == "int8" else None,  # the default (direct) route
            )
        )
        outputs[precision] = EdgeModel(paths[precision], config={"INFERENCE_PRECISION_HINT": "f32"}).infer(images)
    return {"name": request.param, "paths": paths, "outputs": outputs, "n": images.shape[0]}


def _fake_quantize_consumers(path: Path) -> list[Any]:
    model = ov.Core().read_model(path)
    return [
        target.get_node()
        for op in model.get_ops()
        if op.get_type_name() in {"FakeQuantize", "FakeConvert"}
        for target in op.output(0).get_target_inputs()
    ]


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_ir_runs_in_the_edge_runtime_with_finite_outputs(exported, precision: str) -> None:
    out = exported["outputs"][precision]
    assert out["pred_score"].shape == (exported["n"],)
    assert out["anomaly_map"].shape == (exported["n"], 1, SIZE, SIZE)
    assert np.isfinite(out["pred_score"]).all()
    assert np.isfinite(out["anomaly_map"]).all()


def _scale(reference: np.ndarray) -> float:
    """Spread of the FP32 values (their magnitude if they are all equal): raw outputs have model-specific units."""
    return float(np.ptp(reference)) or float(np.abs(reference).max()) or 1.0


def test_fp16_stores_half_weights_and_stays_close_to_fp32(exported) -> None:
    model = ov.Core().read_model(exported["paths"]["fp16"])
    constants = [op for op in model.get_ops() if op.get_type_name() == "Constant"]
    assert any(op.get_element_type() == ov.Type.f16 for op in constants)
    fp32, fp16 = exported["outputs"]["fp32"], exported["outputs"]["fp16"]
    # Loose: FP16 rounds every weight (~5e-4 relative). DifferNet's gradient maps move at a few pixels, so maps are
    # compared on average.
    score_error = np.abs(fp16["pred_score"] - fp32["pred_score"]).max()
    assert score_error <= 0.01 * _scale(fp32["pred_score"])
    map_error = np.abs(fp16["anomaly_map"] - fp32["anomaly_map"]).mean()
    assert map_error <= 0.01 * _scale(fp32["anomaly_map"])


def _count(path: Path, op_type: str) -> int:
    return sum(op.get_type_name() == op_type for op in ov.Core().read_model(path).get_ops())


def test_int8_quantises_the_backbone_and_none_of_the_flows(exported) -> None:
    backbone = set(feature_ops(ov.Core().read_model(exported["paths"]["fp32"])))
    consumers = _fake_quantize_consumers(exported["paths"]["int8"])
    assert consumers, "no FakeQuantize node: nothing was quantised"
    assert {node.get_type_name() for node in consumers} <= QUANTISED_TYPES  # no MatMul, Add, blur... quantised
    assert {node.get_friendly_name() for node in consumers} == backbone  # every such backbone conv, nothing else
    assert _count(exported["paths"]["int8"], "MatMul") == _count(exported["paths"]["fp32"], "MatMul") > 0


def test_int8_outputs_follow_fp32(exported) -> None:
    fp32, int8 = exported["outputs"]["fp32"], exported["outputs"]["int8"]
    assert not np.array_equal(int8["anomaly_map"], fp32["anomaly_map"])  # it really is another graph
    # Bounds that each of the three tiny models breaks when the flows are quantised too (NNCF's default scope).
    correlation = np.corrcoef(int8["anomaly_map"].ravel(), fp32["anomaly_map"].ravel())[0, 1]
    assert correlation >= 0.9
    score_error = np.abs(int8["pred_score"] - fp32["pred_score"]).mean()
    assert score_error <= 0.15 * _scale(fp32["pred_score"])
