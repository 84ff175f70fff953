# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Export DifferNet *with* its gradient map.

``torch.export`` (non-strict) traces above autograd, so a backward pass inside ``forward`` (``autograd.grad`` or
``torch.func.grad``) cannot be exported directly. Before exporting, the score-and-gradient function is therefore
traced with ``make_fx`` (symbolic shapes, so the batch stays dynamic) into a plain ATen graph in which the backward
pass is ordinary forward operators; the export ``forward`` calls that graph with the model's own parameters.

Two backward operators have no ONNX equivalent and get decompositions here: ``convolution_backward`` for the
input gradient (a transposed convolution with the same weights) and the accumulating ``index_put`` of the fixed
permutations (a scatter-add, which ONNX has).
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch._decomp import core_aten_decompositions
from torch._dynamo.source import ConstantSource
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.proxy_tensor import make_fx
from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext

if TYPE_CHECKING:
    from .torch_model import DifferNetModel

__all__ = ["gradient_graph", "trace_gradient"]

aten = torch.ops.aten


def _input_gradient_of_convolution(
    grad_output: torch.Tensor,
    inputs: torch.Tensor,
    weight: torch.Tensor,
    bias_sizes: Any,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    transposed: bool,
    output_padding: list[int],
    groups: int,
    output_mask: list[bool],
) -> tuple[torch.Tensor | None, None, None]:
    """``convolution_backward`` for the input only: the transposed convolution with the same weights."""
    del bias_sizes, output_padding
    if transposed or output_mask[1] or output_mask[2]:
        msg = "The export decomposition covers input gradients of ordinary convolutions only (frozen backbone)."
        raise NotImplementedError(msg)
    dims = range(inputs.dim() - 2)
    lost = [
        inputs.shape[2 + i]
        - ((grad_output.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (weight.shape[2 + i] - 1) + 1)
        for i in dims
    ]
    grad_input = aten.convolution.default(grad_output, weight, None, stride, padding, dilation, True, lost, groups)
    return grad_input, None, None


class _Nll(nn.Module):
    """Module view of ``model.nll`` so ``functional_call`` can substitute its parameters and buffers."""

    def __init__(self, model: "DifferNetModel") -> None:
        super().__init__()
        self.model = model

    def forward(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.nll(views)


def trace_gradient(model: "DifferNetModel", example_views: torch.Tensor) -> Callable[[torch.Tensor], Any]:
    """Trace ``views -> (d NLL / d views, score terms)`` of ``model`` into an ATen graph (symbolic batch size).

    Returns:
        Callable: ``views -> (grads, terms)``; it reads ``model``'s current parameters at every call, so the
        exported program owns them as parameters, not as copies.
    """
    wrapper = _Nll(model)

    def state() -> dict[str, torch.Tensor]:
        return {**dict(wrapper.named_parameters()), **dict(wrapper.named_buffers())}

    def gradient(params: dict[str, torch.Tensor], views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        def objective(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            loss, terms = torch.func.functional_call(wrapper, params, (x,))
            return loss.sum(), terms

        grads, (_, terms) = torch.func.grad_and_value(objective, has_aux=True)(views)
        return grads, terms

    table = dict(core_aten_decompositions())
    table[aten.convolution_backward.default] = _input_gradient_of_convolution
    params, views = _batch_symbolic(state(), example_views)
    with torch.no_grad():
        graph = make_fx(gradient, tracing_mode="symbolic", decomposition_table=table)(params, views)
    return lambda views: graph(state(), views)


def _batch_symbolic(
    params: dict[str, torch.Tensor], views: torch.Tensor
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Fake inputs for ``make_fx`` in which only the views' batch is symbolic.

    ``make_fx`` would otherwise make every size of every input symbolic, weights included, and spend minutes
    reasoning about shapes that are fixed; the export needs only the batch to stay dynamic.
    """
    mode = FakeTensorMode(shape_env=ShapeEnv())
    fixed: dict[str, torch.Tensor] = {name: mode.from_tensor(t, static_shapes=True) for name, t in params.items()}
    sizes = [DimDynamic.DYNAMIC] + [DimDynamic.STATIC] * (views.dim() - 1)
    context: StatelessSymbolicContext[..., Any] = StatelessSymbolicContext(dynamic_sizes=sizes)
    return fixed, mode.from_tensor(views, source=ConstantSource("views"), symbolic_context=context)


@contextmanager
def gradient_graph(module: Any, input_size: tuple[int, int]) -> Iterator[None]:
    """While the block runs, ``module``'s gradient map is served by a graph pre-traced for ``input_size`` images.

    Any export that traces ``module`` (ONNX, ``torch.export`` for OpenVINO) runs inside it; the model is in eval
    mode meanwhile. Nothing changes without a gradient map.
    """
    model = module.model
    if model.anomaly_map is None:
        yield
        return
    # The model sees the pre-processor's output, which may differ from the exported graph's input size.
    height, width = (int(s) for s in (module.input_size or input_size))
    was_training = model.training
    model.eval()
    views = torch.zeros(2 * model.rotations.n, 3, height, width, device=next(model.parameters()).device)
    model.anomaly_map.traced = trace_gradient(model, views)
    try:
        yield
    finally:
        model.anomaly_map.traced = None
        model.train(was_training)
