"""SSIM and multi-scale SSIM for NHWC batches (DiFAI eq. 8 and the evaluation metric).

Re-expresses the definitions of pytorch-msssim 1.0 (Gongfan Fang), which follow Wang et al. 2004
(SSIM) and Wang, Simoncelli & Bovik 2003 (MS-SSIM):

* a separable gaussian window (size 11, sigma 1.5, normalised to sum 1) applied as a *valid*
  convolution (no padding: the maps are ``win_size - 1`` pixels smaller than the image);
* ``C1 = (K1 L)^2``, ``C2 = (K2 L)^2`` with ``L = data_range``, ``K = (0.01, 0.03)``;
  population (biased) variances, ``alpha = beta = gamma = 1``;
* SSIM of an image = mean over channels of the mean of the SSIM map;
* MS-SSIM over 5 scales with weights ``(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)``: the contrast-
  structure term ``cs`` at the 4 finer scales and the full SSIM at the coarsest, each clamped at
  0 (ReLU) and raised to its weight, per channel, then averaged over channels. Between scales the
  images are 2x2 average-pooled, padding odd sides with one zero row/column on both sides
  (counted in the average), as ``F.avg_pool2d(kernel_size=2, padding=s % 2)``.

SSIM with these settings also equals scikit-image's ``structural_similarity(...,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=L)``.

SSIM is not shift invariant: give images in the range that ``data_range`` describes. For the
project's [-1, 1] images use ``(x + 1) / 2`` with ``data_range=1.0`` (what :func:`ms_ssim_loss`
in ``difai_jax.losses`` does).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def gaussian_window(win_size: int = 11, win_sigma: float = 1.5) -> np.ndarray:
  """1-d gaussian window of odd length ``win_size``, normalised to sum 1 (float32)."""
  if win_size % 2 != 1 or win_size < 1:
    raise ValueError(f"win_size must be a positive odd number, got {win_size}")
  coords = np.arange(win_size, dtype=np.float64) - win_size // 2
  g = np.exp(-coords ** 2 / (2.0 * win_sigma ** 2))
  return (g / g.sum()).astype(np.float32)


def _check_pair(x: jnp.ndarray, y: jnp.ndarray, what: str) -> None:
  if x.shape != y.shape:
    raise ValueError(f"{what}: images must have the same shape, got {x.shape} and {y.shape}")
  if x.ndim != 4:
    raise ValueError(f"{what}: expected (N, H, W, C) batches, got shape {x.shape}")


def _gaussian_filter(x: jnp.ndarray, win: np.ndarray) -> jnp.ndarray:
  """Valid, depthwise, separable filtering: (N, H, W, C) -> (N, H - w + 1, W - w + 1, C)."""
  c = x.shape[-1]
  w = jnp.asarray(win, x.dtype)
  dn = ("NHWC", "HWIO", "NHWC")
  kh = jnp.tile(w.reshape(-1, 1, 1, 1), (1, 1, 1, c))  # (w, 1, 1, C)
  kw = jnp.tile(w.reshape(1, -1, 1, 1), (1, 1, 1, c))  # (1, w, 1, C)
  for k in (kh, kw):
    x = jax.lax.conv_general_dilated(x, k, (1, 1), "VALID", dimension_numbers=dn,
                                     feature_group_count=c,
                                     precision=None)
  return x


def _ssim_and_cs(x, y, data_range, win, k):
  """Per-image, per-channel SSIM and contrast-structure term: two (N, C) arrays."""
  k1, k2 = k
  c1 = (k1 * data_range) ** 2
  c2 = (k2 * data_range) ** 2
  mu_x = _gaussian_filter(x, win)
  mu_y = _gaussian_filter(y, win)
  mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
  sigma_xx = _gaussian_filter(x * x, win) - mu_xx
  sigma_yy = _gaussian_filter(y * y, win) - mu_yy
  sigma_xy = _gaussian_filter(x * y, win) - mu_xy
  cs_map = (2.0 * sigma_xy + c2) / (sigma_xx + sigma_yy + c2)
  ssim_map = (2.0 * mu_xy + c1) / (mu_xx + mu_yy + c1) * cs_map
  return ssim_map.mean(axis=(1, 2)), cs_map.mean(axis=(1, 2))


def _avg_pool_2x2(x: jnp.ndarray) -> jnp.ndarray:
  """``F.avg_pool2d(kernel_size=2, padding=s % 2)`` in NHWC: (N, H, W, C) -> (N, ~H/2, ~W/2, C)."""
  n, h, w, c = x.shape
  ph, pw = h % 2, w % 2
  x = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))  # zero pads count in the average
  ho, wo = (h + 2 * ph) // 2, (w + 2 * pw) // 2
  x = x[:, :2 * ho, :2 * wo]
  return x.reshape(n, ho, 2, wo, 2, c).mean(axis=(2, 4))


def _pow_clamped(v: jnp.ndarray, weight: float) -> jnp.ndarray:
  """``relu(v) ** weight`` with a finite gradient (0) where ``v <= 0``."""
  positive = v > 0
  safe = jnp.where(positive, v, 1.0)
  return jnp.where(positive, safe ** weight, 0.0)


def ssim(x: jnp.ndarray, y: jnp.ndarray, *, data_range: float, win_size: int = 11,
         win_sigma: float = 1.5, k: Sequence[float] = (0.01, 0.03),
         size_average: bool = False) -> jnp.ndarray:
  """SSIM of two NHWC batches.

  Args:
    x, y: (N, H, W, C) float images with values spanning ``data_range`` (e.g. [0, 1] and 1.0);
      H and W at least ``win_size``.
    data_range: the dynamic range L of the images (required: SSIM depends on it).
    win_size, win_sigma: gaussian window (11, 1.5 as pytorch-msssim and the SSIM paper).
    k: the constants (K1, K2).
    size_average: return the batch mean (scalar) instead of per-image values.

  Returns:
    (N,) per-image SSIM (mean over channels), or a scalar if ``size_average``.
  """
  _check_pair(x, y, "ssim")
  if min(x.shape[1:3]) < win_size:
    raise ValueError(f"ssim: images of size {x.shape[1:3]} are smaller than the {win_size}-pixel "
                     "window")
  win = gaussian_window(win_size, win_sigma)
  x = jnp.asarray(x, jnp.float32)
  y = jnp.asarray(y, jnp.float32)
  ssim_per_channel, _ = _ssim_and_cs(x, y, data_range, win, k)
  per_image = ssim_per_channel.mean(axis=-1)
  return per_image.mean() if size_average else per_image


def ms_ssim(x: jnp.ndarray, y: jnp.ndarray, *, data_range: float, win_size: int = 11,
            win_sigma: float = 1.5, weights: Sequence[float] = MS_SSIM_WEIGHTS,
            k: Sequence[float] = (0.01, 0.03), size_average: bool = False) -> jnp.ndarray:
  """Multi-scale SSIM of two NHWC batches (5 scales by default).

  Args:
    x, y: (N, H, W, C) float images with values spanning ``data_range``; the smaller side must
      exceed ``(win_size - 1) * 2 ** (scales - 1)`` (160 px for the defaults), as pytorch-msssim
      requires.
    data_range: the dynamic range L of the images (required).
    win_size, win_sigma, k: as in :func:`ssim`.
    weights: exponent of each scale, finest first; their number is the number of scales.
    size_average: return the batch mean (scalar) instead of per-image values.

  Returns:
    (N,) per-image MS-SSIM in [0, 1], or a scalar if ``size_average``. Differentiable; where a
    scale's term is clamped at 0 its gradient is 0 (never NaN).
  """
  _check_pair(x, y, "ms_ssim")
  levels = len(weights)
  need = (win_size - 1) * 2 ** (levels - 1)
  if min(x.shape[1:3]) <= need:
    raise ValueError(f"ms_ssim: images of size {x.shape[1:3]} are too small for {levels} scales "
                     f"with an {win_size}-pixel window; the smaller side must exceed {need}")
  win = gaussian_window(win_size, win_sigma)
  x = jnp.asarray(x, jnp.float32)
  y = jnp.asarray(y, jnp.float32)
  value = 1.0
  for level, weight in enumerate(weights):
    ssim_per_channel, cs = _ssim_and_cs(x, y, data_range, win, k)  # (N, C) each
    if level < levels - 1:
      value = value * _pow_clamped(cs, weight)
      x, y = _avg_pool_2x2(x), _avg_pool_2x2(y)
    else:
      value = value * _pow_clamped(ssim_per_channel, weight)
  per_image = value.mean(axis=-1)  # (N, C) -> (N,)
  return per_image.mean() if size_average else per_image
