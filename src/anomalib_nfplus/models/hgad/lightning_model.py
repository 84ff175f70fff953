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
from typing import Any

import torch
from anomalib.data import Batch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch.utilities.types import STEP_OUTPUT, OptimizerLRSchedulerConfig

from anomalib_nfplus.models.components import FlowModuleMixin, check_top_k, float32_scoring, flow_pre_processor
from anomalib_nfplus.models.components.distributed import process_grid
from anomalib_nfplus.models.components.positional_flows import (
    SubnetPrecision,
    check_fiber_batch_size,
    subnet_dtype,
    use_subnet_precision,
)

from .loss import HGADLoss
from .torch_model import HGADModel

__all__ = ["HGAD"]

OFFICIAL_STAGE_FRACTION = 2 / 25  # official: inter-class stage and warm-up = 2 of 25 meta-epochs


def class_index_of(batch: Any) -> torch.Tensor | None:
    """The batch's class indices (Unified datamodule contract), ``None`` for plain anomalib batches."""
    try:
        from anomalib_nfplus.data.unified import class_index_of as unified_class_index_of
    except ImportError:
        return getattr(batch, "class_index", None)
    return unified_class_index_of(batch)


class HGAD(FlowModuleMixin, AnomalibModule):
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
        n_blocks (int, optional): Couplings per flow. Defaults to ``12``.
        cond_dim (int, optional): Positional-encoding width. Defaults to ``256``.
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
        scoring (str, optional): ``"label_free"`` or ``"class_conditional"``. Defaults to ``"label_free"``.
        use_entropy (bool, optional): Multiply by the entropy map (2+ classes). Defaults to ``True``.
        blur_sigma (float | None, optional): Map blur; ``None``: 4 px per 256 px of input height.
        top_k (float | None, optional): Image score = mean of the top fraction; ``None``: maximum.
        seed (int, optional): Seed of rotations and centre offsets. Defaults to ``0``.
        subnet_precision (SubnetPrecision, optional): Precision of the coupling subnets' matrix products in training
            (``"bfloat16"``, ``"float32"``, or ``"auto"``: bfloat16 where the device computes it natively); test and
            export always run in float32. Defaults to ``"auto"``.
        pre_processor, post_processor, evaluator, visualizer: anomalib components.
    """

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
        n_blocks: int = 12,
        cond_dim: int = 256,
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
        scoring: str = "label_free",
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
        subnet_dtype(subnet_precision, torch.device("cpu"))  # validates the value
        if pre_processor is True:
            pre_processor = flow_pre_processor(backbone, image_size)
        super().__init__(
            pre_processor=pre_processor, post_processor=post_processor, evaluator=evaluator, visualizer=visualizer
        )
        if pyramid_scales is None:
            pyramid_scales = (1.0, 0.5, 0.25) if len(layers) == 1 else (1.0,)
        if blur_sigma is None:
            blur_sigma = 4.0 * (self.input_size or (256, 256))[0] / 256
        self.model = HGADModel(
            backbone,
            layers,
            pre_trained=pre_trained,
            backbone_weights=backbone_weights,
            pyramid_scales=pyramid_scales,
            n_classes=n_classes,
            n_intra=n_intra,
            n_blocks=n_blocks,
            cond_dim=cond_dim,
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
        # Several optimizer steps per image batch (position chunks) need manual optimisation.
        self.automatic_optimization = False

    def on_fit_start(self) -> None:
        """Choose the subnets' training precision for the device the model trains on."""
        super().on_fit_start()
        use_subnet_precision(self.model, self.hparams.get("subnet_precision", "float32"), self.device)

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

    def class_labels(self, batch: Batch, required: bool) -> torch.Tensor | None:
        """Checked class indices of the batch; zeros for plain single-class batches; ``None`` if not needed."""
        labels = class_index_of(batch)
        n_classes = self.model.n_classes or 1
        if labels is None:
            if required and n_classes > 1:
                msg = (
                    f"HGAD has {n_classes} classes and needs each image's class index here, but the batch has no "
                    "class_index. Use the Unified datamodule (anomalib_nfplus.data.Unified), or n_classes=1."
                )
                raise ValueError(msg)
            return torch.zeros(batch.image.shape[0], dtype=torch.long, device=batch.image.device)
        labels = torch.as_tensor(labels, device=batch.image.device).reshape(-1)
        self.model.priors[0].validate_labels(labels, batch.image.shape[0])  # type: ignore[index]
        return labels.long()

    # --- steps ----------------------------------------------------------------------------------------------

    def training_step(self, batch: Batch, batch_idx: int, *args: Any, **kwargs: Any) -> STEP_OUTPUT:
        """Encode once, then one optimizer step per chunk (the levels' losses summed); the schedule steps per batch.

        Parameters a step's loss does not reach (the intra-class centres and weights before their stage, the flow
        and prior of a level absent from a position chunk) are named idle to :meth:`manual_step`, which keeps
        DDP's gradient reduction whole without changing the step.
        """
        del args, kwargs
        labels = self.class_labels(batch, required=True)
        intra, priors, flows = self.intra_stage(batch_idx), self.model.priors, self.model.flows.flows
        total, logged, steps = 0.0, {}, 0
        for chunk in self.model.training_chunks(batch.image, self.fiber_batch_size):
            levels = [(z, log_det) for _, z, log_det in chunk]
            present = {i for i, _, _ in chunk}
            loss, terms = self.loss([priors[i] for i, _, _ in chunk], levels, labels, intra=intra)  # type: ignore[index]
            idle = [
                parameter
                for level, (flow, prior) in enumerate(zip(flows, priors, strict=True))  # type: ignore[arg-type]
                for parameter in (
                    self.loss.unused_parameters(prior, intra)
                    if level in present
                    else [*flow.parameters(), *prior.parameters()]
                )
            ]
            total, steps = total + self.manual_step(loss, idle), steps + 1
            logged = {k: logged.get(k, 0.0) + v for k, v in terms.items()}
        self.lr_schedulers().step()  # type: ignore[union-attr]
        # sync_dist: the epoch's means over every process (one reduction at the epoch's end, not per step).
        epoch = {"on_step": False, "on_epoch": True, "batch_size": batch.image.shape[0], "sync_dist": True}
        self.log("train_loss", total / steps, prog_bar=True, **epoch)
        self.log_dict({f"train_{k}": v / steps for k, v in logged.items()}, **epoch)
        return {"loss": total / steps}

    def intra_stage(self, batch_idx: int) -> bool:
        """Whether the intra-class terms are on at this (fractional) epoch."""
        trainer = self.trainer
        start = self.hparams.get("intra_start_epoch")
        start = OFFICIAL_STAGE_FRACTION * self._schedule_epochs() if start is None else start
        epoch = trainer.current_epoch + batch_idx / max(1, int(trainer.num_training_batches or 1))
        return epoch >= start

    def score_batch(self, batch: Batch) -> Batch:
        """The mixin's float32 scoring (validation, test, predict), with each image's class when class-conditional."""
        labels = None
        if self.model.scoring == "class_conditional":
            labels = self.class_labels(batch, required=True)
        with float32_scoring(batch.image) as images:
            return batch.update(**self.model(images, labels)._asdict())

    # --- optimisation ---------------------------------------------------------------------------------------

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        """Adam with betas (0.95, 0.99): flows with weight decay, centres at ``centre_lr_factor`` x lr."""
        hp = self.hparams
        if self.model.priors is None:
            self.setup()
        priors = self.model.priors
        groups = [
            {"params": list(self.model.flows.parameters()), "weight_decay": hp["weight_decay"]},
            {
                "params": [p for prior in priors for p in (prior.inter_means, prior.intra_offsets)],
                "lr": hp["lr"] * hp["centre_lr_factor"],
                "weight_decay": 0.0,
            },
            {"params": [p for prior in priors for p in (prior.inter_logits, prior.intra_logits)], "weight_decay": 0.0},
        ]
        optimizer = torch.optim.Adam(groups, lr=hp["lr"], betas=tuple(hp["betas"]), fused=True)
        warmup = hp["warmup_epochs"]
        if warmup is None:
            warmup = OFFICIAL_STAGE_FRACTION * self._schedule_epochs()
        return self.warmup_cosine(optimizer, warmup)

    def _schedule_epochs(self) -> int:
        epochs = self.trainer.max_epochs
        return epochs if epochs is not None and epochs > 0 else 1

    # --- statistics, loading, export ------------------------------------------------------------------------

    def _statistics_input(self, batches: Any) -> Iterator[Batch]:
        """As the mixin, but each batch's class indices reach the per-class statistics."""
        return self._labelled(batches)

    def _labelled(self, loader: Any) -> Iterator[Batch]:
        n_classes = self.model.n_classes or 1
        seen: set[int] = set()
        for batch in loader:
            labels = self.class_labels(batch, required=True)
            self.model.pending_labels = labels.to(self.device)
            seen.update(int(c) for c in labels.unique())
            yield batch
        self.model.pending_labels = None
        missing = sorted(set(range(n_classes)) - seen)
        # Under DDP this process scored only its share; a class missing from all shares fails after the reduction.
        if missing and process_grid(getattr(self, "_trainer", None))[1] == 1:
            names = getattr(getattr(self._trainer, "datamodule", None), "class_names", None) or []
            which = [names[i] if i < len(names) else str(i) for i in missing]
            msg = f"HGAD: no training images for class(es) {which}; every category needs normal training images."
            raise ValueError(msg)

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
