# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The README's main job runs offline end to end (smaller images than the default, same code path)."""

import subprocess
import sys
from pathlib import Path

import pytest

from anomalib_nfplus.demo import run_demo


@pytest.mark.slow
def test_demo_trains_tests_exports_and_runs_openvino(tmp_path: Path) -> None:
    result = run_demo(tmp_path / "demo", image_size=96, epochs=1)  # >= 64 fibers per batch at stride 32
    assert Path(result.openvino_model).is_file()
    assert {"image_AUROC", "pixel_AUROC"} <= set(result.test_metrics)
    for key in ("good", "defect"):  # the exported model computes what the torch model computes
        assert result.scores[key]["openvino"] == pytest.approx(result.scores[key]["torch"], rel=1e-4, abs=1e-5)


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
