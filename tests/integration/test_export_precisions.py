# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Every model exports to OpenVINO in FP16 and INT8 through ``Engine.export``, and the IRs run in the edge runtime.

INT8 must quantise the backbone's (non-depthwise) convolutions and nothing of the flows, whose log-likelihoods need
float. One tiny model per catalogue model, with one backbone level at one scale (``ONE_LEVEL``: the trace, most of
each model's cost here, grows with the graph). FP32 is the torch model itself: the FP32 IR's parity with torch is
checked in ``test_models.py``, so a third trace per model would add nothing. The models
output raw (un-normalised) scores and maps: a barely trained model's scores are nearly equal, and anomalib's min-max
normalisation would magnify any difference between precisions into noise.
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

from anomalib_nfplus._catalog import MODELS
from anomalib_nfplus.deploy import EdgeModel
from anomalib_nfplus.models.components.export.quantization import feature_ops
from tests.helpers.tiny_models import ONE_LEVEL, tiny_model

pytestmark = pytest.mark.export

SIZE = 64
PRECISIONS = {"fp16": CompressionType.FP16, "int8": CompressionType.INT8_PTQ}  # FP32: the torch model
QUANTISED_TYPES = {"Convolution"}  # depthwise (GroupConvolution) stays float, as do the flows


@pytest.fixture(scope="module", params=sorted(MODELS))
def exported(request: pytest.FixtureRequest, synthetic_root: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny trained model, its FP16 and INT8 IRs, and their and the torch model's outputs on eight test images."""
    torch.manual_seed(0)
    raw = PostProcessor(enable_normalization=False)
    model = tiny_model(request.param, SIZE, post_processor=raw, **ONE_LEVEL[request.param])
    datamodule = MVTecAD(root=synthetic_root, category="stripes", train_batch_size=4, eval_batch_size=8, num_workers=0)
    root = tmp_path_factory.mktemp(f"precisions_{request.param}")
    engine = Engine(default_root_dir=root / "runs", max_epochs=1, logger=False, enable_progress_bar=False,
                    enable_model_summary=False, accelerator="cpu")  # fmt: skip
    engine.fit(model, datamodule=datamodule)
    images = next(iter(datamodule.test_dataloader())).image
    model.eval()
    with torch.no_grad():
        reference = model(images)  # float32; the FP32 IR matches it to 1e-4 (test_models.py)
    paths: dict[str, Path] = {}
    outputs = {"fp32": {key: getattr(reference, key).numpy() for key in ("pred_score", "anomaly_map")}}
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
        outputs[precision] = EdgeModel(paths[precision], precision="f32").infer(images.numpy())
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
    # The FP16 IR is the float graph with half-precision constants: the same ops under the same names.
    backbone = set(feature_ops(ov.Core().read_model(exported["paths"]["fp16"])))
    consumers = _fake_quantize_consumers(exported["paths"]["int8"])
    assert consumers, "no FakeQuantize node: nothing was quantised"
    assert {node.get_type_name() for node in consumers} <= QUANTISED_TYPES  # no MatMul, Add, blur... quantised
    assert {node.get_friendly_name() for node in consumers} == backbone  # every such backbone conv, nothing else
    assert _count(exported["paths"]["int8"], "MatMul") == _count(exported["paths"]["fp16"], "MatMul") > 0


def test_int8_outputs_follow_fp32(exported) -> None:
    fp32, int8 = exported["outputs"]["fp32"], exported["outputs"]["int8"]
    assert not np.array_equal(int8["anomaly_map"], fp32["anomaly_map"])  # it really is another graph
    # Bounds that each of the three tiny models breaks when the flows are quantised too (NNCF's default scope).
    correlation = np.corrcoef(int8["anomaly_map"].ravel(), fp32["anomaly_map"].ravel())[0, 1]
    assert correlation >= 0.9
    score_error = np.abs(int8["pred_score"] - fp32["pred_score"]).mean()
    assert score_error <= 0.15 * _scale(fp32["pred_score"])
