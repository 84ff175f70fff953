# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""FlowModuleMixin: loss guard, strict loading message, statistics collection, schedule wiring, DDP pieces."""

import pytest
import torch
from anomalib.data import InferenceBatch
from anomalib.models import AnomalibModule
from torch import nn

from anomalib_nfplus.flows import AllInOneCoupling, FixedPermutation
from anomalib_nfplus.models.components import FlowModuleMixin, NonFiniteLossError, TrainingStatistics


class _Scorer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.statistics = TrainingStatistics(1)

    def update_statistics(self, images: torch.Tensor) -> None:
        self.statistics.update(0, images.mean(dim=1) * self.scale)

    def forward(self, images: torch.Tensor) -> InferenceBatch:
        amap = self.statistics.standardize(0, images.mean(dim=1, keepdim=True) * self.scale)
        return InferenceBatch(pred_score=amap.flatten(1).amax(1), anomaly_map=amap)


class _Tiny(FlowModuleMixin, AnomalibModule):
    def __init__(self) -> None:
        super().__init__(pre_processor=False, post_processor=False, evaluator=False, visualizer=False)
        self.model = _Scorer()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters())

    def training_step(self, batch, *args, **kwargs):
        return self.check_loss(self.model.scale.sum() * 0)


class _Batch:
    def __init__(self, image: torch.Tensor) -> None:
        self.image = image


def test_is_a_direct_anomalib_subclass_with_flow_defaults():
    assert AnomalibModule in _Tiny.__bases__
    module = _Tiny()
    assert module.learning_type.value == "one_class"
    assert module.trainer_arguments["num_sanity_val_steps"] == 0


def test_non_finite_loss_stops_with_a_clear_error():
    module = _Tiny()
    assert module.check_loss(torch.tensor(1.5)).item() == 1.5
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss.*outside a Trainer.*Lower the learning rate"):
        module.check_loss(torch.tensor(float("nan")))


def test_strict_loading_names_missing_and_unexpected_keys():
    module = _Tiny()
    state = module.state_dict()
    state["model.extra"] = torch.zeros(1)
    del state["model.scale"]
    with pytest.raises(
        RuntimeError, match=r"1 missing key\(s\) \['model.scale'\], 1 unexpected key\(s\) \['model.extra'\]"
    ):
        module.load_state_dict(state)
    module.load_state_dict(state, strict=False)  # non-strict stays available to those who ask for it


def test_statistics_collection_uses_training_images_and_caps_batches():
    module = _Tiny()
    loader = [_Batch(torch.full((2, 3, 4, 4), float(v))) for v in (1.0, 3.0, 100.0)]
    module.statistics_batches = 2
    module.model.train()
    module.collect_training_statistics(loader)
    stats = module.model.statistics
    assert stats.mean.item() == pytest.approx(2.0)
    assert stats.maximum.item() == pytest.approx(3.0)
    assert module.model.training  # mode restored


def test_refresh_without_training_data_or_statistics_is_an_error():
    with pytest.raises(RuntimeError, match="Train it first"):
        _Tiny()._refresh_statistics()


def test_strict_loading_names_wrong_shapes():
    module = _Tiny()
    state = module.state_dict()
    state["model.scale"] = torch.zeros(3)
    with pytest.raises(RuntimeError, match=r"model.scale \(shape \(3,\), expected \(1,\)\)"):
        module.load_state_dict(state)


class _Flowing(_Tiny):
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


def _stepping(module: _Tiny) -> torch.optim.Optimizer:
    """Manual optimisation without a Trainer: the module's own optimizer and a plain backward."""
    optimizer = torch.optim.Adam(module.parameters(), lr=0.1, weight_decay=0.1)
    module.optimizers = lambda: optimizer
    module.manual_backward = lambda loss: loss.backward()
    return optimizer


def test_idle_parameters_get_a_gradient_path_but_no_step():
    """What DDP needs (every parameter's gradient hook fires) without changing the loss or the step."""
    tied, plain = _Tiny(), _Tiny()
    for module in (tied, plain):
        module.model.idle = nn.Parameter(torch.ones(3))
    tied_optimizer, plain_optimizer = _stepping(tied), _stepping(plain)
    fired = []
    tied.model.idle.register_hook(lambda grad: fired.append(grad.clone()))
    for _ in range(2):
        expected = float(tied.model.scale * 3)
        assert tied.manual_step((tied.model.scale * 3).sum(), idle=[tied.model.idle]).item() == expected
        plain.manual_step((plain.model.scale * 3).sum())
    assert len(fired) == 2  # the hook DDP's reducer relies on fired at each backward, with a zero gradient
    assert all(bool((grad == 0).all()) for grad in fired)
    assert tied.model.idle.grad is None
    torch.testing.assert_close(tied.model.idle.detach(), torch.ones(3))  # no weight decay, no Adam state
    assert tied.model.idle not in tied_optimizer.state
    torch.testing.assert_close(tied.model.scale, plain.model.scale, rtol=0, atol=0)
    assert plain.model.idle not in plain_optimizer.state


def test_under_ddp_an_idle_gradient_another_process_filled_is_kept():
    from anomalib_nfplus.models.components.lightning import _drop_gradients

    used_elsewhere, unused = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    used_elsewhere.grad, unused.grad = torch.tensor([0.0, 0.5]), torch.zeros(2)  # as after the reduction
    _drop_gradients([used_elsewhere, unused], reduced=True)
    assert used_elsewhere.grad is not None
    assert unused.grad is None


def test_ddp_strategy_is_told_not_to_broadcast_buffers():
    from types import SimpleNamespace

    module = _Tiny()
    for given, expected in (({}, False), ({"broadcast_buffers": True}, True)):  # the user's choice is kept
        strategy = SimpleNamespace(_ddp_kwargs=dict(given))
        module._trainer = SimpleNamespace(strategy=strategy)
        module.configure_model()
        assert strategy._ddp_kwargs["broadcast_buffers"] is expected
    module._trainer = SimpleNamespace(strategy=SimpleNamespace())  # another strategy: nothing to set
    module.configure_model()


def test_statistics_shard_of_a_loader_covers_every_sample_once():
    from torch.utils.data import DataLoader

    from anomalib_nfplus.models.components.distributed import rank_share

    loader = DataLoader(list(range(11)), batch_size=3, shuffle=True)
    shares = [[int(i) for batch in rank_share(loader, rank, 2) for i in batch] for rank in range(2)]
    assert sorted(shares[0] + shares[1]) == list(range(11))
    assert shares[0] == list(range(0, 11, 2))  # dataset order: the same on every process, whatever the shuffle
    batches = [[1, 2], [3], [4, 5], [6]]
    assert [list(rank_share(batches, rank, 2)) for rank in range(2)] == [[[1, 2], [4, 5]], [[3], [6]]]
    assert rank_share(loader, 0, 1) is loader
