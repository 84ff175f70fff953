# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The torch-free model list matches the models package, and the models never import the plugin module."""

import ast
from pathlib import Path

from anomalib_nfplus import _catalog, models


def test_catalog_names_the_exported_models():
    assert set(_catalog.MODELS) == set(models.__all__) - {"MODEL_NAMES"}
    assert set(models.MODEL_NAMES) == set(_catalog.MODELS)
    for name, module in _catalog.MODELS.items():
        assert getattr(models, name).__module__.startswith(module)


def test_the_models_package_does_not_import_the_plugin_module():
    """``plugin.register`` imports the models; the models importing ``plugin`` back would make a cycle."""
    for path in Path(models.__file__).parent.rglob("*.py"):
        tree = ast.parse(path.read_text())
        imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        assert "anomalib_nfplus.plugin" not in imported, path
