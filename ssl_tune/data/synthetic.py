"""`synthetic`: a procedurally generated, class-structured image set that needs no download.

Each of the 10 classes is a pair (stripe orientation, shape): 5 grating angles x {disc, square}.
Every image draws its own stripe frequency and phase, colours, shape size and position, and noise,
so colour carries no class signal and an SSL method has to learn orientation and shape.
"""

from __future__ import annotations

import math

import torch

from ssl_tune.data.base import DataRequest, ImageData, register_dataset

NUM_CLASSES = 10
TRAIN_SIZE, TEST_SIZE = 10_000, 2_000
DEFAULT_SIZE = 32


CHUNK = 1000


def generate(n: int, image_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `n` uint8 images (n, 3, S, S) and labels of the set named by `seed`.

    Made in fixed chunks with their own seeds, so image i is the same whatever `n` is.
    """
    chunks = [_chunk(image_size, seed * 1_000_003 + i) for i in range(-(-n // CHUNK))]
    images, labels = zip(*chunks, strict=True)
    return torch.cat(images)[:n], torch.cat(labels)[:n]


def _chunk(image_size: int, seed: int, n: int = CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g)

    labels = torch.arange(n) % NUM_CLASSES
    labels = labels[torch.randperm(n, generator=g)]
    angle = (labels % 5).float() * (math.pi / 5) + (rand(n) - 0.5) * 0.2
    square = labels >= 5

    coords = (torch.arange(image_size).float() + 0.5) / image_size  # (S,)
    y, x = coords.view(1, -1, 1), coords.view(1, 1, -1)
    freq = 3 + 3 * rand(n, 1, 1)
    phase = 2 * math.pi * rand(n, 1, 1)
    proj = x * torch.cos(angle).view(-1, 1, 1) + y * torch.sin(angle).view(-1, 1, 1)
    stripes = 0.5 + 0.5 * torch.sin(2 * math.pi * freq * proj + phase)  # (n, S, S)

    color_a, color_b, color_shape = rand(n, 3, 1, 1), rand(n, 3, 1, 1), rand(n, 3, 1, 1)
    img = color_a * stripes.unsqueeze(1) + color_b * (1 - stripes.unsqueeze(1))

    cx, cy = (0.3 + 0.4 * rand(n)).view(-1, 1, 1), (0.3 + 0.4 * rand(n)).view(-1, 1, 1)
    radius = (0.15 + 0.1 * rand(n)).view(-1, 1, 1)
    disc = (x - cx) ** 2 + (y - cy) ** 2 <= radius**2
    box = torch.maximum((x - cx).abs(), (y - cy).abs()) <= radius * 0.9
    inside = torch.where(square.view(-1, 1, 1), box, disc).unsqueeze(1)
    img = torch.where(inside, color_shape, img)

    img = img + 0.05 * torch.randn(img.shape, generator=g)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8), labels


@register_dataset("synthetic")
def synthetic(request: DataRequest) -> ImageData:
    size = request.image_size or DEFAULT_SIZE
    # only the requested subsets are generated; image i does not depend on how many are made
    train_x, train_y = generate(min(request.train_subset or TRAIN_SIZE, TRAIN_SIZE), size, seed=1)
    test_x, test_y = None, None
    if request.with_test:
        test_x, test_y = generate(min(request.test_subset or TEST_SIZE, TEST_SIZE), size, seed=2)
    return ImageData(train_x, train_y, test_x, test_y, NUM_CLASSES, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
