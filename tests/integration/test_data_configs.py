# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The data configs in configs/data parse through anomalib's CLI and point at the real data."""

from pathlib import Path

import pytest
from anomalib.cli import AnomalibCLI
from anomalib.data import Folder, MVTecAD

pytestmark = pytest.mark.usefixtures("probe_registered")

PROJECT = Path(__file__).resolve().parents[2]
CONFIGS = PROJECT / "configs" / "data"


def _datamodule(config: str, *extra: str) -> object:
    return AnomalibCLI(["fit", "--model", "NfplusProbe", "--data", str(CONFIGS / config), *extra], run=False).datamodule


def test_mvtec_config_uses_the_alias() -> None:
    datamodule = _datamodule("mvtec.yaml", "--data.category", "screw")
    assert isinstance(datamodule, MVTecAD)
    assert datamodule.category == "screw"


@pytest.mark.realdata
def test_mtd_config_loads_the_shared_data(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(PROJECT)  # the config's relative root is meant for runs from the project root
    datamodule = _datamodule("mtd.yaml", "--data.num_workers", "0")
    assert isinstance(datamodule, MVTecAD)
    assert Path(datamodule.root).resolve() == (shared_data / "mtd").resolve()
    datamodule.setup()
    assert len(datamodule.train_data) == 762
    assert len(datamodule.test_data) == 190 + 392


@pytest.mark.realdata
def test_elpv_config_loads_the_shared_data(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(PROJECT)
    datamodule = _datamodule("elpv_mono.yaml", "--data.num_workers", "0")
    assert isinstance(datamodule, Folder)
    datamodule.setup()
    assert len(datamodule.train_data) == 470
    assert len(datamodule.test_data) == 118 + 369
