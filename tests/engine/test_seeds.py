"""`epoch_seed`: the per-(seed, epoch, rank) seed that the training core and the data stream both derive."""

from __future__ import annotations

from ssl_tune.seeds import epoch_seed


def test_epoch_seeds_are_the_same_numbers_across_releases():
    # a resume replays the epoch's randomness from these values: changing them changes every run's data order
    assert epoch_seed(0, 0) == 0
    assert epoch_seed(1, 2, 3) == 1_020_320
    assert epoch_seed(42, 7, rank=1) == 42_070_276
    assert epoch_seed(2**62, 1) == 4_611_686_018_427_897_912  # below 2**63 - 1: a torch manual_seed
    assert len({epoch_seed(0, e, r) for e in range(100) for r in range(8)}) == 800
