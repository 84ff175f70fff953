# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The offline end-to-end job: generate data, train, test, export to OpenVINO, run the exported model.

It needs no network: the dataset is generated (``anomalib_nfplus.data.synthetic``) and the backbone is the
packaged ImageNet EfficientNet-Lite0. Until the plugin's own models land, anomalib's built-in ``Cflow`` (built
with the same backbone weights) stands in; ``model`` accepts any model name ``get_model`` knows.
"""

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from anomalib_nfplus.data.synthetic import make_mvtec_like

__all__ = ["DemoResult", "run_demo"]

logger = logging.getLogger(__name__)

DEMO_CATEGORY = "stripes"
DEMO_BACKBONE = "tf_efficientnet_lite0"
DEMO_LAYERS = ("blocks.2", "blocks.4", "blocks.6")


@dataclass
class DemoResult:
    """What the demo measured; printed as JSON."""

    model: str
    data_root: str
    test_metrics: dict[str, float]
    openvino_model: str
    scores: dict[str, dict]
    seconds: dict[str, float]


def _build_model(name: str, image_size: int) -> object:
    from anomalib_nfplus.baselines import ModelSpec, build_model

    return build_model(name, ModelSpec(backbone=DEMO_BACKBONE, layers=DEMO_LAYERS, image_size=(image_size, image_size)))


def _load_image(path: Path, image_size: int) -> np.ndarray:
    """RGB float image in [0, 1], already at the exported model's static input size."""
    rgb = Image.open(path).convert("RGB").resize((image_size, image_size), Image.BILINEAR)
    return np.asarray(rgb, dtype=np.float32) / 255.0


def _compare_torch_and_openvino(model: object, model_xml: Path, images: dict[str, Path], image_size: int) -> dict:
    """Score each image alone with the torch model and with the exported OpenVINO model (f32 precision)."""
    import torch
    from anomalib.deploy import OpenVINOInferencer

    inferencer = OpenVINOInferencer(path=model_xml, device="CPU", config={"INFERENCE_PRECISION_HINT": "f32"})
    model.eval()
    scores: dict[str, dict] = {}
    for key, path in images.items():
        image = _load_image(path, image_size)
        prediction = inferencer.predict(image)
        with torch.no_grad():
            reference = model(torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0))
        scores[key] = {
            "openvino": float(np.asarray(prediction.pred_score).reshape(-1)[0]),
            "torch": float(reference.pred_score.reshape(-1)[0]),
            "openvino_label": bool(np.asarray(prediction.pred_label).reshape(-1)[0]),
        }
    return scores


def _demo_datamodule(root: Path, image_size: int, seed: int) -> object:
    from anomalib.data import MVTecAD

    data_root = make_mvtec_like(
        root,
        categories=(DEMO_CATEGORY,),
        n_train=48,
        n_test_good=16,
        n_test_bad=16,
        image_size=image_size,
        seed=seed,
        overwrite=True,
    )
    return MVTecAD(
        root=data_root, category=DEMO_CATEGORY, train_batch_size=8, eval_batch_size=8, num_workers=0, seed=seed
    )


def _first_test_images(data_root: Path) -> dict[str, Path]:
    test_dir = data_root / DEMO_CATEGORY / "test"
    return {
        "good": sorted((test_dir / "good").glob("*.png"))[0],
        "defect": sorted(p for p in test_dir.glob("*/*.png") if p.parent.name != "good")[0],
    }


def run_demo(
    output: str | Path = "results/nfplus_demo",
    model: str = "Cflow",
    epochs: int = 1,
    image_size: int = 128,
    seed: int = 0,
) -> DemoResult:
    """Train ``model`` on a generated dataset, test it, export it to OpenVINO and score two images with both."""
    from anomalib.deploy import ExportType
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    output = Path(output).resolve()
    seed_everything(seed, workers=True)
    datamodule = _demo_datamodule(output / "data", image_size, seed)
    anomaly_model = _build_model(model, image_size)
    engine = Engine(max_epochs=epochs, default_root_dir=output / "results", accelerator="cpu", devices=1, logger=False)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    engine.fit(model=anomaly_model, datamodule=datamodule)
    seconds["fit"] = time.perf_counter() - start
    metrics = {k: float(v) for k, v in engine.test(model=anomaly_model, datamodule=datamodule)[0].items()}
    seconds["test"] = time.perf_counter() - start - seconds["fit"]
    model_xml = engine.export(
        model=anomaly_model,
        export_type=ExportType.OPENVINO,
        export_root=output / "export",
        input_size=(image_size, image_size),
        onnx_kwargs={"opset_version": 18},
    )
    seconds["export"] = time.perf_counter() - start - seconds["fit"] - seconds["test"]
    scores = _compare_torch_and_openvino(
        anomaly_model, Path(model_xml), _first_test_images(output / "data"), image_size
    )
    return DemoResult(
        model=type(anomaly_model).__name__,
        data_root=str(output / "data"),
        test_metrics=metrics,
        openvino_model=str(model_xml),
        scores=scores,
        seconds={k: round(v, 1) for k, v in seconds.items()},
    )


def print_result(result: DemoResult) -> None:
    """Print the demo's result as indented JSON on stdout."""
    print(json.dumps(asdict(result), indent=2))
