# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""HGAD: Hierarchical Gaussian mixture normalizing flow for unified anomaly detection (Yao et al., ECCV 2024).

One model for several product classes: class-agnostic positional flows map backbone features to a latent space
whose prior is a mixture over classes of per-class Gaussian mixtures. Batches may carry ``class_index`` (the
plugin's Unified datamodule); plain anomalib batches are one class. See ``README.md`` beside this file for the
defaults, the deviations from the official code and the two scoring modes.

Example:
    >>> from anomalib_nfplus.models import HGAD  # doctest: +SKIP
    >>> model = HGAD(backbone="tf_efficientnet_lite0", layers=["blocks.4"], image_size=256)  # doctest: +SKIP
"""

from collections.abc import Iterator, Sequence
from types import MappingProxyType
from typing import Any

import torch
from anomalib.data import Batch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig

from anomalib_nfplus.batch import batch_images, class_labels
from anomalib_nfplus.flows import SubnetPrecision, use_subnet_precision
from anomalib_nfplus.models.components import (
    OFFICIAL_WARMUP_FRACTION,
    ChunkedOptimizationMixin,
    ChunkLoss,
    FlowModuleMixin,
    TrainingStatistics,
    TrainingStatisticsMixin,
    check_subnet_precision,
    check_top_k,
    flow_pre_processor,
    renamed_arguments,
    schedule_epochs,
    warmup_cosine,
)
from anomalib_nfplus.models.components.training.fibers import check_fiber_batch_size

from .anomaly_map import Scoring
from .loss import HGADLoss
from .torch_model import HGADModel

__all__ = ["HGAD"]


@renamed_arguments({"n_blocks": "coupling_blocks", "cond_dim": "condition_dim"})
class HGAD(ChunkedOptimizationMixin, TrainingStatisticsMixin, FlowModuleMixin, AnomalibModule):
    """HGAD anomaly detection model (faithful defaults: EfficientNet-B6 stride-16 stage, 3-level pyramid, 1024 px).

    Args:
        backbone (str, optional): timm backbone. Defaults to ``"tf_efficientnet_b6"``.
        layers (Sequence[str], optional): Backbone layers. Defaults to ``("blocks.4",)`` (stride 16).
        pre_trained (bool, optional): Pretrained backbone from the hub. Defaults to ``True``.
        backbone_weights (str | None, optional): Local timm state dict. Defaults to ``None``.
        pyramid_scales (Sequence[float] | None, optional): Image-pyramid scales; ``None``: ``(1, 0.5, 0.25)``
            with one layer, ``(1,)`` (layers as levels) with several. Defaults to ``None``.
        image_size (int | Sequence[int], optional): Pre-processor size when ``pre_processor=True``.
            Defaults to ``1024``.
        n_classes (int | None, optional): Classes; ``None``: read from the datamodule at set-up (1 without
            ``class_names``). Defaults to ``None``.
        n_intra (int, optional): Centres per class. Defaults to ``10``.
        coupling_blocks (int, optional): Couplings per flow. Defaults to ``12``.
        condition_dim (int, optional): Positional-encoding width. Defaults to ``256``.
        clamp_alpha (float, optional): Coupling clamp. Defaults to ``1.9``.
        permute_soft (bool, optional): Soft permutations. Defaults to ``True``.
        centre_distance (float, optional): Initial class-centre distance. Defaults to ``5.0``.
        lambda_inter (float, optional): Weight of the inter-class NLL. Defaults to ``1.0``.
        lambda_mi (float, optional): Weight of the mutual-information term. Defaults to ``100.0``.
        label_smoothing (float, optional): MI label smoothing. Defaults to ``0.02``.
        intra_start_epoch (float | None, optional): (Fractional) epoch at which the intra-class terms start;
            ``None``: 2/25 of ``max_epochs``, as the official 2 of 25 meta-epochs. Defaults to ``None``.
        warmup_epochs (float | None, optional): Linear warm-up; ``None``: 2/25 of ``max_epochs``.
        lr (float, optional): Flow learning rate. Defaults to ``2e-4``.
        centre_lr_factor (float, optional): Learning-rate factor of the centres. Defaults to ``3.0``.
        weight_decay (float, optional): Flow weight decay. Defaults to ``1e-4``.
        betas (Sequence[float], optional): Adam betas. Defaults to ``(0.95, 0.99)``.
        fiber_batch_size (int | None, optional): ``None`` (official): one optimizer step per image batch over all
            positions of every level. An int: one step per group of about that many fibers (positions shared by
            all images of the batch, as CflowAD), many more steps per epoch for the same encoder cost.
            Defaults to ``None``.
        scoring (Scoring, optional): ``"label_free"`` or ``"class_conditional"``. Defaults to ``"label_free"``.
        use_entropy (bool, optional): Multiply by the entropy map (2+ classes). Defaults to ``True``.
        blur_sigma (float | None, optional): Map blur; ``None``: 4 px per 256 px of the pre-processor's output
            height. Checkpoints save the value used (as ``blur_sigma``), so a reload blurs as the trained model did
            whatever pre-processor it is built with.
        top_k (float | None, optional): Image score = mean of the top fraction; ``None``: maximum.
        seed (int, optional): Seed of rotations and centre offsets. Defaults to ``0``.
        subnet_precision (SubnetPrecision, optional): Precision of the coupling subnets' matrix products in training
            (``"bfloat16"``, ``"float32"``, or ``"auto"``: bfloat16 where the device computes it natively); test and
            export always run in float32. Defaults to ``"auto"``.
        pre_processor, post_processor, evaluator, visualizer: anomalib components.
    """

    model: HGADModel
    loss: HGADLoss

    #: Checkpoints that call the backbone ``extractor`` load (with a warning to re-save).
    renamed_state_keys = MappingProxyType({"model.extractor.": "model.feature_extractor."})

    def __init__(
        self,
        backbone: str = "tf_efficientnet_b6",
        layers: Sequence[str] = ("blocks.4",),
        pre_trained: bool = True,
        backbone_weights: str | None = None,
        pyramid_scales: Sequence[float] | None = None,
        image_size: int | Sequence[int] = 1024,
        n_classes: int | None = None,
        n_intra: int = 10,
        coupling_blocks: int = 12,
        condition_dim: int = 256,
        clamp_alpha: float = 1.9,
        permute_soft: bool = True,
        centre_distance: float = 5.0,
        lambda_inter: float = 1.0,
        lambda_mi: float = 100.0,
        label_smoothing: float = 0.02,
        intra_start_epoch: float | None = None,
        warmup_epochs: float | None = None,
        lr: float = 2e-4,
        centre_lr_factor: float = 3.0,
        weight_decay: float = 1e-4,
        betas: Sequence[float] = (0.95, 0.99),
        fiber_batch_size: int | None = None,
        scoring: Scoring = "label_free",
        use_entropy: bool = True,
        blur_sigma: float | None = None,
        top_k: float | None = None,
        seed: int = 0,
        subnet_precision: SubnetPrecision = "auto",
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        check_top_k(top_k)
        check_fiber_batch_size(fiber_batch_size)
        check_subnet_precision(subnet_precision)
        if pre_processor is True:
            pre_processor = flow_pre_processor(backbone, image_size)
        super().__init__(
            pre_processor=pre_processor, post_processor=post_processor, evaluator=evaluator, visualizer=visualizer
        )
        if pyramid_scales is None:
            pyramid_scales = (1.0, 0.5, 0.25) if len(layers) == 1 else (1.0,)
        #: ``blur_sigma`` derived from the pre-processor (``None`` given): a loaded checkpoint's value replaces it.
        self._blur_derived = blur_sigma is None
        if blur_sigma is None:
            blur_sigma = _derived_blur_sigma(self.input_size)
        self.model = HGADModel(
            backbone,
            layers,
            pre_trained=pre_trained,
            backbone_weights=backbone_weights,
            pyramid_scales=pyramid_scales,
            n_classes=n_classes,
            n_intra=n_intra,
            coupling_blocks=coupling_blocks,
            condition_dim=condition_dim,
            clamp_alpha=clamp_alpha,
            permute_soft=permute_soft,
            centre_distance=centre_distance,
            scoring=scoring,
            use_entropy=use_entropy,
            blur_sigma=blur_sigma,
            top_k=top_k,
            seed=seed,
        )
        self.loss = HGADLoss(lambda_inter, lambda_mi, label_smoothing)
        self.fiber_batch_size = fiber_batch_size
        self.subnet_precision = subnet_precision
        self.intra_start_epoch, self.warmup_epochs = intra_start_epoch, warmup_epochs
        if len(betas) != 2:
            msg = f"betas must be Adam's two coefficients (beta1, beta2), got {betas!r}."
            raise ValueError(msg)
        self.lr, self.centre_lr_factor, self.weight_decay = lr, centre_lr_factor, weight_decay
        self.betas = (betas[0], betas[1])
        # Several optimizer steps per image batch (position chunks) need manual optimisation.
        self.automatic_optimization = False

    def on_fit_start(self) -> None:
        """Choose the subnets' training precision for the device the model trains on."""
        super().on_fit_start()
        use_subnet_precision(self.model, self.subnet_precision, self.device)

    # --- classes ------------------------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        """Build the prior for the datamodule's number of classes (and record it for checkpoints).

        Outside training, data without class names says nothing about the model: the prior is left for the
        checkpoint to build (:meth:`load_state_dict`), so a unified model can score a single category.
        """
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        names = getattr(datamodule, "class_names", None)
        if self.model.n_classes is None:
            if not names and stage not in {None, "fit"}:
                return
            self.model.build_prior(len(names) if names else 1)
            self.hparams["n_classes"] = self.model.n_classes
        elif names and len(names) != self.model.n_classes:
            msg = (
                f"HGAD was built for {self.model.n_classes} classes but the datamodule has {len(names)} "
                f"({list(names)}). Use n_classes=None (read from the data) or the datamodule it was trained on."
            )
            raise ValueError(msg)

    def class_labels(self, batch: Batch) -> torch.Tensor:
        """Each image's checked class index; zeros for plain anomalib batches when the model has one class."""
        return class_labels(batch, self.model.n_classes or 1, "HGAD")

    # --- steps ----------------------------------------------------------------------------------------------

    def chunk_losses(self, batch: Batch, batch_idx: int) -> Iterator[ChunkLoss]:
        """Encode once, then the loss of each chunk (the levels' losses summed), one optimizer step each.

        Parameters a step's loss does not reach (the intra-class centres and weights before their stage, the flow
        and prior of a level absent from a position chunk) are named idle, which keeps DDP's gradient reduction
        whole without changing the step.
        """
        labels = self.class_labels(batch)
        intra, priors, flows = self.intra_stage(batch_idx), self.model.require_prior()[0], self.model.flows.flows
        for chunk in self.model.training_chunks(batch_images(batch), self.fiber_batch_size):
            levels = [(z, log_det) for _, z, log_det in chunk]
            present = {i for i, _, _ in chunk}
            loss, terms = self.loss([priors[i] for i, _, _ in chunk], levels, labels, intra=intra)
            idle = [
                parameter
                for level, (flow, prior) in enumerate(zip(flows, priors, strict=True))
                for parameter in (
                    self.loss.unused_parameters(prior, intra)
                    if level in present
                    else [*flow.parameters(), *prior.parameters()]
                )
            ]
            yield ChunkLoss(loss, idle, terms)

    def intra_stage(self, batch_idx: int) -> bool:
        """Whether the intra-class terms are on at this (fractional) epoch."""
        trainer = self.trainer
        start = self.intra_start_epoch
        start = OFFICIAL_WARMUP_FRACTION * schedule_epochs(trainer) if start is None else start
        epoch = trainer.current_epoch + batch_idx / max(1, int(trainer.num_training_batches or 1))
        return epoch >= start

    def scoring_inputs(self, batch: Batch) -> tuple[torch.Tensor | None, ...]:
        """Each image's class when scoring is class-conditional; nothing for label-free scoring."""
        return (self.class_labels(batch),) if self.model.scoring == "class_conditional" else ()

    # --- optimisation ---------------------------------------------------------------------------------------

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        """Adam with betas (0.95, 0.99): flows with weight decay, centres at ``centre_lr_factor`` x lr."""
        if self.model.priors is None:
            self.setup()
        priors = self.model.require_prior()[0]
        groups = [
            {"params": list(self.model.flows.parameters()), "weight_decay": self.weight_decay},
            {
                "params": [p for prior in priors for p in (prior.inter_means, prior.intra_offsets)],
                "lr": self.lr * self.centre_lr_factor,
                "weight_decay": 0.0,
            },
            {"params": [p for prior in priors for p in (prior.inter_logits, prior.intra_logits)], "weight_decay": 0.0},
        ]
        optimizer = torch.optim.Adam(groups, lr=self.lr, betas=self.betas, fused=True)
        return warmup_cosine(optimizer, self.trainer, self.warmup_epochs)

    # --- statistics, loading, export ------------------------------------------------------------------------

    def on_statistics_collected(self, statistics: TrainingStatistics, world: int) -> None:
        """Name the classes without training images (one process; under DDP ``finalize`` fails after the reduction)."""
        del statistics
        missing = self.model.classes_without_statistics()
        if not missing or world > 1:
            return
        datamodule = getattr(self._trainer, "datamodule", None)  # set on every trainer by Lightning, undeclared
        names = getattr(datamodule, "class_names", None)
        which = [names[i] if names and i < len(names) else str(i) for i in missing]
        msg = f"HGAD: no training images for class(es) {which}; every category needs normal training images."
        raise ValueError(msg)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Save the blur the model scores with as ``blur_sigma``, also where it was derived (argument ``None``).

        ``load_from_checkpoint`` and ``--ckpt_path`` then rebuild that blur whatever pre-processor or ``image_size``
        the reloaded model gets; the model's own ``hparams`` keep the arguments as given.
        """
        super().on_save_checkpoint(checkpoint)
        if isinstance(checkpoint.get("hyper_parameters"), dict):
            checkpoint["hyper_parameters"]["blur_sigma"] = self.model.blur_sigma

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the components, then blur as the checkpoint's model did when this one derived its blur.

        A derived ``blur_sigma`` (argument ``None``) comes from the pre-processor this model was built with, which
        the checkpoint's may not be (``Engine.test(HGAD(), ckpt_path=...)``): the checkpoint's saved value wins, and
        for checkpoints of older versions, which saved ``None``, it is derived again from the restored pre-processor.
        """
        super().on_load_checkpoint(checkpoint)
        if not self._blur_derived:
            return
        saved = (checkpoint.get("hyper_parameters") or {}).get("blur_sigma")
        sigma = float(saved) if saved is not None else _derived_blur_sigma(self.input_size)
        if sigma != self.model.blur_sigma:
            self.model.blur_sigma = sigma

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Build a not-yet-built prior from the checkpoint's shapes, then load strictly."""
        key = "model.priors.0.inter_logits"
        if key in state_dict:
            saved = int(state_dict[key].shape[0])
            if self.model.priors is None:
                self.model.build_prior(saved)
                self.hparams["n_classes"] = saved
            elif strict and saved != self.model.n_classes:
                msg = (
                    f"Checkpoint does not match HGAD: it was trained with {saved} classes, this model has "
                    f"{self.model.n_classes}. Load it with HGAD.load_from_checkpoint(path), or build the model with "
                    f"n_classes={saved} (or n_classes=None)."
                )
                raise RuntimeError(msg)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def check_exportable(self) -> None:
        """Label-free scoring only: a class-conditional graph would need the class as an input."""
        if self.model.scoring == "class_conditional":
            msg = (
                "Export of HGAD with scoring='class_conditional' is not supported: it needs each image's class at "
                "inference. Set model.model.scoring = 'label_free' (same weights and statistics) before exporting."
            )
            raise NotImplementedError(msg)


def _derived_blur_sigma(input_size: Sequence[int] | None) -> float:
    """The official blur, 4 px at 256 px, scaled to the pre-processed image height (256 px without a resize)."""
    return 4.0 * (input_size or (256, 256))[0] / 256
