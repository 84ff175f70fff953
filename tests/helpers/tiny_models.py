# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The smallest working configuration of every catalogue model, for tests that run each through a real Engine.

``TINY`` is the one table of model-specific arguments: a renamed argument is a one-line change here, and a new
catalogue model needs one entry (``tests/integration/test_models.py`` fails until it has one).
"""

import json
from typing import Any

from anomalib_nfplus.backbones import offline_weights

#: Model arguments per catalogue name (Lite0 backbone, 2 flow blocks, narrow subnets), without the image size.
TINY: dict[str, dict[str, Any]] = {
    "CflowAD": {
        "layers": ["blocks.2", "blocks.4", "blocks.6"],
        "coupling_blocks": 2,
        "condition_dim": 32,
        "reflect_padding": False,  # 64 px is too small for reflect padding on Lite0's deepest maps
    },
    "HGAD": {
        "layers": ["blocks.4"],
        "coupling_blocks": 2,
        "condition_dim": 32,
        "n_intra": 3,
        "pyramid_scales": [1.0, 0.5],
    },
    "DifferNet": {
        "layers": ["blocks.2"],
        "coupling_blocks": 2,
        "hidden": 32,
        "depth": 1,
        "n_train_transforms": 2,
        "n_test_transforms": 2,
        "blur_sigma": 1.0,
    },
}

#: Overrides of ``TINY`` with one backbone level at one scale: the smallest graph, for tests that export it often.
ONE_LEVEL: dict[str, dict[str, Any]] = {
    "CflowAD": {"layers": ["blocks.2"]},
    "HGAD": {"layers": ["blocks.2"], "pyramid_scales": [1.0], "blur_sigma": 1.0},
    "DifferNet": {"pyramid_scales": [1.0]},
}


def model_class(name: str) -> type:
    """The catalogue model ``name`` (``anomalib_nfplus.<name>``, loaded lazily)."""
    import anomalib_nfplus

    return getattr(anomalib_nfplus, name)


def tiny_kwargs(name: str, image_size: int, **overrides: Any) -> dict[str, Any]:
    """Every argument of a tiny ``name`` model: the packaged offline Lite0 weights, no visualizer, ``TINY[name]``."""
    return {
        "backbone": "tf_efficientnet_lite0",
        "pre_trained": False,
        "backbone_weights": str(offline_weights("tf_efficientnet_lite0")),
        "image_size": image_size,
        "visualizer": False,
        **TINY[name],
        **overrides,
    }


def tiny_model(name: str, image_size: int, **overrides: Any) -> Any:
    """A fresh tiny ``name`` model with the packaged offline Lite0 weights and no visualizer."""
    return model_class(name)(**tiny_kwargs(name, image_size, **overrides))


def cli_arguments(kwargs: dict[str, Any], prefix: str = "--model.init_args.") -> list[str]:
    """``kwargs`` as ``anomalib`` command-line options (strings as they are, other values in JSON, read as YAML)."""
    return [f"{prefix}{key}={v if isinstance(v, str) else json.dumps(v)}" for key, v in kwargs.items()]
