# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""ChunkedOptimizationMixin: the shared training loop, idle parameters under DDP, and the abstract contract."""

from types import SimpleNamespace

import pytest
import torch
from anomalib.models import AnomalibModule
from torch import nn

from anomalib_nfplus.models.components import ChunkedOptimizationMixin, FlowModuleMixin
from anomalib_nfplus.models.components.training.chunked import _drop_gradients
from tests.unit.models.components.modules import ImageBatch, TinyChunked, stepping


def test_a_model_without_chunk_losses_is_refused():
    class _NoChunks(ChunkedOptimizationMixin, FlowModuleMixin, AnomalibModule):
        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters())

    with pytest.raises(TypeError, match="chunk_losses"):
        _NoChunks()


def test_training_step_takes_one_step_per_chunk_then_one_scheduler_step(monkeypatch):
    module = TinyChunked()
    steps, scheduled, logged = [], [], {}
    monkeypatch.setattr(module, "manual_step", lambda loss, idle=(): steps.append(list(idle)) or loss.detach())
    monkeypatch.setattr(module, "lr_schedulers", lambda: SimpleNamespace(step=lambda: scheduled.append(True)))
    monkeypatch.setattr(module, "log", lambda name, value, **kwargs: logged.update({name: (value, kwargs)}))
    monkeypatch.setattr(module, "log_dict", lambda values, **kwargs: logged.update(values))
    out = module.training_step(ImageBatch(torch.full((2, 3, 4, 4), 4.0)), 0)
    assert [len(idle) for idle in steps] == [0, 1]
    assert scheduled == [True]
    assert float(out["loss"]) == pytest.approx((4.0 + 2.0) / 2)  # mean over the chunks
    value, options = logged["train_loss"]
    assert float(value) == pytest.approx(3.0)
    assert options["batch_size"] == 2
    assert options["sync_dist"]
    assert not options["on_step"]
    assert logged["train_part"] == pytest.approx(2.0)  # chunk terms: their mean over the chunks


def test_idle_parameters_get_a_gradient_path_but_no_step():
    """What DDP needs (every parameter's gradient hook fires) without changing the loss or the step."""
    tied, plain = TinyChunked(), TinyChunked()
    tied_optimizer, plain_optimizer = stepping(tied), stepping(plain)
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
    used_elsewhere, unused = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    used_elsewhere.grad, unused.grad = torch.tensor([0.0, 0.5]), torch.zeros(2)  # as after the reduction
    _drop_gradients([used_elsewhere, unused], reduced=True)
    assert used_elsewhere.grad is not None
    assert unused.grad is None
