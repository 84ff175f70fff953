# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""rank_share: every process scores its own share of the training images for the statistics."""

from torch.utils.data import DataLoader

from anomalib_nfplus.models.components.host.distributed import rank_share


def test_statistics_shard_of_a_loader_covers_every_sample_once():
    loader = DataLoader(list(range(11)), batch_size=3, shuffle=True)
    shares = [[int(i) for batch in rank_share(loader, rank, 2) for i in batch] for rank in range(2)]
    assert sorted(shares[0] + shares[1]) == list(range(11))
    assert shares[0] == list(range(0, 11, 2))  # dataset order: the same on every process, whatever the shuffle
    batches = [[1, 2], [3], [4, 5], [6]]
    assert [list(rank_share(batches, rank, 2)) for rank in range(2)] == [[[1, 2], [4, 5]], [[3], [6]]]
    assert rank_share(loader, 0, 1) is loader
