from __future__ import annotations

import pytest
import torch

from ssl_tune.data.splits import ValidationSplit, validation_split


def imbalanced_labels(seed: int = 0) -> torch.Tensor:
    """10,000 labels in 5 classes of 4000, 3000, 1500, 1000 and 500 images, shuffled; classes are 3..7."""
    counts = [4000, 3000, 1500, 1000, 500]
    labels = torch.cat([torch.full((count,), 3 + c) for c, count in enumerate(counts)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


def assert_partition(split: ValidationSplit, n: int) -> None:
    for indices in (split.train_indices, split.val_indices):
        assert indices.dtype == torch.int64
        assert indices.device.type == "cpu"
        assert torch.equal(indices, indices.sort().values)
    assert not set(split.train_indices.tolist()) & set(split.val_indices.tolist())
    assert torch.equal(torch.cat([split.train_indices, split.val_indices]).sort().values, torch.arange(n))


@pytest.mark.parametrize("with_labels", [True, False])
def test_disjoint_covering_sorted(with_labels):
    labels = imbalanced_labels()
    split = validation_split(labels if with_labels else None, len(labels), fraction=0.2, cap=10_000)
    assert_partition(split, len(labels))
    assert len(split.val_indices) == 2000


@pytest.mark.parametrize("with_labels", [True, False])
def test_same_inputs_same_split_other_seed_other_split(with_labels):
    labels = imbalanced_labels()
    given = labels if with_labels else None
    torch.manual_seed(123)  # the global RNG must play no part
    first = validation_split(given, len(labels), seed=7)
    torch.manual_seed(456)
    torch.rand(10)
    again = validation_split(given, len(labels), seed=7)
    other = validation_split(given, len(labels), seed=8)
    assert torch.equal(first.val_indices, again.val_indices)
    assert torch.equal(first.train_indices, again.train_indices)
    assert not torch.equal(first.val_indices, other.val_indices)


def test_stratified_on_imbalanced_labels():
    labels = imbalanced_labels()
    fraction = 0.1
    split = validation_split(labels, len(labels), fraction=fraction)
    assert len(split.val_indices) == 1000
    val_labels = labels[split.val_indices]
    for c in labels.unique().tolist():
        class_count = int((labels == c).sum())
        assert abs(int((val_labels == c).sum()) - fraction * class_count) <= 1


def test_largest_remainder_keeps_the_total_exact():
    # 3 classes of 7, 7 and 6 images, 5 held out: quotas 1.75, 1.75, 1.5 -> 2, 2, 1
    labels = torch.tensor([0] * 7 + [1] * 7 + [2] * 6)
    split = validation_split(labels, len(labels), size=5)
    assert_partition(split, len(labels))
    assert torch.bincount(labels[split.val_indices], minlength=3).tolist() == [2, 2, 1]


def test_within_class_choice_is_not_the_data_order():
    labels = torch.zeros(1000, dtype=torch.int64)
    val = validation_split(labels, 1000, fraction=0.1).val_indices
    assert not torch.equal(val, torch.arange(100))
    assert val.max() > 500  # spread over the class, not its first rows


def test_cap_applies():
    labels = torch.arange(60_000) % 10
    split = validation_split(labels, 60_000, fraction=0.1)
    assert len(split.val_indices) == 5000
    assert torch.bincount(labels[split.val_indices]).tolist() == [500] * 10
    assert len(validation_split(None, 60_000, fraction=0.1, cap=8000).val_indices) == 6000


def test_size_overrides_fraction_and_cap():
    labels = torch.arange(60_000) % 10
    split = validation_split(labels, 60_000, fraction=0.1, size=12_345)
    assert_partition(split, 60_000)
    assert len(split.val_indices) == 12_345


def test_holds_out_at_least_one():
    split = validation_split(None, 3, fraction=0.1)
    assert len(split.val_indices) == 1
    assert_partition(split, 3)


def test_unlabeled_is_a_uniform_choice():
    split = validation_split(None, 20_000, fraction=0.25, cap=20_000)
    assert_partition(split, 20_000)
    # each half of the index range gets about half of the 5000 held-out images
    assert abs(int((split.val_indices < 10_000).sum()) - 2500) < 200


def test_labels_on_another_dtype_give_the_same_split():
    labels = imbalanced_labels()
    a = validation_split(labels, len(labels), seed=3)
    b = validation_split(labels.to(torch.int32), len(labels), seed=3)
    assert torch.equal(a.val_indices, b.val_indices)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 0.51, 1.0])
def test_bad_fraction_raises(fraction):
    with pytest.raises(ValueError, match="fraction"):
        validation_split(None, 100, fraction=fraction)


@pytest.mark.parametrize("size", [0, -1, 100, 101])
def test_bad_size_raises(size):
    with pytest.raises(ValueError, match="size"):
        validation_split(None, 100, size=size)


def test_nothing_left_to_train_on_raises():
    with pytest.raises(ValueError, match="none to train on"):
        validation_split(None, 1, fraction=0.5)


def test_labels_of_the_wrong_length_raise():
    with pytest.raises(ValueError, match="labels"):
        validation_split(torch.zeros(10, dtype=torch.int64), 11)
