"""Each batched op of ssl_tune.views.ops against torchvision.transforms.v2 on single images, and the per-sample
probabilities of `augment_batch`.

tests/views/test_augment.py checks the ops on smooth images with hand-picked parameters; here the images are
noise quantised to uint8 levels (ties between channels, exact 0, 0.5 and 1), the parameters are drawn over the
recipes' full ranges, the crops cover whole outputs (borders included) and non-square images, and the
blur covers the kernel sizes the recipes use.

Tolerances (max abs error, images in [0, 1], float32): 1e-5 for the crop/resize, brightness, contrast,
saturation, grayscale, solarize and blur (same maths, float rounding only); 3e-5 for hue (an RGB -> HSV -> RGB
round trip written differently). Sampling tests have deterministic seeds and bounds of at least 4 sigma.
"""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ssl_tune.views import AugmentConfig, augment_batch, ops, two_views

ATOL = 1e-5
HUE_ATOL = 3e-5


def noise_images(n: int, height: int = 32, width: int = 32, seed: int = 0) -> torch.Tensor:
    """uint8-level noise with some flat grey, black, white and pure-colour pixels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, height, width), generator=g).float() / 255
    x[:, :, 0, :4] = torch.tensor([0.0, 1.0, 0.5, 128 / 255]).view(1, 1, 4)  # greys: all channels tie
    x[:, :, 1, 0] = torch.tensor([1.0, 0.0, 0.0])
    x[:, :, 1, 1] = torch.tensor([0.0, 1.0, 1.0])  # max tie between g and b
    x[:, :, 1, 2] = torch.tensor([1.0, 1.0, 0.0])  # max tie between r and g
    return x


# --- crop boxes ------------------------------------------------------------------------------------


def _ks_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic."""
    grid = torch.cat([a, b]).unique()
    cdf_a = torch.searchsorted(a.sort().values, grid, right=True) / len(a)
    cdf_b = torch.searchsorted(b.sort().values, grid, right=True) / len(b)
    return float((cdf_a - cdf_b).abs().max())


@pytest.mark.parametrize(
    ("height", "width", "scale"), [(32, 32, (0.08, 1.0)), (24, 40, (0.2, 1.0)), (96, 96, (0.14, 1.0))]
)
def test_crop_boxes_have_torchvisions_distribution(height, width, scale):
    n = 4000
    ours = ops.sample_crop_boxes(n, height, width, scale, generator=torch.Generator().manual_seed(1))
    rrc = v2.RandomResizedCrop(height, scale=scale)
    torch.manual_seed(2)
    theirs = []
    for _ in range(n):
        p = rrc.make_params([torch.empty(3, height, width)])
        theirs.append([p["top"], p["left"], p["height"], p["width"]])
    theirs = torch.tensor(theirs, dtype=torch.float32)

    def stats(boxes):
        top, left, h, w = boxes.unbind(1)
        return {
            "area": h * w / (height * width),
            "log_aspect": torch.log(w / h),
            "centre_y": (top + h / 2) / height,
            "centre_x": (left + w / 2) / width,
        }

    # KS critical value at n = m = 4000 and alpha = 1e-4 is about 0.05; the values are integer-rounded
    for key, a in stats(ours).items():
        b = stats(theirs)[key]
        assert _ks_distance(a, b) < 0.05, key
        assert abs(float(a.mean() - b.mean())) < 0.02, key
    # every box is inside the image, at integer pixels
    assert torch.equal(ours, ours.round())
    top, left, h, w = ours.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= height).all() and (left + w <= width).all()


@pytest.mark.parametrize(("height", "width"), [(16, 64), (64, 16)])
def test_crop_box_fallback_is_torchvisions_centre_crop(height, width):
    # no draw fits (the crop would be taller / wider than the image), so both take the fallback
    scale = (0.9, 1.0)
    rrc = v2.RandomResizedCrop(16, scale=scale)
    p = rrc.make_params([torch.empty(3, height, width)])
    expected = torch.tensor([p["top"], p["left"], p["height"], p["width"]], dtype=torch.float32)
    boxes = ops.sample_crop_boxes(64, height, width, scale, generator=torch.Generator().manual_seed(0))
    assert torch.equal(boxes, expected.expand(64, 4))


# --- crop, resize and flip -------------------------------------------------------------------------


@pytest.mark.parametrize(("height", "width", "size"), [(32, 32, 32), (24, 40, 24), (32, 32, 12), (32, 32, 48)])
def test_resized_crop_and_flip_equal_torchvision_on_the_whole_output(height, width, size):
    n = 48
    x = noise_images(n, height, width)
    g = torch.Generator().manual_seed(3)
    boxes = ops.sample_crop_boxes(n, height, width, (0.08, 1.0), generator=g)
    flip = torch.rand(n, generator=g) < 0.5
    out = ops.resized_crop(x, boxes, size, flip)
    assert out.shape == (n, 3, size, size) and out.dtype == x.dtype
    upsampled = 0
    for i, (top, left, h, w) in enumerate(boxes.int().tolist()):
        ref = TF.resized_crop(x[i], top, left, h, w, [size, size], antialias=False)
        ref = TF.horizontal_flip(ref) if flip[i] else ref
        torch.testing.assert_close(out[i], ref, atol=ATOL, rtol=0)
        if h <= size and w <= size:  # upsampled: torchvision's default (antialias=True) is the same
            upsampled += 1
            aa = TF.resized_crop(x[i], top, left, h, w, [size, size])
            aa = TF.horizontal_flip(aa) if flip[i] else aa
            torch.testing.assert_close(out[i], aa, atol=ATOL, rtol=0)
    assert upsampled > 0


# --- colour ----------------------------------------------------------------------------------------

JITTER = AugmentConfig()  # the recipes' strengths: brightness/contrast/saturation 0.4, hue 0.1


def _factors(n: int, strength: float, seed: int) -> torch.Tensor:
    u = torch.rand(n, generator=torch.Generator().manual_seed(seed))
    f = 1 - strength + 2 * strength * u
    f[:3] = torch.tensor([1 - strength, 1.0, 1 + strength])  # both ends and the identity
    return f


@pytest.mark.parametrize(
    ("ours", "theirs", "factors", "atol"),
    [
        (ops.adjust_brightness, TF.adjust_brightness, _factors(32, JITTER.brightness, 0), ATOL),
        (ops.adjust_contrast, TF.adjust_contrast, _factors(32, JITTER.contrast, 1), ATOL),
        (ops.adjust_saturation, TF.adjust_saturation, _factors(32, JITTER.saturation, 2), ATOL),
        (ops.adjust_hue, TF.adjust_hue, _factors(32, JITTER.hue, 3) - 1, HUE_ATOL),
        (ops.adjust_hue, TF.adjust_hue, torch.linspace(-0.5, 0.5, 32), HUE_ATOL),  # the whole hue circle
        (ops.adjust_contrast, TF.adjust_contrast, torch.linspace(0, 2, 32), ATOL),  # beyond the recipes
        (ops.adjust_saturation, TF.adjust_saturation, torch.linspace(0, 2, 32), ATOL),
    ],
)
def test_colour_ops_equal_torchvision_per_sample(ours, theirs, factors, atol):
    x = noise_images(len(factors))
    out = ours(x, factors)
    assert out.shape == x.shape and out.dtype == x.dtype
    for i, f in enumerate(factors.tolist()):
        torch.testing.assert_close(out[i], theirs(x[i], f), atol=atol, rtol=0)


def test_grayscale_equals_torchvision_three_channel_output():
    x = noise_images(8)
    gray = ops.grayscale(x)
    assert gray.shape == (8, 1, 32, 32)
    for i in range(8):
        # augment_batch expands the luma to 3 channels, as RandomGrayscale keeps the channel count
        ref = TF.rgb_to_grayscale(x[i], num_output_channels=3)
        torch.testing.assert_close(gray[i].expand(3, -1, -1), ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_solarize_equals_torchvision_at_the_threshold(threshold):
    x = noise_images(6)
    t = torch.tensor(threshold)
    x[:, :, 2, :3] = torch.stack([t, torch.nextafter(t, torch.tensor(0.0)), torch.nextafter(t, torch.tensor(1.0))])
    apply = torch.tensor([True, False, True, True, False, True])
    out = ops.solarize(x, apply, threshold)
    for i in range(6):
        ref = TF.solarize(x[i], threshold) if apply[i] else x[i]
        torch.testing.assert_close(out[i], ref, atol=0, rtol=0)


@pytest.mark.parametrize(("image_size", "side"), [(32, 32), (96, 48), (224, 64)])
def test_blur_equals_torchvision_at_the_recipes_kernel_sizes(image_size, side):
    # the kernel is the same 1-D Gaussian as torchvision's; ours is applied separably (two 1-D passes with
    # reflect padding), torchvision's as its 2-D outer product: equal up to float rounding
    k = ops.blur_kernel_size(image_size)  # 3, 9, 23
    n = 12
    x = noise_images(n, side, side)
    sigma = torch.cat(
        [torch.tensor([0.1, 2.0]), 0.1 + 1.9 * torch.rand(n - 2, generator=torch.Generator().manual_seed(4))]
    )
    out = ops.gaussian_blur(x, sigma, k)
    assert out.shape == x.shape and out.dtype == x.dtype
    worst = 0.0
    for i in range(n):
        ref = TF.gaussian_blur(x[i], [k, k], [float(sigma[i])] * 2)
        worst = max(worst, float((out[i] - ref).abs().max()))
    assert worst < ATOL


# --- dtypes and ranges -----------------------------------------------------------------------------

OPS = {
    "resized_crop": lambda x, u: ops.resized_crop(x, ops.sample_crop_boxes(len(x), 16, 16, (0.08, 1)), 16, u < 0.5),
    "brightness": lambda x, u: ops.adjust_brightness(x, 2 * u),
    "contrast": lambda x, u: ops.adjust_contrast(x, 2 * u),
    "saturation": lambda x, u: ops.adjust_saturation(x, 2 * u),
    "hue": lambda x, u: ops.adjust_hue(x, u - 0.5),
    "grayscale": lambda x, u: ops.grayscale(x),
    "blur": lambda x, u: ops.gaussian_blur(x, 0.1 + 1.9 * u, 5),
    "solarize": lambda x, u: ops.solarize(x, u < 0.5),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("op", list(OPS))
def test_ops_keep_dtype_and_range(op, dtype):
    x = noise_images(16, 16, 16).to(dtype)
    u = torch.rand(16, generator=torch.Generator().manual_seed(5))  # float32 parameters
    out = OPS[op](x, u)
    assert out.dtype == dtype
    assert out.shape[0] == 16 and out.shape[-2:] == (16, 16)
    assert out.min() >= 0 and out.max() <= 1
    assert torch.isfinite(out).all()


# --- per-sample parameters and their probabilities in augment_batch --------------------------------

N = 2000


def _bound(p: float, n: int = N) -> float:
    return 4.5 * math.sqrt(p * (1 - p) / n) + 1 / n


def _spec(**overrides):
    """A view whose crop is the whole image (scale 1 on a square image), every op off unless asked for."""
    off = {"flip_prob": 0.0, "jitter_prob": 0.0, "grayscale_prob": 0.0, "blur_prob": 0.0, "solarize_prob": 0.0}
    aug = AugmentConfig(crop_min_scale=1.0, crop_max_scale=1.0, **{**off, **overrides})
    return two_views(aug, 16)[0]


def _batch(image: torch.Tensor) -> torch.Tensor:
    return image.expand(N, 3, 16, 16).contiguous()


def test_whole_image_crop_is_the_identity():
    x = noise_images(4, 16, 16)
    torch.testing.assert_close(augment_batch(x, _spec(), torch.Generator().manual_seed(0)), x, atol=ATOL, rtol=0)


def test_flip_probability_per_sample():
    ramp = torch.linspace(0, 1, 16).expand(1, 3, 16, 16)
    out = augment_batch(_batch(ramp), _spec(flip_prob=0.5), torch.Generator().manual_seed(6))
    flipped = (out[:, 0, 0, 0] > out[:, 0, 0, -1]).float().mean()
    assert abs(float(flipped) - 0.5) < _bound(0.5)


def test_jitter_probability_and_distinct_factors_per_sample():
    flat = torch.tensor([0.6, 0.4, 0.3]).view(1, 3, 1, 1).expand(1, 3, 16, 16)
    out = augment_batch(_batch(flat), _spec(jitter_prob=0.8), torch.Generator().manual_seed(7))
    colour = out[:, :, 0, 0]
    assert (out == colour.view(N, 3, 1, 1)).all()  # a flat image stays flat
    unchanged = (colour - flat[0, :, 0, 0]).abs().amax(1) < 1e-6
    assert abs(float(unchanged.float().mean()) - 0.2) < _bound(0.2)
    jittered = colour[~unchanged]
    assert len(torch.unique(jittered, dim=0)) == len(jittered)  # every jittered sample has its own factors


def test_grayscale_probability_per_sample():
    flat = torch.tensor([0.9, 0.2, 0.1]).view(1, 3, 1, 1).expand(1, 3, 16, 16)
    out = augment_batch(_batch(flat), _spec(grayscale_prob=0.2), torch.Generator().manual_seed(8))
    gray = (out[:, 0] == out[:, 1]).all(dim=(1, 2)) & (out[:, 1] == out[:, 2]).all(dim=(1, 2))
    assert abs(float(gray.float().mean()) - 0.2) < _bound(0.2)
    torch.testing.assert_close(
        out[gray][:, :, 0, 0], TF.rgb_to_grayscale(flat[0], 3)[:, 0, 0].expand(int(gray.sum()), 3)
    )


def test_solarize_probability_per_sample():
    flat = torch.full((1, 3, 16, 16), 0.75)
    out = augment_batch(_batch(flat), _spec(solarize_prob=0.2), torch.Generator().manual_seed(9))
    solarized = (out[:, :, 0, 0] - 0.25).abs().amax(1) < 1e-6
    assert ((out[:, :, 0, 0] - 0.75).abs().amax(1) < 1e-6).sum() + solarized.sum() == N
    assert abs(float(solarized.float().mean()) - 0.2) < _bound(0.2)


def test_blur_probability_and_distinct_sigmas_per_sample():
    checker = ((torch.arange(16).view(-1, 1) + torch.arange(16)) % 2).float().expand(1, 3, 16, 16)
    out = augment_batch(_batch(checker), _spec(blur_prob=0.5), torch.Generator().manual_seed(10))
    change = (out - checker).abs().amax(dim=(1, 2, 3))
    # a sigma near 0.1 barely blurs: the share of sigmas in U(0.1, 2) whose blur changes a checkerboard by
    # more than 1e-3 (1 - c^2 - 4 w^2 for the 3-tap kernel [w, c, w]), times blur_prob
    sigmas = 0.1 + 1.9 * (torch.arange(100_000) + 0.5) / 100_000
    k = ops.gaussian_kernels(sigmas, ops.blur_kernel_size(16))
    visible = float((1 - k[:, 1] ** 2 - 4 * k[:, 0] ** 2 > 1e-3).float().mean())
    blurred = change > 1e-3
    assert abs(float(blurred.float().mean()) - 0.5 * visible) < _bound(0.5 * visible)
    assert (change[~blurred] < 2e-3).all()
    centre = out[blurred][:, 0, 8, 8]
    assert len(torch.unique(centre)) > 0.99 * len(centre)  # sigma drawn per sample
