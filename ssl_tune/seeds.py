"""Seed derivation shared by the data stream (`data/streaming.py`) and the training core (`engine/run.py`)."""

from __future__ import annotations


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A distinct, reproducible seed per (run seed, epoch, rank): resumes replay the same randomness."""
    return (seed * 1_000_003 + epoch * 10_007 + rank * 101) % (2**63 - 1)
