# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The model presets in configs/ and the data configs in configs/data load the way their headers say.

Model presets hold only ``trainer`` and ``model``: they build with ``AnomalibModule.from_config`` and combine
with a data config on the CLI. The CPU presets build from the packaged offline weights with the network blocked;
the paper presets are built with ``pre_trained=False`` so that nothing is downloaded.
"""

import inspect
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from anomalib.cli import AnomalibCLI
from anomalib.data import Folder, MVTecAD
from anomalib.models import AnomalibModule

from anomalib_nfplus.backbones import OFFLINE_BACKBONES, offline_weights
from anomalib_nfplus.backbones import weights as weights_module
from anomalib_nfplus.data.synthetic import make_mvtec_like
from anomalib_nfplus.data.unified import Unified
from anomalib_nfplus.models import HGAD, CflowAD, DifferNet

PROJECT = Path(__file__).resolve().parents[2]
if str(PROJECT) not in sys.path:  # the benchmark runner lives in benchmarks/, outside the installed package
    sys.path.insert(0, str(PROJECT))

from benchmarks import run  # noqa: E402

CONFIGS = PROJECT / "configs"
MODEL_CONFIGS = sorted(CONFIGS.glob("*.yaml"))
DATA_CONFIGS = sorted((CONFIGS / "data").glob("*.yaml"))
CPU_PRESETS = [path for path in MODEL_CONFIGS if path.stem.endswith("_cpu")]
HUB_BACKBONES = {"cflow_ad.yaml": "wide_resnet50_2", "hgad.yaml": "tf_efficientnet_b6"}
CLASSES: dict[str, type[AnomalibModule]] = {"cflow_ad": CflowAD, "differnet": DifferNet, "hgad": HGAD}
DATA_CLASSES: dict[str, type] = {"mvtec": MVTecAD, "mtd": MVTecAD, "elpv_mono": Folder}  # the rest: Unified


def _model_class(path: Path) -> type[AnomalibModule]:
    return CLASSES[path.stem.removesuffix("_cpu")]


def _read(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _no_download_overrides(path: Path) -> dict[str, Any]:
    """Build hub-backbone presets with random weights: the test must not download anything."""
    return {"model.init_args.pre_trained": False} if path.name in HUB_BACKBONES else {}


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        del args, kwargs
        msg = "network access in a test that must run offline"
        raise OSError(msg)

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_the_expected_presets_exist() -> None:
    names = {path.stem for path in MODEL_CONFIGS}
    assert names == {"cflow_ad", "cflow_ad_cpu", "differnet", "differnet_cpu", "hgad", "hgad_cpu"}


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda path: path.stem)
def test_model_config_holds_only_trainer_and_model(path: Path) -> None:
    config = _read(path)
    assert set(config) == {"trainer", "model"}
    assert config["model"]["class_path"] == f"anomalib_nfplus.{_model_class(path).__name__}"
    assert config["trainer"]["max_epochs"] >= 1
    header = path.read_text().split("\ntrainer:")[0]
    assert f"anomalib train --config configs/{path.name} --data configs/data/" in header


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda path: path.stem)
def test_model_config_uses_the_current_argument_names(path: Path) -> None:
    init_args = _read(path)["model"]["init_args"]
    model_class = _model_class(path)
    assert not set(init_args) & set(model_class.renamed_arguments)
    assert set(init_args) <= set(inspect.signature(model_class).parameters)


@pytest.mark.parametrize("path", [p for p in MODEL_CONFIGS if p not in CPU_PRESETS], ids=lambda path: path.stem)
def test_paper_preset_spells_out_every_model_argument(path: Path) -> None:
    """The paper presets are the reference settings: every argument but anomalib's components, in signature order."""
    components = {"pre_processor", "post_processor", "evaluator", "visualizer"}
    parameters = [name for name in inspect.signature(_model_class(path)).parameters if name not in components]
    assert list(_read(path)["model"]["init_args"]) == parameters


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda path: path.stem)
def test_model_config_builds_with_from_config(path: Path, no_network: None) -> None:
    del no_network
    model = AnomalibModule.from_config(path, **_no_download_overrides(path))
    assert type(model) is _model_class(path)
    init_args = _read(path)["model"]["init_args"]
    for key, value in init_args.items():
        if key == "pre_trained" and path.name in HUB_BACKBONES:
            continue
        expected = list(value) if isinstance(value, list) else value
        got = model.hparams[key]
        assert (list(got) if isinstance(got, tuple | list) else got) == expected, key


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda path: path.stem)
def test_hub_presets_are_the_ones_documented(path: Path) -> None:
    backbone = _read(path)["model"]["init_args"]["backbone"]
    assert (backbone not in OFFLINE_BACKBONES) == (path.name in HUB_BACKBONES)
    if path.name in HUB_BACKBONES:
        assert backbone == HUB_BACKBONES[path.name]
        assert "timm hub" in path.read_text().split("\ntrainer:")[0]


@pytest.mark.parametrize("path", CPU_PRESETS, ids=lambda path: path.stem)
def test_cpu_preset_builds_from_the_packaged_weights_offline(
    path: Path, no_network: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    del no_network
    loaded: list[Path] = []
    original = weights_module.load_backbone_weights

    def record(model: Any, weights_path: str | Path, *, backbone: str) -> None:
        loaded.append(Path(weights_path))
        original(model, weights_path, backbone=backbone)

    monkeypatch.setattr(weights_module, "load_backbone_weights", record)
    model = AnomalibModule.from_config(path)
    backbone = model.hparams["backbone"]
    assert model.hparams["pre_trained"] is True
    assert backbone in OFFLINE_BACKBONES
    assert loaded
    assert set(loaded) == {offline_weights(backbone)}


@pytest.mark.parametrize("path", DATA_CONFIGS, ids=lambda path: path.stem)
def test_data_config_combines_with_a_cpu_preset(path: Path, no_network: None) -> None:
    del no_network
    preset = CONFIGS / "hgad_cpu.yaml"
    cli = AnomalibCLI(["fit", "--config", str(preset), "--data", str(path)], run=False)
    assert isinstance(cli.datamodule, DATA_CLASSES.get(path.stem, Unified))
    assert isinstance(cli.model, HGAD)


@pytest.mark.parametrize("path", CPU_PRESETS, ids=lambda path: path.stem)
def test_train_command_of_a_cpu_preset_parses(path: Path, tmp_path: Path, no_network: None) -> None:
    del no_network
    root = make_mvtec_like(tmp_path / "data", ("dots",), n_train=4, n_test_good=2, n_test_bad=2, image_size=64)
    data = tmp_path / "tiny.yaml"
    data.write_text(
        yaml.safe_dump(
            {
                "class_path": "anomalib_nfplus.MVTec",
                "init_args": {"root": str(root), "category": "dots", "num_workers": 0, "train_batch_size": 2},
            }
        )
    )
    argv = ["train", "--config", str(path), "--data", str(data), "--trainer.max_epochs", "1"]
    argv += ["--model.init_args.image_size", "96", "--default_root_dir", str(tmp_path / "runs")]
    cli = AnomalibCLI(argv, run=False)
    assert type(cli.model) is _model_class(path)
    assert cli.model.hparams["image_size"] == 96
    assert cli.model.hparams["backbone"] == _read(path)["model"]["init_args"]["backbone"]
    assert isinstance(cli.datamodule, MVTecAD)
    assert Path(cli.datamodule.root) == root
    assert cli.datamodule.train_batch_size == 2
    assert cli.config["train"]["trainer"]["max_epochs"] == 1


@pytest.mark.parametrize("path", CPU_PRESETS, ids=lambda path: path.stem)
def test_benchmark_runner_takes_a_preset(path: Path, tmp_path: Path) -> None:
    root = make_mvtec_like(tmp_path / "data", ("dots",), n_train=2, n_test_good=1, n_test_bad=1, image_size=32)
    argv = ["--preset", str(path), "--no-baselines", "--root", str(root), "--category", "dots", "--seed", "2"]
    args = run.parse_args([*argv, "--out", str(tmp_path / "r.csv")])
    config = _read(path)
    init_args = config["model"]["init_args"]
    name = _model_class(path).__name__
    assert args.models == [name]
    assert args.epochs == config["trainer"]["max_epochs"]
    assert (args.backbone, args.layers, args.weights) == (init_args["backbone"], init_args["layers"], "offline")
    assert args.image_size == (init_args["image_size"],) * 2
    model_args = run.init_args_for(name, args)
    assert model_args["seed"] == 2
    assert model_args["image_size"] == [init_args["image_size"]] * 2
    spec_keys = {"backbone", "layers", "pre_trained", "image_size", "seed"}
    assert {k: v for k, v in model_args.items() if k not in spec_keys} == {
        k: v for k, v in init_args.items() if k not in spec_keys
    }
    overridden = run.parse_args([*argv, "--epochs", "5", "--out", str(tmp_path / "r.csv")])
    assert overridden.epochs == 5


def test_seed_summary_groups_runs_that_differ_only_in_the_seed() -> None:
    def row(model: str, seed: int, auroc: float, extra: str = "") -> dict[str, str]:
        command = f"benchmarks/run.py --preset configs/x.yaml --seed {seed}{extra}"
        values = {"image_AUROC": str(auroc), "pixel_AUROC": "", "pixel_AUPRO": "", "train_s": "10", "test_s": "2"}
        return {"model": model, "seed": str(seed), "command": command, **values}

    rows = [row("HGAD", 0, 0.8), row("HGAD", 1, 0.9), row("HGAD", 2, 0.7, " --epochs 2")]
    table = run.seed_summary(rows).splitlines()
    assert "| HGAD | 0 1 | 0.8500 ± 0.0707 |  |  | 10.0 ± 0.0 | 2.0 ± 0.0 |" in table[6]
    assert table[7].startswith("| HGAD | 2 | 0.7000 |")


@pytest.mark.parametrize(("preset", "lambda_mi", "use_entropy"), [("hgad", 100.0, True), ("hgad_cpu", 0.1, False)])
def test_hgad_presets_set_the_unified_objective_and_score(
    preset: str, lambda_mi: float, use_entropy: bool, no_network: None
) -> None:
    """The paper preset keeps the paper's MI weight and entropy factor; the CPU preset's values reach the model."""
    del no_network
    argv = ["fit", "--config", str(CONFIGS / f"{preset}.yaml"), "--data", str(CONFIGS / "data" / "unified_four.yaml")]
    cli = AnomalibCLI([*argv, "--model.init_args.pre_trained", "false"], run=False)
    assert isinstance(cli.model, HGAD)
    assert cli.model.loss.lambda_mi == lambda_mi
    assert cli.model.model.anomaly_map.use_entropy is use_entropy
    assert cli.model.model.scoring == "label_free"
