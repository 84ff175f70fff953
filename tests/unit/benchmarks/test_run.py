# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Tests of the benchmark runner: dataset subsets, model construction, and one tiny end-to-end run."""

import csv
import multiprocessing
import random
from pathlib import Path

import pytest
import torch

from anomalib_nfplus.data.synthetic import CATEGORY_DEFECTS, make_mvtec_like
from benchmarks import data_setup, isolation, run
from benchmarks.baselines import ModelSpec, build_model, layer_indices, make_pre_processor

LAYERS = ("blocks.2", "blocks.4", "blocks.6")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench_data")
    return make_mvtec_like(root, ("dots",), n_train=12, n_test_good=6, n_test_bad=3, image_size=64, seed=1)


def _args(root: Path, *extra: str) -> list[str]:
    return ["--root", str(root), "--category", "dots", "--image-size", "64", "--num-workers", "0", *extra]


def test_stratified_keeps_every_group_and_the_total():
    groups = {"good": list(range(20)), "a": list(range(10)), "b": list(range(2))}
    chosen = data_setup.stratified(groups, 8, random.Random(0))
    assert sum(map(len, chosen.values())) == 8
    assert all(chosen[key] for key in groups)
    assert len(chosen["good"]) > len(chosen["b"])
    assert data_setup.stratified(groups, 100, random.Random(0)) == groups


def test_materialise_copies_a_seeded_subset_with_masks(dataset, tmp_path):
    args = run.parse_args(_args(dataset, "--limit-train", "5", "--max-test", "6", "--out", str(tmp_path / "r.csv")))
    root = data_setup.materialise(args, tmp_path / "subset")
    base = root / "dots"
    assert len(list((base / "train" / "good").iterdir())) == 5
    tests = list((base / "test").rglob("*.png"))
    assert len(tests) == 6
    assert {p.parent.name for p in tests} == {"good", *CATEGORY_DEFECTS["dots"]}
    for image in tests:
        if image.parent.name != "good":
            assert (base / "ground_truth" / image.parent.name / f"{image.stem}_mask.png").is_file()
    again = data_setup.materialise(args, tmp_path / "again")
    assert sorted(p.relative_to(again) for p in again.rglob("*.png")) == sorted(
        p.relative_to(root) for p in root.rglob("*.png")
    )


def test_folder_format_has_no_pixel_metrics_and_loads(dataset, tmp_path):
    defects = [f"test/{d}" for d in CATEGORY_DEFECTS["dots"]]
    argv = ["--root", str(dataset / "dots"), "--category", "dots", "--format", "folder", "--abnormal-dirs", *defects]
    args = run.parse_args([*argv, "--image-size", "64", "--num-workers", "0", "--out", str(tmp_path / "r.csv")])
    assert not data_setup.has_masks(args)
    datamodule = data_setup.make_datamodule(args, args.root)
    datamodule.setup()
    assert len(datamodule.train_data) == 12
    assert len(datamodule.test_data) == 6 + 3 * len(defects)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--image-size", "16"], "image-size"),
        (["--epochs", "0"], "epochs"),
        (["--format", "folder"], "abnormal-dirs"),
        (["--category", "nope"], "does not exist"),
        (["--backbone", "resnet18"], "--weights random"),
        (["--init-args", "Cflow", "[1]"], "JSON object"),
        (["--limit-train", "0"], "limit-train"),
    ],
)
def test_parse_args_rejects_bad_input(dataset, extra, match, capsys):
    with pytest.raises(SystemExit):
        run.parse_args(_args(dataset, *extra))
    assert match in capsys.readouterr().err


def test_unknown_layer_is_an_error_not_a_warning():
    assert layer_indices("tf_efficientnet_lite0", LAYERS) == [2, 3, 4]
    with pytest.raises(ValueError, match=r"blocks\.5"):
        layer_indices("tf_efficientnet_lite0", ["blocks.2", "blocks.5"])


def test_pre_processor_uses_the_backbone_statistics():
    lite = make_pre_processor(ModelSpec("tf_efficientnet_lite0", LAYERS, (64, 64))).transform.transforms[-1]
    resnet = make_pre_processor(ModelSpec("resnet18", ("layer1",), (64, 64))).transform.transforms[-1]
    assert list(lite.mean) == [0.5, 0.5, 0.5]
    assert list(resnet.mean) == pytest.approx([0.485, 0.456, 0.406])


@pytest.mark.parametrize("name", ["Cflow", "Fastflow"])
def test_builtins_get_offline_weights_and_any_size(name):
    from anomalib_nfplus.backbones import offline_weights

    spec = ModelSpec("tf_efficientnet_lite0", LAYERS, (80, 72))  # not multiples of 32: TF padding rounds up
    model = build_model(name, spec).eval()
    encoder = model.model.encoder.feature_extractor if name == "Cflow" else model.model.feature_extractor
    stem = torch.load(offline_weights("tf_efficientnet_lite0"), map_location="cpu")["conv_stem.weight"]
    assert torch.equal(encoder.state_dict()["conv_stem.weight"], stem)
    assert not any(p.requires_grad for p in encoder.parameters())
    with torch.no_grad():
        out = model.model(torch.rand(2, 3, 80, 72))
    assert out.pred_score.numel() == 2  # Fastflow returns (B, 1), Cflow (B,)
    assert out.anomaly_map.shape[-2:] == (80, 72)


@pytest.mark.slow
def test_main_writes_rows_and_table(dataset, tmp_path):
    out = tmp_path / "results" / "bench.csv"
    extra = ["--models", "Fastflow", "--no-baselines", "--epochs", "1", "--batch-size", "4", "--out", str(out)]
    rows = run.main(_args(dataset, *extra, "--limit-train", "8", "--max-test", "10"))
    run.main(_args(dataset, *extra, "--seed", "1", "--limit-train", "4", "--max-test", "10"))

    with out.open(newline="") as handle:
        written = list(csv.DictReader(handle))
    assert [r["seed"] for r in written] == ["0", "1"]
    row = written[0]
    assert tuple(row) == run.COLUMNS
    assert rows[0]["image_AUROC"] == float(row["image_AUROC"])
    expected = ("Fastflow", "tf_efficientnet_lite0", " ".join(LAYERS), "64x64", "offline")
    assert (row["model"], row["backbone"], row["layers"], row["image_size"], row["weights"]) == expected
    for key in ("image_AUROC", "pixel_AUROC", "pixel_AUPRO"):
        assert 0.0 <= float(row[key]) <= 1.0
    assert float(row["train_s"]) > float(row["val_s"]) > 0
    assert float(row["test_s"]) > 0
    assert float(row["train_images_per_s"]) > 0
    assert float(row["peak_rss_mb"]) > 100
    assert row["commit"]
    assert row["host"].startswith("cpus=")
    markdown = out.with_suffix(".md").read_text()
    assert markdown.count("| Fastflow |") == 2
    assert "1. `python -m benchmarks.run --root" in markdown
    assert "2. `python -m benchmarks.run --root" in markdown


def test_model_process_workers_start_like_the_parent():
    # A spawned process defaults to "spawn" for its own children; dataloader workers would then re-import torch
    # and anomalib at every epoch (tens of seconds, timed as training).
    with isolation.model_process() as pool:
        assert pool.submit(isolation.current_start_method).result() == multiprocessing.get_start_method()


def test_baselines_are_always_added(dataset):
    args = run.parse_args(_args(dataset, "--models", "fastflow", "Padim"))
    assert args.models == ["Cflow", "fastflow", "Padim"]
    assert run.parse_args(_args(dataset, "--models", "Padim", "--no-baselines")).models == ["Padim"]


def test_unknown_model_name_is_a_usage_error(dataset, capsys):
    with pytest.raises(SystemExit):
        run.parse_args(_args(dataset, "--models", "Hgda"))
    assert "unknown model(s) ['Hgda']" in capsys.readouterr().err


def test_preset_and_init_args_merge_in_order(dataset):
    argv = ["--models", "Padim", "--no-baselines", "--init-args", "padim", '{"a": 1, "b": 1}']
    args = run.parse_args(_args(dataset, *argv, "--init-args", "Padim", '{"b": 2}'))
    assert run.init_args_for("Padim", args) == {"a": 1, "b": 2}
    assert run.init_args_for("Cflow", args) == {}


def test_seed_summary_groups_old_script_and_module_commands():
    def row(seed: int, program: str) -> dict[str, str]:
        values = {"image_AUROC": "0.5", "pixel_AUROC": "", "pixel_AUPRO": "", "train_s": "1", "test_s": "1"}
        return {"model": "HGAD", "seed": str(seed), "command": f"{program} --preset p.yaml --seed {seed}", **values}

    table = run.seed_summary([row(0, "benchmarks/run.py"), row(1, "python -m benchmarks.run")])
    assert "| HGAD | 0 1 |" in table
