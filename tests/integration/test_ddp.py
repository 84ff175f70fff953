# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Several processes: every model fits and tests under plain ``strategy="ddp"`` (2 CPU processes, gloo).

``tests/helpers/ddp_run.py`` runs twice as a subprocess: once in 2 processes (fit, checkpoint, test, then a NaN on
rank 1), once in 1 process on the 2-process checkpoints (statistics collected again, test). Both phases score the
same weights, so training statistics, per-image scores and per-category metrics must agree to float rounding;
training itself differs between 1 and 2 processes (other batches), which is why weights are not compared.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from anomalib_nfplus.data.synthetic import make_mvtec_like

HELPER = Path(__file__).resolve().parents[1] / "helpers" / "ddp_run.py"
MODELS = ("DifferNet", "CflowAD", "HGAD")
TRAIN_IMAGES = 16  # 8 per category
TEST_IMAGES = 20  # per category: 4 good + 3 defect types x 2

pytestmark = pytest.mark.slow


def _run(args: list[str], timeout: float) -> str:
    """Run the helper in its own session, so a hung rank (the launcher's child) is killed with it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen(
        [sys.executable, str(HELPER), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=env, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        output += f"\n[killed after {timeout} s]"
    return output


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("ddp_data")
    make_mvtec_like(root, ["stripes"], n_train=8, n_test_good=4, n_test_bad=2, image_size=64)
    make_mvtec_like(root, ["dots"], n_train=8, n_test_good=4, n_test_bad=2, image_size=64)
    out = tmp_path_factory.mktemp("ddp_runs")
    common = ["--data", str(root), "--out", str(out)]
    logs = {"fit": _run([*common, "--devices", "2", "--phase", "fit"], timeout=300)}
    if (out / "fit_rank0.json").exists():
        logs["reference"] = _run([*common, "--devices", "1", "--phase", "reference"], timeout=200)
    records = {path.stem: json.loads(path.read_text()) for path in out.glob("*.json")}
    return {"out": out, "logs": logs, **records}


def _get(runs: dict[str, Any], record: str) -> dict[str, Any]:
    if record not in runs:
        phase = record.split("_")[0]
        log = runs["logs"].get(phase, "")[-4000:]
        pytest.fail(f"{record}.json missing; the {phase} run's output ends with:\n{log}")
    return runs[record]


def _ranks(runs: dict[str, Any]) -> list[dict[str, Any]]:
    return [_get(runs, "fit_rank0")["models"], _get(runs, "fit_rank1")["models"]]


def test_every_model_fits_and_tests_in_two_processes(runs) -> None:
    for models in _ranks(runs):
        assert set(models) == set(MODELS)
        for name in MODELS:
            assert 0.0 <= models[name]["metrics"]["image_AUROC"] <= 1.0, name
            assert models[name]["broadcast_buffers"] is False, name  # no per-step broadcast of constant buffers
            assert (runs["out"] / f"{name}.ckpt").is_file()


def test_statistics_are_sharded_reduced_and_equal_one_process(runs) -> None:
    reference = _get(runs, "reference_rank0")["models"]
    ranks = _ranks(runs)
    for name in ("CflowAD", "HGAD"):
        assert [models[name]["scored_images"] for models in ranks] == [TRAIN_IMAGES // 2] * 2, name
        # every process and the checkpoint hold the same statistics ...
        assert ranks[0][name]["statistics"] == ranks[1][name]["statistics"] == reference[name]["saved_statistics"]
        # ... the ones one process collects with the same weights from the whole training set
        for key, values in reference[name]["statistics"].items():
            torch.testing.assert_close(
                torch.tensor(ranks[0][name]["statistics"][key]), torch.tensor(values), rtol=1e-5, atol=1e-6,
                msg=lambda text, key=key, name=name: f"{name} {key}: {text}",
            )  # fmt: skip


def test_scores_and_metrics_equal_one_process(runs) -> None:
    reference = _get(runs, "reference_rank0")["models"]
    ranks = _ranks(runs)
    for name in MODELS:
        first, second = (models[name]["scores"] for models in ranks)
        assert not set(first) & set(second), f"{name}: an image was tested by both processes"
        assert len(first) + len(second) == TEST_IMAGES
        merged = {**first, **second}
        assert set(merged) == set(reference[name]["scores"])
        got = torch.tensor([merged[path] for path in sorted(merged)], dtype=torch.float64)
        expected = torch.tensor([reference[name]["scores"][path] for path in sorted(merged)], dtype=torch.float64)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5, msg=lambda text, name=name: f"{name}: {text}")
        categories = reference[name]["categories"]
        assert set(categories) >= {"image_AUROC/stripes", "image_AUROC/dots", "pixel_AUROC/stripes"}
        for models in ranks:  # per-category metrics: the whole test set on every process
            assert models[name]["categories"] == pytest.approx(categories, abs=1e-6, nan_ok=True), name
            for key in ("image_AUROC", "pixel_AUROC"):  # anomalib's own metrics agree as well
                assert models[name]["metrics"][key] == pytest.approx(reference[name]["metrics"][key], abs=1e-6)


def test_unified_evaluation_batches_stay_within_one_category(runs) -> None:
    for name in MODELS:
        batches = [batch for models in _ranks(runs) for batch in models[name]["batches"]]
        assert all(len(set(batch["classes"])) == 1 for batch in batches), name
        assert all(batch["masks"] is (batch["classes"][0] == 0) for batch in batches), name  # dots has no masks
        paths = [path for batch in batches for path in batch["paths"]]
        assert len(paths) == len(set(paths)) == TEST_IMAGES, name  # every image once, none repeated as padding


def test_nan_on_one_process_stops_every_process_with_the_last_finite_weights(runs) -> None:
    nan = [_get(runs, f"fit_rank{rank}").get("nan") for rank in range(2)]
    assert all(nan), f"the NaN run did not finish:\n{runs['logs']['fit'][-4000:]}"
    injected = nan[1]["injected"]
    assert injected is not None
    for rank, record in enumerate(nan):
        assert record["error"] is not None, f"rank {rank} did not stop"
        assert "CflowAD: non-finite loss" in record["error"]
        assert "on process(es) [1] of 2" in record["error"]
        assert record["stopped"] - injected < 10.0  # seconds, not the process group's 30-minute timeout
    paths = {record["error"].split("saved to ")[1].split(".ckpt")[0] + ".ckpt" for record in nan}
    assert len(paths) == 1  # every process names the file process 0 wrote
    checkpoint = torch.load(paths.pop(), map_location="cpu", weights_only=False)
    weights = {key: value for key, value in checkpoint["state_dict"].items() if key.startswith("model.flows.")}
    assert weights
    assert all(bool(torch.isfinite(value).all()) for value in weights.values())
