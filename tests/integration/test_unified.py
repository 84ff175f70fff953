# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Unified through anomalib's Engine and CLI: a built-in model trains and tests unchanged, per-category metrics."""

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from anomalib.cli import AnomalibCLI
from anomalib.data import Folder, MVTecAD
from anomalib.engine import Engine
from anomalib.models import Padim

from anomalib_nfplus.batch import class_index_of
from anomalib_nfplus.callbacks import PerCategoryMetrics
from anomalib_nfplus.data.synthetic import CATEGORY_DEFECTS, make_mvtec_like
from anomalib_nfplus.data.unified import Unified, UnifiedImageBatch

PROJECT = Path(__file__).resolve().parents[2]
CONFIGS = PROJECT / "configs" / "data"
UNIFIED = "anomalib_nfplus.data.unified.Unified"
TINY_PADIM = ["--model", "Padim", "--model.backbone", "resnet18", "--model.layers", "[layer1]"]
TINY_PADIM += ["--model.pre_trained", "false", "--model.n_features", "16", "--model.visualizer", "false"]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """stripes: RGB 64 px with masks; dots: grayscale 48x80 px, used through Folder without masks."""
    root = tmp_path_factory.mktemp("unified_int")
    make_mvtec_like(root, ["stripes"], n_train=8, n_test_good=4, n_test_bad=2, image_size=64)
    make_mvtec_like(root, ["dots"], n_train=8, n_test_good=4, n_test_bad=2, image_size=(48, 80), channels=1)
    return root


def _dots_without_masks(root: Path) -> Folder:
    abnormal = [f"test/{defect}" for defect in CATEGORY_DEFECTS["dots"]]
    return Folder(
        name="dots", root=root / "dots", normal_dir="train/good", normal_test_dir="test/good",
        abnormal_dir=abnormal, val_split_mode="same_as_test", seed=0,
    )  # fmt: skip


def _unified(root: Path, *datamodules) -> Unified:
    return Unified(datamodules=list(datamodules), image_size=64, train_batch_size=8, eval_batch_size=4, num_workers=0)


@pytest.fixture(scope="module")
def trained(root, tmp_path_factory):
    """Padim (anomalib built-in, ignores class_index) fitted and tested once on the 2-class set."""
    torch.manual_seed(0)
    datamodule = _unified(root, MVTecAD(root=root, category="stripes"), _dots_without_masks(root))
    model = Padim(backbone="resnet18", layers=["layer1"], pre_trained=False, n_features=16, visualizer=False)
    engine = Engine(
        max_epochs=1,
        default_root_dir=tmp_path_factory.mktemp("unified_runs"),
        logger=False,
        enable_progress_bar=False,
        callbacks=[PerCategoryMetrics()],  # explicit as well: must not be added twice
    )
    engine.fit(model, datamodule=datamodule)
    (metrics,) = engine.test(model, datamodule=datamodule)
    return engine, model, datamodule, metrics


def test_builtin_model_gets_per_category_metrics(trained):
    engine, _, _, metrics = trained
    assert sum(isinstance(callback, PerCategoryMetrics) for callback in engine.trainer.callbacks) == 1
    for key in ("image_AUROC", "pixel_AUROC", "image_AUROC/stripes", "image_AUROC/dots", "image_AUROC/mean"):
        assert key in metrics
    assert metrics["image_AUROC/mean"] == pytest.approx(
        (metrics["image_AUROC/stripes"] + metrics["image_AUROC/dots"]) / 2
    )
    # dots has no masks: no per-category pixel metric, and the overall pixel AUROC covers stripes only
    assert "pixel_AUROC/dots" not in metrics
    assert metrics["pixel_AUROC"] == pytest.approx(metrics["pixel_AUROC/stripes"], abs=1e-5)
    assert metrics["pixel_AUROC/mean"] == pytest.approx(metrics["pixel_AUROC/stripes"])


def test_one_category_matches_anomalib_overall_metrics(trained, root):
    engine, model, _, _ = trained
    (metrics,) = engine.test(model, datamodule=_unified(root, MVTecAD(root=root, category="stripes")))
    assert metrics["image_AUROC/stripes"] == pytest.approx(metrics["image_AUROC"], abs=1e-5)
    assert metrics["pixel_AUROC/stripes"] == pytest.approx(metrics["pixel_AUROC"], abs=1e-5)


def test_predict_keeps_class_index_and_category_batches(trained):
    engine, model, datamodule, _ = trained
    batches = engine.predict(model, datamodule=datamodule)
    assert all(isinstance(batch, UnifiedImageBatch) for batch in batches)
    classes = [class_index_of(batch).tolist() for batch in batches]
    assert all(len(set(c)) == 1 for c in classes)
    assert sorted(itertools.chain.from_iterable(classes)) == [0] * 10 + [1] * 10


def test_cli_parses_a_list_of_datamodules(root):
    datamodules = (
        f'[{{class_path: MVTecAD, init_args: {{root: "{root}", category: stripes}}}}, '
        f'{{class_path: anomalib.data.Folder, init_args: {{name: dots, root: "{root / "dots"}", '
        "normal_dir: train/good, abnormal_dir: test/blob}}]"
    )
    args = ["fit", *TINY_PADIM, "--data", UNIFIED, "--data.datamodules", datamodules, "--data.image_size", "[32, 48]"]
    datamodule = AnomalibCLI(args, run=False).datamodule
    assert isinstance(datamodule, Unified)
    assert datamodule.class_names == ["stripes", "dots"]
    assert [type(dm) for dm in datamodule.datamodules] == [MVTecAD, Folder]
    assert datamodule.image_size == (32, 48)


def test_cli_parses_root_and_categories(root):
    args = ["fit", *TINY_PADIM, "--data", UNIFIED, "--data.root", str(root), "--data.categories", "[dots, stripes]"]
    datamodule = AnomalibCLI(args, run=False).datamodule
    assert datamodule.class_names == ["dots", "stripes"]
    assert all(isinstance(dm, MVTecAD) for dm in datamodule.datamodules)


@pytest.mark.parametrize(
    ("config", "num_classes"),
    [("unified_synthetic.yaml", 3), ("unified_mvtec.yaml", 15), ("unified_shared.yaml", 2), ("unified_four.yaml", 4)],
)
def test_data_configs_parse(config, num_classes):
    datamodule = AnomalibCLI(["fit", *TINY_PADIM, "--data", str(CONFIGS / config)], run=False).datamodule
    assert isinstance(datamodule, Unified)
    assert datamodule.num_classes == num_classes


@pytest.mark.realdata
def test_four_category_config_holds_every_shared_category(shared_data, monkeypatch):
    monkeypatch.chdir(PROJECT)
    datamodule = AnomalibCLI(
        ["fit", *TINY_PADIM, "--data", str(CONFIGS / "unified_four.yaml"), "--data.num_workers", "0"], run=False
    ).datamodule
    assert datamodule.class_names == ["magnetic_tile", "elpv_mono", "commutator", "metal_plate"]
    datamodule.setup()
    assert len(datamodule.train_data) == 762 + 470 + 278 + 54
    assert len(datamodule.test_data) == 582 + 487 + 121 + 97


@pytest.mark.realdata
def test_shared_config_combines_mtd_and_elpv(shared_data, monkeypatch):
    monkeypatch.chdir(PROJECT)
    datamodule = AnomalibCLI(
        ["fit", *TINY_PADIM, "--data", str(CONFIGS / "unified_shared.yaml"), "--data.num_workers", "0"], run=False
    ).datamodule
    assert datamodule.class_names == ["magnetic_tile", "elpv_mono"]
    datamodule.setup()
    assert len(datamodule.train_data) == 762 + 470
    assert len(datamodule.test_data) == 582 + 487
    loader = datamodule.test_dataloader()
    sampler = loader.batch_sampler
    first_elpv = next(batch for batch in sampler if datamodule.test_data.class_indices[batch[0]] == 1)
    batch = loader.collate_fn([datamodule.test_data[i] for i in first_elpv[:2]])
    assert batch.gt_mask is None
    assert batch.image.shape[1:] == (3, 256, 256)
    mtd = loader.collate_fn([datamodule.test_data[i] for i in (0, len(datamodule.test_data.sources[0]) - 1)])
    assert mtd.gt_mask.shape[1:] == (256, 256)
    assert mtd.class_index.tolist() == [0, 0]


@pytest.mark.slow
def test_cli_train_runs_with_per_category_metrics(root, tmp_path):
    """anomalib's own models get the per-category table from the documented ``--trainer.callbacks`` option."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable,
        "-m",
        "anomalib.cli.cli",
        "train",
        *TINY_PADIM,
        "--data",
        str(CONFIGS / "unified_synthetic.yaml"),
    ]
    command += ["--data.root", str(root), "--data.categories", "[stripes, dots]", "--trainer.max_epochs", "1"]
    command += ["--trainer.enable_progress_bar", "false", "--default_root_dir", str(tmp_path)]
    command += ["--trainer.callbacks", "anomalib_nfplus.callbacks.PerCategoryMetrics"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    for key in ("image_AUROC/stripes", "image_AUROC/dots", "image_AUROC/mean", "pixel_AUROC/dots"):
        assert key in done.stdout, done.stdout[-3000:]
