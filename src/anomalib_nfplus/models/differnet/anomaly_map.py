# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""DifferNet's localisation: gradient of the negative log-likelihood w.r.t. the input pixels.

The gradient is taken with ``torch.func.grad_and_value`` rather than ``torch.autograd.grad``: a function
transform ignores an enclosing ``torch.no_grad``/``inference_mode`` (Lightning tests and predicts under
``inference_mode``), needs no ``requires_grad_`` on the input, and is traced by ``torch.export`` (non-strict) into
ordinary forward operators, so the exported graph contains the backward pass and returns the same map.

Views are independent, so the gradient of the *summed* NLL w.r.t. view ``i`` is the gradient of view ``i``'s own
NLL: one backward pass serves the whole batch without mixing images.
"""

from collections.abc import Callable

import torch
from torch import nn

from anomalib_nfplus.models.components import GaussianBlur, renamed_attributes

from .transforms import FixedRotations

__all__ = ["AnomalyMapGenerator"]

NllFunction = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
#: ``(function, views) -> function(views)``, possibly computed in several passes (see ``DifferNetModel.in_passes``).
Passes = Callable[[Callable[[torch.Tensor], tuple[torch.Tensor, ...]], torch.Tensor], tuple[torch.Tensor, ...]]


class AnomalyMapGenerator(nn.Module):
    """Per-view input gradients -> ``|.|`` summed over channels -> blur -> rotated back -> mean over views.

    Rotating a view loses the image corners, so a pixel is seen by only some of the ``T`` views; the map divides
    by how many views see each pixel (the unrotated view always does) instead of by ``T``, so corners are not
    darkened.

    Args:
        blur (GaussianBlur): Blur applied to each view's map before rotating it back (paper order).
    """

    def __init__(self, blur: GaussianBlur) -> None:
        super().__init__()
        self.blur = blur
        #: ``views -> (grads, terms)`` pre-traced for export (see :mod:`.export`); ``None`` in normal use.
        self.traced: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None

    def forward(
        self,
        nll: NllFunction,
        views: torch.Tensor,
        rotations: FixedRotations,
        passes: Passes | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the score terms ``(B * T,)`` that ``nll`` gives alongside, and maps ``(B, 1, H, W)``.

        Args:
            nll (NllFunction): ``views -> (per-view NLL, per-view score term)``, both ``(B * T,)``.
            views (torch.Tensor): ``(B * T, 3, H, W)`` transformed images, image-major.
            rotations (FixedRotations): The transforms that made ``views`` (to rotate the maps back). Passed
                in rather than held, so the model registers it once (a module registered twice is tied state,
                which ``functional_call`` in the export trace does not restore reliably).
            passes (Passes | None, optional): Splits the views into backbone passes (eager mode); each view's
                gradient is that of its own NLL, so the split changes nothing. ``None``: one pass.
        """
        if self.traced is not None:
            grads, terms = self.traced(views)
        elif passes is None:
            grads, terms = self.gradients(nll, views)
        else:
            grads, terms = passes(lambda chunk: self.gradients(nll, chunk), views)
        per_view = self.blur(grads.abs().sum(dim=1, keepdim=True))
        back = rotations.invert(per_view)
        n, height, width = rotations.n, views.shape[-2], views.shape[-1]
        coverage = rotations.invert(views.new_ones(n, 1, height, width)).sum(dim=0)
        maps = back.view(-1, n, 1, height, width).sum(dim=1) / coverage.clamp_min(1.0)
        return terms.detach(), maps.detach()

    @staticmethod
    def gradients(nll: NllFunction, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(d sum(NLL) / d views, score terms)``; each view's gradient is that of its own NLL."""

        def objective(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            loss, terms = nll(x)
            return loss.sum(), terms

        grads, (_, terms) = torch.func.grad_and_value(objective, has_aux=True)(views)
        return grads, terms


__getattr__ = renamed_attributes(__name__, {"GradientMap": "AnomalyMapGenerator"})
