"""α-ReQ (Agrawal, Mondal, Ghosh & Richards, NeurIPS 2022,
https://papers.neurips.cc/paper_files/paper/2022/hash/70596d70542c51c8d9b4e423f4bf2736-Abstract-Conference.html):
the power-law decay coefficient α of the eigenspectrum of the feature covariance, lambda_k ~ k^-alpha.

α is not "higher is better": good representations sit in a band of α. The companion paper (Ghosh et al. 2022,
https://arxiv.org/abs/2202.05808) finds the downstream accuracy best where α is close to 1, so a sweep selects on
`alpha_req`: minus the distance of α from a band around 1 (0 inside it; α itself is logged as `alpha_req_alpha`).
The band's width, (0.9, 1.1) by default (`alpha_req_band`), is ours, not the papers': a run of one method compares
against the same band.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

ALPHA_BAND = (0.9, 1.1)  # the default target band of α (centred on the papers' 1; its width is ours)
RELATIVE_FLOOR = 1e-6  # eigenvalues below this share of the largest are float32 round-off, left out of the fit


@torch.no_grad()
def alpha_req(features: Tensor) -> float:
    """α of (N, d) features: the slope of -log lambda_k against log k, fitted by least squares over the
    eigenvalues lambda_1 >= lambda_2 >= ... of the centred features' covariance (those above 1e-6 lambda_1).
    Float64 on the features' device; NaN when fewer than 3 eigenvalues are non-zero (a collapsed run).

    >>> scales = torch.arange(1, 65).pow(-0.6)  # population eigenvalues lambda_k = k^-1.2
    >>> round(alpha_req(torch.randn(5000, 64, generator=torch.Generator().manual_seed(0)) * scales), 1)
    1.2
    """
    if features.dim() != 2 or features.shape[0] < 2 or features.shape[1] < 3:
        raise ValueError(f"α-ReQ needs (N, d) features with N >= 2, d >= 3, got shape {tuple(features.shape)}")
    x = features.detach().double()
    x = x - x.mean(dim=0)
    singular = torch.linalg.svdvals(x)  # the covariance's eigenvalues are singular^2 / N: the slope is the same
    eigenvalues = singular.square()
    keep = eigenvalues > eigenvalues[0] * RELATIVE_FLOOR
    count = int(keep.sum())
    if count < 3:
        return float("nan")
    log_k = torch.log(torch.arange(1, count + 1, dtype=x.dtype, device=x.device))
    log_lambda = torch.log(eigenvalues[:count])
    centred_k = log_k - log_k.mean()
    slope = (centred_k * (log_lambda - log_lambda.mean())).sum() / centred_k.square().sum()
    return -slope.item()


def band_score(alpha: float, band: tuple[float, float] = ALPHA_BAND) -> float:
    """Minus the distance of `alpha` from `band` (0 inside it): what a sweep maximises; NaN stays NaN.

    >>> band_score(1.0), band_score(1.3), band_score(0.5)
    (0.0, -0.2, -0.4)
    """
    if math.isnan(alpha):
        return alpha
    low, high = band
    distance = round(max(low - alpha, alpha - high, 0.0), 12)
    return -distance if distance else 0.0
