# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""DifferNet: Same Same But DifferNet: Semi-Supervised Defect Detection with Normalizing Flows.

Rudolph, Wandt and Rosenhahn, WACV 2021 (https://arxiv.org/abs/2008.12577). A normalizing flow models the
distribution of one multi-scale, globally pooled feature vector per image; the anomaly score is the mean
``||z||^2 / D`` over several rotations of the image and the anomaly map is the gradient of the negative
log-likelihood w.r.t. the pixels. See ``README.md`` beside this file for the defaults, deviations and numbers.

Example:
    >>> from anomalib.engine import Engine
    >>> from anomalib_nfplus.data import MVTec
    >>> from anomalib_nfplus.models.differnet import DifferNet
    >>> model = DifferNet(backbone="tf_efficientnet_lite0", layers=("blocks.6",))  # doctest: +SKIP
    >>> Engine(max_epochs=16).fit(model, datamodule=MVTec(category="bottle"))  # doctest: +SKIP
"""

from collections.abc import Sequence
from contextlib import AbstractContextManager
from types import MappingProxyType
from typing import Any

import torch
from anomalib.data import Batch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.types import STEP_OUTPUT

from anomalib_nfplus.backbones import normalization_for
from anomalib_nfplus.batch import batch_images
from anomalib_nfplus.models.components import FlowModuleMixin, flow_pre_processor, renamed_arguments

from .export import gradient_graph
from .loss import DifferNetLoss
from .torch_model import PASS_PIXELS, DifferNetModel
from .transforms import RandomTransforms

__all__ = ["DifferNet"]


@renamed_arguments({"scales": "pyramid_scales", "n_blocks": "coupling_blocks"})
class DifferNet(FlowModuleMixin, AnomalibModule):
    """DifferNet for anomalib (image scores from a flow on pooled features, gradient maps).

    Args:
        backbone (str, optional): timm backbone (the paper's AlexNet is not in timm). Defaults to
            ``"tf_efficientnet_lite0"``.
        layers (Sequence[str], optional): Layers to pool. Defaults to ``("blocks.6",)``.
        pre_trained (bool, optional): Pretrained backbone. Defaults to ``True``.
        backbone_weights (str | None, optional): Local timm state dict (e.g. ``offline_weights(...)``).
        image_size (int | Sequence[int], optional): Size of the default pre-processor. Defaults to ``448``.
        pyramid_scales (Sequence[float], optional): Pyramid scales. Defaults to ``(1.0, 0.5, 0.25)`` (448/224/112).
        coupling_blocks (int, optional): Flow blocks. Defaults to ``8``.
        hidden (int, optional): Subnet width. Defaults to ``2048``.
        depth (int, optional): Subnet hidden layers. Defaults to ``3``.
        clamp_alpha (float, optional): Soft clamp. Defaults to ``3.0``.
        n_train_transforms (int, optional): Random views per training image and step. Defaults to ``4``.
        rotation (bool, optional): Random rotations in training. Defaults to ``True``.
        brightness (float, optional): Brightness jitter in training. Defaults to ``0.0``.
        contrast (float, optional): Contrast jitter in training. Defaults to ``0.0``.
        saturation (float, optional): Saturation jitter in training. Defaults to ``0.0``.
        rotation_steps (int, optional): ``0``: continuous random angles (paper); ``k``: random multiples of
            ``360 / k`` degrees (``4``: right angles, matching ``n_test_transforms=4``). Defaults to ``0``.
        n_test_transforms (int, optional): Test-time rotations ``T``. Defaults to ``64``.
        blur_sigma (float, optional): Blur of the gradient maps, pixels. Defaults to ``3.0``.
        compute_map (bool, optional): Compute gradient maps. Defaults to ``True``.
        intermediate_validation (bool, optional): Score validation batches in every epoch. ``False`` scores them
            only in the last training epoch (the post-processor's thresholds and normalisation come from the last
            validation anyway), which saves a full test-set pass per epoch. Defaults to ``True``.
        lr (float, optional): Adam learning rate. Defaults to ``2e-4``.
        betas (Sequence[float], optional): Adam betas. Defaults to ``(0.8, 0.8)``.
        eps (float, optional): Adam epsilon. Defaults to ``1e-4``.
        weight_decay (float, optional): Adam weight decay. Defaults to ``1e-5``.
        interpolation (str, optional): Pyramid resize mode. Defaults to ``"nearest"``.
        seed (int, optional): Seed of the flow's permutations. Defaults to ``0``.
        max_pass_pixels (int | None, optional): Pixels (views x H x W) per backbone pass in eager mode; small passes
            are several times faster on CPU, results do not depend on it. ``None``: one pass over all views (GPU).
            Defaults to ``PASS_PIXELS`` (16 views at 224 px).
        pre_processor (PreProcessor | bool, optional): ``True`` builds RGB + resize + backbone normalisation.
        post_processor (PostProcessor | bool, optional): Defaults to ``True``.
        evaluator (Evaluator | bool, optional): Defaults to ``True``.
        visualizer (Visualizer | bool, optional): Defaults to ``True``.
    """

    model: DifferNetModel

    #: Checkpoints that call the backbone ``pyramid`` load (with a warning to re-save).
    renamed_state_keys = MappingProxyType({"model.pyramid.": "model.feature_extractor."})

    # INT8: the score is the density of one pooled vector per view, which bias correction keeps centred (the
    # figures with and without it are in benchmarks/RESULTS.md).
    int8_bias_correction = True

    def __init__(
        self,
        backbone: str = "tf_efficientnet_lite0",
        layers: Sequence[str] = ("blocks.6",),
        pre_trained: bool = True,
        backbone_weights: str | None = None,
        image_size: int | Sequence[int] = 448,
        pyramid_scales: Sequence[float] = (1.0, 0.5, 0.25),
        coupling_blocks: int = 8,
        hidden: int = 2048,
        depth: int = 3,
        clamp_alpha: float = 3.0,
        n_train_transforms: int = 4,
        rotation: bool = True,
        brightness: float = 0.0,
        contrast: float = 0.0,
        saturation: float = 0.0,
        rotation_steps: int = 0,
        n_test_transforms: int = 64,
        blur_sigma: float = 3.0,
        compute_map: bool = True,
        intermediate_validation: bool = True,
        lr: float = 2e-4,
        betas: Sequence[float] = (0.8, 0.8),
        eps: float = 1e-4,
        weight_decay: float = 1e-5,
        interpolation: str = "nearest",
        seed: int = 0,
        max_pass_pixels: int | None = PASS_PIXELS,
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        if pre_processor is True:
            pre_processor = flow_pre_processor(backbone, image_size)
        super().__init__(
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        if n_train_transforms < 1:
            msg = f"n_train_transforms must be >= 1 (views per training image), got {n_train_transforms}."
            raise ValueError(msg)
        self.model = DifferNetModel(
            backbone,
            layers,
            pre_trained=pre_trained,
            backbone_weights=backbone_weights,
            pyramid_scales=pyramid_scales,
            coupling_blocks=coupling_blocks,
            hidden=hidden,
            depth=depth,
            clamp_alpha=clamp_alpha,
            n_test_transforms=n_test_transforms,
            blur_sigma=blur_sigma,
            compute_map=compute_map,
            interpolation=interpolation,
            seed=seed,
            max_pass_pixels=max_pass_pixels,
        )
        mean, std = normalization_for(backbone)
        self.train_transforms = RandomTransforms(mean, std, rotation, brightness, contrast, saturation, rotation_steps)
        self.n_train_transforms = n_train_transforms
        self.intermediate_validation = intermediate_validation
        self.loss = DifferNetLoss()
        if len(betas) != 2:
            msg = f"betas must be Adam's two coefficients (beta1, beta2), got {betas!r}."
            raise ValueError(msg)
        self.lr, self.betas, self.eps, self.weight_decay = lr, (betas[0], betas[1]), eps, weight_decay

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam on the flow only, as in the paper (no schedule, no warm-up)."""
        return torch.optim.Adam(
            self.model.flow.parameters(), lr=self.lr, betas=self.betas, eps=self.eps, weight_decay=self.weight_decay
        )

    def training_step(self, batch: Batch, *args: Any, **kwargs: Any) -> STEP_OUTPUT:
        """NLL of ``n_train_transforms`` independently transformed views of every training image."""
        del args, kwargs
        views = self.train_transforms(batch_images(batch).repeat_interleave(self.n_train_transforms, dim=0))
        z, log_det = self.model(views)
        loss = self.check_loss(self.loss(z, log_det))
        self.log("train_loss", loss.detach(), on_epoch=True, prog_bar=True, batch_size=views.shape[0])
        return {"loss": loss}

    def validation_step(self, batch: Batch, *args: Any, **kwargs: Any) -> STEP_OUTPUT:
        """Score the batch, unless ``intermediate_validation`` is off and this is not the last training epoch."""
        if self.intermediate_validation or not self._skips_validation():
            return super().validation_step(batch, *args, **kwargs)
        return batch  # type: ignore[return-value]  # anomalib steps return its Batch dataclass

    def _skips_validation(self) -> bool:
        """Whether this is validation inside ``fit`` before its last epoch.

        ``trainer.training`` is False while validating; the trainer's function stays ``fit`` during the validation
        loop inside fitting, so that is what tells.
        """
        trainer = getattr(self, "_trainer", None)
        state = getattr(trainer, "state", None)
        if (
            trainer is None
            or state is None
            or state.fn != TrainerFn.FITTING
            or not trainer.max_epochs
            or trainer.max_epochs < 0
        ):
            return False
        return trainer.current_epoch + 1 < trainer.max_epochs

    def export_tracing(self, input_size: tuple[int, int]) -> AbstractContextManager[None]:
        """The gradient map served by a pre-traced graph while an export traces the model (see :mod:`.export`)."""
        return gradient_graph(self, input_size)
