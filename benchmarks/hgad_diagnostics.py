# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Why unified HGAD scores as it does: what its prior, its score and its two maps do on a multi-class test set.

Trains one unified HGAD (as ``benchmarks.unified`` does), then reads its test set level by level and writes, to
``--out-dir``:

- ``diagnostics.json``: per category the image AUROC of five scores from the same latents (label-free and
  class-conditional, each with and without the entropy map, and the entropy alone: the summed per-level maximum of
  the class-posterior entropy), how many test images share the highest score (saturation), the class-posterior
  accuracy of normal test positions per level (does the mixture prior separate the classes?), and the training
  loss per epoch;
- ``scores.png``: per category, label-free image scores of normal and anomalous test images;
- ``class_posterior.png``: per level, the confusion matrix of ``argmax_y p(y | z)`` over normal test positions;
- ``likelihood.png``: per category, the per-image mean and minimum log-likelihood (nats per dimension) of normal
  and anomalous test images.

Example:
    python -m benchmarks.hgad_diagnostics --data configs/data/unified_four.yaml --image-size 128 --epochs 1 \
        --init-args HGAD '{"lr": 0.002, "condition_dim": 64, "coupling_blocks": 8, "fiber_batch_size": 2048}'
"""

import argparse
import json
import math
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from benchmarks import harness, report
from benchmarks.baselines import ModelSpec, build_model
from benchmarks.unified import make_unified

__all__ = ["LossHistory", "auroc", "diagnostics_args", "diagnostics_parser", "main", "parse_args", "saturation"]

#: Scores computed from the same latents (see :func:`_image_scores`).
SCORES = (
    "label_free",
    "class_conditional",
    "label_free_no_entropy",
    "class_conditional_no_entropy",
    "entropy_only",
)


class LossHistory(Callback):
    """The epoch mean of ``train_loss``, as the model logs it."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Record the epoch's loss."""
        loss = trainer.callback_metrics.get("train_loss")
        if loss is not None:
            self.losses.append(float(loss))


def diagnostics_parser(doc: str | None, script: str) -> argparse.ArgumentParser:
    """A diagnostics script's parser: the shared model options, the unified data config and the output folder."""
    p = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="a Unified datamodule config")
    p.add_argument("--out-dir", type=Path, help=f"default benchmarks/results/{script}_<data>_<size>px_<epochs>ep")
    harness.add_model_options(p, num_workers=0)
    return p


def diagnostics_args(p: argparse.ArgumentParser, script: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check ``argv``; default ``--out-dir`` from the data config, size and epochs; record the command."""
    args = p.parse_args(argv)
    harness.check_model_options(p, args)
    args.root = None
    name = f"{args.data.stem.removeprefix('unified_')}_{args.image_size[0]}px_{args.epochs}ep"
    args.out_dir = args.out_dir or Path(__file__).parent / "results" / f"{script}_{name}"
    args.command = report.command_line(script, argv)
    return args


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The shared model options, the unified data config and the output folder."""
    return diagnostics_args(diagnostics_parser(__doc__, "hgad_diagnostics"), "hgad_diagnostics", argv)


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Image AUROC of raw scores, as a rank statistic (any score range); NaN with a single label."""
    from anomalib_nfplus.metrics import rank_auroc

    return rank_auroc(torch.as_tensor(scores, dtype=torch.float64), torch.as_tensor(labels))


def saturation(scores: np.ndarray) -> dict[str, float]:
    """How many images share the top score to float32 resolution, and how many distinct scores there are."""
    top = float(scores.max())
    at_top = np.abs(scores - top) <= 4 * np.finfo(np.float32).eps * max(abs(top), 1.0)
    return {"at_top_score": int(at_top.sum()), "distinct_scores": len(np.unique(scores.astype(np.float32)))}


@torch.no_grad()
def collect(model: Any, datamodule: Any) -> dict[str, Any]:
    """Per test image: category, label, the five scores and the log-likelihood summary; per level: confusions."""
    from anomalib_nfplus.models.hgad.anomaly_map import level_maps

    hgad = model.model.eval()
    priors, _ = hgad.require_prior()
    n_classes = priors[0].n_classes
    confusion = [np.zeros((n_classes, n_classes), dtype=np.int64) for _ in priors]
    rows: dict[str, list[Any]] = defaultdict(list)
    for batch in datamodule.test_dataloader():
        images = model.pre_processor.transform(batch.image) if model.pre_processor else batch.image
        classes, labels = batch.class_index.long(), batch.gt_label.long()
        levels = hgad.latents(images)
        for name, value in _image_scores(hgad, levels, classes, (images.shape[-2], images.shape[-1])).items():
            rows[name].extend(value.tolist())
        mean_log_p, min_log_p = torch.zeros(len(images)), torch.full((len(images),), math.inf)
        for level, (prior, (z, log_det)) in enumerate(zip(priors, levels, strict=True)):
            batch_size, height, width, dim = z.shape
            flat = z.reshape(-1, dim)
            log_p, _ = level_maps(prior, flat, log_det.reshape(-1), None, height * width)
            log_p = log_p.view(batch_size, -1)
            mean_log_p += log_p.mean(dim=1) / len(priors)
            min_log_p = torch.minimum(min_log_p, log_p.min(dim=1).values)
            predicted = prior.class_log_posterior(flat, include_prior=False).argmax(dim=1).view(batch_size, -1)
            for image in torch.nonzero(labels == 0).flatten().tolist():
                counts = torch.bincount(predicted[image], minlength=n_classes).numpy()
                confusion[level][int(classes[image])] += counts
        rows["category"].extend(classes.tolist())
        rows["label"].extend(labels.tolist())
        rows["mean_log_p"].extend(mean_log_p.tolist())
        rows["min_log_p"].extend(min_log_p.tolist())
    return {"rows": {k: np.asarray(v) for k, v in rows.items()}, "confusion": confusion}


def _image_scores(
    hgad: Any, levels: list[tuple[torch.Tensor, torch.Tensor]], classes: torch.Tensor, size: tuple[int, int]
) -> dict[str, torch.Tensor]:
    """The model's image score in each scoring setting, and the entropy alone, from one set of latents."""
    from anomalib_nfplus.models.components import image_score
    from anomalib_nfplus.models.hgad.anomaly_map import level_maps

    priors, statistics = hgad.require_prior()
    use_entropy = hgad.anomaly_map.use_entropy
    scores = {}
    try:
        for name, labels, entropy in (
            ("label_free", None, True),
            ("class_conditional", classes, True),
            ("label_free_no_entropy", None, False),
            ("class_conditional_no_entropy", classes, False),
        ):
            hgad.anomaly_map.use_entropy = entropy
            anomaly_map = hgad.anomaly_map(levels, priors, statistics, labels, size)
            scores[name] = image_score(anomaly_map, hgad.top_k).flatten()
    finally:
        hgad.anomaly_map.use_entropy = use_entropy
    entropy_sum = torch.zeros(len(classes))
    for prior, (z, log_det) in zip(priors, levels, strict=True):
        _, neg_entropy = level_maps(prior, z.reshape(-1, z.shape[-1]), log_det.reshape(-1), None, 1)
        entropy_sum += (-neg_entropy).view(len(classes), -1).max(dim=1).values
    scores["entropy_only"] = entropy_sum
    return scores


def summarise(collected: dict[str, Any], names: Sequence[str], losses: Sequence[float]) -> dict[str, Any]:
    """AUROCs per category and score, saturation, class-posterior accuracy per level, the loss per epoch."""
    rows = collected["rows"]
    per_category: dict[str, Any] = {}
    for index, name in enumerate(names):
        mask = rows["category"] == index
        labels = rows["label"][mask]
        per_category[name] = {
            "test_images": int(mask.sum()),
            **{f"image_AUROC_{score}": round(auroc(rows[score][mask], labels), 4) for score in SCORES},
            **{f"{key}_label_free": value for key, value in saturation(rows["label_free"][mask]).items()},
            "mean_log_p_normal": round(float(rows["mean_log_p"][mask & (rows["label"] == 0)].mean()), 3),
            "mean_log_p_anomalous": round(float(rows["mean_log_p"][mask & (rows["label"] == 1)].mean()), 3),
        }
    mean = {
        f"image_AUROC_{score}": round(float(np.nanmean([v[f"image_AUROC_{score}"] for v in per_category.values()])), 4)
        for score in SCORES
    }
    accuracy = [round(float(np.trace(c) / max(c.sum(), 1)), 4) for c in collected["confusion"]]
    return {
        "per_category": per_category,
        "mean": mean,
        "class_posterior_accuracy_per_level": accuracy,
        "train_loss_per_epoch": [round(x, 4) for x in losses],
    }


def plot(collected: dict[str, Any], names: Sequence[str], out_dir: Path) -> None:
    """Write the three PNGs described in the module docstring."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    rows = collected["rows"]
    for key, file_name, title in (
        ("label_free", "scores.png", "label-free image score"),
        ("mean_log_p", "likelihood.png", "mean log-likelihood per dimension (nats)"),
    ):
        fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), squeeze=False)
        for index, name in enumerate(names):
            mask = rows["category"] == index
            for label, colour in ((0, "tab:green"), (1, "tab:red")):
                values = rows[key][mask & (rows["label"] == label)]
                axes[0, index].hist(values, bins=30, alpha=0.6, color=colour, label="anomalous" if label else "normal")
            axes[0, index].set_title(name)
            axes[0, index].set_xlabel(title)
        axes[0, 0].legend()
        fig.tight_layout()
        fig.savefig(out_dir / file_name, dpi=100)
        plt.close(fig)
    confusion = collected["confusion"]
    fig, axes = plt.subplots(1, len(confusion), figsize=(4 * len(confusion), 3.6), squeeze=False)
    for level, matrix in enumerate(confusion):
        shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        axes[0, level].imshow(shares, vmin=0, vmax=1, cmap="viridis")
        axes[0, level].set_title(f"level {level}: p(y | z) argmax")
        axes[0, level].set_xticks(range(len(names)), names, rotation=45, ha="right")
        axes[0, level].set_yticks(range(len(names)), names)
    fig.tight_layout()
    fig.savefig(out_dir / "class_posterior.png", dpi=100)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train unified HGAD, collect, summarise, plot."""
    from lightning.pytorch import seed_everything

    args = parse_args(argv)
    seed_everything(args.seed, workers=True)
    datamodule = make_unified(args)
    datamodule.setup()
    spec = ModelSpec(args.backbone, tuple(args.layers), args.image_size, args.weights)
    model = build_model("HGAD", spec, harness.init_args_for("HGAD", args.init_args))
    history = LossHistory()
    with tempfile.TemporaryDirectory(prefix="nfplus_hgad_diag_") as tmp:
        timing = harness.fit_and_time(
            model, datamodule, epochs=args.epochs, root_dir=Path(tmp), accelerator=args.accelerator, callbacks=[history]
        )
    collected = collect(model, datamodule)
    summary = summarise(collected, datamodule.class_names, history.losses)
    summary["train_s"] = round(timing.train_s, 1)
    summary["command"], summary["commit"], summary["date"] = args.command, report.commit(), report.now()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "diagnostics.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(collected, datamodule.class_names, args.out_dir)
    print(json.dumps(summary["mean"]), summary["class_posterior_accuracy_per_level"])
    return summary


if __name__ == "__main__":
    main()
