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
# a device decoder's memory failure: CUDA's message, or nvJPEG's NVJPEG_STATUS_ALLOCATOR_FAILURE (status 5), which
# torchvision raises as a plain RuntimeError ("... failed: 5")
_OUT_OF_MEMORY = re.compile(r"out of memory|ALLOCATOR_FAILURE|failed: 5\b", re.IGNORECASE)


def decode_jpegs(
    data: Sequence[bytes | None], size: int, device: torch.device
) -> tuple[torch.Tensor, list[tuple[int, str]]]:
    """JPEG bytes -> (uint8 (n, 3, size, size) on `device`: the images that decode, in order; (position in
    `data`, reason) of each one that does not). One batched decode call; one bad image fails it whole, and
    then each image is decoded alone to find the bad ones.

    A device decoder's failure is never taken for a corrupt image: one that names memory is raised as
    `torch.OutOfMemoryError` (the run ends as out of memory), and an image the device fails on for another
    reason (a JPEG variant nvJPEG does not support) is decoded on the CPU instead. Only an image the CPU's
    libjpeg cannot decode either is reported bad."""
    encoded = [torch.frombuffer(bytearray(d), dtype=torch.uint8) if d else None for d in data]
    good = [i for i, t in enumerate(encoded) if t is not None]
    bad = [(i, "no image bytes") for i, t in enumerate(encoded) if t is None]
    decoded: list[torch.Tensor] = []
    if good:
        try:
            decoded = _decode([encoded[i] for i in good], device)  # type: ignore[misc]
        except RuntimeError as err:
            _raise_if_out_of_memory(err, device)
            decoded = []
            for i in good:
                image, reason = _decode_one(encoded[i], device)  # type: ignore[arg-type]
                if image is None:
                    bad.append((i, reason))
                else:
                    decoded.append(image)
    return fit_all(decoded, size, device), sorted(bad)


def _decode(encoded: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    return decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)


def _decode_one(encoded: torch.Tensor, device: torch.device) -> tuple[torch.Tensor | None, str]:
    """(the image on `device`, "") or (None, why it is corrupt): the CPU has the last word on corruption."""
    try:
        return _decode([encoded], device)[0], ""
    except RuntimeError as err:
        _raise_if_out_of_memory(err, device)
        if device.type == "cpu":
            return None, _reason(err)
    try:  # the device failed on it for a reason other than memory: libjpeg decides
        return decode_jpeg(encoded, mode=ImageReadMode.RGB).to(device), ""
    except RuntimeError as err:
        return None, _reason(err)


def _raise_if_out_of_memory(err: RuntimeError, device: torch.device) -> None:
    if isinstance(err, torch.OutOfMemoryError):
        raise err
    if device.type != "cpu" and _OUT_OF_MEMORY.search(str(err)):
        raise torch.OutOfMemoryError(f"decoding JPEGs on {device}: {_reason(err)}") from err


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
