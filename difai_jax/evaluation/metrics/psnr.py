"""PSNR, the peak signal-to-noise ratio per image, as scikit-image's
``metrics.peak_signal_noise_ratio`` (and MAT's / LaMa's evaluation scripts) compute it:
``10 log10(data_range^2 / MSE)`` over all pixels and channels of each image.

Identical images have an MSE of 0 and an infinite PSNR; here the MSE is floored at
``MIN_MSE`` (a cap of 100 dB at ``data_range = 1``) so that a bucket mean stays finite.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

MIN_MSE = 1e-10


def psnr(x: jax.Array, y: jax.Array, *, data_range: float = 1.0) -> jax.Array:
  """(N,) PSNR in dB of two (N, H, W, C) batches whose values span ``data_range``."""
  if x.shape != y.shape or x.ndim != 4:
    raise ValueError(f"PSNR compares two (N, H, W, C) batches of one shape; got {x.shape} and "
                     f"{y.shape}")
  diff = x.astype(jnp.float32) - y.astype(jnp.float32)
  mse = jnp.mean(jnp.square(diff), axis=(1, 2, 3))
  return 10.0 * jnp.log10(data_range ** 2 / jnp.maximum(mse, MIN_MSE))
