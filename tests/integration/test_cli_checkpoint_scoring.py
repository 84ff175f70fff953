# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""``--ckpt_path`` with a scoring-only argument other than the checkpoint's: the given value is used and anomalib's
post-processor is refitted for it on the validation set of ``--data``.

HGAD trained with ``scoring="class_conditional"`` cannot be exported as it is (the graph would need each image's
class); ``--model.scoring label_free`` (HGAD's default) exports the same weights and statistics. Before the CLI
told a typed default from one left out, the checkpoint's ``class_conditional`` replaced it and the export failed.
The thresholds and normalisation bounds in the checkpoint were fitted with the saved scoring, so the command needs
``--data`` to refit them and refuses to run without it.
"""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.engine import Engine

from anomalib_nfplus.cli_checkpoint import _refit_thresholds
from anomalib_nfplus.data.synthetic import make_mvtec_like
from tests.helpers.tiny_models import ONE_LEVEL, model_class, tiny_model

pytestmark = [pytest.mark.slow, pytest.mark.export]

BIN = Path(sys.executable).parent
SIZE = 48
ENGINE: dict[str, Any] = {
    "logger": False,
    "enable_progress_bar": False,
    "accelerator": "cpu",
    "enable_model_summary": False,
}
THRESHOLDS = ("_image_threshold", "image_min", "image_max")
GIVEN = {"scoring": "label_free", "top_k": 0.5}  # the checkpoint's: class_conditional, None


class Trained(NamedTuple):
    ckpt: Path
    data: Path  # the MVTecAD-like root, category "stripes"


def _datamodule(data: Path) -> MVTecAD:
    return MVTecAD(root=data, category="stripes", train_batch_size=4, eval_batch_size=4, num_workers=0)


@pytest.fixture(scope="module")
def class_conditional(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A tiny one-level HGAD trained one epoch with ``scoring="class_conditional"`` (one class: label 0)."""
    root = tmp_path_factory.mktemp("hgad_cc")
    data = make_mvtec_like(
        root / "data", categories=("stripes",), n_train=4, n_test_good=2, n_test_bad=2, image_size=64
    )
    torch.manual_seed(0)
    model = tiny_model("HGAD", SIZE, **ONE_LEVEL["HGAD"], scoring="class_conditional")
    engine = Engine(default_root_dir=root, max_epochs=1, **ENGINE)
    engine.fit(model, datamodule=_datamodule(data))
    path = root / "class_conditional.ckpt"
    engine.trainer.save_checkpoint(path)
    saved = torch.load(path, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert (saved["scoring"], saved["top_k"]) == ("class_conditional", None)
    return Trained(path, data)


def _export(trained: Trained, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = ["export", "--model", "HGAD", "--ckpt_path", str(trained.ckpt), "--export_type", "openvino"]
    args += ["--model.scoring", "label_free", "--default_root_dir", str(tmp_path / "export"), *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [str(BIN / "anomalib"), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def test_export_with_a_typed_default_scoring_refits_on_data(class_conditional: Trained, tmp_path: Path) -> None:
    data = ["--data", "MVTecAD", "--data.root", str(class_conditional.data), "--data.category", "stripes"]
    data += ["--data.train_batch_size", "4", "--data.eval_batch_size", "4", "--data.num_workers", "0"]
    out = _export(class_conditional, tmp_path, *data)
    log = (out.stdout + out.stderr)[-4000:]
    assert out.returncode == 0, log
    assert len(list((tmp_path / "export").rglob("openvino/model.xml"))) == 1, log
    assert "thresholds and normalisation refitted on the validation set for scoring='label_free'" in out.stderr, log


def test_export_with_another_scoring_and_no_data_is_refused(class_conditional: Trained, tmp_path: Path) -> None:
    out = _export(class_conditional, tmp_path)
    assert out.returncode != 0
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, out.stderr[-4000:]
    for part in ("scoring='class_conditional'", "scoring='label_free'", "Add --data <datamodule>", "--model.scoring"):
        assert part in errors[0], errors[0]
    assert not list((tmp_path / "export").rglob("model.xml"))


@pytest.mark.parametrize("subcommand", ["test", "predict", "export"])
def test_the_thresholds_are_refitted_for_the_given_scoring(
    class_conditional: Trained, tmp_path: Path, subcommand: str
) -> None:
    """Through anomalib's own Engine: the in-memory model ends with the thresholds a validation with the given
    ``top_k`` fits, not the checkpoint's (fitted with ``top_k=None``; one class: both scorings score alike)."""
    stale = torch.load(class_conditional.ckpt, map_location="cpu", weights_only=True)["state_dict"]
    hgad: Any = model_class("HGAD")
    reference = hgad.load_from_checkpoint(class_conditional.ckpt, **GIVEN)
    Engine(default_root_dir=tmp_path / "reference", **ENGINE).validate(
        reference, datamodule=_datamodule(class_conditional.data), verbose=False
    )
    expected = {name: getattr(reference.post_processor, name) for name in THRESHOLDS}
    assert all(not torch.equal(expected[name], stale[f"post_processor.{name}"]) for name in THRESHOLDS)

    engine = Engine(default_root_dir=tmp_path / "run", **ENGINE)
    datamodule = _datamodule(class_conditional.data)
    _refit_thresholds(
        engine, subcommand, datamodule, {"scoring": ("label_free", "class_conditional"), "top_k": (0.5, None)}
    )
    model = tiny_model("HGAD", SIZE, **ONE_LEVEL["HGAD"], **GIVEN)
    kwargs = {"export_type": "torch", "export_root": tmp_path / "export"} if subcommand == "export" else {}
    getattr(engine, subcommand)(model=model, datamodule=datamodule, ckpt_path=class_conditional.ckpt, **kwargs)
    for name in THRESHOLDS:
        torch.testing.assert_close(getattr(model.post_processor, name), expected[name], msg=name)
    if subcommand != "export":  # validated after Engine.test/predict set up their output folder, as usual
        assert "HGAD/MVTecAD/stripes" in Path(engine.trainer.default_root_dir).as_posix()
