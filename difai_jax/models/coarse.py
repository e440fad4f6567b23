"""Coarse inpainting network (the paper's customised MLGN) and its loss.

DiFAI (Yoon et al.) first completes the masked face with a coarse network whose adversarial
weight ("lambda") is turned down so that the completion is deliberately smooth: a blurry
completion leaves pSp room to find diverse codes. DESIGN.md "Coarse net (cMLGN)" fixes the
architecture re-expressed here:

* an encoder-decoder on concat(I_masked, mask): conv 5x5, 3 stride-2 downsamplings, dilated
  residual blocks at 1/8 resolution, 3 x2 upsamplings;
* RGB outputs (tanh) at 1/4, 1/2 and full resolution (multi-level supervision, MLGN's
  "multi-level"); the full-resolution one is the completion;
* the loss: multi-scale L1, hole weighted, plus an optional WGAN generator term whose weight
  ``lambda_adv`` defaults to 0 (the customised lambda).

No normalisation layers: the net has no batch state and a sample's output never depends on its
batch-mates. Conventions: NHWC, images in [-1, 1], ``mask`` (N, H, W, 1), 1 = known, 0 = hole.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from difai_jax.models.sparn import downsample_area, module_kwargs

LEAKY_SLOPE = 0.2


class CoarseOutputs(NamedTuple):
  """The coarse net's three RGB predictions, each (N, h, w, 3) in [-1, 1].

  ``full`` (H x W) is the coarse completion I_coarse; ``half`` (H/2) and ``quarter`` (H/4) are
  the multi-level side outputs, used only by :func:`coarse_loss`.
  """
  full: jax.Array
  half: jax.Array
  quarter: jax.Array


class CoarseNet(nn.Module):
  """Encoder-decoder coarse inpainting net: (I_masked, mask) -> :class:`CoarseOutputs`.

  Attributes:
    widths: feature widths at full, 1/2, 1/4 and 1/8 resolution (exactly four: three stride-2
      downsamplings); the decoder mirrors them (1/4, 1/2, full).
    dilations: one dilated residual block (two 3x3 convs with that dilation) per entry, at 1/8.
    dtype: compute dtype (params are float32).
  """
  widths: Sequence[int] = (64, 128, 256, 256)
  dilations: Sequence[int] = (2, 4, 8, 16)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, i_masked: jax.Array, mask: jax.Array) -> CoarseOutputs:
    """Args:
      i_masked: (N, H, W, 3) ``image * mask`` in [-1, 1]; H, W divisible by 8.
      mask: (N, H, W, 1), 1 = known, 0 = hole.

    Returns:
      CoarseOutputs(full (N, H, W, 3), half (N, H/2, W/2, 3), quarter (N, H/4, W/4, 3)), raw
      network outputs in [-1, 1] (composite with the known pixels in the pipeline).
    """
    if i_masked.ndim != 4 or i_masked.shape[-1] != 3:
      raise ValueError(f"CoarseNet: i_masked must be (N, H, W, 3); got {i_masked.shape}")
    n, h, w, _ = i_masked.shape
    if mask.shape != (n, h, w, 1):
      raise ValueError(f"CoarseNet: mask must be (N, H, W, 1) = {(n, h, w, 1)} "
                       f"(1 = known, 0 = hole); got {mask.shape}")
    if h % 8 or w % 8:
      raise ValueError(f"CoarseNet: image size {h}x{w} must be divisible by 8 "
                       "(three stride-2 downsamplings)")
    if len(self.widths) != 4:
      raise ValueError(f"CoarseNet: widths must hold 4 entries (full, 1/2, 1/4, 1/8 "
                       f"resolution); got {tuple(self.widths)}")
    lrelu = lambda x: nn.leaky_relu(x, LEAKY_SLOPE)

    def conv(features, kernel, name, strides=1, dilation=1):
      pad = dilation * (kernel - 1) // 2  # symmetric, as PyTorch padding=pad
      return nn.Conv(features, (kernel, kernel), strides=(strides, strides),
                     padding=((pad, pad), (pad, pad)), kernel_dilation=(dilation, dilation),
                     dtype=self.dtype, name=name)

    x = jnp.concatenate([i_masked, mask.astype(i_masked.dtype)], axis=-1).astype(self.dtype)
    x = lrelu(conv(self.widths[0], 5, "conv_in")(x))
    for i, width in enumerate(self.widths[1:]):
      x = lrelu(conv(width, 3, f"down_{i}", strides=2)(x))  # (N, h, w, C) -> (N, h/2, w/2, C')
    for i, d in enumerate(self.dilations):
      # Pre-activation residual block with dilated 3x3 convs: large receptive field at 1/8.
      dx = conv(self.widths[3], 3, f"res_{i}_conv_0", dilation=d)(lrelu(x))
      dx = conv(self.widths[3], 3, f"res_{i}_conv_1", dilation=d)(lrelu(dx))
      x = x + dx
    x = lrelu(x)
    rgb = []
    for i, width in enumerate(reversed(self.widths[:3])):  # 1/4, 1/2, full resolution
      x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)  # (N, h, w, C) -> (N, 2h, 2w, C)
      x = lrelu(conv(width, 3, f"up_{i}_conv_0")(x))
      x = lrelu(conv(width, 3, f"up_{i}_conv_1")(x))
      rgb.append(jnp.tanh(conv(3, 3, f"to_rgb_{i}")(x)).astype(jnp.float32))
    quarter, half, full = rgb
    return CoarseOutputs(full=full, half=half, quarter=quarter)


def coarse_loss(outputs: CoarseOutputs, i_gt: jax.Array, mask: jax.Array, *,
                hole_weight: float = 6.0, valid_weight: float = 1.0,
                scale_weights: Sequence[float] = (1.0, 1.0, 1.0),
                lambda_adv: float = 0.0, fake_scores: jax.Array | None = None) -> jax.Array:
  """Multi-scale hole-weighted L1 plus an optional WGAN generator term.

  For each scale s in (full, half, quarter), the ground truth and the mask are area-downsampled
  to the output's size (so a low-resolution pixel straddling the hole boundary is weighted by
  its known fraction) and

      L1_s = mean_{pixels, channels} (valid_weight * mask_s + hole_weight * (1 - mask_s))
                                     * |out_s - gt_s|.

  Total = sum_s scale_weights[s] * L1_s - lambda_adv * mean(fake_scores).

  Args:
    outputs: :class:`CoarseOutputs` of the coarse net.
    i_gt: (N, H, W, 3) ground truth in [-1, 1].
    mask: (N, H, W, 1), 1 = known, 0 = hole.
    hole_weight, valid_weight: per-region L1 weights (6 and 1 as in the partial-convolution loss
      of Liu et al. 2018, from which the hole / valid terms descend).
    scale_weights: weights of the (full, half, quarter) terms.
    lambda_adv: weight of the adversarial term; 0 (default) is the paper's customised lambda
      that keeps the completion smooth.
    fake_scores: critic scores (N,) of the coarse completions; required when lambda_adv != 0.

  Returns:
    Scalar float32 loss.
  """
  if i_gt.shape != outputs.full.shape:
    raise ValueError(f"coarse_loss: i_gt {i_gt.shape} and the full-resolution output "
                     f"{outputs.full.shape} differ")
  if mask.shape != i_gt.shape[:3] + (1,):
    raise ValueError(f"coarse_loss: mask must be (N, H, W, 1) matching i_gt; got {mask.shape}")
  if len(scale_weights) != 3:
    raise ValueError(f"coarse_loss: scale_weights must give (full, half, quarter); got "
                     f"{tuple(scale_weights)}")
  mask = mask.astype(jnp.float32)
  i_gt = i_gt.astype(jnp.float32)
  total = jnp.float32(0.0)
  for out, weight in zip((outputs.full, outputs.half, outputs.quarter), scale_weights):
    size = out.shape[1:3]
    gt_s = downsample_area(i_gt, size)
    mask_s = downsample_area(mask, size)
    pixel_weight = valid_weight * mask_s + hole_weight * (1.0 - mask_s)
    total = total + weight * jnp.mean(pixel_weight * jnp.abs(out.astype(jnp.float32) - gt_s))
  if lambda_adv:
    if fake_scores is None:
      raise ValueError("coarse_loss: lambda_adv is non-zero but no fake_scores were given")
    total = total - lambda_adv * jnp.mean(fake_scores.astype(jnp.float32))
  return total


# Fields of config.coarse that configure the loss, not the module.
NON_ARCHITECTURE_FIELDS = ("hole_weight", "valid_weight", "scale_weights", "lambda_adv")


def from_config(cfg: Any) -> CoarseNet:
  """Builds a :class:`CoarseNet` from a ConfigDict or dict (loss fields are ignored)."""
  return CoarseNet(**module_kwargs(CoarseNet, cfg, NON_ARCHITECTURE_FIELDS))


def loss_kwargs(cfg: Any) -> dict:
  """The :func:`coarse_loss` keyword arguments found in config.coarse."""
  cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
  return {k: (tuple(v) if isinstance(v, list) else v)
          for k, v in cfg.items() if k in NON_ARCHITECTURE_FIELDS}
