from __future__ import annotations

import pytest
import torch

from ssl_tune.engine.linear_probe import ProbeResult, linear_probe

Split = tuple[torch.Tensor, torch.Tensor]


def gaussian_classes(sizes: tuple[int, ...], num_classes: int, dim: int, spread: float, seed: int) -> list[Split]:
    """One (features, labels) split per size: unit Gaussian noise around class means of scale `spread`."""
    generator = torch.Generator().manual_seed(seed)
    means = spread * torch.randn(num_classes, dim, generator=generator)
    splits = []
    for size in sizes:
        labels = torch.randint(0, num_classes, (size,), generator=generator)
        splits.append((means[labels] + torch.randn(size, dim, generator=generator), labels))
    return splits


def correlated_noise(size: int, seed: int) -> Split:
    """Two classes told apart only by x1 - x2: x1 = +-1 + 5z and x2 = 5z share one large noise z.

    Unregularised logistic regression learns x1 - x2 and is perfect; a heavily decayed one shrinks to the
    class-mean direction (x1 alone), which sees the class through noise of std 5: about 58% right.
    """
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (size,), generator=generator)
    noise = 5 * torch.randn(size, generator=generator)
    sign = 2 * labels.float() - 1
    return torch.stack([sign + noise, noise], dim=1), labels


def probe(train: Split, val: Split, test: Split, num_classes: int, **kwargs) -> ProbeResult:
    return linear_probe(*train, *val, *test, num_classes, **kwargs)


def test_separable_classes_are_learned():
    train, val, test = gaussian_classes((2000, 500, 2000), num_classes=10, dim=32, spread=3.0, seed=0)
    result = probe(train, val, test, 10)
    assert result.top1 >= 0.95
    assert result.val_top1 >= 0.95
    assert result.top5 >= result.top1
    assert result.weight_decay in (0.0, 1e-6, 1e-5, 1e-4, 1e-3)
    assert result.epochs >= 1
    assert result.seconds > 0


def test_shuffled_labels_give_chance():
    train, val, test = gaussian_classes((2000, 500, 5000), num_classes=10, dim=32, spread=3.0, seed=1)
    generator = torch.Generator().manual_seed(2)
    train, val, test = ((x, torch.randint(0, 10, (len(x),), generator=generator)) for x, _ in (train, val, test))
    result = probe(train, val, test, 10)
    assert abs(result.top1 - 0.1) <= 0.03
    assert abs(result.top5 - 0.5) <= 0.05
    assert result.top5 >= result.top1


def test_weight_decay_matters_on_correlated_noise():
    train, val, test = correlated_noise(2000, seed=3), correlated_noise(1000, seed=4), correlated_noise(2000, seed=5)
    for grid in [(0.0, 10.0), (10.0, 0.0)]:
        result = probe(train, val, test, 2, weight_decays=grid)
        assert result.weight_decay == 0.0
        assert result.val_top1 > 0.95
        assert result.top1 > 0.95
    heavily_decayed = probe(train, val, test, 2, weight_decays=(10.0,))
    assert heavily_decayed.weight_decay == 10.0
    assert heavily_decayed.top1 < 0.75


def test_weight_decay_is_chosen_on_val():
    # the same train and test, but every val label flipped: the unregularised fit, right on all of test, is now
    # wrong on all of val, so a probe that scores on val must take the large weight decay; one that scored on
    # train, or went by the order of the grid, would not
    train, val, test = correlated_noise(2000, seed=3), correlated_noise(1000, seed=4), correlated_noise(2000, seed=5)
    flipped_val = (val[0], 1 - val[1])
    for grid in [(0.0, 10.0), (10.0, 0.0)]:
        result = probe(train, flipped_val, test, 2, weight_decays=grid)
        assert result.weight_decay == 10.0
        assert result.val_top1 > 0.3


def test_deterministic():
    train, val, test = gaussian_classes((1500, 300, 1000), num_classes=10, dim=32, spread=0.4, seed=7)
    first = probe(train, val, test, 10, seed=11)
    again = probe(train, val, test, 10, seed=11)
    assert first.top5 >= first.top1
    assert 0.2 < first.top1 < 0.95  # a problem with errors, so that a change in the fit would show
    keys = ("top1", "top5", "weight_decay", "val_top1", "epochs")
    assert [getattr(first, key) for key in keys] == [getattr(again, key) for key in keys]


def test_standardising_makes_feature_scale_and_offset_irrelevant():
    train, val, test = gaussian_classes((1500, 300, 1000), num_classes=5, dim=16, spread=0.5, seed=8)
    scale = torch.logspace(-3, 3, 16)
    shifted = [(x * scale + 100.0, y) for x, y in (train, val, test)]
    plain, rescaled = probe(train, val, test, 5), probe(*shifted, 5)
    assert abs(plain.top1 - rescaled.top1) <= 0.005


def test_constant_feature_and_other_dtypes():
    train, val, test = gaussian_classes((500, 100, 500), num_classes=3, dim=8, spread=3.0, seed=9)
    train, val, test = ((torch.cat([x, torch.ones(len(x), 1)], dim=1).half(), y.int()) for x, y in (train, val, test))
    result = probe(train, val, test, 3)
    assert result.top1 >= 0.95
    assert result.top5 == 1.0  # top-3 of 3 classes


def test_to_dict():
    result = ProbeResult(top1=0.5, top5=0.9, weight_decay=1e-4, val_top1=0.55, epochs=12, seconds=1.5)
    assert result.to_dict() == {
        "top1": 0.5,
        "top5": 0.9,
        "weight_decay": 1e-4,
        "val_top1": 0.55,
        "epochs": 12,
        "seconds": 1.5,
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_classes": 1}, "at least 2 classes"),
        ({"weight_decays": ()}, "weight_decays"),
        ({"weight_decays": (-1.0,)}, "weight_decays"),
        ({"val_features": torch.zeros(10, 5)}, "val features"),
        ({"test_labels": torch.zeros(3, dtype=torch.int64)}, "test labels"),
        ({"train_labels": torch.full((50,), 4)}, "train labels must lie"),
        ({"train_labels": torch.zeros(50)}, "train labels"),
    ],
)
def test_bad_inputs_raise(change, message):
    generator = torch.Generator().manual_seed(0)
    arguments = {
        "train_features": torch.randn(50, 4, generator=generator),
        "train_labels": torch.randint(0, 3, (50,), generator=generator),
        "val_features": torch.randn(10, 4, generator=generator),
        "val_labels": torch.randint(0, 3, (10,), generator=generator),
        "test_features": torch.randn(10, 4, generator=generator),
        "test_labels": torch.randint(0, 3, (10,), generator=generator),
        "num_classes": 3,
    }
    arguments.update(change)
    num_classes = arguments.pop("num_classes")
    weight_decays = arguments.pop("weight_decays", (0.0,))
    with pytest.raises(ValueError, match=message):
        linear_probe(**arguments, num_classes=num_classes, weight_decays=weight_decays)
