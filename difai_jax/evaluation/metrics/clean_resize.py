"""clean-fid's resizing (Parmar et al., CVPR 2022, "On Aliased Resizing and Surprising Subtleties in
GAN Evaluation"; the reference is the ``clean-fid`` package's ``mode="clean"``).

pytorch-fid (``metrics.fid``) resizes to 299 px by bilinear interpolation without antialiasing;
clean-fid reads 8-bit images and resizes each channel as a float ("F") image with Pillow's bicubic
filter (``a = -0.5``, support widened by the scale factor when shrinking: antialiased), then clips
to [0, 255]. Pillow's resampling is separable: a horizontal pass, rounded to float32, then a
vertical one; each output pixel is a normalised sum of input pixels with the weights that
:func:`pil_bicubic_matrix` reproduces (Pillow's ``precompute_coeffs``), so the resize is two
matrix products here.

``evaluate --fid_resize clean`` feeds the FID Inception images resized this way (quantised to 8
bits first, as files would be); the network and its [-1, 1] input mapping stay pytorch-fid's, so
numbers made with it are comparable with each other, not with clean-fid's published statistics.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

CLEAN_SIZE = 299
BICUBIC_A = -0.5        # Pillow's bicubic (Keys' cubic with a = -0.5)
BICUBIC_SUPPORT = 2.0


def _bicubic(x: float) -> float:
  x = abs(x)
  if x < 1.0:
    return ((BICUBIC_A + 2.0) * x - (BICUBIC_A + 3.0)) * x * x + 1.0
  if x < 2.0:
    return (((x - 5.0) * x + 8.0) * x - 4.0) * BICUBIC_A
  return 0.0


def pil_bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
  """(out_size, in_size) float64 weights of Pillow's bicubic resize along one axis.

  Output pixel i is centred at input coordinate ``(i + 0.5) * scale`` (``scale = in / out``);
  the filter is stretched by ``max(scale, 1)`` (antialiasing when shrinking), its taps cover the
  input pixels whose index lies within the support (rounded as Pillow does), and the weights of
  each output pixel are normalised to sum 1.
  """
  scale = in_size / out_size
  filter_scale = max(scale, 1.0)
  support = BICUBIC_SUPPORT * filter_scale
  m = np.zeros((out_size, in_size), np.float64)
  for i in range(out_size):
    center = (i + 0.5) * scale
    lo = max(int(center - support + 0.5), 0)          # int(): truncation, as C's (int) cast
    hi = min(int(center + support + 0.5), in_size)
    weights = [_bicubic((j - center + 0.5) / filter_scale) for j in range(lo, hi)]
    total = math.fsum(weights)
    m[i, lo:hi] = np.asarray(weights) / (total if total != 0.0 else 1.0)
  return m


def resize_levels(levels: jax.Array, size: tuple[int, int] = (CLEAN_SIZE, CLEAN_SIZE)) -> jax.Array:
  """(N, H, W, C) float levels in [0, 255] -> (N, size[0], size[1], C), clean-fid's resize
  (horizontal pass, then vertical, each in float32; clipped to [0, 255])."""
  mh = jnp.asarray(pil_bicubic_matrix(levels.shape[1], size[0]), jnp.float32)
  mw = jnp.asarray(pil_bicubic_matrix(levels.shape[2], size[1]), jnp.float32)
  hp = jax.lax.Precision.HIGHEST
  x = jnp.einsum("pw,nhwc->nhpc", mw, levels.astype(jnp.float32), precision=hp)
  x = jnp.einsum("oh,nhpc->nopc", mh, x, precision=hp)
  return jnp.clip(x, 0.0, 255.0)


def clean_fid_input(images: jax.Array) -> jax.Array:
  """(N, H, W, 3) images in [-1, 1] -> (N, 299, 299, 3) in [-1, 1] for the FID Inception:
  quantised to 8 bits (as a PNG file), resized as clean-fid does, mapped back to [-1, 1]."""
  levels = jnp.clip(jnp.round((images.astype(jnp.float32) + 1.0) * 127.5), 0.0, 255.0)
  return resize_levels(levels) / 127.5 - 1.0
