# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Reflect padding for the convolutions of a timm encoder, as CFLOW-AD's official ResNet uses.

The official code (``custom_models/resnet.py``) builds its ResNet with ``padding_mode='reflect'`` in every padded
convolution and loads the zero-padded torchvision weights into it. Here the same switch is applied to any timm CNN
after its weights are loaded:

- ``nn.Conv2d`` with non-zero padding (ResNets, EfficientNets with symmetric padding) gets
  ``padding_mode='reflect'``; the parameters, and so the state-dict keys, are unchanged;
- timm's ``Conv2dSame`` (TensorFlow "same" padding of the ``tf_*`` models, asymmetric at stride 2) becomes
  :class:`ReflectConv2dSame`, which pads the same amounts by reflection.

Pooling layers keep their padding (the official code changes convolutions only). Backbones whose padding lives
elsewhere (e.g. ``nn.ZeroPad2d`` modules, ViT patch embeddings) are rejected with a clear error.
"""

import torch
import torch.nn.functional as F
from timm.layers import Conv2dSame
from timm.layers.padding import get_same_padding
from torch import nn

__all__ = ["ReflectConv2dSame", "use_reflect_padding"]


class ReflectConv2dSame(Conv2dSame):
    """timm's TensorFlow-"same" convolution with reflect instead of zero padding (same parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad by reflection to the "same" output size, then convolve without padding."""
        height, width = x.shape[-2:]
        pad_h = get_same_padding(height, self.kernel_size[0], self.stride[0], self.dilation[0])
        pad_w = get_same_padding(width, self.kernel_size[1], self.stride[1], self.dilation[1])
        pads = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
        if max(pads[0:2]) >= width or max(pads[2:4]) >= height:
            msg = (
                f"Reflect padding needs feature maps larger than the padding; got {height}x{width} at a "
                f"{self.kernel_size} convolution. Use larger images or reflect_padding=False."
            )
            raise ValueError(msg)
        x = F.pad(x, pads, mode="reflect")
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def use_reflect_padding(module: nn.Module) -> int:
    """Switch every padded convolution of ``module`` to reflect padding, in place.

    Args:
        module (nn.Module): A timm CNN (or a ``features_only`` wrapper of one).

    Returns:
        int: Number of convolutions changed.

    Raises:
        ValueError: If ``module`` has no padded convolution this function knows how to change.
    """
    changed = 0
    for conv in module.modules():
        if isinstance(conv, Conv2dSame):
            conv.__class__ = ReflectConv2dSame
            changed += 1
        elif isinstance(conv, nn.Conv2d) and any(p > 0 for p in conv.padding):  # type: ignore[union-attr]
            conv.padding_mode = "reflect"
            changed += 1
    if changed == 0:
        msg = (
            f"reflect_padding=True found no zero-padded nn.Conv2d or timm Conv2dSame in {type(module).__name__}. "
            "It supports timm CNNs such as ResNets and EfficientNets; use reflect_padding=False for this backbone."
        )
        raise ValueError(msg)
    return changed
