# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The smallest working configuration of every catalogue model, for tests that run each through a real Engine."""

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
    "HGAD": {"layers": ["blocks.4"], "n_blocks": 2, "cond_dim": 32, "n_intra": 3, "pyramid_scales": [1.0, 0.5]},
    "DifferNet": {
        "layers": ["blocks.2"],
        "n_blocks": 2,
        "hidden": 32,
        "depth": 1,
        "n_train_transforms": 2,
        "n_test_transforms": 2,
        "blur_sigma": 1.0,
    },
}


def tiny_model(name: str, image_size: int, **overrides: Any) -> Any:
    """A fresh tiny ``name`` model with the packaged offline Lite0 weights and no visualizer."""
    import anomalib_nfplus

    return getattr(anomalib_nfplus, name)(
        backbone="tf_efficientnet_lite0",
        pre_trained=False,
        backbone_weights=str(offline_weights("tf_efficientnet_lite0")),
        image_size=image_size,
        visualizer=False,
        **{**TINY[name], **overrides},
    )
