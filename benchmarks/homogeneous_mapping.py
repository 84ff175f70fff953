# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Does a flow trained on a mix of classes lose the likelihood gap between normal and anomalous features?

HGAD's motivation ("homogeneous mapping"): a normalizing flow trained on many classes maps normal and anomalous
features alike to high likelihood, so its loss keeps dropping while detection gets worse. This script trains
CflowAD (one flow per level, no class information) on the first 1, 2, ... categories of a ``Unified`` config
(``--classes``) and, for every category in each run, reads the test images' per-dimension log-likelihoods (the
mean over positions and levels per image). It writes to ``--out-dir``:

- ``homogeneous_mapping.json``: per run (number of classes) the training loss per epoch and, per category, the
  image AUROC of the model's score and of the mean log-likelihood, the mean log-likelihood of normal and of
  anomalous test images and their gap (normal minus anomalous: positive = anomalies are less likely);
- ``homogeneous_mapping.png``: per category, that gap and the image AUROC against the number of classes trained on.

Example:
    python -m benchmarks.homogeneous_mapping --data configs/data/unified_four.yaml --image-size 128 --epochs 1 \
        --classes 1 2 4 --init-args CflowAD '{"lr": 0.001}'
"""

import argparse
import json
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import harness, report
from benchmarks.baselines import ModelSpec, build_model
from benchmarks.hgad_diagnostics import LossHistory, auroc, diagnostics_args, diagnostics_parser
from benchmarks.unified import make_unified

__all__ = ["collect", "main", "parse_args", "summarise"]

MODEL = "CflowAD"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The shared model options, the unified data config, the class counts and the output folder."""
    p = diagnostics_parser(__doc__, "homogeneous_mapping")
    p.add_argument("--classes", type=int, nargs="+", default=[1, 2, 4], help="train on the first N categories")
    return diagnostics_args(p, "homogeneous_mapping", argv)


@torch.no_grad()
def collect(model: Any, datamodule: Any) -> dict[str, np.ndarray]:
    """Per test image: class index, label, the model's image score and the mean per-dimension log-likelihood.

    One backbone and flow pass per batch: the score is computed from the same log-likelihood maps, as ``forward`` does.
    """
    from anomalib_nfplus.models.components import image_score

    cflow = model.model.eval()
    rows: dict[str, list[float]] = defaultdict(list)
    for batch in datamodule.test_dataloader():
        images = model.pre_processor.transform(batch.image) if model.pre_processor else batch.image
        maps = cflow.flows.log_prob_maps(cflow.encode(images))
        anomaly_map = cflow.anomaly_map(maps, cflow.statistics, tuple(images.shape[-2:]))
        log_p = torch.stack([m.flatten(1).mean(dim=1) for m in maps])
        rows["category"].extend(batch.class_index.long().tolist())
        rows["label"].extend(batch.gt_label.long().tolist())
        rows["score"].extend(image_score(anomaly_map, cflow.top_k).flatten().tolist())
        rows["mean_log_p"].extend(log_p.mean(dim=0).tolist())
    return {key: np.asarray(value) for key, value in rows.items()}


def summarise(rows: dict[str, np.ndarray], names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per category: AUROC of the score and of ``-mean log p``, mean log p of normal / anomalous images, their gap."""
    per_category = {}
    for index, name in enumerate(names):
        mask = rows["category"] == index
        labels, log_p = rows["label"][mask], rows["mean_log_p"][mask]
        normal, anomalous = float(log_p[labels == 0].mean()), float(log_p[labels == 1].mean())
        per_category[name] = {
            "image_AUROC": round(auroc(rows["score"][mask], labels), 4),
            "image_AUROC_mean_log_p": round(auroc(-log_p, labels), 4),
            "mean_log_p_normal": round(normal, 4),
            "mean_log_p_anomalous": round(anomalous, 4),
            "gap": round(normal - anomalous, 4),
        }
    return per_category


def run(args: argparse.Namespace, n_classes: int) -> dict[str, Any]:
    """Train on the first ``n_classes`` categories, then read their test sets."""
    from lightning.pytorch import seed_everything

    from anomalib_nfplus.data.unified import Unified

    seed_everything(args.seed, workers=True)
    full = make_unified(args)
    if not 1 <= n_classes <= len(full.datamodules):
        msg = f"--classes {n_classes}: {args.data} has {len(full.datamodules)} categories."
        raise ValueError(msg)
    names = full.class_names[:n_classes]
    datamodule = Unified(
        datamodules=full.datamodules[:n_classes], names=names, image_size=full.image_size,
        train_batch_size=args.batch_size, eval_batch_size=args.batch_size, num_workers=args.num_workers, seed=args.seed,
    )  # fmt: skip
    datamodule.setup()
    model = build_model(MODEL, ModelSpec(args.backbone, tuple(args.layers), args.image_size, args.weights),
                        harness.init_args_for(MODEL, args.init_args))  # fmt: skip
    history = LossHistory()
    with tempfile.TemporaryDirectory(prefix="nfplus_homogeneous_") as tmp:
        timing = harness.fit_and_time(
            model, datamodule, epochs=args.epochs, root_dir=Path(tmp), accelerator=args.accelerator, callbacks=[history]
        )
    return {
        "classes": n_classes,
        "train_loss_per_epoch": [round(x, 4) for x in history.losses],
        "train_s": round(timing.train_s, 1),
        "per_category": summarise(collect(model, datamodule), names),
    }


def plot(runs: Sequence[dict[str, Any]], out_dir: Path) -> None:
    """Gap and image AUROC per category against the number of classes trained on."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    fig, (gap_axis, auroc_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for name in runs[-1]["per_category"]:
        points = [(r["classes"], r["per_category"][name]) for r in runs if name in r["per_category"]]
        counts = [n for n, _ in points]
        gap_axis.plot(counts, [v["gap"] for _, v in points], marker="o", label=name)
        auroc_axis.plot(counts, [v["image_AUROC"] for _, v in points], marker="o", label=name)
    gap_axis.set(xlabel="classes trained on", ylabel="mean log p: normal - anomalous (nats/dim)")
    auroc_axis.set(xlabel="classes trained on", ylabel="image AUROC")
    gap_axis.axhline(0.0, color="grey", linewidth=0.5)
    auroc_axis.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "homogeneous_mapping.png", dpi=100)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """One run per class count, then the JSON and the plot."""
    args = parse_args(argv)
    runs = [run(args, n) for n in args.classes]
    summary = {"model": MODEL, "runs": runs, "command": args.command, "commit": report.commit(), "date": report.now()}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "homogeneous_mapping.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(runs, args.out_dir)
    for r in runs:
        print(r["classes"], r["train_loss_per_epoch"], json.dumps(r["per_category"]))
    return summary


if __name__ == "__main__":
    main()
