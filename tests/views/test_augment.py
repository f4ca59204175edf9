"""The batched GPU-style augmentations: per-sample randomness, and each op against torchvision."""

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from ssl_tune.views import AugmentConfig, ViewGenerator, asymmetric_views, augment_batch, multi_crop, ops, two_views


def images(n=6, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    # smooth-ish images so that interpolation differences stay small
    base = torch.rand(n, 3, size // 4, size // 4, generator=g)
    return torch.nn.functional.interpolate(base, size=size, mode="bilinear", align_corners=False)


def test_crop_boxes_are_per_sample_and_inside_the_image():
    g = torch.Generator().manual_seed(0)
    boxes = ops.sample_crop_boxes(512, 32, 40, (0.08, 1.0), generator=g)
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 32).all() and (left + w <= 40).all()
    assert (h >= 1).all() and (w >= 1).all()
    assert len({tuple(b.tolist()) for b in boxes}) > 400  # different boxes across the batch
    area = h * w / (32 * 40)
    assert area.min() < 0.2 and area.max() > 0.8


def test_resized_crop_matches_torchvision_crop_box():
    x = images()
    boxes = torch.tensor(
        [[0, 0, 32, 32], [4, 6, 20, 24], [10, 3, 16, 16], [0, 16, 32, 16], [5, 5, 8, 10], [12, 1, 20, 30]],
        dtype=torch.float32,
    )
    out = ops.resized_crop(x, boxes, 32)
    for i, (t, le, h, w) in enumerate(boxes.int().tolist()):
        ref = TF.resized_crop(x[i], t, le, h, w, [32, 32], antialias=False)
        # identical inside; bilinear taps at the crop's border may reach one pixel past it
        inner = (out[i] - ref)[:, 2:-2, 2:-2].abs().max()
        assert inner < 1e-5, (i, inner)
        assert (out[i] - ref).abs().mean() < 0.01


def test_flip_matches_torchvision():
    x = images()
    boxes = torch.tensor([[4.0, 6.0, 20.0, 24.0]]).expand(6, 4)
    flip = torch.tensor([True, False, True, False, True, True])
    out = ops.resized_crop(x, boxes, 32, flip)
    plain = ops.resized_crop(x, boxes, 32)
    for i in range(6):
        expected = TF.horizontal_flip(plain[i]) if flip[i] else plain[i]
        torch.testing.assert_close(out[i], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("ours", "theirs", "factors"),
    [
        (ops.adjust_brightness, TF.adjust_brightness, [0.6, 1.0, 1.4, 0.7, 1.2, 0.9]),
        (ops.adjust_contrast, TF.adjust_contrast, [0.6, 1.0, 1.4, 0.7, 1.2, 0.0]),
        (ops.adjust_saturation, TF.adjust_saturation, [0.6, 1.0, 1.4, 0.0, 1.2, 0.9]),
        (ops.adjust_hue, TF.adjust_hue, [-0.1, 0.0, 0.1, 0.5, -0.5, 0.05]),
    ],
)
def test_colour_jitter_ops_match_torchvision(ours, theirs, factors):
    x = images()
    out = ours(x, torch.tensor(factors))
    for i, f in enumerate(factors):
        torch.testing.assert_close(out[i], theirs(x[i], f), atol=2e-5, rtol=0)


def test_grayscale_and_solarize_match_torchvision():
    x = images()
    gray = ops.grayscale(x)
    for i in range(6):
        torch.testing.assert_close(gray[i], TF.rgb_to_grayscale(x[i]), atol=1e-6, rtol=0)
    apply = torch.tensor([True, False] * 3)
    sol = ops.solarize(x, apply)
    for i in range(6):
        torch.testing.assert_close(sol[i], TF.solarize(x[i], 0.5) if apply[i] else x[i])


def test_blur_close_to_torchvision():
    x = images()
    sigma = torch.tensor([0.1, 0.5, 1.0, 1.5, 2.0, 0.8])
    out = ops.gaussian_blur(x, sigma, 5)
    for i in range(6):
        ref = TF.gaussian_blur(x[i], [5, 5], [float(sigma[i])] * 2)
        assert (out[i] - ref).abs().max() < 1e-5


def test_views_differ_across_samples_of_the_same_image():
    same = images(1).expand(64, 3, 32, 32).contiguous()
    spec = two_views(AugmentConfig(blur_prob=0.5, solarize_prob=0.2), 32)[0]
    out = augment_batch(same, spec, torch.Generator().manual_seed(0))
    flat = out.flatten(1)
    distinct = {tuple(torch.round(r * 1000).int().tolist()[:64]) for r in flat}
    assert len(distinct) == 64
    # colour statistics differ too, not only geometry
    assert out.mean(dim=(1, 2, 3)).std() > 0.01


def test_output_ranges_dtypes_and_shapes():
    x = (images(8) * 255).to(torch.uint8)
    aug = AugmentConfig(num_local_crops=4, blur_prob=0.5, solarize_prob=0.5)
    for specs, count in [(two_views(aug, 32), 2), (asymmetric_views(aug, 32), 2), (multi_crop(aug, 32), 6)]:
        gen = ViewGenerator(specs, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        views = gen(x, torch.Generator().manual_seed(0))
        assert len(views) == count == gen.num_views
        for v in views:
            assert v.dtype == torch.float32 and v.shape[0] == 8
            assert v.min() >= 0.0 and v.max() <= 1.0
        if count == 6:
            assert views[0].shape[-1] == 32 and views[2].shape[-1] == 18  # solo-learn's cifar-multicrop size


def test_views_made_in_one_pass_differ_for_every_image():
    # the `count` views of a spec come from one augment_batch over a repeated batch: each copy draws its own
    x = (images(8) * 255).to(torch.uint8)
    aug = AugmentConfig(num_local_crops=3)
    views = ViewGenerator(multi_crop(aug, 32), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))(x, torch.Generator().manual_seed(0))
    for a, b in [(0, 1), (2, 3), (2, 4), (3, 4)]:
        for i in range(8):
            assert not torch.allclose(views[a][i], views[b][i]), (a, b, i)


def test_asymmetric_pair_differs_in_solarize():
    a, b = asymmetric_views(AugmentConfig(), 32)
    assert a.solarize_prob == 0.0 and b.solarize_prob == 0.2
    big1, big2 = asymmetric_views(AugmentConfig(), 96)
    assert big1.blur_prob == 1.0 and big2.blur_prob == 0.1
