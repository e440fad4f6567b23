"""Coarse inpainting network: the customised MLGN of DiFAI, and its loss.

DiFAI (Yoon et al.) first completes the masked face with MLGN (Liu & Jung, "Facial image
inpainting using multi-level generative network", ICME 2019) trained with a customised
adversarial weight ("lambda") so that the completion is deliberately smooth: a blurry completion
leaves pSp room to find diverse codes. This module re-expresses the generator of MLGN's public
code (JieLiu95/MLGN, ``Models/models_gd.py``, class ``Generator``) and the generator loss of its
``Models/inpainting_model.py`` (the loss is :func:`difai_jax.losses.coarse_loss`):

* input concat(I_masked, hole) (4 channels, hole = 1 - mask, as MLGN feeds its mask);
* every conv reflection-pads by ``kernel // 2`` and has a bias; InstanceNorm without affine
  parameters (PyTorch ``InstanceNorm2d`` defaults: eps 1e-5, biased variance, no running stats)
  after every conv but the first and the last; leaky ReLU 0.2; ResnetBlocks (pad-conv-IN-lrelu-
  pad-conv-IN plus identity); upsampling by ``ConvTranspose2d(4, stride 2, padding 1)`` + IN +
  lrelu;
* a stem of four stride-2 convs (7x7, 5x5, 3x3, two ResnetBlocks, 3x3) down to floor 0 (H/16);
  floor 1 (H/32) branches from floor 0, floor 2 (H/64) from floor 1, each through a 5x5 stride-2
  conv, a 3x3 conv and three ResnetBlocks, then climbs back by x2 steps (each a transposed conv
  and a conv + ResnetBlock);
* fusion by concatenation: floor 0 (up to H/8) with floor 2 (up to H/8), up to H/4, with floor 1
  (up to H/4), then two more x2 steps to full resolution and one 5x5 conv + tanh: the single
  RGB output.

Layer names follow the reference's attributes (``down_0_0`` ... ``conv_2_3``), so its state dict
maps onto these params by a table (``weights_conversion/mlgn.py``). Channel widths are the
reference's four (64, 128, 192, 256) by default and configurable (narrow for tests and the demo).
``floor_stride`` (16 in MLGN) lets small images keep useful floors: at 8 or 4 the outermost one
or two stem convs run at stride 1 and their mirrored transposed convs become 3x3 convs (an
addition of ours; the reference only runs at 16).

The loss (``Models/inpainting_model.py``, ``backward_G``) scores the composite
``I_masked + hole * out``: SmoothL1 of the hole region averaged over all pixels, MS-SSIM of the
composite in [0, 1], and an adversarial term whose weight is the customised lambda (0 here).

InstanceNorm is per sample: a sample's output never depends on its batch-mates. Conventions: NHWC,
images in [-1, 1], ``mask`` (N, H, W, 1), 1 = known, 0 = hole.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from difai_jax.models.sparn import module_kwargs
from difai_jax.nn import layers
from difai_jax.nn.norms import instance_norm

LEAKY_SLOPE = 0.2
FLOOR_STRIDES = (4, 8, 16)


class CoarseOutputs(NamedTuple):
  """The coarse net's prediction: ``full`` (N, H, W, 3) in [-1, 1], the raw tanh output.

  The pipeline composites it with the known pixels (eq. 2) to form I_coarse.
  """
  full: jax.Array


def reflect_pad(x: jax.Array, pad: int) -> jax.Array:
  """PyTorch ``ReflectionPad2d(pad)`` in NHWC (the edge pixel is not repeated)."""
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def lrelu(x: jax.Array) -> jax.Array:
  return nn.leaky_relu(x, LEAKY_SLOPE)


class ConvBlock(nn.Module):
  """Reflection pad ``kernel // 2`` -> conv (bias) -> [InstanceNorm] -> [leaky ReLU 0.2].

  The reference's ``Sequential(ReflectionPad2d, Conv2d, InstanceNorm2d, LeakyReLU)``.
  """
  features: int
  kernel: int = 3
  stride: int = 1
  norm: bool = True
  act: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = reflect_pad(x, self.kernel // 2)
    x = nn.Conv(self.features, (self.kernel, self.kernel), strides=(self.stride, self.stride),
                padding="VALID", dtype=self.dtype, name="conv")(x)
    if self.norm:
      x = instance_norm(x)
    return lrelu(x) if self.act else x


class ResnetBlock(nn.Module):
  """MLGN's ResnetBlock: ``x + IN(conv(lrelu(IN(conv(x)))))``, 3x3 reflect-padded convs."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    y = ConvBlock(c, dtype=self.dtype, name="conv_0")(x)
    y = ConvBlock(c, act=False, dtype=self.dtype, name="conv_1")(y)
    return x + y


class ResStack(nn.Module):
  """``num_blocks`` ResnetBlocks at the input's width (the reference's ``res_*`` blocks)."""
  num_blocks: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i in range(self.num_blocks):
      x = ResnetBlock(dtype=self.dtype, name=f"res_{i}")(x)
    return x


class ConvRes(nn.Module):
  """A 3x3 :class:`ConvBlock` to ``features`` then ``num_blocks`` ResnetBlocks (``conv_*``)."""
  features: int
  num_blocks: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = ConvBlock(self.features, dtype=self.dtype, name="conv")(x)
    for i in range(self.num_blocks):
      x = ResnetBlock(dtype=self.dtype, name=f"res_{i}")(x)
    return x


class UpBlock(nn.Module):
  """x2 upsampling: ``ConvTranspose2d(4, stride 2, padding 1)`` -> IN -> leaky ReLU (``up_*``).

  PyTorch's transposed conv equals a stride-2 dilation of the input, a zero pad of
  ``kernel - 1 - padding = 2`` per side and a correlation with the spatially flipped kernel:
  Flax's ``ConvTranspose`` with explicit padding (2, 2) and its kernel (4, 4, in, out) holding
  the flipped PyTorch weight (the converter flips it). With ``upsample=False`` (``floor_stride``
  < 16) the step keeps the resolution: a reflect-padded 3x3 :class:`ConvBlock` instead.
  """
  features: int
  upsample: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.upsample:
      # (N, h, w, C) -> (N, 2h, 2w, features)
      x = layers.ConvTranspose2x(self.features, (4, 4), padding=((2, 2), (2, 2)),
                                 dtype=self.dtype, name="conv_t")(x)
      return lrelu(instance_norm(x))
    return ConvBlock(self.features, dtype=self.dtype, name="conv")(x)


class Head(nn.Module):
  """The reference's ``conv_0_0``: two 3x3 ConvBlocks, then a 5x5 conv to RGB and tanh."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = ConvBlock(self.features, dtype=self.dtype, name="conv_0")(x)
    x = ConvBlock(self.features, dtype=self.dtype, name="conv_1")(x)
    x = ConvBlock(3, kernel=5, norm=False, act=False, dtype=self.dtype, name="to_rgb")(x)
    return jnp.tanh(x)


class CoarseNet(nn.Module):
  """MLGN's generator (JieLiu95/MLGN ``Generator``): (I_masked, mask) -> :class:`CoarseOutputs`.

  Attributes:
    widths: the reference's four channel counts (64, 128, 192, 256); every layer uses one of
      them (``widths[0]``: full to H/4 resolution and floor 1's climb from H/8; ``widths[1]``:
      the stem at H/4, floors 1 and 2, the H/8 fusion; ``widths[2]``: the stem at H/8;
      ``widths[3]``: floor 0). Any four values work (Flax infers input widths).
    floor_stride: input size / floor 0 size. 16 is MLGN (floors at 16, 8, 4 px for a 256 px
      input); 8 or 4 run the outermost one or two stem convs at stride 1 and replace their
      mirrored transposed convs by 3x3 convs (for small images: at 64 px, 4 keeps the floors at
      16, 8, 4 px). Image sides must be multiples of ``4 * floor_stride`` with floor 2 at least
      2 px (InstanceNorm of a 1-pixel map is 0).
    dtype: compute dtype (params are float32; InstanceNorm statistics are float32).
  """
  widths: Sequence[int] = (64, 128, 192, 256)
  floor_stride: int = 16
  dtype: Any = jnp.float32

  def check_inputs(self, i_masked: jax.Array, mask: jax.Array) -> None:
    """Raises a ValueError saying what does not fit: shapes, widths, floor stride."""
    if i_masked.ndim != 4 or i_masked.shape[-1] != 3:
      raise ValueError(f"CoarseNet: i_masked must be (N, H, W, 3); got {i_masked.shape}")
    n, h, w, _ = i_masked.shape
    if mask.shape != (n, h, w, 1):
      raise ValueError(f"CoarseNet: mask must be (N, H, W, 1) = {(n, h, w, 1)} "
                       f"(1 = known, 0 = hole); got {mask.shape}")
    if len(self.widths) != 4:
      raise ValueError(f"CoarseNet: widths must hold MLGN's 4 channel counts (64, 128, 192, "
                       f"256 in the reference); got {tuple(self.widths)}")
    if self.floor_stride not in FLOOR_STRIDES:
      raise ValueError(f"CoarseNet: floor_stride must be one of {FLOOR_STRIDES} (16 is MLGN); "
                       f"got {self.floor_stride}")
    deepest = 4 * self.floor_stride   # floor 2 is H / (4 * floor_stride)
    if h % deepest or w % deepest or min(h, w) < 2 * deepest:
      raise ValueError(
          f"CoarseNet: image size {h}x{w} does not fit floor_stride {self.floor_stride}: the "
          f"sides must be multiples of {deepest} and at least {2 * deepest} (floor 2 at "
          f">= 2 px); lower floor_stride for small images")

  @nn.compact
  def __call__(self, i_masked: jax.Array, mask: jax.Array) -> CoarseOutputs:
    """Args:
      i_masked: (N, H, W, 3) ``image * mask`` in [-1, 1].
      mask: (N, H, W, 1), 1 = known, 0 = hole.

    Returns:
      CoarseOutputs(full (N, H, W, 3) float32 in [-1, 1]), the raw network output.
    """
    self.check_inputs(i_masked, mask)
    w0, w1, w2, w3 = self.widths
    outer_0 = self.floor_stride >= 16   # down_0_0 / up_0_0 change the resolution
    outer_1 = self.floor_stride >= 8    # down_0_1 / up_0_1 change the resolution
    kw = dict(dtype=self.dtype)
    hole = 1.0 - mask.astype(i_masked.dtype)
    x = jnp.concatenate([i_masked, hole], axis=-1).astype(self.dtype)   # (N, H, W, 4)

    # Resolutions in the comments are MLGN's (floor_stride 16).
    # Stem to floor 0: (N, H, W, 4) -> (N, H/16, W/16, w3).
    x = ConvBlock(w0, 7, 2 if outer_0 else 1, norm=False, name="down_0_0", **kw)(x)
    x = ConvBlock(w1, 5, 2 if outer_1 else 1, name="down_0_1", **kw)(x)
    x = ConvBlock(w2, 3, 2, name="down_0_2", **kw)(x)                   # H/8
    x = ResStack(2, name="res_0_0", **kw)(x)
    floor_0 = ConvBlock(w3, 3, 2, name="down_0_3", **kw)(x)            # H/16
    out_0_1 = ResStack(3, name="res_0_1", **kw)(floor_0)
    out_0_1 = ConvRes(w1, name="conv_0_3", **kw)(UpBlock(w3, name="up_0_3", **kw)(out_0_1))

    # Floor 1: H/16 -> H/32, back up to H/4 with width w0.
    floor_1 = ConvBlock(w1, 5, 2, name="down_1_0", **kw)(floor_0)      # H/32
    floor_1 = ConvBlock(w1, 3, name="conv_1_0", **kw)(floor_1)
    y = ResStack(3, name="res_1_0", **kw)(floor_1)
    y = ConvRes(w1, name="conv_1_1", **kw)(UpBlock(w1, name="up_1_0", **kw)(y))    # H/16
    y = ConvRes(w0, name="conv_1_2", **kw)(UpBlock(w0, name="up_1_1", **kw)(y))    # H/8
    out_1 = ConvRes(w0, name="conv_1_3", **kw)(UpBlock(w0, name="up_1_2", **kw)(y))  # H/4

    # Floor 2: H/32 -> H/64 (from floor 1 before its ResnetBlocks), back up to H/8, width w1.
    z = ConvBlock(w1, 5, 2, name="down_2_0", **kw)(floor_1)            # H/64
    z = ResStack(3, name="res_2_0", **kw)(ConvBlock(w1, 3, name="conv_2_0", **kw)(z))
    z = ConvRes(w1, name="conv_2_1", **kw)(UpBlock(w1, name="up_2_0", **kw)(z))    # H/32
    z = ConvRes(w1, name="conv_2_2", **kw)(UpBlock(w1, name="up_2_1", **kw)(z))    # H/16
    out_2 = ConvRes(w1, name="conv_2_3", **kw)(UpBlock(w1, name="up_2_2", **kw)(z))  # H/8

    # Fusion by concatenation, then up to full resolution.
    x = jnp.concatenate([out_0_1, out_2], axis=-1)                     # (N, H/8, W/8, 2 w1)
    x = ConvRes(w0, name="conv_0_2", **kw)(UpBlock(w1, name="up_0_2", **kw)(x))    # H/4
    x = jnp.concatenate([x, out_1], axis=-1)                           # (N, H/4, W/4, 2 w0)
    x = UpBlock(w0, upsample=outer_1, name="up_0_1", **kw)(x)          # H/2
    x = ConvRes(w0, num_blocks=2, name="conv_0_1", **kw)(x)
    x = UpBlock(w0, upsample=outer_0, name="up_0_0", **kw)(x)          # H
    full = Head(w0, name="conv_0_0", **kw)(x)                          # (N, H, W, 3)
    return CoarseOutputs(full=full.astype(jnp.float32))


# Fields of config.coarse that configure the loss, not the module.
NON_ARCHITECTURE_FIELDS = ("lambda_rec", "lambda_ms_ssim", "lambda_adv", "ms_ssim_weights")


def from_config(cfg: Any) -> CoarseNet:
  """Builds a :class:`CoarseNet` from a ConfigDict or dict (loss fields are ignored)."""
  return CoarseNet(**module_kwargs(CoarseNet, cfg, NON_ARCHITECTURE_FIELDS))


def loss_kwargs(cfg: Any) -> dict:
  """The :func:`coarse_loss` keyword arguments found in config.coarse."""
  cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
  return {k: (tuple(v) if isinstance(v, list) else v)
          for k, v in cfg.items() if k in NON_ARCHITECTURE_FIELDS}
