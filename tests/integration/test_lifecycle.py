# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Every plugin model through its life: fit -> checkpoint -> reload -> resumed fit -> CLI export -> edge runtime.

The images are 64 px and the models run at 48 px, so a reload that lost the pre-processing (resize and the
backbone's normalisation) changes every score. ``anomalib export`` runs as a real command with only ``--model`` and
``--ckpt_path``: the checkpoint's saved arguments must rebuild the trained model, and the export size must come
from its pre-processor. An export takes about a minute (mostly ``torch.onnx``, largely one thread), so each starts
in the background as soon as its checkpoint exists; the exports run together and alongside the in-process checks.
"""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.engine import Engine
from lightning.pytorch import Callback
from PIL import Image

from anomalib_nfplus._catalog import MODELS
from anomalib_nfplus.data.synthetic import make_mvtec_like
from anomalib_nfplus.models.components import FlowModuleMixin
from tests.helpers.tiny_models import tiny_model

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
IMAGE_SIZE = 64  # the generated data
SIZE = 48  # the models' pre-processor
TOLERANCE = 1e-5  # relative, reload against the in-memory model (same float32 computation)
EXPORT_TOLERANCE = 1e-4  # OpenVINO f32 against torch


def _model_class(name: str) -> type:
    import anomalib_nfplus

    return getattr(anomalib_nfplus, name)


def _model(name: str) -> FlowModuleMixin:
    return tiny_model(name, SIZE)


def _fresh_model(name: str) -> FlowModuleMixin:
    """Built like the trained one, so loading its checkpoint strictly works; not trained."""
    torch.manual_seed(123)  # other flow initialisation than the trained model's
    return _model(name)


def _engine(root: Path, **kwargs: Any) -> Engine:
    args = {"max_epochs": 1, "logger": False, "enable_progress_bar": False, "accelerator": "cpu", **kwargs}
    return Engine(default_root_dir=root, enable_model_summary=False, **args)


def _datamodule(root: Path) -> MVTecAD:
    return MVTecAD(root=root, category="stripes", train_batch_size=4, eval_batch_size=4, num_workers=0)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One training batch and one evaluation batch (two normal, two defective images): the checks need no more."""
    root = tmp_path_factory.mktemp("lifecycle_data")
    return make_mvtec_like(root, categories=("stripes",), n_train=4, n_test_good=2, n_test_bad=2, image_size=IMAGE_SIZE)


def _outputs(predictions: list[Any]) -> dict[str, torch.Tensor]:
    return {key: torch.cat([getattr(batch, key) for batch in predictions]) for key in ("pred_score", "anomaly_map")}


def _assert_close(actual: Any, expected: Any, rtol: float, what: str) -> None:
    """Relative to the largest expected magnitude (post-processed maps reach 0, where relative errors mean nothing)."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(float(np.abs(expected).max()), 1e-12)
    error = float(np.abs(actual - expected).max())
    assert error <= rtol * scale, f"{what}: max |difference| {error:.3g} > {rtol:g} x {scale:.3g}"


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


@dataclass
class Life:
    """A trained model, its checkpoint, and what it predicts in memory."""

    name: str
    model: Any
    engine: Engine
    datamodule: MVTecAD
    ckpt: Path
    root: Path
    export: subprocess.Popen | None  # ``anomalib export`` running in the background (None: no export test selected)
    predicted: dict[str, torch.Tensor] = field(default_factory=dict)
    tested: dict[str, float] = field(default_factory=dict)
    images: torch.Tensor | None = None  # (N, 3, SIZE, SIZE) in [0, 1], also written as PNGs under root / "images"
    expected: Any = None  # the in-memory model's forward on ``images``
    xml: Path | None = None  # what the export wrote, once it finished


def _start_export(name: str, ckpt: Path, root: Path) -> subprocess.Popen:
    """``anomalib export --model <Name> --ckpt_path X --export_type openvino``, as users run it (output in a file)."""
    command = [str(BIN / "anomalib"), "export", "--model", name, "--ckpt_path", str(ckpt), "--export_type", "openvino"]
    command += ["--default_root_dir", str(root / "export")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with (root / "export.log").open("w") as log:
        return subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def _selected(request: pytest.FixtureRequest, name: str, marker: str | None = None) -> bool:
    """Whether a selected test of this module runs for model ``name`` (and carries ``marker``)."""
    return any(
        item.module is request.module
        and getattr(getattr(item, "callspec", None), "params", {}).get("life") == name
        and (marker is None or item.get_closest_marker(marker) is not None)
        for item in request.session.items
    )


def _fit(name: str, data_root: Path, root: Path, export: bool) -> Life:
    torch.manual_seed(0)
    datamodule = _datamodule(data_root)
    model = _model(name)
    engine = _engine(root / "fit")
    engine.fit(model, datamodule=datamodule)
    ckpt = Path(engine.trainer.checkpoint_callback.best_model_path)
    assert ckpt.is_file(), "fit wrote no checkpoint"
    return Life(name, model, engine, datamodule, ckpt, root, _start_export(name, ckpt, root) if export else None)


def _score_in_memory(life: Life, data_root: Path) -> None:
    life.predicted = _outputs(life.engine.predict(life.model, datamodule=life.datamodule))
    life.tested = life.engine.test(life.model, datamodule=life.datamodule, verbose=False)[0]
    # PNGs at the model's size: the exported graph and the edge runtime then see exactly the pixels torch sees.
    folder = life.root / "images"
    folder.mkdir()
    sources = sorted((data_root / "stripes" / "test").rglob("*.png"))
    for index, source in enumerate(sources):
        Image.open(source).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR).save(folder / f"{index}.png")
    arrays = [np.asarray(Image.open(folder / f"{i}.png"), dtype=np.float64) / 255.0 for i in range(len(sources))]
    life.images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
    life.model.eval()
    with torch.no_grad():
        life.expected = life.model(life.images)


@pytest.fixture(scope="module")
def lives(
    request: pytest.FixtureRequest, data_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Life]]:
    """Every selected model trained; each export starts as soon as its checkpoint exists, and they run together."""
    names = [name for name in MODELS if _selected(request, name)]
    trained: dict[str, Life] = {}
    try:
        for name in names:
            root = tmp_path_factory.mktemp(f"life_{name}")
            trained[name] = _fit(name, data_root, root, export=_selected(request, name, "export"))
        for life in trained.values():
            _score_in_memory(life, data_root)
        yield trained
    finally:
        for life in trained.values():
            if life.export is not None and life.export.poll() is None:
                life.export.kill()
                life.export.wait()


@pytest.fixture(params=list(MODELS))
def life(request: pytest.FixtureRequest, lives: dict[str, Life]) -> Life:
    return lives[request.param]


def test_reloads_give_the_in_memory_scores(life: Life) -> None:
    """``predict``/``test`` with ``ckpt_path`` into a fresh model, and ``load_from_checkpoint``, as in memory."""
    predicted = _outputs(
        _engine(life.root / "predict").predict(_fresh_model(life.name), datamodule=life.datamodule, ckpt_path=life.ckpt)
    )
    for key, value in predicted.items():
        _assert_close(value, life.predicted[key], TOLERANCE, f"predict(ckpt_path=...) {key}")
    tested = _engine(life.root / "test").test(
        _fresh_model(life.name), datamodule=life.datamodule, ckpt_path=life.ckpt, verbose=False
    )[0]
    assert tested.keys() == life.tested.keys()
    for key, value in tested.items():
        assert value == pytest.approx(life.tested[key], rel=TOLERANCE, nan_ok=True), key
    loaded = _model_class(life.name).load_from_checkpoint(life.ckpt).eval()
    with torch.no_grad():
        reloaded = loaded(life.images)
    _assert_close(reloaded.pred_score, life.expected.pred_score, TOLERANCE, "load_from_checkpoint score")
    _assert_close(reloaded.anomaly_map, life.expected.anomaly_map, TOLERANCE, "load_from_checkpoint map")


class _WeightsAtStart(Callback):
    """The trainable weights the moment training starts (after the checkpoint is restored)."""

    weights: dict[str, torch.Tensor] | None = None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        del trainer
        self.weights = {k: p.detach().clone() for k, p in pl_module.named_parameters() if p.requires_grad}


def test_resumed_fit_continues_from_the_checkpoint(life: Life) -> None:
    checkpoint = torch.load(life.ckpt, map_location="cpu", weights_only=True)
    probe = _WeightsAtStart()
    model = _fresh_model(life.name)
    engine = _engine(life.root / "resume", max_epochs=2, callbacks=[probe])
    engine.fit(model, datamodule=life.datamodule, ckpt_path=life.ckpt)
    assert probe.weights, "no trainable weights seen at the start of the resumed fit"
    for key, value in probe.weights.items():
        assert torch.equal(value, checkpoint["state_dict"][key]), f"{key} did not start from the checkpoint"
    assert checkpoint["epoch"] == 0
    assert engine.trainer.current_epoch == 2
    assert engine.trainer.global_step == 2 * checkpoint["global_step"] > 0
    after = dict(model.named_parameters())
    assert any(not torch.equal(after[key], value) for key, value in probe.weights.items()), "no step was taken"
    assert model.pre_processor.transform is not None


def test_cli_takes_the_model_arguments_from_the_checkpoint(life: Life, monkeypatch: pytest.MonkeyPatch) -> None:
    """``anomalib test``/``predict`` with ``--model <Name> --ckpt_path`` only build the trained model."""
    from anomalib.cli import AnomalibCLI

    from anomalib_nfplus.cli_checkpoint import extend_cli

    extend_cli()  # the start-up hook does this in a real ``anomalib`` process (the export test runs one)
    monkeypatch.chdir(life.root)
    saved = torch.load(life.ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    data = ["--data", "MVTecAD", "--data.root", str(life.datamodule.root), "--data.category", "stripes"]
    for subcommand in ("test", "predict"):
        args = [subcommand, "--model", life.name, "--ckpt_path", str(life.ckpt), *data, "--trainer.logger", "false"]
        cli = AnomalibCLI(args, run=False)
        assert _plain(dict(cli.model.hparams)) == _plain(saved), subcommand  # tuples in memory, lists from the CLI
        assert cli.model.input_size == (SIZE, SIZE)


@pytest.fixture
def exported(life: Life) -> Path:
    """The OpenVINO model the background ``anomalib export`` wrote."""
    import _anomalib_nfplus_hook as hook  # the copy the ``anomalib`` command runs (site-packages)

    assert hasattr(hook, "CLI_TRIGGER"), (
        f"{hook.__file__} predates the CLI extension; reinstall the project (uv sync --reinstall-package "
        "anomalib-nfplus) so that `anomalib` reads the checkpoint's arguments"
    )
    if life.xml is None:
        assert life.export is not None, "the export was not started"
        returncode = life.export.wait(timeout=600)
        assert returncode == 0, (life.root / "export.log").read_text()[-4000:]
        paths = list((life.root / "export").rglob("model.xml"))
        assert len(paths) == 1, f"expected one model.xml, found {paths}"
        life.xml = paths[0]
    return life.xml


@pytest.mark.export
def test_cli_export_matches_the_in_memory_model(life: Life, exported: Path) -> None:
    import openvino as ov

    core = ov.Core()
    network = core.read_model(exported)
    assert network.input(0).get_partial_shape()[2:].to_shape() == ov.Shape([SIZE, SIZE])  # the pre-processor's size
    compiled = core.compile_model(network, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    outputs = compiled(life.images.numpy())
    result = {output.get_any_name(): value for output, value in outputs.items()}
    _assert_close(result["pred_score"].reshape(-1), life.expected.pred_score, EXPORT_TOLERANCE, "OpenVINO score")
    _assert_close(result["anomaly_map"], life.expected.anomaly_map, EXPORT_TOLERANCE, "OpenVINO map")


@pytest.mark.export
def test_edge_runtime_gives_the_same_scores(life: Life, exported: Path) -> None:
    """``anomalib-nfplus infer`` with default settings on the exported model."""
    command = [str(BIN / "anomalib-nfplus"), "infer", "--model", str(exported), "--input", str(life.root / "images")]
    result = subprocess.run(command, cwd=life.root, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    records = {Path(r["path"]).stem: r for r in map(json.loads, result.stdout.splitlines())}
    scores = [records[str(i)]["score"] for i in range(len(life.images))]
    _assert_close(scores, life.expected.pred_score, EXPORT_TOLERANCE, "anomalib-nfplus infer score")
