"""DiFAI generator G(I_masked, I_style', M) with SPARN (spatially adaptive region normalisation).

Re-expresses the paper's generator (DiFAI, Yoon et al., section "SPARN" and Table 3) as described
in DESIGN.md "DiFAI generator":

* a SPADE-style content encoder on concat(I_masked, mask): conv 7x7, then stride-2 convs, plain
  leaky ReLU, no normalisation, down to image_size / 16;
* a decoder of residual blocks (SPADE's ResnetBlock layout, Park et al. 2019) whose
  normalisation layers are SPARN: region normalisation (the parameter-free part of RN-B, Yu et
  al. 2020, geekyutao/RN) followed by a SPADE affine predicted from concat(I_style', mask);
* an output head lrelu -> conv 3x3 -> tanh.

``norm`` selects the three columns of the paper's Table 3:

* ``'sparn'`` (default): region normalisation, statistics per sample (``rn_stats='instance'``)
  or over the batch (``rn_stats='batch'``, as RN-B);
* ``'spade'``: parameter-free BatchNorm (plain SPADE decoder);
* ``'batch'``: BatchNorm with a learned affine, no region split ("w/o RN").
  Both BatchNorm variants keep running statistics in the ``batch_stats`` collection (PyTorch
  defaults: momentum 0.1, i.e. Flax ``momentum=0.9``, eps 1e-5) and use them when
  ``train=False``. (Flax averages the biased batch variance into the running variance where
  PyTorch uses the unbiased one: a factor N*H*W / (N*H*W - 1), negligible at these sizes.)

Resizing the condition to a block's resolution (a choice the paper leaves open): the style image
I_style' is area-downsampled (exact average pooling; the resolutions are the image size divided by
powers of two), the mask is nearest-downsampled (PyTorch ``F.interpolate(mode='nearest')``
semantics, as SPADE and RN do), so the mask stays binary and region statistics stay defined. We
avoid ``jax.image.resize`` here: it antialiases when downsampling, which would blur the mask into
non-binary values (see DESIGN.md, porting pitfalls).

Conventions: NHWC, images in [-1, 1], ``mask`` (N, H, W, 1) with 1 = known, 0 = hole.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

NORMS = ("sparn", "spade", "batch")
RN_STATS = ("instance", "batch")
LEAKY_SLOPE = 0.2
# PyTorch BatchNorm2d defaults expressed for Flax (Flax momentum = 1 - torch momentum).
BN_MOMENTUM = 0.9
BN_EPS = 1e-5


# ----------------------------------------------------------------------------------------------
# Image helpers shared by the generator, the coarse loss and the pipeline.
# ----------------------------------------------------------------------------------------------

def composite(i_masked: jax.Array, i_out: jax.Array, mask: jax.Array) -> jax.Array:
  """The paper's composite ``I_masked + hole * I_out`` (also used for I_style').

  Args:
    i_masked: (N, H, W, C) known pixels, zero in the hole (``image * mask``), in [-1, 1].
    i_out: (N, H, W, C) a generated image in [-1, 1].
    mask: (N, H, W, 1), 1 = known, 0 = hole.

  Returns:
    (N, H, W, C). For a binary mask the known pixels equal ``i_masked`` bit for bit (x + 0 * y is
    x exactly for finite y), the hole pixels equal ``i_out``.
  """
  if i_masked.shape != i_out.shape:
    raise ValueError(f"composite: i_masked {i_masked.shape} and i_out {i_out.shape} differ")
  _check_mask(mask, i_masked.shape, "composite")
  return i_masked + (1.0 - mask).astype(i_out.dtype) * i_out


def resize_nearest(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Nearest-neighbour resize with PyTorch ``F.interpolate(mode='nearest')`` semantics.

  Output pixel i takes input pixel ``floor(i * in / out)``; for an integer downsampling factor f
  this is ``x[:, ::f, ::f]``. No antialiasing: a binary mask stays binary.

  Args:
    x: (N, H, W, C).
    size: (out_h, out_w).
  """
  _, h, w, _ = x.shape
  out_h, out_w = size
  if (out_h, out_w) == (h, w):
    return x
  rows = np.floor(np.arange(out_h) * (h / out_h)).astype(np.int32)
  cols = np.floor(np.arange(out_w) * (w / out_w)).astype(np.int32)
  return x[:, rows][:, :, cols]


def downsample_area(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Area (average-pool) downsampling by integer factors, PyTorch ``mode='area'`` for them.

  Args:
    x: (N, H, W, C).
    size: (out_h, out_w); H and W must be integer multiples of them.

  Returns:
    (N, out_h, out_w, C), each output pixel the mean of its (H/out_h) x (W/out_w) input block.
  """
  n, h, w, c = x.shape
  out_h, out_w = size
  if (out_h, out_w) == (h, w):
    return x
  if out_h <= 0 or out_w <= 0 or h % out_h or w % out_w:
    raise ValueError(
        f"downsample_area: {h}x{w} is not an integer multiple of the requested {out_h}x{out_w}; "
        "use image sizes divisible by the network's total downsampling factor")
  fh, fw = h // out_h, w // out_w
  return x.reshape(n, out_h, fh, out_w, fw, c).mean(axis=(2, 4))


def _check_mask(mask: jax.Array, image_shape: Sequence[int], where: str) -> None:
  n, h, w = image_shape[:3]
  if mask.ndim != 4 or tuple(mask.shape) != (n, h, w, 1):
    raise ValueError(
        f"{where}: mask must have shape (N, H, W, 1) = {(n, h, w, 1)} matching the image "
        f"(1 = known pixel, 0 = hole); got {tuple(mask.shape)}")


def _check_image(x: jax.Array, name: str, where: str) -> None:
  if x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(f"{where}: {name} must be an NHWC RGB batch (N, H, W, 3); got {x.shape}")


def _lrelu(x: jax.Array) -> jax.Array:
  return nn.leaky_relu(x, LEAKY_SLOPE)


def _upsample2x(x: jax.Array) -> jax.Array:
  """x2 nearest upsampling: (N, H, W, C) -> (N, 2H, 2W, C)."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


# ----------------------------------------------------------------------------------------------
# Region normalisation and SPARN.
# ----------------------------------------------------------------------------------------------

def region_norm(x: jax.Array, mask: jax.Array, stats: str = "instance",
                eps: float = 1e-5) -> jax.Array:
  """Region normalisation (parameter-free part of RN-B, Yu et al. 2020).

  Per channel, the known region (mask = 1) and the hole (mask = 0) are each normalised with their
  own mean and (biased) variance: ``(x - mu_r) / sqrt(var_r + eps)`` inside region r.
  RN-B computes this by filling the other region with the region mean and running a batch norm
  rescaled by sqrt(|r| / NHW); that equals the direct form above up to where eps enters
  (RN-B's effective eps is eps * NHW / |r|). We use the direct form.

  Args:
    x: (N, H, W, C) features.
    mask: (N, H, W, 1) binary at x's resolution, 1 = known, 0 = hole.
    stats: ``'instance'``: statistics per sample over (H, W) within each region, so a sample's
      output never depends on its batch-mates; ``'batch'``: over (N, H, W) within each region, as
      the original RN.
    eps: added to the variance.

  Returns:
    (N, H, W, C) in x's dtype. An empty region (no pixel of that kind, e.g. a small hole that
    vanished at a low resolution, or an all-known mask) contributes nothing and stays finite,
    with finite gradients.
  """
  if stats not in RN_STATS:
    raise ValueError(f"region_norm: stats must be one of {RN_STATS}; got {stats!r}")
  _check_mask(mask, x.shape, "region_norm")
  axes = (1, 2) if stats == "instance" else (0, 1, 2)
  x32 = x.astype(jnp.float32)
  known = mask.astype(jnp.float32)
  out = jnp.zeros_like(x32)
  for region in (known, 1.0 - known):
    # Pixel count of the region; max(., 1) keeps empty regions finite (their mask is zero, so
    # their contribution below is zero whatever the statistics are).
    count = jnp.maximum(jnp.sum(region, axis=axes, keepdims=True), 1.0)
    mean = jnp.sum(x32 * region, axis=axes, keepdims=True) / count
    var = jnp.sum(jnp.square(x32 - mean) * region, axis=axes, keepdims=True) / count
    out = out + region * (x32 - mean) * jax.lax.rsqrt(var + eps)
  return out.astype(x.dtype)


class RegionNorm(nn.Module):
  """Module wrapper of :func:`region_norm` (no parameters, no state)."""
  stats: str = "instance"
  eps: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    return region_norm(x, mask, self.stats, self.eps)


class SPARN(nn.Module):
  """Spatially adaptive region normalisation.

  ``SPARN(x; cond) = norm(x) * (1 + gamma(cond)) + beta(cond)`` with
  ``cond = concat(I_style', mask)`` at x's resolution, ``gamma, beta`` 3x3 convs on a shared
  3x3 conv + ReLU of ``hidden`` channels (SPADE's mlp_shared / mlp_gamma / mlp_beta), and
  ``norm`` region normalisation (``'sparn'``), parameter-free BatchNorm (``'spade'``) or
  BatchNorm with a learned affine (``'batch'``).

  Attributes:
    norm: ``'sparn'`` | ``'spade'`` | ``'batch'``.
    rn_stats: ``'instance'`` | ``'batch'`` (only for ``norm='sparn'``), see :func:`region_norm`.
    hidden: width of the shared conv (128 in SPADE and the paper).
    eps: normalisation epsilon (1e-5 as PyTorch's BatchNorm).
    dtype: compute dtype; params are float32.
  """
  norm: str = "sparn"
  rn_stats: str = "instance"
  hidden: int = 128
  eps: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, cond: jax.Array, mask: jax.Array, *,
               train: bool = False) -> jax.Array:
    """x (N, h, w, C); cond (N, h, w, Cc); mask (N, h, w, 1) binary -> (N, h, w, C)."""
    if cond.shape[:3] != x.shape[:3]:
      raise ValueError(f"SPARN: condition {cond.shape} is not at the features' resolution "
                       f"{x.shape}; resize it first (see condition_pyramid)")
    if self.norm == "sparn":
      normalized = region_norm(x, mask, self.rn_stats, self.eps)
    elif self.norm in ("spade", "batch"):
      learned = self.norm == "batch"
      normalized = nn.BatchNorm(
          use_running_average=not train, momentum=BN_MOMENTUM, epsilon=self.eps,
          use_scale=learned, use_bias=learned, dtype=self.dtype, name="batch_norm")(x)
    else:
      raise ValueError(f"SPARN: norm must be one of {NORMS}; got {self.norm!r}")
    conv = lambda f, name: nn.Conv(f, (3, 3), padding="SAME", dtype=self.dtype, name=name)
    actv = nn.relu(conv(self.hidden, "shared")(cond.astype(self.dtype)))
    gamma = conv(x.shape[-1], "gamma")(actv)
    beta = conv(x.shape[-1], "beta")(actv)
    return normalized.astype(self.dtype) * (1.0 + gamma) + beta


class SPARNResBlock(nn.Module):
  """SPADE's ResnetBlock with SPARN: ``shortcut(x) + conv(lrelu(SPARN(conv(lrelu(SPARN(x))))))``.

  The middle width is ``min(C_in, features)`` (SPADE); when ``C_in != features`` the shortcut is
  SPARN -> conv 1x1 without bias, otherwise identity.
  """
  features: int
  norm: str = "sparn"
  rn_stats: str = "instance"
  hidden: int = 128
  eps: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, cond: jax.Array, mask: jax.Array, *,
               train: bool = False) -> jax.Array:
    """(N, h, w, C_in) -> (N, h, w, features)."""
    sparn = lambda name: SPARN(self.norm, self.rn_stats, self.hidden, self.eps, self.dtype,
                               name=name)
    conv = lambda f, k, name, bias=True: nn.Conv(f, (k, k), padding="SAME", use_bias=bias,
                                                 dtype=self.dtype, name=name)
    f_in = x.shape[-1]
    f_mid = min(f_in, self.features)
    dx = conv(f_mid, 3, "conv_0")(_lrelu(sparn("norm_0")(x, cond, mask, train=train)))
    dx = conv(self.features, 3, "conv_1")(_lrelu(sparn("norm_1")(dx, cond, mask, train=train)))
    if f_in != self.features:
      x = conv(self.features, 1, "conv_s", bias=False)(
          sparn("norm_s")(x, cond, mask, train=train))
    return x + dx


class ContentEncoder(nn.Module):
  """SPADE-style encoder of concat(I_masked, mask): conv 7x7 then stride-2 3x3 convs.

  ``widths[0]`` is the 7x7 conv (full resolution); each further width is a stride-2 conv
  (3x3, symmetric padding 1 as PyTorch's ``padding=1``), all followed by leaky ReLU 0.2, no
  normalisation. (N, H, W, 4) -> (N, H / 2^(len(widths) - 1), ..., widths[-1]).
  """
  widths: Sequence[int] = (64, 128, 256, 512, 512)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = _lrelu(nn.Conv(self.widths[0], (7, 7), padding="SAME", dtype=self.dtype,
                       name="conv_in")(x.astype(self.dtype)))
    for i, width in enumerate(self.widths[1:]):
      # (N, h, w, C) -> (N, h/2, w/2, width)
      x = _lrelu(nn.Conv(width, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)),
                         dtype=self.dtype, name=f"down_{i}")(x))
    return x


def condition_pyramid(i_style_prime: jax.Array, mask: jax.Array,
                      sizes: Sequence[tuple[int, int]]) -> list[tuple[jax.Array, jax.Array]]:
  """The SPARN condition at each decoder resolution.

  Returns, for each (h, w) in ``sizes``, ``(cond, mask_hw)`` with
  ``cond = concat(area(I_style'), mask_hw)`` (N, h, w, 4) and ``mask_hw = nearest(mask)``
  (N, h, w, 1), binary.
  """
  levels = []
  for size in sizes:
    mask_hw = resize_nearest(mask, size)
    style_hw = downsample_area(i_style_prime, size)
    levels.append((jnp.concatenate([style_hw, mask_hw.astype(style_hw.dtype)], axis=-1),
                   mask_hw))
  return levels


class DiFAIGenerator(nn.Module):
  """G(I_masked, I_style', mask) -> I_out (raw, in [-1, 1]).

  The decoder has one SPARN res-block per width in ``decoder_widths`` (16, 32, 64, 128, 256 px
  at 256 px input), each followed by x2 nearest upsampling except the last. The encoder
  downsamples ``len(encoder_widths) - 1`` times and the decoder upsamples
  ``len(decoder_widths) - 1`` times; both must agree so that I_out has the input's size (with
  the default five widths the bottleneck is image_size / 16).

  Attributes:
    encoder_widths: content encoder widths (first = 7x7 conv, then one stride-2 conv each).
    decoder_widths: res-block widths from the bottleneck up to full resolution.
    norm: ``'sparn'`` | ``'spade'`` | ``'batch'`` (Table 3), see :class:`SPARN`.
    rn_stats: ``'instance'`` | ``'batch'``, region statistics (norm='sparn' only).
    spade_hidden: width of SPARN's shared conv.
    eps: normalisation epsilon.
    dtype: compute dtype (params are float32).
  """
  encoder_widths: Sequence[int] = (64, 128, 256, 512, 512)
  decoder_widths: Sequence[int] = (512, 512, 256, 128, 64)
  norm: str = "sparn"
  rn_stats: str = "instance"
  spade_hidden: int = 128
  eps: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, i_masked: jax.Array, i_style_prime: jax.Array, mask: jax.Array, *,
               train: bool = False) -> jax.Array:
    """Args:
      i_masked: (N, H, W, 3) ``image * mask`` in [-1, 1].
      i_style_prime: (N, H, W, 3) ``I_masked + hole * I_style`` in [-1, 1].
      mask: (N, H, W, 1), 1 = known, 0 = hole.
      train: BatchNorm statistics (norm 'spade' / 'batch'): batch statistics and running-average
        updates (pass ``mutable=['batch_stats']``) when True, running averages when False.

    Returns:
      I_out (N, H, W, 3) in [-1, 1] (tanh), not yet composited (see :func:`composite`).
    """
    where = "DiFAIGenerator"
    _check_image(i_masked, "i_masked", where)
    _check_image(i_style_prime, "i_style_prime", where)
    if i_style_prime.shape != i_masked.shape:
      raise ValueError(f"{where}: i_style_prime {i_style_prime.shape} and i_masked "
                       f"{i_masked.shape} must have the same shape")
    _check_mask(mask, i_masked.shape, where)
    if self.norm not in NORMS:
      raise ValueError(f"{where}: norm must be one of {NORMS}; got {self.norm!r}")
    if self.rn_stats not in RN_STATS:
      raise ValueError(f"{where}: rn_stats must be one of {RN_STATS}; got {self.rn_stats!r}")
    n_down = len(self.encoder_widths) - 1
    if len(self.decoder_widths) - 1 != n_down:
      raise ValueError(
          f"{where}: the encoder downsamples {n_down} times (encoder_widths "
          f"{tuple(self.encoder_widths)}) but the decoder upsamples "
          f"{len(self.decoder_widths) - 1} times (decoder_widths {tuple(self.decoder_widths)}); "
          "give both the same number of widths")
    _, h, w, _ = i_masked.shape
    factor = 2 ** n_down
    if h % factor or w % factor:
      raise ValueError(f"{where}: image size {h}x{w} must be divisible by {factor} "
                       f"({n_down} stride-2 downsamplings)")

    mask = mask.astype(self.dtype)
    x = ContentEncoder(tuple(self.encoder_widths), self.dtype, name="encoder")(
        jnp.concatenate([i_masked.astype(self.dtype), mask], axis=-1))
    sizes = [(h // 2 ** (n_down - i), w // 2 ** (n_down - i)) for i in range(n_down + 1)]
    pyramid = condition_pyramid(i_style_prime.astype(self.dtype), mask, sizes)
    for i, (width, (cond, mask_hw)) in enumerate(zip(self.decoder_widths, pyramid)):
      x = SPARNResBlock(width, self.norm, self.rn_stats, self.spade_hidden, self.eps,
                        self.dtype, name=f"block_{i}")(x, cond, mask_hw, train=train)
      if i < n_down:
        x = _upsample2x(x)  # (N, h, w, C) -> (N, 2h, 2w, C)
    x = nn.Conv(3, (3, 3), padding="SAME", dtype=self.dtype, name="conv_out")(_lrelu(x))
    return jnp.tanh(x).astype(jnp.float32)


# Fields of a generator config that are not constructor arguments of DiFAIGenerator.
NON_ARCHITECTURE_FIELDS: tuple[str, ...] = ()


def from_config(cfg: Any) -> DiFAIGenerator:
  """Builds a :class:`DiFAIGenerator` from a ConfigDict or dict of its fields.

  Lists (as JSON gives them) become tuples and ``dtype`` may be a string ('float32',
  'bfloat16'). Unknown keys raise ValueError naming them.
  """
  return DiFAIGenerator(**module_kwargs(DiFAIGenerator, cfg, NON_ARCHITECTURE_FIELDS))


def module_kwargs(cls: type, cfg: Any, ignore: Sequence[str] = ()) -> dict:
  """Constructor kwargs of the linen Module class ``cls`` from a ConfigDict or dict.

  Keys in ``ignore`` (e.g. loss weights kept next to the architecture) are dropped; any other key
  that is not a field of ``cls`` raises ValueError. Lists become tuples, a string ``dtype``
  becomes a numpy dtype. Shared by every ``from_config`` of the trainable models.
  """
  cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
  names = {f.name for f in dataclasses.fields(cls)} - {"parent", "name"}
  unknown = sorted(set(cfg) - names - set(ignore))
  if unknown:
    raise ValueError(f"{cls.__name__} config has unknown fields {unknown}; known architecture "
                     f"fields: {sorted(names)}")
  kwargs = {}
  for key in names & set(cfg):
    value = cfg[key]
    if isinstance(value, list):
      value = tuple(value)
    if key == "dtype" and isinstance(value, str):
      value = jnp.dtype(value)
    kwargs[key] = value
  return kwargs
