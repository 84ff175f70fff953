# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Unified multi-class datamodule: batches with class_index, common size/RGB, category-pure eval, bad input."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from anomalib.data import Folder, ImageBatch, ImageItem, MVTecAD
from torch.utils.data import SequentialSampler

from anomalib_nfplus.batch import class_index_of, class_labels
from anomalib_nfplus.data.synthetic import CATEGORY_DEFECTS, make_mvtec_like
from anomalib_nfplus.data.unified import Unified, UnifiedImageBatch, UnifiedImageItem, class_names_of
from anomalib_nfplus.data.unified_dataset import CategoryBatchSampler


@pytest.fixture(scope="module")
def mixed_root(tmp_path_factory) -> Path:
    """stripes: RGB 40x56 with masks; dots: grayscale 48x32 (loaded without masks through Folder)."""
    root = tmp_path_factory.mktemp("unified")
    make_mvtec_like(root, ["stripes"], n_train=5, n_test_good=3, n_test_bad=1, image_size=(40, 56))
    make_mvtec_like(root, ["dots"], n_train=4, n_test_good=2, n_test_bad=1, image_size=(48, 32), channels=1)
    return root


def _dots_folder(root: Path, **kwargs) -> Folder:
    abnormal = [f"test/{defect}" for defect in CATEGORY_DEFECTS["dots"]]
    return Folder(
        name="dots", root=root / "dots", normal_dir="train/good", normal_test_dir="test/good",
        abnormal_dir=abnormal, val_split_mode="same_as_test", **kwargs,
    )  # fmt: skip


@pytest.fixture(scope="module")
def unified(mixed_root) -> Unified:
    datamodule = Unified(
        datamodules=[MVTecAD(root=mixed_root, category="stripes"), _dots_folder(mixed_root)],
        image_size=(32, 48),
        train_batch_size=4,
        eval_batch_size=2,
        num_workers=0,
    )
    datamodule.setup()
    return datamodule


def _item(index: int, mask: bool = True, label: int = 0) -> UnifiedImageItem:
    return UnifiedImageItem(
        image=torch.rand(3, 8, 8),
        gt_label=torch.tensor(label),
        gt_mask=torch.zeros(8, 8, dtype=torch.bool) if mask else None,
        image_path=f"img{index}.png",
        class_index=index,
    )


# --- batches -------------------------------------------------------------------------------------------------


def test_batch_is_an_anomalib_batch_with_class_index():
    batch = UnifiedImageBatch.collate([_item(1), _item(0, label=1)])
    assert isinstance(batch, ImageBatch)
    assert batch.class_index.dtype == torch.int64
    assert batch.class_index.tolist() == [1, 0]
    assert class_index_of(batch) is batch.class_index
    items = batch.items
    assert isinstance(items[0], UnifiedImageItem)
    assert isinstance(items[0], ImageItem)
    assert int(items[0].class_index) == 1
    batch.update(pred_score=torch.rand(2))  # anomalib's in-place update keeps the extra field
    assert batch.class_index.tolist() == [1, 0]
    assert batch.to_numpy().class_index.tolist() == [1, 0]


def test_ordinary_batches_have_no_class_index():
    batch = ImageBatch(image=torch.rand(2, 3, 8, 8))
    assert class_index_of(batch) is None
    with pytest.raises(ValueError, match="no class_index"):
        class_labels(batch, 2)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [(0.5, TypeError, "integer"), (-1, ValueError, ">= 0"), ([1], ValueError, "dimension")],
)
def test_item_class_index_is_validated(value, error, match):
    with pytest.raises(error, match=match):
        UnifiedImageItem(image=torch.rand(3, 8, 8), class_index=value)


def test_models_read_the_collated_class_index_checked():
    batch = UnifiedImageBatch.collate([_item(0), _item(2)])
    assert class_labels(batch, 3).tolist() == [0, 2]
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\)"):
        class_labels(batch, 2)


def test_collate_names_a_field_missing_in_some_items():
    with pytest.raises(ValueError, match="gt_mask"):
        UnifiedImageBatch.collate([_item(0), _item(1, mask=False)])


def test_class_names_of_falls_back_to_one_class(mixed_root):
    assert class_names_of(MVTecAD(root=mixed_root, category="stripes")) == ["stripes"]
    assert class_names_of(_dots_folder(mixed_root)) == ["dots"]
    assert class_names_of(SimpleNamespace(class_names=["a", "b"])) == ["a", "b"]


# --- the datamodule ------------------------------------------------------------------------------------------


def test_class_names_follow_the_given_order(unified, mixed_root):
    assert unified.class_names == ["stripes", "dots"]
    assert unified.num_classes == 2
    assert unified.category == "stripes+dots"
    short = Unified(root=mixed_root, categories=["dots", "stripes"])
    assert short.class_names == ["dots", "stripes"]
    assert [type(dm) for dm in short.datamodules] == [MVTecAD, MVTecAD]
    assert Unified(root=mixed_root, categories=["dots"], names=["x"]).class_names == ["x"]


def test_training_batches_mix_categories_at_one_size(unified):
    assert len(unified.train_data) == 5 + 4
    classes = []
    for batch in unified.train_dataloader():
        assert isinstance(batch, UnifiedImageBatch)
        assert batch.image.shape[1:] == (3, 32, 48)  # grayscale made RGB, every source resized
        assert batch.gt_mask.shape[1:] == (32, 48)  # training images are normal: zero masks for both
        assert not batch.gt_mask.any()
        classes += batch.class_index.tolist()
    assert sorted(classes) == [0] * 5 + [1] * 4


def test_evaluation_batches_hold_one_category(unified):
    seen = {0: 0, 1: 0}
    for batch in unified.test_dataloader():
        classes = set(batch.class_index.tolist())
        assert len(classes) == 1
        (index,) = classes
        seen[index] += len(batch)
        assert batch.image.shape[1:] == (3, 32, 48)
        if index == 0:  # MVTecAD: masks, resized with nearest (still binary)
            assert batch.gt_mask.shape[1:] == (32, 48)
            assert set(batch.gt_mask.unique().tolist()) <= {0, 1}
        else:  # Folder without masks: none, so anomalib's pixel metrics skip these batches
            assert batch.gt_mask is None
    assert seen == {0: 3 + 3, 1: 2 + 3}
    assert len(unified.val_dataloader()) == len(unified.test_dataloader())


def test_batch_sampler_splits_at_category_changes():
    sampler = CategoryBatchSampler(SequentialSampler(range(6)), batch_size=2)
    sampler.groups = [0, 0, 0, 1, 1, 2]
    assert list(sampler) == [[0, 1], [2], [3, 4], [5]]
    assert len(sampler) == 4
    sampler.drop_last = True
    assert list(sampler) == [[0, 1], [3, 4]]


class _Categories:
    """A dataset stand-in: its length and the class of every sample (all the batch sampler reads)."""

    def __init__(self, class_indices: list[int]) -> None:
        self.class_indices = class_indices

    def __len__(self) -> int:
        return len(self.class_indices)


def _per_rank(make_sampler, world: int) -> list[list[list[int]]]:
    return [list(CategoryBatchSampler(make_sampler(rank), batch_size=3)) for rank in range(world)]


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("wrapper", ["DistributedSampler", "DistributedSamplerWrapper", "Unrepeated"])
def test_batch_sampler_under_ddp_deals_one_process_batches(world, wrapper):
    """What Lightning builds under DDP: every sample once over the processes, in the 1-process batches."""
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
    from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSamplerWrapper
    from torch.utils.data import DistributedSampler

    data = _Categories([0] * 7 + [1] * 2 + [2] * 4)
    one_process = list(CategoryBatchSampler(SequentialSampler(data), batch_size=3))
    assert one_process == [[0, 1, 2], [3, 4, 5], [6], [7, 8], [9, 10, 11], [12]]
    kinds = {
        "DistributedSampler": lambda rank: DistributedSampler(data, num_replicas=world, rank=rank, shuffle=False),
        "DistributedSamplerWrapper": lambda rank: DistributedSamplerWrapper(
            SequentialSampler(data), num_replicas=world, rank=rank, shuffle=False
        ),
        "Unrepeated": lambda rank: UnrepeatedDistributedSamplerWrapper(
            SequentialSampler(data), num_replicas=world, rank=rank, shuffle=False
        ),
    }
    shares = _per_rank(kinds[wrapper], world)
    dealt = sorted((batch for share in shares for batch in share), key=lambda batch: batch[0])
    assert dealt == one_process  # same batches, each on exactly one process
    for rank, share in enumerate(shares):
        assert share == one_process[rank::world]
        assert len(CategoryBatchSampler(kinds[wrapper](rank), batch_size=3)) == len(share)


def test_batch_sampler_under_ddp_gives_every_process_a_batch():
    """Fewer batches than processes: batches are split, so no process skips the evaluation's collectives."""
    from torch.utils.data import DistributedSampler

    data = _Categories([0, 0, 0, 0])
    shares = [
        list(CategoryBatchSampler(DistributedSampler(data, num_replicas=3, rank=rank, shuffle=False), batch_size=8))
        for rank in range(3)
    ]
    assert all(shares)
    assert sorted(i for share in shares for batch in share for i in batch) == [0, 1, 2, 3]


def test_batch_sampler_reads_categories_from_the_dataset(unified):
    sampler = CategoryBatchSampler(SequentialSampler(unified.test_data), batch_size=4, drop_last=False)
    assert [len(b) for b in sampler] == [4, 2, 4, 1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "needs the categories"),
        ({"root": "x"}, "needs the categories"),
        ({"root": "x", "categories": "stripes"}, "needs the categories"),
        ({"datamodules": []}, "empty"),
        ({"datamodules": ["stripes"]}, "anomalib image datamodule"),
        ({"root": "x", "categories": ["a"], "image_size": (0, 4)}, "image_size"),
        ({"root": "x", "categories": ["a", "a"]}, "unique"),
        ({"root": "x", "categories": ["mean"]}, "not 'mean'"),
        ({"root": "x", "categories": ["a"], "names": ["b", "c"]}, "one name per datamodule"),
    ],
)
def test_bad_arguments_fail_clearly(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Unified(**kwargs)


def test_both_forms_at_once_are_rejected(mixed_root):
    with pytest.raises(ValueError, match="not both"):
        Unified(datamodules=[MVTecAD(root=mixed_root, category="dots")], root=mixed_root, categories=["dots"])


def test_category_without_training_images_is_named(mixed_root, tmp_path):
    make_mvtec_like(tmp_path, ["gradient"], n_train=1, n_test_good=1, n_test_bad=1, image_size=32)
    for image in (tmp_path / "gradient" / "train" / "good").iterdir():
        image.unlink()
    datamodule = Unified(
        datamodules=[MVTecAD(root=mixed_root, category="stripes"), MVTecAD(root=tmp_path, category="gradient")]
    )
    with pytest.raises(ValueError, match=r"'gradient'.*no training images"):
        datamodule.setup()


def test_missing_category_folder_is_named(mixed_root):
    with pytest.raises(ValueError, match="'nope'"):
        Unified(root=mixed_root, categories=["stripes", "nope"], num_workers=0).setup()


def test_unsupported_channel_counts_fail_clearly(unified):
    with pytest.raises(ValueError, match="4-channel"):
        unified.train_data._rgb(torch.rand(4, 8, 8), 0)
    assert unified.train_data._rgb(torch.rand(1, 8, 8), 1).shape == (3, 8, 8)


def test_setup_leaves_the_trainer_alone(unified):
    """Per-category metrics come from the models' configure_callbacks; the datamodule never edits the trainer."""
    trainer = SimpleNamespace(callbacks=[], model=None)
    unified.trainer = trainer
    try:
        unified.setup()
    finally:
        unified.trainer = None
    assert trainer.callbacks == []
    assert unified.category_metrics  # the flag the models read
