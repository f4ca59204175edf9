"""LiDAR (Thilak et al., ICLR 2024, https://arxiv.org/abs/2312.04000): the effective rank of the LDA matrix
that separates images (the classes) from their augmentations (the samples of a class).

For n images with q augmented views each, embeddings e_ij of dimension d (i the image, j the view):

    mu_i = mean_j e_ij,   mu = mean_i mu_i
    S_b  = 1/(n-1)      sum_i (mu_i - mu)(mu_i - mu)^T                      between images
    S_w  = 1/(n(q-1))   sum_ij (e_ij - mu_i)(e_ij - mu_i)^T  +  delta * I   within an image's views
    S    = S_w^{-1/2} S_b S_w^{-1/2}
    p_k  = lambda_k(S) / ||lambda(S)||_1 + eps,   LiDAR = exp(-sum_k p_k log p_k)

with delta = 1e-4 and eps = 1e-8 as in the paper. It is about 1 on collapsed features (S_b = 0) and grows with
the number of directions in which images differ more than their views do; higher predicts a better linear probe,
among runs of one method.
"""

from __future__ import annotations

import torch
from torch import Tensor

LIDAR_DELTA = 1e-4  # the within-image scatter's ridge (the paper's delta)
LIDAR_EPS = 1e-8  # added to each normalised eigenvalue (the paper's epsilon)


@torch.no_grad()
def lidar(embeddings: Tensor, delta: float = LIDAR_DELTA, eps: float = LIDAR_EPS) -> float:
    """LiDAR of (n, q, d) embeddings: n images, q >= 2 augmented views each, d dimensions; in [1, min(n-1, d)]
    up to eps. Computed in float64 on the embeddings' device; the one host read is the result.

    >>> images = torch.randn(500, 1, 16, generator=torch.Generator().manual_seed(0))
    >>> views = images.expand(500, 4, 16)  # the 4 views of an image coincide
    >>> round(lidar(views))  # 16 directions in which images differ, none in which views do
    16
    >>> round(lidar(torch.ones(500, 4, 16)), 2)  # collapsed: every image and view the same
    1.0
    """
    if embeddings.dim() != 3 or embeddings.shape[0] < 2 or embeddings.shape[1] < 2 or embeddings.shape[2] < 1:
        raise ValueError(f"LiDAR needs (n, q, d) embeddings with n, q >= 2, got shape {tuple(embeddings.shape)}")
    e = embeddings.detach().double()
    n, q, d = e.shape
    image_means = e.mean(dim=1)  # (n, d)
    between = image_means - image_means.mean(dim=0)
    scatter_b = between.T @ between / (n - 1)
    within = (e - image_means.unsqueeze(1)).reshape(n * q, d)
    scatter_w = within.T @ within / (n * (q - 1)) + delta * torch.eye(d, dtype=e.dtype, device=e.device)
    values, vectors = torch.linalg.eigh(scatter_w)  # symmetric positive definite: the ridge keeps values >= delta
    inv_sqrt = (vectors * values.rsqrt()) @ vectors.T
    lda = inv_sqrt @ scatter_b @ inv_sqrt
    eigenvalues = torch.linalg.eigvalsh((lda + lda.T) / 2).clamp_min(0)  # PSD: round-off negatives to 0
    p = eigenvalues / eigenvalues.sum().clamp_min(torch.finfo(e.dtype).tiny) + eps
    return torch.exp(-(p * torch.log(p)).sum()).item()
