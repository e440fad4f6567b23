"""Parameter-free normalisation shared by the networks."""

import jax
import jax.numpy as jnp

IN_EPS = 1e-5            # PyTorch InstanceNorm2d default


def instance_norm(x: jax.Array, eps: float = IN_EPS) -> jax.Array:
  """PyTorch ``InstanceNorm2d(affine=False)``: per sample and channel over (H, W), biased
  variance, statistics in float32. (N, H, W, C) -> (N, H, W, C) in x's dtype."""
  x32 = x.astype(jnp.float32)
  mean = jnp.mean(x32, axis=(1, 2), keepdims=True)
  var = jnp.mean(jnp.square(x32 - mean), axis=(1, 2), keepdims=True)
  return ((x32 - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)
