# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The README's main job, run as a user runs it (the console command), at a reduced size."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BIN = Path(sys.executable).parent
CATEGORIES = ("stripes", "dots")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    output = tmp_path_factory.mktemp("demo")
    command = [
        str(BIN / "anomalib-nfplus"),
        "demo",
        "--output",
        str(output),
        "--epochs",
        "1",
        "--image-size",
        "64",
        "--n-train",
        "8",
        "--categories",
        *CATEGORIES,
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    return json.loads((output / "result.json").read_text()), run.stdout + run.stderr, output


@pytest.mark.slow
def test_demo_prints_the_per_category_table(demo: tuple[dict, str, Path]) -> None:
    result, text, _ = demo
    assert result["model"] == "HGAD"  # the plugin's unified model, not an anomalib built-in
    assert list(result["table"]) == [*CATEGORIES, "mean"]
    for row in result["table"].values():
        assert 0.0 <= row["image"] <= 1.0
        assert 0.0 <= row["pixel"] <= 1.0  # generated data has masks
    means = np.mean([result["table"][c]["image"] for c in CATEGORIES])
    assert result["table"]["mean"]["image"] == pytest.approx(means, abs=1e-6)
    for category in (*CATEGORIES, "mean"):
        assert f"{category} " in text


@pytest.mark.slow
def test_demo_reloads_exports_and_scores_alike_at_the_edge(demo: tuple[dict, str, Path]) -> None:
    result, _, _ = demo
    assert Path(result["checkpoint"]).is_file()
    assert Path(result["openvino_model"]).is_file()
    assert len(result["scores"]) == 2 * 2 * len(CATEGORIES)  # two normal and two defective images per category
    for score in result["scores"]:
        assert score["reloaded"] == pytest.approx(score["torch"], rel=1e-5, abs=1e-6)
        assert score["openvino"] == pytest.approx(score["torch"], rel=1e-4, abs=1e-5)
    assert max(result["max_score_difference"].values()) <= 1e-4


@pytest.mark.slow
def test_demo_writes_the_grid_and_one_image_folder_per_category(demo: tuple[dict, str, Path]) -> None:
    result, _, output = demo
    grid = Image.open(result["grid"])
    assert grid.height >= len(CATEGORIES) * 64
    assert grid.width >= 4 * 2 * 64
    images = Path(result["images_dir"])
    test_images = sorted((output / "data").glob("*/test/*/*.png"))
    saved = sorted(images.rglob("*.png"))
    assert len(saved) == len(test_images)  # none overwritten by another category's image of the same name
    assert {p.relative_to(images).parts[0] for p in saved} == set(CATEGORIES)


@pytest.mark.slow
def test_demo_output_fits_on_a_few_screens(demo: tuple[dict, str, Path]) -> None:
    _, text, _ = demo
    lines = text.splitlines()
    assert len(lines) <= 80, "\n".join(lines[:120])
    assert "Warning" not in text, text[:5000]


def test_generate_data_writes_the_categories(tmp_path: Path) -> None:
    command = [
        str(BIN / "anomalib-nfplus"),
        "generate-data",
        "--root",
        str(tmp_path / "d"),
        "--categories",
        "dots",
        "--n-train",
        "2",
        "--n-test-good",
        "1",
        "--n-test-bad",
        "1",
        "--image-size",
        "32",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    assert len(list((tmp_path / "d" / "dots" / "train" / "good").glob("*.png"))) == 2
    assert "anomalib train --model HGAD" in run.stdout


def test_cli_help_imports_neither_torch_nor_anomalib() -> None:
    code = (
        "import contextlib, io, sys\n"
        "from anomalib_nfplus.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "print('demo' in out.getvalue(), 'torch' in sys.modules, 'anomalib' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False", "False"]
