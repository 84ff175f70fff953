# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""``anomalib export --ckpt_path`` with a scoring argument typed at its default: the typed value is used.

HGAD trained with ``scoring="class_conditional"`` cannot be exported as it is (the graph would need each image's
class); ``--model.scoring label_free`` (HGAD's default) exports the same weights and statistics. Before the CLI
told a typed default from one left out, the checkpoint's ``class_conditional`` replaced it and the export failed.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.engine import Engine

from anomalib_nfplus.data.synthetic import make_mvtec_like
from tests.helpers.tiny_models import ONE_LEVEL, tiny_model

pytestmark = [pytest.mark.slow, pytest.mark.export]

BIN = Path(sys.executable).parent
SIZE = 48


@pytest.fixture(scope="module")
def class_conditional_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny one-level HGAD trained one epoch with ``scoring="class_conditional"`` (one class: label 0)."""
    root = tmp_path_factory.mktemp("hgad_cc")
    data = make_mvtec_like(
        root / "data", categories=("stripes",), n_train=4, n_test_good=2, n_test_bad=2, image_size=64
    )
    torch.manual_seed(0)
    model = tiny_model("HGAD", SIZE, **ONE_LEVEL["HGAD"], scoring="class_conditional")
    datamodule = MVTecAD(root=data, category="stripes", train_batch_size=4, eval_batch_size=4, num_workers=0)
    engine = Engine(
        default_root_dir=root, max_epochs=1, logger=False, enable_progress_bar=False, accelerator="cpu",
        enable_model_summary=False,
    )  # fmt: skip
    engine.fit(model, datamodule=datamodule)
    path = root / "class_conditional.ckpt"
    engine.trainer.save_checkpoint(path)
    assert torch.load(path, map_location="cpu", weights_only=True)["hyper_parameters"]["scoring"] == "class_conditional"
    return path


def test_export_with_a_typed_default_scoring_uses_it(class_conditional_ckpt: Path, tmp_path: Path) -> None:
    args = ["export", "--model", "HGAD", "--ckpt_path", str(class_conditional_ckpt), "--export_type", "openvino"]
    args += ["--model.scoring", "label_free", "--default_root_dir", str(tmp_path / "export")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [str(BIN / "anomalib"), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    assert len(list((tmp_path / "export").rglob("openvino/model.xml"))) == 1, (out.stdout + out.stderr)[-4000:]
