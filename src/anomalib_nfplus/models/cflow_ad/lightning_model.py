# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""CflowAD: CFLOW-AD as an anomalib model, with vectorised fiber training and batch-independent scores.

Gudovskiy, Ishizaka, Kozuka, "CFLOW-AD: Real-Time Unsupervised Anomaly Detection with Localization via
Conditional Normalizing Flows", WACV 2022, https://arxiv.org/abs/2107.12571. See README.md for the defaults,
the deviations from the official code and anomalib's ``Cflow``, and how to reach the faithful options.
"""

from collections.abc import Iterator, Sequence
from types import MappingProxyType

import torch
from anomalib.data import Batch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig

from anomalib_nfplus.batch import batch_images
from anomalib_nfplus.flows import SubnetPrecision, use_subnet_precision
from anomalib_nfplus.models.components import (
    ChunkedOptimizationMixin,
    ChunkLoss,
    FlowModuleMixin,
    TrainingStatisticsMixin,
    check_subnet_precision,
    flow_pre_processor,
    warmup_cosine,
)
from anomalib_nfplus.models.components.training.fibers import check_fiber_batch_size

from .anomaly_map import Scoring
from .loss import CflowADLoss
from .torch_model import CflowADModel

__all__ = ["CflowAD"]


class CflowAD(ChunkedOptimizationMixin, TrainingStatisticsMixin, FlowModuleMixin, AnomalibModule):
    """CFLOW-AD: conditional normalizing flows on multi-scale encoder features.

    Args:
        backbone (str, optional): timm CNN. Defaults to ``"wide_resnet50_2"`` (paper).
        layers (Sequence[str], optional): Encoder layers. Defaults to ``("layer2", "layer3", "layer4")``.
        pre_trained (bool, optional): Pretrained encoder. Defaults to ``True``.
        backbone_weights (str | None, optional): Local timm state dict for the encoder. Defaults to ``None``.
        reflect_padding (bool, optional): Reflect-pad the encoder's convolutions, as the official ResNet does.
            Defaults to ``True``.
        coupling_blocks (int, optional): Couplings per decoder. Defaults to ``8``.
        condition_dim (int, optional): Positional-encoding width. Defaults to ``128``.
        clamp_alpha (float, optional): Coupling clamp. Defaults to ``1.9``.
        permute_soft (bool, optional): Fixed random rotations between couplings. Defaults to ``True``.
        seed (int, optional): Seed of the rotations. Defaults to ``0``.
        fiber_batch_size (int | None, optional): Fibers per optimizer step; ``None``: all fibers of an image batch
            in one step. Official: ``256`` with ``per_level_steps=True``. Defaults to ``2048``.
        per_level_steps (bool, optional): Chunks of one level at a time (official) instead of chunks mixing all
            levels. Defaults to ``False``.
        lr (float, optional): Adam learning rate. Defaults to ``2e-4`` (official).
        subnet_precision (SubnetPrecision, optional): Precision of the coupling subnets' matrix products in training:
            ``"bfloat16"`` (faster on CPUs with AVX512-BF16/AMX; the couplings, permutations and
            log-determinants stay in float32), ``"float32"``, or ``"auto"`` (bfloat16 where the device computes it
            natively). Validation, test, prediction and export always run in float32. Defaults to ``"auto"``.
        warmup_epochs (float | None, optional): Linear warm-up length in epochs before the cosine decay; ``None``:
            the official share, 8 % of ``max_epochs``. Defaults to ``None``.
        scoring (Scoring, optional): ``"zscore"`` or ``"likelihood"`` map aggregation. Defaults to ``"zscore"``.
        top_k (float | None, optional): Image score = mean of this top fraction of the map; ``None``: maximum.
            Defaults to ``None``.
        image_size (int | Sequence[int] | None, optional): Input size of the default pre-processor; ``None``:
            256 x 256. Defaults to ``None``.
        pre_processor (PreProcessor | bool, optional): Pre-processor, or ``True`` for
            ``flow_pre_processor(backbone, image_size)``. Defaults to ``True``.
        post_processor (PostProcessor | bool, optional): Post-processor. Defaults to ``True``.
        evaluator (Evaluator | bool, optional): Evaluator. Defaults to ``True``.
        visualizer (Visualizer | bool, optional): Visualizer. Defaults to ``True``.

    Example:
        >>> model = CflowAD("resnet18", ("layer1", "layer2"), pre_trained=False, coupling_blocks=1)
        >>> model.automatic_optimization
        False
    """

    model: CflowADModel

    #: Checkpoints that call the backbone ``encoder`` and the flows ``decoders`` load (with a warning to re-save).
    renamed_state_keys = MappingProxyType(
        {"model.encoder.": "model.feature_extractor.", "model.decoders.": "model.flows."}
    )

    def __init__(
        self,
        backbone: str = "wide_resnet50_2",
        layers: Sequence[str] = ("layer2", "layer3", "layer4"),
        pre_trained: bool = True,
        backbone_weights: str | None = None,
        reflect_padding: bool = True,
        coupling_blocks: int = 8,
        condition_dim: int = 128,
        clamp_alpha: float = 1.9,
        permute_soft: bool = True,
        seed: int = 0,
        fiber_batch_size: int | None = 2048,
        per_level_steps: bool = False,
        lr: float = 2e-4,
        subnet_precision: SubnetPrecision = "auto",
        warmup_epochs: float | None = None,
        scoring: Scoring = "zscore",
        top_k: float | None = None,
        image_size: int | Sequence[int] | None = None,
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        _check_training_args(fiber_batch_size, per_level_steps, lr, warmup_epochs)
        check_subnet_precision(subnet_precision)
        if pre_processor is True:
            pre_processor = flow_pre_processor(backbone, image_size)
        super().__init__(pre_processor, post_processor, evaluator, visualizer)
        self.model = CflowADModel(
            backbone,
            layers,
            pre_trained=pre_trained,
            backbone_weights=backbone_weights,
            reflect_padding=reflect_padding,
            coupling_blocks=coupling_blocks,
            condition_dim=condition_dim,
            clamp_alpha=clamp_alpha,
            permute_soft=permute_soft,
            seed=seed,
            scoring=scoring,
            top_k=top_k,
        )
        # Fail here, not at the first training step, when the pre-processed images are too small for the encoder.
        if self.input_size is not None:
            self.model.check_input_size(*self.input_size)
        self.loss = CflowADLoss()
        self.fiber_batch_size = fiber_batch_size
        self.per_level_steps = per_level_steps
        self.lr = lr
        self.subnet_precision = subnet_precision
        self.warmup_epochs = warmup_epochs
        # Several optimizer steps per image batch (fiber chunks) need manual optimisation.
        self.automatic_optimization = False

    def on_fit_start(self) -> None:
        """Choose the subnets' training precision for the device the model trains on."""
        super().on_fit_start()
        use_subnet_precision(self.model, self.subnet_precision, self.device)

    def chunk_losses(self, batch: Batch, batch_idx: int) -> Iterator[ChunkLoss]:
        """Encode the batch once, then the loss of each fiber chunk (one optimizer step each).

        A chunk that leaves out a level (``per_level_steps``, or more chunks than the level has positions) names
        that level's decoder as idle, which keeps DDP's gradient reduction whole.
        """
        del batch_idx
        flows = self.model.flows.flows
        for chunk in self.model.training_chunks(batch_images(batch), self.fiber_batch_size, self.per_level_steps):
            levels = {level for level, _ in chunk}
            idle = [p for level, flow in enumerate(flows) if level not in levels for p in flow.parameters()]
            yield ChunkLoss(self.loss([log_prob for _, log_prob in chunk]), idle)

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        """Adam on the decoders (official lr 2e-4) with the official warm-up + cosine schedule."""
        # The fused kernel does Adam's update in one pass over all parameters (cheaper on CPU).
        optimizer = torch.optim.Adam(self.model.flows.parameters(), lr=self.lr, fused=True)
        return warmup_cosine(optimizer, self.trainer, self.warmup_epochs)


def _check_training_args(
    fiber_batch_size: int | None,
    per_level_steps: bool,
    lr: float,
    warmup_epochs: float | None,
) -> None:
    check_fiber_batch_size(fiber_batch_size)
    if per_level_steps and fiber_batch_size is None:
        msg = "per_level_steps=True needs a fiber_batch_size (the official setting is 256)."
        raise ValueError(msg)
    if not lr > 0:
        msg = f"lr must be > 0, got {lr!r}."
        raise ValueError(msg)
    if warmup_epochs is not None and warmup_epochs < 0:
        msg = f"warmup_epochs must be None (8 % of max_epochs) or >= 0, got {warmup_epochs!r}."
        raise ValueError(msg)
