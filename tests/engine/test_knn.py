import math

import torch
import torch.nn.functional as F

from ssl_tune.config import build_config
from ssl_tune.data import load_data
from ssl_tune.engine.knn import extract_features, feature_batch_size, knn_accuracy, knn_predict
from ssl_tune.engine.run import TrainingRun


def direct_weighted_knn(train, train_labels, test, num_classes, k, t):
    """The InstDisc/MoCo formula, one test row at a time, in plain Python."""
    preds = []
    for q in test:
        sims = [(float(q @ x), int(y)) for x, y in zip(train, train_labels, strict=True)]
        sims.sort(key=lambda s: -s[0])
        votes = [0.0] * num_classes
        for s, y in sims[:k]:
            votes[y] += math.exp(s / t)
        preds.append(max(range(num_classes), key=lambda c: votes[c]))
    return preds


def test_matches_direct_formula_on_hand_made_example():
    g = torch.Generator().manual_seed(0)
    train = F.normalize(torch.randn(40, 8, generator=g), dim=1)
    labels = torch.randint(0, 3, (40,), generator=g)
    test = F.normalize(torch.randn(25, 8, generator=g), dim=1)
    for k, t in [(1, 0.1), (5, 0.07), (12, 0.5), (40, 1.0)]:
        expected = direct_weighted_knn(train, labels, test, 3, k, t)
        got = knn_predict(train, labels, test, 3, k=k, temperature=t, chunk_size=7).tolist()
        assert got == expected, (k, t)


def test_weights_matter_not_just_counts():
    # 2 neighbours of class 0 far away, 1 of class 1 very close: a plain majority says 0, exp(s/T) says 1
    train = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]), dim=1)
    test = F.normalize(torch.tensor([[1.0, 0.05]]), dim=1)
    labels = torch.tensor([1, 0, 0])
    assert knn_predict(train, labels, test, 2, k=3, temperature=0.1).item() == 1
    # with a huge temperature every weight is about 1: majority wins
    assert knn_predict(train, labels, test, 2, k=3, temperature=1e4).item() == 0


def test_perfect_accuracy_when_test_equals_train_of_separated_classes():
    centers = torch.eye(10, 32) * 5
    g = torch.Generator().manual_seed(1)
    x = centers.repeat_interleave(30, dim=0) + 0.1 * torch.randn(300, 32, generator=g)
    labels = torch.arange(10).repeat_interleave(30)
    feats = F.normalize(x, dim=1)
    assert knn_accuracy(feats, labels, feats, labels, 10, k=20, temperature=0.1) == 1.0


def test_k_larger_than_bank_is_clamped():
    feats = F.normalize(torch.randn(5, 4), dim=1)
    labels = torch.tensor([0, 1, 0, 1, 0])
    assert knn_predict(feats, labels, feats, 2, k=200).shape == (5,)


def test_features_are_normalised_and_mode_restored():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 6), torch.nn.BatchNorm1d(6))
    net.train()
    images = torch.randint(0, 256, (10, 3, 2, 2), dtype=torch.uint8)
    feats = extract_features(net, images, lambda x: x.float() / 255, batch_size=3)
    assert feats.shape == (10, 6)
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(10))
    assert net.training


def test_cpu_feature_chunks_are_bounded_in_pixels_and_give_the_same_features():
    assert feature_batch_size(torch.zeros(1, 3, 32, 32)) == 512  # small images: the GPU's chunk
    assert feature_batch_size(torch.zeros(1, 3, 160, 160)) == 40  # 64 images at 128 px, in pixels
    assert feature_batch_size(torch.zeros(1, 3, 2048, 2048)) == 1
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 96 * 96, 4))
    images = torch.randint(0, 256, (300, 3, 96, 96), dtype=torch.uint8)
    chunks = []
    prepare = lambda x: chunks.append(len(x)) or x.float() / 255  # noqa: E731
    by_default = extract_features(net, images, prepare)
    assert chunks == [113, 113, 74]
    torch.testing.assert_close(by_default, extract_features(net, images, prepare, batch_size=300))


def test_run_uses_the_first_knn_bank_subset_train_images_as_its_bank():
    data = load_data("synthetic", image_size=16, train_subset=300, test_subset=60)
    layer = {"batch_size": 32, "epochs": 1, "device": "cpu", "image_size": 16, "knn_k": 20}
    full = TrainingRun(build_config(layer), data)
    small = TrainingRun(build_config({**layer, "knn_bank_subset": 50}), data)
    feats = {}
    for name, images in (("train", data.train_images), ("test", data.test_images)):
        feats[name] = extract_features(full.method.backbone, images, full.views.plain)
    for run, n in ((full, 300), (small, 50)):  # the same seed: the same random network
        expected = knn_accuracy(feats["train"][:n], data.train_labels[:n], feats["test"], data.test_labels, 10, 20)
        assert run.knn_accuracy() == expected, n
    assert small.knn_accuracy() != full.knn_accuracy()  # so the bank's size shows in the result
