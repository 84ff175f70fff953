# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Shared fixtures: tiny generated datasets, the registration probe plugin, the real-data location."""

import shutil
import site
from pathlib import Path

import pytest

from anomalib_nfplus._catalog import MODELS
from anomalib_nfplus.data.synthetic import make_mvtec_like

# The plugin's models, as users type them after --model (one line per model in _catalog.MODELS).
PLUGIN_MODELS: tuple[str, ...] = tuple(MODELS)

PROBE_DIR = Path(__file__).parent / "helpers" / "probe_plugin"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Two-category MVTec-layout dataset, 64 px, with masks."""
    root = tmp_path_factory.mktemp("synthetic")
    make_mvtec_like(root, categories=("stripes", "dots"), n_train=8, n_test_good=4, n_test_bad=4, image_size=64)
    return str(root)


@pytest.fixture(scope="session")
def probe_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site directory holding the probe plugin and a .pth that registers it with the plugin's own hook."""
    site_dir = tmp_path_factory.mktemp("probe_site")
    shutil.copytree(PROBE_DIR / "nfplus_probe", site_dir / "nfplus_probe", ignore=shutil.ignore_patterns("__pycache__"))
    (site_dir / "nfplus_probe.pth").write_text(
        'import _anomalib_nfplus_hook; _anomalib_nfplus_hook.install("nfplus_probe.plugin:register")\n'
    )
    return site_dir


@pytest.fixture(scope="session")
def probe_registered(probe_site: Path) -> None:
    """Process the probe's .pth in this interpreter, as site.py does for an installed package."""
    site.addsitedir(str(probe_site))
    import anomalib.models  # noqa: F401 - fires the hook if nothing imported anomalib yet


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the project; tests using it skip cleanly where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (only developers and CI have it)")
    return SHARED_DATA
