# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The README's main job runs offline end to end (smaller images than the default, same code path)."""

from pathlib import Path

import pytest

from anomalib_nfplus.cli import main
from anomalib_nfplus.demo import run_demo

pytestmark = pytest.mark.slow


def test_demo_trains_tests_exports_and_runs_openvino(tmp_path: Path) -> None:
    result = run_demo(tmp_path / "demo", image_size=96, epochs=1)  # >= 64 fibers per batch at stride 32
    assert Path(result.openvino_model).is_file()
    assert 0.0 <= result.test_metrics["image_AUROC"] <= 1.0
    assert "pixel_AUROC" in result.test_metrics
    # The exported model separates the two demo images the way the trained model should.
    assert result.openvino_scores["defect"] > result.openvino_scores["good"]


def test_cli_help_is_cheap(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "demo" in capsys.readouterr().out
