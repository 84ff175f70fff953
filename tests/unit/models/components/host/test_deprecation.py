# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Renamed arguments and attributes: old names work with a warning; signatures and hparams show the new ones."""

import inspect
import sys
import types

import pytest
import torch
from lightning.pytorch import LightningModule
from torch import nn

from anomalib_nfplus.models.components.host.deprecation import (
    renamed_arguments,
    renamed_attributes,
    translate_arguments,
)


@renamed_arguments({"n_blocks": "coupling_blocks", "cond_dim": "condition_dim"})
class _Lightning(LightningModule):
    def __init__(self, width: int = 2, coupling_blocks: int = 8, condition_dim: int = 16) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = nn.Linear(width, coupling_blocks + condition_dim)


def test_signature_shows_only_the_new_names() -> None:
    assert list(inspect.signature(_Lightning).parameters) == ["width", "coupling_blocks", "condition_dim"]
    assert list(inspect.signature(_Lightning.__init__).parameters)[1:] == ["width", "coupling_blocks", "condition_dim"]
    assert dict(_Lightning.renamed_arguments) == {"n_blocks": "coupling_blocks", "cond_dim": "condition_dim"}


def test_old_names_warn_and_are_saved_under_the_new_ones() -> None:
    with pytest.warns(FutureWarning) as caught:
        model = _Lightning(3, n_blocks=1, cond_dim=2)
    assert [str(record.message) for record in caught] == [
        "_Lightning: argument 'n_blocks' is deprecated, use 'coupling_blocks'.",
        "_Lightning: argument 'cond_dim' is deprecated, use 'condition_dim'.",
    ]
    assert all(record.filename == __file__ for record in caught)  # the warning points at the caller
    assert dict(model.hparams) == {"width": 3, "coupling_blocks": 1, "condition_dim": 2}
    assert model.layer.out_features == 3


def test_new_names_do_not_warn(recwarn: pytest.WarningsRecorder) -> None:
    _Lightning(coupling_blocks=1)
    assert not [w for w in recwarn if w.category is FutureWarning]


def test_old_and_new_name_together_is_an_error() -> None:
    with pytest.raises(TypeError, match="got both 'n_blocks' and 'coupling_blocks'"):
        _Lightning(n_blocks=1, coupling_blocks=2)


def test_subclass_inherits_and_extends_the_map() -> None:
    @renamed_arguments({"size": "width"})
    class Child(_Lightning):
        def __init__(self, width: int = 2, coupling_blocks: int = 8) -> None:
            super().__init__(width, coupling_blocks)

    assert dict(Child.renamed_arguments) == {
        "n_blocks": "coupling_blocks",
        "cond_dim": "condition_dim",
        "size": "width",
    }
    with pytest.warns(FutureWarning, match="Child: argument 'size'"):
        assert Child(size=5).hparams["width"] == 5


def test_a_map_that_does_not_fit_the_signature_is_refused() -> None:
    with pytest.raises(TypeError, match=r"\['blocks'\] do not match"):

        @renamed_arguments({"n_blocks": "blocks"})
        class _Wrong(nn.Module):
            def __init__(self, coupling_blocks: int = 1) -> None:
                super().__init__()


def test_translate_arguments_leaves_the_input_alone() -> None:
    given = {"n_blocks": 1, "lr": 0.1}
    with pytest.warns(FutureWarning):
        assert translate_arguments(given, {"n_blocks": "coupling_blocks"}, "M") == {"lr": 0.1, "coupling_blocks": 1}
    assert given == {"n_blocks": 1, "lr": 0.1}


def test_renamed_attributes_serve_the_old_name(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("_renamed_example")
    module.NewName = torch.nn.Identity
    module.__getattr__ = renamed_attributes("_renamed_example", {"OldName": "NewName"})
    monkeypatch.setitem(sys.modules, "_renamed_example", module)
    with pytest.warns(FutureWarning, match=r"_renamed_example\.OldName is deprecated, use NewName"):
        from _renamed_example import OldName  # type: ignore[attr-defined]
    assert OldName is torch.nn.Identity
    with pytest.raises(AttributeError, match="no attribute 'Other'"):
        _ = module.Other


@pytest.mark.parametrize(
    ("module", "old", "new"),
    [
        ("anomalib_nfplus.models.differnet.anomaly_map", "GradientMap", "AnomalyMapGenerator"),
        ("anomalib_nfplus.models.hgad.anomaly_map", "HGADAnomalyMap", "AnomalyMapGenerator"),
    ],
)
def test_old_anomaly_map_names_remain_importable(module: str, old: str, new: str) -> None:
    imported = __import__(module, fromlist=[new])
    with pytest.warns(FutureWarning, match=f"{old} is deprecated, use {new}"):
        assert getattr(imported, old) is getattr(imported, new)
