# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""``anomalib-nfplus infer`` runs where torch and anomalib cannot be imported."""

import json
import subprocess
import sys
import textwrap

BLOCKER = textwrap.dedent(
    """
    import sys

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"torch", "anomalib", "torchvision", "lightning", "timm"}:
                raise ImportError(f"blocked: {name}")
            return None

    sys.meta_path.insert(0, Blocker())
    from anomalib_nfplus.cli import main
    code = main(sys.argv[1:])
    assert not any(m.split(".")[0] in {"torch", "anomalib"} for m in sys.modules), "torch or anomalib was imported"
    sys.exit(code)
    """
)


def test_infer_runs_with_torch_and_anomalib_blocked(tiny_ir, images, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCKER,
            "infer",
            "--model",
            str(tiny_ir),
            "--input",
            str(images),
            "--output",
            str(tmp_path / "overlays"),
            "--batch-size",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 3
    assert all(set(r) >= {"path", "score", "label"} for r in records)
    assert len(list((tmp_path / "overlays").rglob("*_overlay.png"))) == 3


def test_the_blocker_really_blocks(tmp_path):
    code = BLOCKER.replace("from anomalib_nfplus.cli import main", "import torch")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "blocked: torch" in result.stderr
