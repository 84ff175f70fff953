# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Every catalogue model (``_catalog.MODELS``) through one life, each trained once with its ``TINY`` arguments.

fit -> test/predict -> checkpoint -> strict reload -> resumed fit -> CLI (config, checkpoint arguments) -> export
in a separate ``anomalib`` process by both routes (``torch.export`` and ONNX) -> OpenVINO f32 parity with torch ->
edge runtime; and the non-finite-loss stop. A new catalogue model is covered by its ``TINY`` entry
(``tests/helpers/tiny_models.py``); the model-specific behaviour stays in ``test_<model>.py``.

The images are 64 px and the models run at 48 px, so a reload that lost the pre-processing (resize and the
backbone's normalisation) changes every score. ``anomalib export`` runs as a real command with only ``--model`` and
``--ckpt_path``: the checkpoint's saved arguments must rebuild the trained model, and the export size must come
from its pre-processor. Each model trains with its own copy of the backbone weights, deleted once the checkpoint
exists: every reload and export then gets the backbone from the checkpoint alone, as on another machine. An export
takes tens of seconds (mostly tracing, largely one thread), so each model's exports start in the background as soon
as its checkpoint exists and run alongside the in-process checks.
"""

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from anomalib.data import MVTecAD
from anomalib.engine import Engine
from lightning.pytorch import Callback, LightningModule, Trainer
from PIL import Image

from anomalib_nfplus._catalog import MODELS
from anomalib_nfplus.backbones import BackboneWeightsError, offline_weights
from anomalib_nfplus.data.synthetic import make_mvtec_like
from anomalib_nfplus.deploy import EdgeModel
from anomalib_nfplus.models.components import NonFiniteLossError
from tests.helpers.compare import assert_close_to_scale, assert_labels_agree
from tests.helpers.tiny_models import TINY, cli_arguments, model_class, tiny_kwargs, tiny_model

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
IMAGE_SIZE = 64  # the generated data
SIZE = 48  # the models' pre-processor
TOLERANCE = 1e-5  # relative, reload against the in-memory model (same float32 computation)
EXPORT_TOLERANCE = 1e-4  # OpenVINO f32 against torch
COMPONENTS = {"pre_processor", "post_processor", "evaluator", "visualizer"}  # model arguments that are not hparams
OUTPUTS = ["pred_score", "pred_label", "anomaly_map", "pred_mask"]  # the exported graph's outputs, in order


def test_every_catalogue_model_has_a_tiny_configuration() -> None:
    assert set(TINY) == set(MODELS)


def _fresh_model(name: str) -> Any:
    """Built like the trained one, so loading its checkpoint strictly works; not trained."""
    torch.manual_seed(123)  # other flow initialisation than the trained model's
    return tiny_model(name, SIZE)


def _engine(root: Path, **kwargs: Any) -> Engine:
    args = {"max_epochs": 1, "logger": False, "enable_progress_bar": False, "accelerator": "cpu", **kwargs}
    return Engine(default_root_dir=root, enable_model_summary=False, **args)


def _datamodule(root: Path) -> MVTecAD:
    return MVTecAD(root=root, category="stripes", train_batch_size=4, eval_batch_size=4, num_workers=0)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One training batch and two evaluation batches (two normal images and two of each of three defects)."""
    root = tmp_path_factory.mktemp("models_data")
    return make_mvtec_like(root, categories=("stripes",), n_train=4, n_test_good=2, n_test_bad=2, image_size=IMAGE_SIZE)


def _outputs(predictions: list[Any]) -> dict[str, torch.Tensor]:
    return {key: torch.cat([getattr(batch, key) for batch in predictions]) for key in ("pred_score", "anomaly_map")}


def _plain(value: Any) -> Any:
    """Tuples in memory, lists from the CLI and from YAML: compare as JSON."""
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
    export: subprocess.Popen | None  # the ``anomalib export`` chain in the background (None: no export test selected)
    predicted: dict[str, torch.Tensor] = field(default_factory=dict)
    tested: dict[str, float] = field(default_factory=dict)
    images: torch.Tensor | None = None  # (N, 3, SIZE, SIZE) in [0, 1], also written as PNGs under root / "images"
    expected: dict[str, np.ndarray] = field(default_factory=dict)  # the in-memory model's forward on ``images``
    xml: dict[str, Path] = field(default_factory=dict)  # what the exports wrote, by route, once they finished


#: Export routes: the default (``torch.export`` -> OpenVINO) and anomalib's through an ONNX file (several times slower).
ROUTES = {"direct": [], "onnx": ["--onnx_kwargs", "{}"]}


def _start_exports(name: str, ckpt: Path, root: Path) -> subprocess.Popen:
    """``anomalib export --model <Name> --ckpt_path X --export_type openvino``, as users run it, by each route in turn.

    One process chain per model, so the background holds one export per model at a time (memory), started as soon
    as the checkpoint exists; output in ``export.log``, IRs under ``export_<route>``.
    """
    export = [str(BIN / "anomalib"), "export", "--model", name, "--ckpt_path", str(ckpt), "--export_type", "openvino"]
    commands = [
        shlex.join([*export, "--default_root_dir", str(root / f"export_{route}"), *options])
        for route, options in ROUTES.items()
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with (root / "export.log").open("w") as log:
        return subprocess.Popen(
            ["bash", "-c", " && ".join(commands)], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,  # its own process group: a teardown stops the running export with the chain
        )  # fmt: skip


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
    weights = root / "backbone.pth"  # saved in the hyper-parameters, gone before anything reloads the checkpoint
    shutil.copy(offline_weights("tf_efficientnet_lite0"), weights)
    model = tiny_model(name, SIZE, backbone_weights=str(weights))
    engine = _engine(root / "fit")
    engine.fit(model, datamodule=datamodule)
    ckpt = Path(engine.trainer.checkpoint_callback.best_model_path)
    assert ckpt.is_file(), "fit wrote no checkpoint"
    weights.unlink()
    return Life(name, model, engine, datamodule, ckpt, root, _start_exports(name, ckpt, root) if export else None)


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
        batch = life.model(life.images)
    life.expected = {name: value.numpy() for name, value in batch._asdict().items() if value is not None}


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
                os.killpg(life.export.pid, signal.SIGKILL)
                life.export.wait()


@pytest.fixture(params=list(MODELS))
def life(request: pytest.FixtureRequest, lives: dict[str, Life]) -> Life:
    return lives[request.param]


# --- fit, test, predict ------------------------------------------------------------------------------------------


def test_fit_test_and_predict_score_every_image(life: Life) -> None:
    assert life.engine.trainer.global_step > 0, "fit took no optimizer step"
    assert 0.0 <= life.tested["image_AUROC"] <= 1.0
    assert np.isfinite(life.tested["pixel_AUROC"])
    scores, maps = life.predicted["pred_score"], life.predicted["anomaly_map"]
    assert scores.shape == (len(life.images),)
    assert maps.shape[0] == len(life.images)
    assert maps.shape[-2:] == (SIZE, SIZE)
    assert torch.isfinite(scores).all()
    assert torch.isfinite(maps).all()
    assert len(scores.unique()) > 1, "every test image got the same score"


class _NaNImages(Callback):
    """Every training image becomes NaN: the first loss is non-finite."""

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        del trainer, pl_module, batch_idx
        batch.image.fill_(float("nan"))


@pytest.mark.parametrize("name", list(MODELS))
def test_a_non_finite_loss_stops_training_before_the_step_and_saves_the_weights(
    name: str, data_root: Path, tmp_path: Path
) -> None:
    model = tiny_model(name, SIZE)
    before = {key: value.detach().clone() for key, value in model.named_parameters() if value.requires_grad}
    engine = _engine(tmp_path, callbacks=[_NaNImages()])
    message = rf"{name}: non-finite loss .* global step 0; the optimizer step was not taken\. .* saved to (\S+)\."
    with pytest.raises(NonFiniteLossError, match=message) as error:
        engine.fit(model, datamodule=_datamodule(data_root))
    saved = Path(re.search(message, str(error.value)).group(1))
    state = torch.load(saved, map_location="cpu", weights_only=False)["state_dict"]
    after = dict(model.named_parameters())
    for key, value in before.items():
        assert torch.equal(after[key], value), f"{key} changed although the step was not taken"
        assert torch.equal(state[key], value), f"{key} in {saved.name} is not the weights before the step"


@pytest.mark.parametrize("name", list(MODELS))
def test_fit_without_the_backbone_weights_file_fails_naming_it(name: str, data_root: Path, tmp_path: Path) -> None:
    """A model built while its weights file is missing waits for a checkpoint; fitting it without one refuses."""
    model = tiny_model(name, SIZE, backbone_weights=str(tmp_path / "gone.pth"))
    engine = _engine(tmp_path)
    with pytest.raises(BackboneWeightsError, match=rf"backbone_weights file not found: {re.escape(str(tmp_path))}"):
        engine.fit(model, datamodule=_datamodule(data_root))
    assert engine.trainer.global_step == 0


# --- checkpoints ---------------------------------------------------------------------------------------------------


def test_a_fresh_model_reloaded_strictly_scores_as_the_model_that_wrote_the_checkpoint(life: Life) -> None:
    """``predict``/``test`` with ``ckpt_path`` into a fresh model, and ``load_from_checkpoint``, as in memory."""
    predicted = _outputs(
        _engine(life.root / "predict").predict(_fresh_model(life.name), datamodule=life.datamodule, ckpt_path=life.ckpt)
    )
    for key, value in predicted.items():
        assert_close_to_scale(value, life.predicted[key], TOLERANCE, f"predict(ckpt_path=...) {key}")
    tested = _engine(life.root / "test").test(
        _fresh_model(life.name), datamodule=life.datamodule, ckpt_path=life.ckpt, verbose=False
    )[0]
    assert tested.keys() == life.tested.keys()
    for key, value in tested.items():
        assert value == pytest.approx(life.tested[key], rel=TOLERANCE, nan_ok=True), key
    loaded = model_class(life.name).load_from_checkpoint(life.ckpt, strict=True).eval()
    with torch.no_grad():
        reloaded = loaded(life.images)
    assert_close_to_scale(reloaded.pred_score, life.expected["pred_score"], TOLERANCE, "load_from_checkpoint score")
    assert_close_to_scale(reloaded.anomaly_map, life.expected["anomaly_map"], TOLERANCE, "load_from_checkpoint map")


def test_strict_loading_refuses_a_state_naming_the_missing_and_the_unexpected_key(life: Life) -> None:
    state = life.model.state_dict()
    dropped = next(key for key in state if key.startswith("model."))
    del state[dropped]
    state["model.extra"] = torch.zeros(1)
    pattern = rf"does not match {life.name}: 1 missing key.*{re.escape(dropped)}.*1 unexpected key.*model\.extra"
    with pytest.raises(RuntimeError, match=pattern):
        _fresh_model(life.name).load_state_dict(state)


class _WeightsAtStart(Callback):
    """The trainable weights the moment training starts (after the checkpoint is restored)."""

    weights: dict[str, torch.Tensor] | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
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


# --- command line --------------------------------------------------------------------------------------------------


def _model_config(name: str) -> Path:
    """``configs/<module>.yaml``: the preset named after the model's package in the catalogue."""
    path = Path(__file__).resolve().parents[2] / "configs" / f"{MODELS[name].rsplit('.', 1)[-1]}.yaml"
    assert path.is_file(), f"{name} has no preset {path.name}"
    return path


@pytest.mark.parametrize("name", list(MODELS))
def test_cli_config_with_the_tiny_arguments_prints_a_config_that_rebuilds_the_model(
    name: str, data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``anomalib fit --config configs/<m>.yaml <TINY> --print_config``: preset and overrides in one config."""
    from anomalib.cli import AnomalibCLI

    monkeypatch.chdir(tmp_path)
    config = _model_config(name)
    tiny = tiny_kwargs(name, SIZE)
    data = ["--data", "MVTecAD", "--data.root", str(data_root), "--data.category", "stripes"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit) as done:
        AnomalibCLI(["fit", "--config", str(config), *cli_arguments(tiny), *data, "--print_config"], run=False)
    assert done.value.code in {0, None}
    resolved = yaml.safe_load(printed.getvalue())
    assert resolved["model"]["class_path"] == f"anomalib_nfplus.{name}"
    init_args = resolved["model"]["init_args"]
    preset = yaml.safe_load(config.read_text())["model"]["init_args"]
    given = {**preset, **tiny}
    assert _plain({key: init_args[key] for key in given}) == _plain(given)
    (tmp_path / "printed.yaml").write_text(printed.getvalue())
    cli = AnomalibCLI(["fit", "--config", str(tmp_path / "printed.yaml")], run=False)
    assert type(cli.model) is model_class(name)
    hyperparameters = set(given) - COMPONENTS  # anomalib keeps the components out of ``hparams``
    assert _plain({key: cli.model.hparams[key] for key in hyperparameters}) == _plain(
        {key: given[key] for key in hyperparameters}
    )


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
        assert _plain(dict(cli.model.hparams)) == _plain(saved), subcommand
        assert cli.model.input_size == (SIZE, SIZE)


# --- export --------------------------------------------------------------------------------------------------------


@pytest.fixture
def exported(life: Life) -> dict[str, Path]:
    """The OpenVINO models the background ``anomalib export`` chain wrote, by route."""
    import _anomalib_nfplus_hook as hook  # the copy the ``anomalib`` command runs (site-packages)

    assert hasattr(hook, "CLI_TRIGGER"), (
        f"{hook.__file__} predates the CLI extension; reinstall the project (uv sync --reinstall-package "
        "anomalib-nfplus) so that `anomalib` reads the checkpoint's arguments"
    )
    if not life.xml:
        assert life.export is not None, "the export was not started"
        returncode = life.export.wait(timeout=900)
        assert returncode == 0, (life.root / "export.log").read_text()[-4000:]
        for route in ROUTES:
            paths = list((life.root / f"export_{route}").rglob("model.xml"))
            assert len(paths) == 1, f"{route}: expected one model.xml, found {paths}"
            life.xml[route] = paths[0]
    return life.xml


def _run_ir(path: Path, images: torch.Tensor) -> dict[str, np.ndarray]:
    return EdgeModel(path, precision="f32").infer(images.numpy())


def _assert_matches(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray], what: str) -> None:
    """Scores and maps to ``EXPORT_TOLERANCE``; thresholded labels and masks may flip within it of the threshold."""
    assert set(actual) >= set(expected), what
    for key, reference in expected.items():
        if reference.dtype == bool:
            assert_labels_agree(actual[key], reference, 1e-3, f"{what} {key}")
        else:
            assert_close_to_scale(actual[key].reshape(reference.shape), reference, EXPORT_TOLERANCE, f"{what} {key}")


def _assert_anomalib_interface(path: Path) -> None:
    """One ``input`` of any batch size at the pre-processor's size; anomalib's outputs, in its order."""
    import openvino as ov

    network = ov.Core().read_model(path)
    assert [node.get_names() for node in network.inputs] == [{"input"}]
    assert network.inputs[0].partial_shape == ov.PartialShape([-1, 3, SIZE, SIZE])
    assert [node.any_name for node in network.outputs] == OUTPUTS


@pytest.mark.export
@pytest.mark.parametrize("route", list(ROUTES))
def test_cli_export_writes_anomalibs_layout_and_interface(life: Life, exported: dict[str, Path], route: str) -> None:
    path = exported[route]
    assert path.parent.parts[-2:] == ("weights", "openvino")
    assert path.with_suffix(".bin").is_file()
    _assert_anomalib_interface(path)


@pytest.mark.export
@pytest.mark.parametrize("route", list(ROUTES))
def test_cli_export_matches_the_in_memory_model(life: Life, exported: dict[str, Path], route: str) -> None:
    _assert_matches(_run_ir(exported[route], life.images), life.expected, f"OpenVINO ({route} route)")


@pytest.mark.export
def test_both_export_routes_agree(life: Life, exported: dict[str, Path]) -> None:
    direct, through_onnx = (_run_ir(exported[route], life.images) for route in ("direct", "onnx"))
    _assert_matches(through_onnx, {key: direct[key] for key in life.expected}, "ONNX route against direct route")


@pytest.mark.export
def test_edge_runtime_gives_the_same_scores(life: Life, exported: dict[str, Path]) -> None:
    """``anomalib-nfplus infer`` with default settings on the exported model."""
    model = exported["direct"]
    command = [str(BIN / "anomalib-nfplus"), "infer", "--model", str(model), "--input", str(life.root / "images")]
    result = subprocess.run(command, cwd=life.root, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    records = {Path(r["path"]).stem: r for r in map(json.loads, result.stdout.splitlines())}
    scores = [records[str(i)]["score"] for i in range(len(life.images))]
    assert_close_to_scale(scores, life.expected["pred_score"], EXPORT_TOLERANCE, "anomalib-nfplus infer score")
