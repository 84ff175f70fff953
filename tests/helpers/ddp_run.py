# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Train and test the plugin's models in one or several CPU processes and write what they did as JSON.

Run as a script (Lightning's plain ``ddp`` re-launches ``sys.argv`` for the other ranks, so it cannot run inside
pytest's process); ``tests/integration/test_ddp.py`` runs it and compares the processes' records.

``--phase fit`` (``--devices 2``: ``strategy="ddp"``): each model is fitted for one epoch, saved, then tested in the
same processes; a last CflowAD run meets a NaN loss on rank 1 only. ``--phase reference`` (one process): each
checkpoint of the ``fit`` phase is loaded, its training statistics are collected again and it is tested, so both
phases score the *same weights* and their statistics, scores and metrics must agree.

Data (``--data``): ``stripes`` (MVTec layout, with masks) and ``dots`` (read by ``Folder`` without masks) as one
``Unified`` datamodule. DifferNet and HGAD use the datamodule; CflowAD gets its loaders explicitly (the statistics
then come from the trainer's distributed training loader rather than from a datamodule).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from anomalib.data import Folder, MVTecAD
from anomalib.engine import Engine
from lightning.pytorch import Callback

from anomalib_nfplus.backbones import offline_weights
from anomalib_nfplus.batch import class_index_of
from anomalib_nfplus.callbacks import PerCategoryMetrics
from anomalib_nfplus.data.synthetic import CATEGORY_DEFECTS
from anomalib_nfplus.data.unified import Unified
from anomalib_nfplus.models.cflow_ad import CflowAD
from anomalib_nfplus.models.components import NonFiniteLossError
from anomalib_nfplus.models.differnet import DifferNet
from anomalib_nfplus.models.hgad import HGAD

SIZE = 64
MODELS = ("DifferNet", "CflowAD", "HGAD")
NAN_STEP = 2  # global step from which rank 1's loss is NaN in the last run


def build(name: str) -> Any:
    """A tiny model; CflowAD steps per level and HGAD has more position chunks than its coarse level positions."""
    common = {
        "backbone": "tf_efficientnet_lite0",
        "backbone_weights": str(offline_weights("tf_efficientnet_lite0")),
        "visualizer": False,
        "image_size": SIZE,
    }
    if name == "DifferNet":
        return DifferNet(
            layers=["blocks.2"], coupling_blocks=2, hidden=32, depth=1, n_test_transforms=4, n_train_transforms=2,
            blur_sigma=1.0, **common,
        )  # fmt: skip
    if name == "CflowAD":
        return CflowAD(
            layers=["blocks.2", "blocks.4", "blocks.6"], pre_trained=False, coupling_blocks=2, condition_dim=32,
            reflect_padding=False, per_level_steps=True, fiber_batch_size=64, **common,
        )  # fmt: skip
    # 4 images x (4x4 + 2x2) positions / 16 = 5 chunks: the 2x2 level sits out one; the intra stage starts at 8 %.
    return HGAD(
        layers=["blocks.4"], pre_trained=False, coupling_blocks=2, condition_dim=32, n_intra=3,
        pyramid_scales=(1.0, 0.5), fiber_batch_size=16, **common,
    )  # fmt: skip


def datamodule(root: Path) -> Unified:
    """``stripes`` with masks, ``dots`` without (Folder): evaluation batches must never mix them."""
    dots = Folder(
        name="dots", root=root / "dots", normal_dir="train/good", normal_test_dir="test/good",
        abnormal_dir=[f"test/{defect}" for defect in CATEGORY_DEFECTS["dots"]], val_split_mode="same_as_test", seed=0,
    )  # fmt: skip
    data = Unified(
        datamodules=[MVTecAD(root=root, category="stripes", seed=0), dots],
        image_size=SIZE, train_batch_size=4, eval_batch_size=4, num_workers=0, seed=0,
    )  # fmt: skip
    data.setup()
    return data


class Recorder(Callback):
    """Keeps what the processes did: DDP's buffer broadcast, test scores per image, category of every test batch."""

    def __init__(self) -> None:
        self.broadcast_buffers: bool | None = None
        self.outputs: list[Any] = []

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """The DDP wrapper exists now."""
        del pl_module
        self.broadcast_buffers = getattr(trainer.strategy.model, "broadcast_buffers", None)

    def on_test_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, *args: Any, **kwargs: Any) -> None:
        """Read at the end of the test, when every callback has post-processed the batch."""
        del trainer, pl_module, args, kwargs
        self.outputs.append(outputs)

    def test_record(self) -> dict[str, Any]:
        """Per image path: score and map statistics; per batch: the class indices and paths."""
        scores, batches = {}, []
        for batch in self.outputs:
            classes = class_index_of(batch)
            batches.append(
                {"classes": classes.tolist(), "paths": list(batch.image_path), "masks": batch.gt_mask is not None}
            )
            for index, path in enumerate(batch.image_path):
                anomaly_map = batch.anomaly_map[index].double()
                scores[path] = [float(batch.pred_score[index]), float(anomaly_map.mean()), float(anomaly_map.max())]
        self.outputs = []
        return {"scores": scores, "batches": batches}


def statistics_of(model: Any) -> dict[str, list[float]] | None:
    """The training-statistics buffers, or None for a model without them (DifferNet)."""
    stats = getattr(model.model, "statistics", None)
    if stats is None:
        return None
    return {name: buffer.double().tolist() for name, buffer in stats.state_dict().items() if name != "fitted"}


def count_scored(model: Any, counter: dict[str, int]) -> None:
    """Count the training images this process scores for the statistics."""
    update = model.model.update_statistics

    def counting(batch: Any, *args: Any, **kwargs: Any) -> Any:
        counter["images"] += int(batch.image.shape[0])
        return update(batch, *args, **kwargs)

    model.model.update_statistics = counting


def engine_for(out: Path, devices: int, callbacks: list[Callback]) -> Engine:
    return Engine(
        default_root_dir=out, max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", callbacks=callbacks,
    )  # fmt: skip


def test_model(engine: Engine, model: Any, name: str, data: Unified, recorder: Recorder) -> dict[str, Any]:
    if name == "CflowAD":
        (metrics,) = engine.test(model, dataloaders=data.test_dataloader(), verbose=False)
    else:
        (metrics,) = engine.test(model, datamodule=data, verbose=False)
    category = next(c for c in engine.trainer.callbacks if isinstance(c, PerCategoryMetrics))
    return {"metrics": {k: float(v) for k, v in metrics.items()}, "categories": dict(category.results),
            **recorder.test_record()}  # fmt: skip


def fit_phase(root: Path, out: Path, devices: int) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for name in MODELS:
        torch.manual_seed(0)
        data, model, recorder, counter = datamodule(root), build(name), Recorder(), {"images": 0}
        if name != "DifferNet":
            count_scored(model, counter)
        callbacks = [recorder, PerCategoryMetrics(class_names=data.class_names)]
        engine = engine_for(out / name, devices, callbacks)
        if name == "CflowAD":  # explicit loaders: Lightning makes the training loader distributed
            engine.fit(model, train_dataloaders=data.train_dataloader(), val_dataloaders=data.val_dataloader())
        else:
            engine.fit(model, datamodule=data)
        engine.trainer.save_checkpoint(out / f"{name}.ckpt")
        fitted = {"statistics": statistics_of(model), "scored_images": counter["images"],
                  "broadcast_buffers": recorder.broadcast_buffers}  # fmt: skip
        record[name] = {**fitted, **test_model(engine, model, name, data, recorder)}
    return record


def nan_phase(root: Path, out: Path, devices: int) -> dict[str, Any]:
    """CflowAD whose loss turns NaN on rank 1 from global step ``NAN_STEP``: every rank must stop at once."""
    torch.manual_seed(0)
    data, model = datamodule(root), build("CflowAD")  # six steps per batch
    loss, injected = model.loss.forward, {}

    def forward(log_probs: list[torch.Tensor]) -> torch.Tensor:
        value = loss(log_probs)
        if model.global_rank == devices - 1 and model.trainer.global_step >= NAN_STEP:
            injected.setdefault("time", time.time())
            return value * float("nan")
        return value

    model.loss.forward = forward
    engine = engine_for(out / "nan", devices, [])
    started = time.time()
    try:
        engine.fit(model, train_dataloaders=data.train_dataloader())
    except NonFiniteLossError as error:
        return {"error": str(error), "stopped": time.time(), "injected": injected.get("time"), "started": started}
    return {"error": None, "stopped": time.time(), "injected": injected.get("time"), "started": started}


def reference_phase(root: Path, fitted: Path) -> dict[str, Any]:
    """One process: the fit phase's checkpoints, statistics collected again, tested."""
    record: dict[str, Any] = {}
    classes = {"DifferNet": DifferNet, "CflowAD": CflowAD, "HGAD": HGAD}
    for name in MODELS:
        data = datamodule(root)
        model = classes[name].load_from_checkpoint(fitted / f"{name}.ckpt", map_location="cpu")
        saved = statistics_of(model)
        if saved is not None:
            model.collect_training_statistics(data.train_dataloader())
        recorder = Recorder()
        engine = engine_for(
            fitted / "reference" / name, 1, [recorder, PerCategoryMetrics(class_names=data.class_names)]
        )
        record[name] = {"statistics": statistics_of(model), "saved_statistics": saved,
                        **test_model(engine, model, name, data, recorder)}  # fmt: skip
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--phase", choices=["fit", "reference"], default="fit")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rank = int(os.environ.get("LOCAL_RANK", 0))
    path = args.out / f"{args.phase}_rank{rank}.json"
    record: dict[str, Any] = {"rank": rank, "pid": os.getpid()}
    if args.phase == "reference":
        record["models"] = reference_phase(args.data, args.out)
        path.write_text(json.dumps(record))
        return
    record["models"] = fit_phase(args.data, args.out, args.devices)
    path.write_text(json.dumps(record))  # kept even if the NaN run below hangs
    record["nan"] = nan_phase(args.data, args.out, args.devices)
    path.write_text(json.dumps(record))


if __name__ == "__main__":
    sys.exit(main())
