# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Tests of weight loading: strict key checks for full and features_only models, hub failures, offline default."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

from anomalib_nfplus.backbones import (
    BackboneWeightsError,
    create_timm_model,
    load_backbone_weights,
    read_state_dict,
)


def _assert_same_weights(model: torch.nn.Module, reference: dict[str, torch.Tensor], prefix: str = "") -> None:
    own = model.state_dict()
    assert own, "model has no weights"
    for key, value in own.items():
        name = re.sub(r"^(stem|stages)_(\d+)", r"\1.\2", key.removeprefix(prefix))  # undo timm's flattening
        assert torch.equal(value, reference[name]), key


@pytest.mark.parametrize(
    ("backbone", "out_indices"),
    [("resnet18", (2,)), ("tf_efficientnet_lite0", (1, 3)), ("convnext_atto", (1,)), ("vit_tiny_patch16_224", (2,))],
)
def test_full_state_dict_loads_into_features_only(backbone: str, out_indices: tuple[int, ...], tmp_path: Path) -> None:
    # convnext: FeatureListNet renames stem.0 -> stem_0; vit: FeatureGetterNet prefixes "model.".
    torch.manual_seed(1)
    reference = timm.create_model(backbone, pretrained=False).state_dict()
    torch.save(reference, tmp_path / "full.pth")
    torch.manual_seed(2)
    model = timm.create_model(backbone, pretrained=False, features_only=True, out_indices=out_indices)
    load_backbone_weights(model, tmp_path / "full.pth", backbone=backbone)
    _assert_same_weights(model, reference, prefix="model.")


def test_wrapped_checkpoint_with_module_prefix(resnet18_file: Path, tmp_path: Path) -> None:
    reference = torch.load(resnet18_file, weights_only=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.items()}, "epoch": 3}, tmp_path / "ckpt.pt")
    assert read_state_dict(tmp_path / "ckpt.pt").keys() == reference.keys()
    model = create_timm_model("resnet18", pre_trained=False, backbone_weights=tmp_path / "ckpt.pt")
    _assert_same_weights(model, reference)


def _broken_file(resnet18_file: Path, tmp_path: Path, edit: str) -> Path:
    state = torch.load(resnet18_file, weights_only=True)
    if edit == "missing":
        del state["layer1.0.conv1.weight"]
    elif edit == "shape":
        state["layer2.0.conv1.weight"] = torch.zeros(3, 3, 3, 3)
    else:
        state["neck.proj.weight"] = torch.zeros(2)
    path = tmp_path / f"{edit}.pth"
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("missing", r"missing keys \[layer1.0.conv1.weight\]"),
        ("shape", r"wrong shapes \[layer2.0.conv1.weight \(file \(3, 3, 3, 3\), model \(128, 64, 3, 3\)\)\]"),
        ("unexpected", r"unexpected keys \[neck.proj.weight\]"),
    ],
)
@pytest.mark.parametrize("features_only", [True, False])
def test_mismatching_file_is_rejected(
    resnet18_file: Path, tmp_path: Path, edit: str, message: str, features_only: bool
) -> None:
    path = _broken_file(resnet18_file, tmp_path, edit)
    kwargs = {"features_only": True, "out_indices": (2, 3)} if features_only else {}
    with pytest.raises(BackboneWeightsError, match=message):
        create_timm_model("resnet18", pre_trained=False, backbone_weights=path, **kwargs)


def test_file_of_another_architecture_is_rejected(tmp_path: Path) -> None:
    torch.save(timm.create_model("resnet34", pretrained=False).state_dict(), tmp_path / "resnet34.pth")
    with pytest.raises(BackboneWeightsError, match=r"unexpected keys \[layer1.2"):
        create_timm_model("resnet18", pre_trained=False, backbone_weights=tmp_path / "resnet34.pth")


def test_not_a_state_dict_and_missing_file(tmp_path: Path) -> None:
    torch.save({"weights": [1, 2, 3]}, tmp_path / "odd.pth")
    with pytest.raises(BackboneWeightsError, match="does not hold a state dict"):
        read_state_dict(tmp_path / "odd.pth")
    with pytest.raises(FileNotFoundError, match=r"nope\.pth"):
        create_timm_model("resnet18", pre_trained=True, backbone_weights=tmp_path / "nope.pth")


def test_hub_failure_names_offline_options(block_hub: list[str]) -> None:
    with pytest.raises(BackboneWeightsError) as info:
        create_timm_model("resnet18", pre_trained=True, features_only=True, out_indices=(2,))
    message = str(info.value)
    assert block_hub, "timm's real download path was not reached"
    assert "'resnet18'" in message
    assert "backbone_weights=PATH" in message
    assert 'offline_weights("tf_efficientnet_lite0")' in message
    assert isinstance(info.value, RuntimeError)
    assert isinstance(info.value.__cause__, OSError)


def test_hub_failure_without_network_end_to_end(tmp_path: Path) -> None:
    # No patching: a fresh interpreter with an empty Hugging Face cache and offline mode, as on a machine
    # without network access.
    code = (
        "from anomalib_nfplus.backbones import BackboneWeightsError, create_timm_model\n"
        "try:\n"
        "    create_timm_model('resnet18', pre_trained=True)\n"
        "except BackboneWeightsError as err:\n"
        "    print('RAISED', err)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path / "th")}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert "RAISED" in result.stdout, result.stderr[-2000:]
    assert "backbone_weights" in result.stdout
    assert "offline_weights" in result.stdout


def test_lite_pretrained_uses_offline_weights_without_network(block_hub: list[str], lite0_weights: Path) -> None:
    model = create_timm_model("tf_efficientnet_lite0", pre_trained=True, features_only=True, out_indices=(2,))
    assert block_hub == []
    _assert_same_weights(model, torch.load(lite0_weights, weights_only=True))


def test_random_init_and_argument_errors(block_hub: list[str]) -> None:
    model = create_timm_model("resnet18", pre_trained=False)
    assert block_hub == []
    assert model.fc.out_features == 1000
    with pytest.raises(ValueError, match="Unknown timm backbone 'resnet1800'"):
        create_timm_model("resnet1800", pre_trained=False)
    with pytest.raises(TypeError, match="pre_trained"):
        create_timm_model("resnet18", pre_trained=False, pretrained=True)
    with pytest.raises(ValueError, match="Invalid pretrained tag"):
        create_timm_model("resnet18.no_such_tag", pre_trained=True)
