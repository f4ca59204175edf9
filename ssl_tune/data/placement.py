"""Where the train images live while a run trains, and how a batch of them reaches the device.

- `resident`: the whole uint8 split is copied to the device once; a batch is one gather there.
- `streamed`: the split stays in host memory; a background thread gathers the next batches into pinned
  buffers and copies them to the device on a side stream while the current step runs. For datasets
  too large for the device; the views are then made on the device exactly as for resident data.

Both yield the same uint8 batches for the same index order, so a run's results do not depend on it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Literal

import torch

Placement = Literal["auto", "resident", "streamed"]
PREFETCH = 3  # batches gathered and in flight ahead of the step


def choose_placement(placement: Placement, images: torch.Tensor, device: torch.device, limit_gb: float) -> str:
    """`auto`: resident when the device is the CPU or the split fits in `limit_gb`, else streamed."""
    if placement != "auto":
        return placement
    size_gb = images.numel() * images.element_size() / 1e9
    return "resident" if device.type == "cpu" or size_gb <= limit_gb else "streamed"


class ResidentBatches:
    """All images on the device; `batches(order)` gathers each row of indices there."""

    placement = "resident"

    def __init__(self, images: torch.Tensor, device: torch.device) -> None:
        self.images = images.to(device)
        self.device = device

    def batches(self, order: torch.Tensor) -> Iterator[torch.Tensor]:
        if self.device.type == "cuda":  # one asynchronous copy of the epoch's indices
            order = order.pin_memory().to(self.device, non_blocking=True)
        for idx in order:
            yield self.images[idx]


class StreamedBatches:
    """Images in host memory; batches are gathered and copied ahead by a background thread.

    On CUDA the copies run on their own stream from pinned memory; the step's stream waits on an event,
    so the host never blocks on the device. Closing the iterator early stops the thread.
    """

    placement = "streamed"

    def __init__(self, images: torch.Tensor, device: torch.device, prefetch: int = PREFETCH) -> None:
        self.images = images.cpu()
        self.device = device
        self.prefetch = prefetch
        self.cuda = device.type == "cuda"

    def _gather(self, idx: torch.Tensor) -> torch.Tensor:
        out = torch.empty((len(idx), *self.images.shape[1:]), dtype=self.images.dtype, pin_memory=self.cuda)
        return torch.index_select(self.images, 0, idx, out=out)

    def batches(self, order: torch.Tensor) -> Iterator[torch.Tensor]:
        order = order.cpu()
        ready: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        copy_stream = torch.cuda.Stream(self.device) if self.cuda else None

        def offer(item: tuple) -> bool:
            """Put an item unless the consumer has gone; False when it has."""
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for idx in order:
                    host = self._gather(idx)
                    event = None
                    if copy_stream is not None:
                        with torch.cuda.stream(copy_stream):
                            batch = host.to(self.device, non_blocking=True)
                            event = torch.cuda.Event()
                            event.record(copy_stream)
                    else:
                        batch = host
                    if not offer((batch, event)):
                        return
                offer((None, None))
            except BaseException as err:  # handed to the consumer, raised there
                offer((err, None))

        thread = threading.Thread(target=produce, name="ssl-tune-stream", daemon=True)
        thread.start()
        try:
            while True:
                batch, event = ready.get()
                if batch is None:
                    return
                if isinstance(batch, BaseException):
                    raise batch
                if event is not None:
                    stream = torch.cuda.current_stream(self.device)
                    stream.wait_event(event)
                    batch.record_stream(stream)  # the allocator must not reuse it before the step is done
                yield batch
        finally:
            stop.set()
            thread.join()


def place_images(
    images: torch.Tensor, device: torch.device, placement: Placement, limit_gb: float
) -> ResidentBatches | StreamedBatches:
    """The batch source for a split, resident or streamed (see `choose_placement`)."""
    chosen = choose_placement(placement, images, device, limit_gb)
    return ResidentBatches(images, device) if chosen == "resident" else StreamedBatches(images, device)
