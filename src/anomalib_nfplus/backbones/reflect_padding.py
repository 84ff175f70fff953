# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Reflect padding for the convolutions of a timm backbone, as CFLOW-AD's official ResNet uses.

The official code (``custom_models/resnet.py``) builds its ResNet with ``padding_mode='reflect'`` in every padded
convolution and loads the zero-padded torchvision weights into it. Here the same switch is applied to any timm CNN
after its weights are loaded:

- ``nn.Conv2d`` with non-zero padding (ResNets, EfficientNets with symmetric padding) gets
  ``padding_mode='reflect'``; the parameters, and so the state-dict keys, are unchanged;
- timm's ``Conv2dSame`` (TensorFlow "same" padding of the ``tf_*`` models, asymmetric at stride 2) becomes
  :class:`ReflectConv2dSame`, which pads the same amounts by reflection.

Pooling layers keep their padding (the official code changes convolutions only). Backbones whose padding lives
elsewhere (e.g. ``nn.ZeroPad2d`` modules, ViT patch embeddings) are rejected with a clear error.

Reflect padding needs every padded feature map to be larger than its padding, so small images fail deep in the
backbone. :func:`reflect_padding_fits` and :func:`smallest_reflect_size` find that limit on the meta device (shapes
only, nothing computed), so a model can refuse a too small image size when it is built rather than at the first step.
"""

import itertools

import torch
import torch.nn.functional as F
from timm.layers import Conv2dSame
from timm.layers.padding import get_same_padding
from torch import nn
from torch.func import functional_call

__all__ = [
    "ReflectConv2dSame",
    "ReflectPaddingError",
    "is_padding_error",
    "reflect_padding_fits",
    "smallest_reflect_size",
    "use_reflect_padding",
]

#: Largest side :func:`smallest_reflect_size` tries before giving up.
_MAX_SIDE = 8192


class ReflectPaddingError(ValueError):
    """A feature map is not larger than the reflect padding of the convolution it enters."""


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
            raise ReflectPaddingError(msg)
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
        elif isinstance(conv, nn.Conv2d) and isinstance(conv.padding, tuple) and any(p > 0 for p in conv.padding):
            conv.padding_mode = "reflect"
            changed += 1
    if changed == 0:
        msg = (
            f"reflect_padding=True found no zero-padded nn.Conv2d or timm Conv2dSame in {type(module).__name__}. "
            "It supports timm CNNs such as ResNets and EfficientNets; use reflect_padding=False for this backbone."
        )
        raise ValueError(msg)
    return changed


def reflect_padding_fits(module: nn.Module, height: int, width: int) -> bool:
    """Whether ``module`` takes a ``height x width`` image, found by a forward pass of shapes on the meta device.

    The meta device runs the size checks of reflect padding without computing anything or touching the weights.

    Args:
        module (nn.Module): A reflect-padded backbone taking ``(B, 3, H, W)`` images.
        height (int): Image height in pixels.
        width (int): Image width in pixels.

    Returns:
        bool: ``False`` when a feature map is too small for its reflect padding.
    """
    tensors = itertools.chain(module.named_parameters(), module.named_buffers())
    state = {name: tensor.to("meta") for name, tensor in tensors}
    image = torch.empty(1, 3, height, width, device="meta")
    try:
        with torch.no_grad():
            functional_call(module, state, (image,))
    except (RuntimeError, ValueError) as error:
        if not is_padding_error(error):
            raise
        return False
    return True


def smallest_reflect_size(module: nn.Module, start: int = 1) -> int:
    """Smallest square side ``>= start`` that the reflect-padded ``module`` takes (about 10 meta passes).

    Feature maps grow with the image, so the sides that fit form a range above the result; it is found by doubling
    ``start`` until an image fits, then bisecting.

    Args:
        module (nn.Module): A reflect-padded backbone taking ``(B, 3, H, W)`` images.
        start (int, optional): A side known to be needed anyway (e.g. the deepest stride). Defaults to ``1``.

    Returns:
        int: The smallest side in pixels; the same limit holds for height and width separately.

    Raises:
        ValueError: If no side up to 8192 px fits.
    """
    start = max(int(start), 1)
    if reflect_padding_fits(module, start, start):
        return start
    low, high = start, 2 * start
    while not reflect_padding_fits(module, high, high):
        if high >= _MAX_SIDE:
            msg = f"No image up to {_MAX_SIDE} px fits the reflect-padded backbone; use reflect_padding=False."
            raise ValueError(msg)
        low, high = high, 2 * high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if reflect_padding_fits(module, middle, middle) else (middle, high)
    return high


def is_padding_error(error: BaseException) -> bool:
    """Whether ``error`` says that a feature map was too small for its reflect padding."""
    return isinstance(error, ReflectPaddingError) or "Padding size should be less" in str(error)
