# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Fixtures of the backbone tests: a private weights cache and small saved state dicts."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import timm
import torch

from anomalib_nfplus.backbones import offline_weights
from anomalib_nfplus.backbones.offline import CACHE_ENV


@pytest.fixture(scope="session", autouse=True)
def weights_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep converted weights out of the user's ~/.cache during tests."""
    path = tmp_path_factory.mktemp("nfplus_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(path))
        yield path


@pytest.fixture(scope="session")
def lite0_weights(weights_cache: Path) -> Path:
    """Converted offline tf_efficientnet_lite0 weights."""
    return offline_weights("tf_efficientnet_lite0")


@pytest.fixture(scope="session")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full, randomly initialised resnet18 state dict with recognisable (seeded) values."""
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False)
    path = tmp_path_factory.mktemp("resnet18") / "resnet18.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture
def block_hub(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make timm's hub downloads fail as they do offline; returns the locations timm asked for."""
    calls: list[str] = []

    def unreachable(*args: object, **kwargs: object) -> None:
        calls.append(str(args[0]) if args else "?")
        msg = "simulated: Name or service not known"
        raise OSError(msg)

    monkeypatch.setattr("timm.models._builder.load_state_dict_from_hf", unreachable)
    monkeypatch.setattr("timm.models._builder.load_state_dict_from_url", unreachable)
    return calls
