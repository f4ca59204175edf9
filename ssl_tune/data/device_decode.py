"""`stream_decode: device`: the streamed JPEG bytes decoded in the training process by torchvision's
`decode_jpeg` (nvJPEG on a CUDA device, libjpeg on the CPU) and resized on the device as `fit_image` resizes
what PIL decodes (shorter side, bilinear with antialias, centre crop)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torchvision.io import ImageReadMode, decode_jpeg

from ssl_tune.data.imagefolder import fit_tensor

_WHERE = re.compile(r"^\w+, \S+:\d+, ")  # torchvision's "decode_jpeg, <source file>:<line>, " prefix


def decode_jpegs(
    data: Sequence[bytes | None], size: int, device: torch.device
) -> tuple[torch.Tensor, list[tuple[int, str]]]:
    """JPEG bytes -> (uint8 (n, 3, size, size) on `device`: the images that decode, in order; (position in
    `data`, reason) of each one that does not). One batched decode call; one bad image fails it whole, and
    then each image is decoded alone to find the bad ones."""
    encoded = [torch.frombuffer(bytearray(d), dtype=torch.uint8) if d else None for d in data]
    good = [i for i, t in enumerate(encoded) if t is not None]
    bad = [(i, "no image bytes") for i, t in enumerate(encoded) if t is None]
    decoded: list[torch.Tensor] = []
    if good:
        try:
            decoded = decode_jpeg([encoded[i] for i in good], mode=ImageReadMode.RGB, device=device)  # type: ignore[misc]
        except torch.OutOfMemoryError:
            raise
        except RuntimeError:
            decoded = []
            for i in good:
                try:
                    decoded.append(decode_jpeg(encoded[i], mode=ImageReadMode.RGB, device=device))  # type: ignore[arg-type]
                except torch.OutOfMemoryError:
                    raise
                except RuntimeError as err:
                    bad.append((i, _reason(err)))
    return fit_all(decoded, size, device), sorted(bad)


def fit_all(images: list[torch.Tensor], size: int, device: torch.device) -> torch.Tensor:
    """uint8 (3, H, W) images -> (n, 3, size, size): one resize call when they share a shape, else one each."""
    if not images:
        return torch.empty((0, 3, size, size), dtype=torch.uint8, device=device)
    if all(x.shape == images[0].shape for x in images):
        return fit_tensor(torch.stack(images), size)
    return torch.stack([fit_tensor(x, size) for x in images])


def _reason(err: RuntimeError) -> str:
    line = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return _WHERE.sub("", line)
