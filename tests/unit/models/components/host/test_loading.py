# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""CheckpointLoadingMixin: strict loading with readable errors; older checkpoints with stored inverses load."""

import pytest
import torch

from anomalib_nfplus.flows import AllInOneCoupling, FixedPermutation
from tests.unit.models.components.modules import Tiny


def test_strict_loading_names_missing_and_unexpected_keys():
    module = Tiny()
    state = module.state_dict()
    state["model.extra"] = torch.zeros(1)
    del state["model.scale"]
    with pytest.raises(
        RuntimeError, match=r"1 missing key\(s\) \['model.scale'\], 1 unexpected key\(s\) \['model.extra'\]"
    ):
        module.load_state_dict(state)
    module.load_state_dict(state, strict=False)  # non-strict stays available to those who ask for it


def test_strict_loading_names_wrong_shapes():
    module = Tiny()
    state = module.state_dict()
    state["model.scale"] = torch.zeros(3)
    with pytest.raises(RuntimeError, match=r"model.scale \(shape \(3,\), expected \(1,\)\)"):
        module.load_state_dict(state)


class _Flowing(Tiny):
    """A mixin model whose torch model holds a rotation coupling and a permutation, as the plugin's flows do."""

    def __init__(self) -> None:
        super().__init__()
        self.model.coupling = AllInOneCoupling(4, seed=0)
        self.model.permutation = FixedPermutation(4, seed=0)


def _older_state(module: _Flowing) -> dict[str, torch.Tensor]:
    """The state dict as older versions wrote it: every rotation's transpose and permutation's inverse as well."""
    state = module.state_dict()
    state["model.coupling.w_perm_inv"] = state["model.coupling.w_perm"].T.contiguous()
    state["model.permutation.inv_perm"] = torch.argsort(state["model.permutation.perm"])
    return state


def test_constant_tensors_are_stored_once():
    assert not [key for key in _Flowing().state_dict() if key.endswith(("w_perm_inv", "inv_perm"))]


def test_older_checkpoints_with_stored_inverses_still_load():
    saved = _Flowing()
    with torch.no_grad():
        saved.model.coupling.global_offset.add_(0.5)
    fresh = _Flowing()
    fresh.load_state_dict(_older_state(saved))  # strict: the inverses are checked and dropped
    torch.testing.assert_close(fresh.model.coupling.global_offset, saved.model.coupling.global_offset)
    x = torch.randn(3, 4)
    torch.testing.assert_close(fresh.model.coupling.inverse(fresh.model.coupling(x)[0])[0], x, atol=1e-5, rtol=0)


def test_older_checkpoint_with_a_wrong_inverse_is_refused():
    state = _older_state(_Flowing())
    state["model.coupling.w_perm_inv"] = torch.eye(4)
    with pytest.raises(RuntimeError, match=r"'model.coupling.w_perm_inv'.*not the inverse of 'w_perm'"):
        _Flowing().load_state_dict(state)
