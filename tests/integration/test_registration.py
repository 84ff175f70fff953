# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The plugin's classes resolve like anomalib's own: CLI short names, get_model, list_models, ``--data MVTec``.

``NfplusProbe`` (tests/helpers/probe_plugin) is registered through the same start-up hook as the real models.
Model issues add their own names to ``PLUGIN_MODELS`` in conftest.py.
"""

import runpy
import subprocess
import sys

import anomalib.data
import pytest
from anomalib.cli import AnomalibCLI
from anomalib.data import MVTecAD, get_datamodule
from anomalib.models import AnomalibModule, get_model, list_models

import anomalib_nfplus
from anomalib_nfplus.data import mvtec as mvtec_module
from tests.conftest import PLUGIN_MODELS

pytestmark = pytest.mark.usefixtures("probe_registered")


# Plugin models default to the papers' hub backbones; build them small and offline here.
SMALL = {"pre_trained": False, "backbone": "tf_efficientnet_lite0", "layers": ["blocks.2", "blocks.4"]}


def _small_args(name: str) -> list[str]:
    if name not in PLUGIN_MODELS:
        return []
    return [
        "--model.pre_trained",
        "false",
        "--model.backbone",
        SMALL["backbone"],
        "--model.layers",
        "[blocks.2,blocks.4]",
    ]


def _small_kwargs(name: str) -> dict:
    return SMALL if name in PLUGIN_MODELS else {}


def _fit_on_mvtec_alias(model: str, root: str) -> list[str]:
    args = ["fit", "--model", model, *_small_args(model)]
    return [*args, "--data", "MVTec", "--data.root", root, "--data.category", "stripes"]


def _parse(args: list[str]) -> AnomalibCLI:
    return AnomalibCLI(args=args, run=False)


@pytest.mark.parametrize("name", ["NfplusProbe", *PLUGIN_MODELS])
def test_cli_resolves_short_model_name(name: str, synthetic_root: str) -> None:
    cli = _parse(_fit_on_mvtec_alias(name, synthetic_root))
    assert type(cli.model).__name__ == name
    assert AnomalibModule in type(cli.model).__bases__  # direct subclass: get_model/list_models need it


@pytest.mark.parametrize("name", ["NfplusProbe", *PLUGIN_MODELS])
def test_get_model_and_list_models(name: str) -> None:
    assert type(get_model(name.lower(), **_small_kwargs(name))).__name__ == name
    assert name.lower() in {listed.replace("_", "") for listed in list_models()}


def test_probe_exposed_in_anomalib_namespace() -> None:
    """``expose`` (the plugin's own mechanism) made name-based dict configs work."""
    model = get_model({"class_path": "NfplusProbe", "init_args": {"pool": 2}})
    assert type(model).__name__ == "NfplusProbe"
    assert model.model.pool == 2


@pytest.mark.parametrize("name", PLUGIN_MODELS)
def test_full_class_path_and_namespace(name: str) -> None:
    cls = getattr(anomalib_nfplus, name)
    cli = _parse(["fit", "--model", f"anomalib_nfplus.{name}", *_small_args(name)])
    assert type(cli.model) is cls
    assert type(get_model({"class_path": name, "init_args": SMALL})) is cls


def test_data_mvtec_alias_resolves_to_mvtecad(synthetic_root: str) -> None:
    cli = _parse(_fit_on_mvtec_alias("NfplusProbe", synthetic_root))
    assert isinstance(cli.datamodule, MVTecAD)
    assert cli.config["fit"]["data"]["class_path"] == "anomalib_nfplus.MVTec"
    assert cli.datamodule.name == "MVTecAD"  # results land where --data MVTecAD would put them


def test_full_data_class_path(synthetic_root: str) -> None:
    cli = _parse(["fit", "--model", "NfplusProbe", "--data", "anomalib_nfplus.MVTec", "--data.root", synthetic_root])
    assert isinstance(cli.datamodule, MVTecAD)


def test_get_datamodule_by_alias_name(synthetic_root: str) -> None:
    datamodule = get_datamodule({"class_path": "MVTec", "init_args": {"root": synthetic_root, "category": "dots"}})
    assert isinstance(datamodule, MVTecAD)
    assert anomalib.data.MVTec is anomalib_nfplus.MVTec


def test_alias_defers_to_upstream_mvtec(monkeypatch: pytest.MonkeyPatch) -> None:
    """If anomalib brings ``MVTec`` back, the plugin must not define a clashing second class."""

    class UpstreamMVTec(MVTecAD):
        pass

    monkeypatch.setattr(anomalib.data, "MVTec", UpstreamMVTec)
    namespace = runpy.run_path(mvtec_module.__file__)
    assert namespace["MVTec"] is UpstreamMVTec
    UpstreamMVTec.__name__ = "_UpstreamMVTecTestOnly"  # keep jsonargparse's name index unambiguous afterwards


def test_unknown_model_name_still_fails() -> None:
    with pytest.raises(SystemExit):
        _parse(["fit", "--model", "NoSuchModelXyz"])


def test_plugin_import_is_lazy() -> None:
    code = "import sys, anomalib_nfplus; print('torch' in sys.modules, 'anomalib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
