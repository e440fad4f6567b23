"""Spectral-normalised WGAN-GP critic of DiFAI.

A stack of 4x4 stride-2 convs (64-128-256-512-512 at 256 px) with leaky ReLU 0.2 and no
normalisation layers (a gradient penalty needs per-sample gradients, which batch statistics would
couple), then a 3x3 conv to one channel averaged to one score per image. Every conv is wrapped in
the project's one spectral norm (``sparn.SpectralNorm``, PyTorch's semantics, Miyato et al.
2018): its power-iteration state ``u``, ``v`` and ``sigma`` lives in the ``'spectral'`` variable
collection and advances only when ``train=True`` (apply with ``mutable=['spectral']``); with
``train=False`` the stored vectors give the same normalised weights without iterating, so
evaluation is deterministic.

Conventions: NHWC images in [-1, 1]; the critic scores the raw outputs I_out (eq. 9-10; the
composite is the option ``critic.input``) and real images.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from difai_jax.models.sparn import module_kwargs
from difai_jax.models.sparn import SpectralNorm

LEAKY_SLOPE = 0.2
SPECTRAL_COLLECTION = "spectral"


class Critic(nn.Module):
  """D(image) -> one WGAN score per image.

  Attributes:
    widths: output widths of the stride-2 4x4 convs (padding 1, as PyTorch's k4 s2 p1).
    final_kernel: kernel size of the last conv to one channel (stride 1, same padding).
    sn_steps: power iterations per call (1, as PyTorch's spectral_norm).
    sn_eps: epsilon of the power iteration's l2 normalisation (1e-12, as PyTorch).
    dtype: compute dtype (params are float32; scores are returned as float32).
  """
  widths: Sequence[int] = (64, 128, 256, 512, 512)
  final_kernel: int = 3
  sn_steps: int = 1
  sn_eps: float = 1e-12
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool = False) -> jax.Array:
    """Args:
      images: (N, H, W, 3) in [-1, 1]; H, W divisible by 2 ** len(widths).
      train: update the spectral-norm power-iteration state (needs ``mutable=['spectral']``).

    Returns:
      (N,) float32 scores (mean of the final one-channel map over H and W).
    """
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"Critic: images must be (N, H, W, 3); got {images.shape}")
    factor = 2 ** len(self.widths)
    if images.shape[1] % factor or images.shape[2] % factor:
      raise ValueError(f"Critic: image size {images.shape[1]}x{images.shape[2]} must be "
                       f"divisible by {factor} ({len(self.widths)} stride-2 convs)")

    def sn_conv(features, kernel, strides, pad, name):
      conv = nn.Conv(features, (kernel, kernel), strides=(strides, strides),
                     padding=((pad, pad), (pad, pad)), dtype=self.dtype, name=name)
      return SpectralNorm(conv, n_steps=self.sn_steps, epsilon=self.sn_eps,
                          collection_name=SPECTRAL_COLLECTION, name=f"{name}_sn")

    x = images.astype(self.dtype)
    for i, width in enumerate(self.widths):
      # (N, h, w, C) -> (N, h/2, w/2, width)
      x = nn.leaky_relu(sn_conv(width, 4, 2, 1, f"conv_{i}")(x, update_stats=train),
                        LEAKY_SLOPE)
    pad = (self.final_kernel - 1) // 2
    x = sn_conv(1, self.final_kernel, 1, pad, "conv_out")(x, update_stats=train)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2, 3))


# Fields of config.critic that configure training, not the module.
NON_ARCHITECTURE_FIELDS = ("lambda_gp", "input")


def from_config(cfg: Any) -> Critic:
  """Builds a :class:`Critic` from a ConfigDict or dict (``lambda_gp`` and ``input`` are loss
  settings, not architecture)."""
  return Critic(**module_kwargs(Critic, cfg, NON_ARCHITECTURE_FIELDS))
