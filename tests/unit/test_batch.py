# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The class-index contract: field values checked once, read by models, and the layering it allows."""

import ast
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import anomalib_nfplus.batch
from anomalib_nfplus.batch import as_class_index, class_index_of, class_labels


def _batch(labels: list[int] | torch.Tensor | None, n: int = 2) -> SimpleNamespace:
    index = torch.tensor(labels) if isinstance(labels, list) else labels
    return SimpleNamespace(image=torch.rand(n, 3, 4, 4), class_index=index)


def test_field_values_become_int64_with_the_right_shape():
    assert as_class_index(None, 1) is None
    assert as_class_index(3, 0).dtype == torch.int64
    assert as_class_index([0, 2], 1).tolist() == [0, 2]
    with pytest.raises(TypeError, match="integer"):
        as_class_index([0.5], 1)
    with pytest.raises(ValueError, match=">= 0"):
        as_class_index([0, -1], 1)
    with pytest.raises(ValueError, match="dimension"):
        as_class_index([[0]], 1)


def test_only_tensors_count_as_class_indices():
    assert class_index_of(SimpleNamespace(image=torch.rand(1, 3, 4, 4))) is None
    batch = _batch([1, 0])
    assert class_index_of(batch) is batch.class_index


def test_models_get_checked_labels():
    assert class_labels(_batch([1, 0]), 2).tolist() == [1, 0]
    assert class_labels(_batch(None), 1).tolist() == [0, 0]  # plain batches: one class
    with pytest.raises(ValueError, match="HGAD has 3 classes and needs each image's class index"):
        class_labels(_batch(None), 3, "HGAD")
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\), got up to 5"):
        class_labels(_batch([0, 5]), 2)
    with pytest.raises(ValueError, match="3 entries but the batch holds 2 images"):
        class_labels(_batch([0, 1, 1]), 2)
    with pytest.raises(TypeError, match="integer"):
        class_labels(_batch(torch.tensor([0.0, 1.0])), 2)


def test_labels_follow_the_images_device():
    batch = SimpleNamespace(image=torch.rand(2, 3, 4, 4, device="meta"), class_index=torch.tensor([0, 1]))
    assert class_labels(batch, 2).device.type == "meta"


def test_the_contract_imports_neither_data_nor_models():
    """Both packages import it, so it must import neither (no cycle, no model depending on the data package)."""
    tree = ast.parse(Path(anomalib_nfplus.batch.__file__).read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert not [name for name in imported if name.startswith("anomalib_nfplus")]
