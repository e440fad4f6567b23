"""The batch layout of K style variants: the DiFAI generator and the StyleGAN2 decoder run all
K variants of N images as one batch of N * K, folded sample-major, so that a batch split over a
mesh stays split and per-variant statistics can be taken apart again."""

import jax
import jax.numpy as jnp


def fold_variants(x: jax.Array) -> jax.Array:
  """(K, N, ...) -> (N * K, ...), sample-major: the K variants of image i are rows
  i * K ... i * K + K - 1 (the generator's ``num_completions`` layout)."""
  return jnp.swapaxes(x, 0, 1).reshape((x.shape[0] * x.shape[1],) + x.shape[2:])


def unfold_variants(x: jax.Array, num_completions: int) -> jax.Array:
  """(N * K, ...) -> (K, N, ...), the inverse of :func:`fold_variants`."""
  k = num_completions
  return jnp.swapaxes(x.reshape((x.shape[0] // k, k) + x.shape[1:]), 0, 1)
