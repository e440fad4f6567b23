"""DiFAI generator G(I_masked, I_style', M) with SPARN (spatially adaptive region normalisation).

Re-expresses the paper's generator (DiFAI, Yoon et al., section "SPARN" and Table 3), with
SPADE's parts as NVlabs/SPADE has them (Park et al. 2019):

* the content encoder is SPADE's ConvEncoder (``models/networks/encoder.py``) on
  concat(I_masked, mask): 3x3 stride-2 convs, each spectral-normalised and followed by a
  parameter-free instance norm (SPADE's default ``norm_E='spectralinstance'``, whose convs lose
  their bias) and leaky ReLU 0.2; kept spatial (no fc_mu / fc_var), down to image_size / 16;
* a decoder of SPADE's ResnetBlocks (``architecture.py`` SPADEResnetBlock, spectral norm on
  ``conv_0``, ``conv_1``, ``conv_s`` as SPADE's ``norm_G='spectral...'``) whose normalisation
  layers are SPARN: region normalisation (the parameter-free part of RN-B, Yu et al. 2020,
  geekyutao/RN ``rn.py``) followed by a SPADE affine predicted from concat(I_style', mask);
* an output head lrelu -> conv 3x3 -> tanh (SPADE's conv_img, no spectral norm).

``norm`` selects the three columns of the paper's Table 3:

* ``'sparn'`` (default): region normalisation with batch statistics (``rn_stats='batch'``, as
  RN-B, whose BatchNorm keeps no running statistics: batch statistics in training and inference)
  or per-sample statistics (``rn_stats='instance'``, an option);
* ``'spade'``: parameter-free BatchNorm (plain SPADE decoder);
* ``'batch'``: BatchNorm with a learned affine, no region split ("w/o RN").
  Both BatchNorm variants keep running statistics in the ``batch_stats`` collection (PyTorch's
  BatchNorm2d: momentum 0.1, eps 1e-5, the unbiased batch variance averaged into the running
  variance) and use them when ``train=False``.

Batch statistics and the K style variants. The pipeline folds the K = 1 + alpha completions of
a batch of N images into one generator batch of N * K, sample-major (``num_completions=K``: rows
i * K ... i * K + K - 1 are the K variants of image i, see :func:`fold_variants`; sample-major
keeps each image's variants on the device that holds the image when the batch is split over a
mesh, where a variant-major fold would make XLA gather the whole batch on every device). Every
batch statistic (RN with ``rn_stats='batch'``, the BatchNorm of 'spade' / 'batch' in training)
is pooled over the N images of one variant j, never across variants: completion j depends on
its batch-mates (as RN-B) but not on K nor on the other style images, exactly as if each variant
had been a separate forward. A training step updates the running statistics once, with the
average over variants of the per-variant statistics.

Spectral norm (Miyato et al. 2018) with PyTorch's ``torch.nn.utils.spectral_norm`` semantics,
:class:`SpectralNorm`: the power-iteration vectors ``u`` and ``v`` live in the ``'spectral'``
collection; a training forward (``train=True``, apply with ``mutable=['spectral']``) does one
power iteration and stores the vectors, an inference forward uses the stored ones as they are.

Resizing the condition to a block's resolution (a choice the paper leaves open): the style image
I_style' is area-downsampled (exact average pooling; the resolutions are the image size divided by
powers of two), the mask is nearest-downsampled (PyTorch ``F.interpolate(mode='nearest')``
semantics, as SPADE and RN do), so the mask stays binary and region statistics stay defined. We
avoid ``jax.image.resize`` here: it antialiases when downsampling, which would blur the mask into
non-binary values.

Conventions: NHWC, images in [-1, 1], ``mask`` (N, H, W, 1) with 1 = known, 0 = hole.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from difai_jax.nn.norms import instance_norm
from difai_jax.nn.variants import fold_variants
from difai_jax.nn.variants import unfold_variants

NORMS = ("sparn", "spade", "batch")
RN_STATS = ("instance", "batch")
ENCODERS = ("spade", "plain")
LEAKY_SLOPE = 0.2
# PyTorch BatchNorm2d defaults expressed for Flax (Flax momentum = 1 - torch momentum).
BN_MOMENTUM = 0.9
BN_EPS = 1e-5
# torch.nn.utils.spectral_norm defaults: one power iteration per training forward, eps 1e-12.
SPECTRAL_COLLECTION = "spectral"
SN_STEPS = 1
SN_EPS = 1e-12


# ----------------------------------------------------------------------------------------------
# Image helpers shared by the generator, the coarse loss and the pipeline.
# ----------------------------------------------------------------------------------------------

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


def _variant_blocks(x: jax.Array, num_completions: int, where: str) -> jax.Array:
  """(N * K, ...) -> (K, N, ...): the batch's ``num_completions`` style variants apart (folded
  sample-major, as ``pipeline.generate`` does)."""
  if num_completions < 1 or x.shape[0] % num_completions:
    raise ValueError(f"{where}: the batch of {x.shape[0]} is not num_completions = "
                     f"{num_completions} equal blocks (K style variants folded sample-major "
                     "into the batch)")
  return unfold_variants(x, num_completions)


# ----------------------------------------------------------------------------------------------
# Spectral norm and instance norm (SPADE's 'spectral' and 'instance' norm_E / norm_G parts).
# ----------------------------------------------------------------------------------------------

def _l2_normalize(v: jax.Array, eps: float) -> jax.Array:
  """``v / max(||v||, eps)``, PyTorch's ``F.normalize``."""
  return v / jnp.maximum(jnp.sqrt(jnp.sum(jnp.square(v))), eps)


class SpectralNorm(nn.Module):
  """Spectral normalisation of a wrapped layer's kernels, as ``torch.nn.utils.spectral_norm``.

  The kernel (kh, kw, C_in, C_out) is read as the matrix W (kh * kw * C_in, C_out) and divided
  by ``sigma = u . W^T v`` (u in output space, v in input space, both no-gradient). A training
  forward (``update_stats=True``) first does ``n_steps`` power iterations
  ``v = normalize(W u)``, ``u = normalize(W^T v)`` from the stored u and stores the new u and v
  (and sigma, for monitoring); an inference forward uses the stored u and v as they are, without
  an iteration (PyTorch's ``module.eval()``). ``flax.linen.SpectralNorm`` instead iterates on
  every call and keeps no v, so its inference output differs from PyTorch's until the iteration
  has converged.

  At initialisation u and v are unit vectors drawn from the ``'params'`` rng (as PyTorch) and one
  round of ``n_steps`` iterations is applied, as if a training forward had run: a network
  evaluated before its first training step then sees ``sigma = ||W v|| > 0`` instead of a random
  ``u . W^T v`` of either sign.

  Same interface as ``flax.linen.SpectralNorm`` (``layer_instance``, ``update_stats``; variables
  ``'<layer>/kernel/u'`` (1, C_out), ``'<layer>/kernel/v'`` (1, kh * kw * C_in) and
  ``'<layer>/kernel/sigma'`` in ``collection_name``). Biases and other vectors are left as they
  are. A PyTorch ``weight_v`` (C_in * kh * kw, in (C_in, kh, kw) order) maps to v by permuting it
  to (kh, kw, C_in) order; ``weight_u`` maps to u unchanged.
  """
  layer_instance: nn.Module
  n_steps: int = SN_STEPS
  epsilon: float = SN_EPS
  collection_name: str = SPECTRAL_COLLECTION

  @nn.compact
  def __call__(self, *args, update_stats: bool, **kwargs):
    iterate = update_stats or self.is_initializing()

    def normalize(path, value):
      if value.ndim < 2:
        return value
      name = "/".join([self.layer_instance.name] + [k.key for k in path[1:]])
      w = jnp.asarray(value, jnp.float32).reshape(-1, value.shape[-1])  # (fan_in, C_out)
      unit_normal = lambda rng, n: _l2_normalize(jax.random.normal(rng, (1, n)), self.epsilon)
      first = not self.has_variable(self.collection_name, f"{name}/u")
      u_var = self.variable(self.collection_name, f"{name}/u", unit_normal,
                            self.make_rng("params") if first else None, w.shape[1])
      v_var = self.variable(self.collection_name, f"{name}/v", unit_normal,
                            self.make_rng("params") if first else None, w.shape[0])
      sigma_var = self.variable(self.collection_name, f"{name}/sigma", jnp.ones, (),
                                jnp.float32)
      u, v = u_var.value, v_var.value
      if iterate:
        for _ in range(self.n_steps):
          v = _l2_normalize(u @ w.T, self.epsilon)   # (1, C_out) -> (1, fan_in)
          u = _l2_normalize(v @ w, self.epsilon)     # (1, fan_in) -> (1, C_out)
        u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
      sigma = jnp.sum((v @ w) * u)
      if iterate:
        u_var.value, v_var.value = u, v
        sigma_var.value = jax.lax.stop_gradient(sigma)
      return (w / sigma).reshape(value.shape).astype(value.dtype)

    return nn.map_variables(
        lambda layer: layer(*args, **kwargs), "params",
        trans_in_fn=lambda vs: jax.tree_util.tree_map_with_path(normalize, vs),
        init=self.is_initializing(), mutable=True)(self.layer_instance)


def _conv(features: int, kernel: int, name: str, *, spectral_norm: bool, dtype: Any,
          strides: int = 1, use_bias: bool = True):
  """A conv with PyTorch's symmetric padding (kernel - 1) // 2, spectral-normalised or not.

  Returns ``f(x, train)``. The params stay at ``name`` either way; the spectral state lives at
  ``name + '_sn'`` in the ``'spectral'`` collection.
  """
  pad = (kernel - 1) // 2
  conv = nn.Conv(features, (kernel, kernel), strides=(strides, strides),
                 padding=((pad, pad), (pad, pad)), use_bias=use_bias, dtype=dtype, name=name)
  if not spectral_norm:
    return lambda x, train: conv(x)
  wrapped = SpectralNorm(conv, name=f"{name}_sn")
  return lambda x, train: wrapped(x, update_stats=train)


# ----------------------------------------------------------------------------------------------
# Region normalisation and SPARN.
# ----------------------------------------------------------------------------------------------

def region_norm(x: jax.Array, mask: jax.Array, stats: str = "batch", eps: float = 1e-5,
                num_completions: int = 1, valid: jax.Array | None = None) -> jax.Array:
  """Region normalisation (parameter-free part of RN-B, Yu et al. 2020, geekyutao/RN).

  Per channel, the known region (mask = 1) and the hole (mask = 0) are each normalised with their
  own mean and (biased) variance: ``(x - mu_r) / sqrt(var_r + eps * T / |r|)`` inside region r,
  where T is the number of pixels the statistics pool over and |r| those of region r. This is
  RN-B's result written directly: RN-B fills the other region with the region mean, runs an
  affine-free BatchNorm (eps on the filled map's variance ``|r| / T * var_r``) and rescales by
  ``sqrt(|r| / T)``, which puts ``eps * T / |r|`` on the region variance.

  Args:
    x: (N, H, W, C) features; with ``num_completions = K``, N = n * K holds K style variants of n
      images, sample-major (:func:`fold_variants`).
    mask: (N, H, W, 1) binary at x's resolution, 1 = known, 0 = hole.
    stats: ``'batch'``: statistics over the n images, H and W of each variant, as RN-B
      (completion j depends on its batch-mates, never on the other variants nor on K);
      ``'instance'``: per sample over (H, W), so a sample never depends on its batch-mates
      (equal to ``'batch'`` applied to each sample alone).
    eps: added to the variance (RN-B's BatchNorm eps, 1e-5).
    num_completions: K, the number of style variants folded into the batch (sample-major) that
      never share statistics.
    valid: optional (N,) with 1 for real rows and 0 for padding (a last batch filled up to a
      compiled size): with ``'batch'`` statistics, padding rows do not enter the statistics, so
      the real rows get exactly what a batch of them alone gives. None: every row is real.

  Returns:
    (N, H, W, C) in x's dtype. An empty region (no pixel of that kind, e.g. a small hole that
    vanished at a low resolution, or an all-known mask) contributes nothing and stays finite,
    with finite gradients.
  """
  if stats not in RN_STATS:
    raise ValueError(f"region_norm: stats must be one of {RN_STATS}; got {stats!r}")
  _check_mask(mask, x.shape, "region_norm")
  # (n * K, H, W, C) -> (K, n, H, W, C); statistics over (n, H, W) or (H, W) of each variant.
  x32 = _variant_blocks(x.astype(jnp.float32), num_completions, "region_norm")
  known = _variant_blocks(mask.astype(jnp.float32), num_completions, "region_norm")
  axes = (2, 3) if stats == "instance" else (1, 2, 3)
  total = float(np.prod([x32.shape[a] for a in axes]))
  weight = 1.0
  if valid is not None and stats == "batch":
    if valid.shape != (x.shape[0],):
      raise ValueError(f"region_norm: valid must be ({x.shape[0]},), one flag per row; got "
                       f"{valid.shape}")
    weight = _variant_blocks(valid.astype(jnp.float32).reshape(-1, 1, 1, 1), num_completions,
                             "region_norm")                              # (K, n, 1, 1, 1)
    total = jnp.sum(weight, axis=1, keepdims=True) * total / x32.shape[1]  # real rows' pixels
  out = jnp.zeros_like(x32)
  for region in (known, 1.0 - known):
    pooled = region * weight        # the region's pixels that enter the statistics
    # Pixel count of the region; max(., 1) keeps empty regions finite (their mask is zero, so
    # their contribution below is zero whatever the statistics are), as RN-B's Sr[Sr == 0] = 1.
    count = jnp.maximum(jnp.sum(pooled, axis=axes, keepdims=True), 1.0)
    mean = jnp.sum(x32 * pooled, axis=axes, keepdims=True) / count
    var = jnp.sum(jnp.square(x32 - mean) * pooled, axis=axes, keepdims=True) / count
    out = out + region * (x32 - mean) * jax.lax.rsqrt(var + eps * total / count)
  return fold_variants(out).astype(x.dtype)


class VariantBatchNorm(nn.Module):
  """PyTorch's BatchNorm2d with the batch statistics of each style variant kept apart.

  Training (``train=True``): x is normalised with the mean and biased variance of its own
  variant block (see :func:`region_norm`'s ``num_completions``) and the running statistics (the
  ``batch_stats`` collection, ``mean`` and ``var``) move once, by momentum 0.1, towards the
  average over variants of the block mean and unbiased block variance (PyTorch's update when
  K = 1). Inference: the running statistics. Variables are named as ``flax.linen.BatchNorm``'s
  (``scale`` / ``bias`` params when ``learned``).
  """
  learned: bool
  eps: float = BN_EPS
  momentum: float = BN_MOMENTUM

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool, num_completions: int = 1) -> jax.Array:
    c = x.shape[-1]
    ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (c,), jnp.float32)
    ra_var = self.variable("batch_stats", "var", jnp.ones, (c,), jnp.float32)
    x32 = x.astype(jnp.float32)
    if train:
      blocks = _variant_blocks(x32, num_completions, "VariantBatchNorm")  # (K, n, H, W, C)
      mean = jnp.mean(blocks, axis=(1, 2, 3), keepdims=True)
      var = jnp.mean(jnp.square(blocks - mean), axis=(1, 2, 3), keepdims=True)
      y = fold_variants((blocks - mean) * jax.lax.rsqrt(var + self.eps))
      if not self.is_initializing():
        n = blocks.shape[1] * blocks.shape[2] * blocks.shape[3]
        unbiased = var * (n / max(n - 1, 1))
        ra_mean.value = (self.momentum * ra_mean.value
                         + (1.0 - self.momentum) * jnp.mean(mean, axis=(0, 1, 2, 3)))
        ra_var.value = (self.momentum * ra_var.value
                        + (1.0 - self.momentum) * jnp.mean(unbiased, axis=(0, 1, 2, 3)))
    else:
      y = (x32 - ra_mean.value) * jax.lax.rsqrt(ra_var.value + self.eps)
    if self.learned:
      y = y * self.param("scale", nn.initializers.ones, (c,), jnp.float32)
      y = y + self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
    return y


class SPARN(nn.Module):
  """Spatially adaptive region normalisation.

  ``SPARN(x; cond) = norm(x) * (1 + gamma(cond)) + beta(cond)`` with
  ``cond = concat(I_style', mask)`` at x's resolution, ``gamma, beta`` 3x3 convs on a shared
  3x3 conv + ReLU of ``hidden`` channels (SPADE's mlp_shared / mlp_gamma / mlp_beta), and
  ``norm`` region normalisation (``'sparn'``), parameter-free BatchNorm (``'spade'``) or
  BatchNorm with a learned affine (``'batch'``).

  Attributes:
    norm: ``'sparn'`` | ``'spade'`` | ``'batch'``.
    rn_stats: ``'batch'`` | ``'instance'`` (only for ``norm='sparn'``), see :func:`region_norm`.
    hidden: width of the shared conv (128 in SPADE and the paper).
    eps: normalisation epsilon (1e-5 as PyTorch's BatchNorm).
    dtype: compute dtype; params are float32.
  """
  norm: str = "sparn"
  rn_stats: str = "batch"
  hidden: int = 128
  eps: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, cond: jax.Array, mask: jax.Array, *,
               train: bool = False, num_completions: int = 1,
               valid: jax.Array | None = None) -> jax.Array:
    """x (N, h, w, C); cond (N, h, w, Cc); mask (N, h, w, 1) binary -> (N, h, w, C).

    ``num_completions``: the batch holds that many style variants (sample-major) whose batch
    statistics are kept apart (see the module docstring). ``valid``: (N,) 1 = real row,
    0 = padding kept out of region norm's batch statistics (:func:`region_norm`).
    """
    if cond.shape[:3] != x.shape[:3]:
      raise ValueError(f"SPARN: condition {cond.shape} is not at the features' resolution "
                       f"{x.shape}; resize it first (see condition_pyramid)")
    if self.norm == "sparn":
      normalized = region_norm(x, mask, self.rn_stats, self.eps, num_completions, valid)
    elif self.norm in ("spade", "batch"):
      normalized = VariantBatchNorm(self.norm == "batch", self.eps, name="batch_norm")(
          x, train=train, num_completions=num_completions)
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
  SPARN -> conv 1x1 without bias, otherwise identity. With ``spectral_norm`` the convs
  ``conv_0``, ``conv_1``, ``conv_s`` are spectral-normalised (SPADE's ``norm_G='spectral...'``).
  """
  features: int
  norm: str = "sparn"
  rn_stats: str = "batch"
  hidden: int = 128
  eps: float = 1e-5
  spectral_norm: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, cond: jax.Array, mask: jax.Array, *,
               train: bool = False, num_completions: int = 1,
               valid: jax.Array | None = None) -> jax.Array:
    """(N, h, w, C_in) -> (N, h, w, features)."""
    def sparn(name, y):
      return SPARN(self.norm, self.rn_stats, self.hidden, self.eps, self.dtype, name=name)(
          y, cond, mask, train=train, num_completions=num_completions, valid=valid)

    conv = functools.partial(_conv, spectral_norm=self.spectral_norm, dtype=self.dtype)
    f_in = x.shape[-1]
    f_mid = min(f_in, self.features)
    dx = conv(f_mid, 3, "conv_0")(_lrelu(sparn("norm_0", x)), train)
    dx = conv(self.features, 3, "conv_1")(_lrelu(sparn("norm_1", dx)), train)
    if f_in != self.features:
      x = conv(self.features, 1, "conv_s", use_bias=False)(sparn("norm_s", x), train)
    return x + dx


class ContentEncoder(nn.Module):
  """The content encoder of concat(I_masked, mask): one 3x3 stride-2 conv per width.

  ``kind='spade'``: SPADE's ConvEncoder layers with ``norm_E='spectralinstance'``: each conv
  (padding 1, no bias) is spectral-normalised (``spectral_norm``; ``False`` gives SPADE's
  ``norm_E='instance'``), then instance norm and leaky ReLU 0.2; kept spatial (SPADE's fc_mu /
  fc_var on a 4x4 map are not used: DiFAI needs the spatial content feature).
  ``kind='plain'``: the encoder before issue 12 in form: a 7x7 conv to ``widths[0]`` at full
  resolution, then the stride-2 convs with bias, leaky ReLU 0.2, no normalisation, no spectral
  norm.

  (N, H, W, C) -> (N, H / 2^len(widths), W / 2^len(widths), widths[-1]).
  """
  widths: Sequence[int] = (64, 128, 256, 512)
  kind: str = "spade"
  spectral_norm: bool = True
  eps: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    if self.kind not in ENCODERS:
      raise ValueError(f"ContentEncoder: kind must be one of {ENCODERS}; got {self.kind!r}")
    spade = self.kind == "spade"
    x = x.astype(self.dtype)
    if not spade:
      x = _lrelu(nn.Conv(self.widths[0], (7, 7), padding="SAME", dtype=self.dtype,
                         name="conv_in")(x))
    for i, width in enumerate(self.widths):
      # (N, h, w, C) -> (N, h/2, w/2, width)
      x = _conv(width, 3, f"down_{i}", strides=2, use_bias=not spade,
                spectral_norm=spade and self.spectral_norm, dtype=self.dtype)(x, train)
      if spade:
        x = instance_norm(x, self.eps)
      x = _lrelu(x)
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

  The encoder downsamples once per entry of ``encoder_widths``; the decoder has one SPARN
  res-block per width in ``decoder_widths`` (16, 32, 64, 128, 256 px at 256 px input), each
  followed by x2 nearest upsampling except the last, so it upsamples
  ``len(decoder_widths) - 1`` times. Both must agree so that I_out has the input's size (with
  the default widths the bottleneck is image_size / 16).

  Attributes:
    encoder: ``'spade'`` (SPADE's ConvEncoder, spectral + instance norm) | ``'plain'`` (7x7 conv
      then plain stride-2 convs), see :class:`ContentEncoder`.
    encoder_widths: widths of the encoder's stride-2 3x3 convs.
    decoder_widths: res-block widths from the bottleneck up to full resolution.
    norm: ``'sparn'`` | ``'spade'`` | ``'batch'`` (Table 3), see :class:`SPARN`.
    rn_stats: ``'batch'`` | ``'instance'``, region statistics (norm='sparn' only).
    spectral_norm: spectral norm on the 'spade' encoder's convs and on the res-blocks' conv_0,
      conv_1, conv_s (SPADE's ``'spectral'`` prefix of norm_E and norm_G).
    spade_hidden: width of SPARN's shared conv.
    eps: normalisation epsilon.
    dtype: compute dtype (params are float32).
  """
  encoder: str = "spade"
  encoder_widths: Sequence[int] = (64, 128, 256, 512)
  decoder_widths: Sequence[int] = (512, 512, 256, 128, 64)
  norm: str = "sparn"
  rn_stats: str = "batch"
  spectral_norm: bool = True
  spade_hidden: int = 128
  eps: float = 1e-5
  dtype: Any = jnp.float32

  def check_inputs(self, i_masked: jax.Array, i_style_prime: jax.Array, mask: jax.Array,
                   num_completions: int) -> None:
    """Raises a ValueError saying what does not fit: shapes, options, widths, image size."""
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
    if self.encoder not in ENCODERS:
      raise ValueError(f"{where}: encoder must be one of {ENCODERS}; got {self.encoder!r}")
    n_down = len(self.encoder_widths)
    if len(self.decoder_widths) - 1 != n_down:
      raise ValueError(
          f"{where}: the encoder downsamples {n_down} times (one per encoder_widths entry, "
          f"{tuple(self.encoder_widths)}) but the decoder upsamples "
          f"{len(self.decoder_widths) - 1} times (one less than its widths, "
          f"{tuple(self.decoder_widths)}); give the decoder one more width than the encoder")
    _, h, w, _ = i_masked.shape
    factor = 2 ** n_down
    if h % factor or w % factor:
      raise ValueError(f"{where}: image size {h}x{w} must be divisible by {factor} "
                       f"({n_down} stride-2 downsamplings)")
    _variant_blocks(mask, num_completions, where)

  @nn.compact
  def __call__(self, i_masked: jax.Array, i_style_prime: jax.Array, mask: jax.Array, *,
               train: bool = False, num_completions: int = 1,
               valid: jax.Array | None = None) -> jax.Array:
    """Args:
      i_masked: (N, H, W, 3) ``image * mask`` in [-1, 1].
      i_style_prime: (N, H, W, 3) ``I_masked + hole * I_style`` in [-1, 1].
      mask: (N, H, W, 1), 1 = known, 0 = hole.
      train: training forward: BatchNorm (norm 'spade' / 'batch') uses batch statistics and
        updates its running averages (``mutable=['batch_stats']``), spectral norm does its power
        iteration (``mutable=['spectral']``); pass ``mutable=list(collections)``. When False,
        running averages and the stored power-iteration vectors, nothing changes. Region norm
        with ``rn_stats='batch'`` uses batch statistics either way, as RN-B.
      num_completions: K when the batch is K style variants of the same N / K images, folded
        sample-major (``nn.variants.fold_variants``, as ``pipeline.generate`` does): batch
        statistics
        are pooled within each variant, never across, so completion j does not depend on K.
      valid: optional (N,) 1 = real row, 0 = padding (a last batch filled up to a compiled
        size): padding rows stay out of region norm's batch statistics, so real rows get what
        a batch of them alone gives (:func:`region_norm`).

    Returns:
      I_out (N, H, W, 3) in [-1, 1] (tanh), not yet composited
      (:func:`difai_jax.pipeline.composite`).
    """
    self.check_inputs(i_masked, i_style_prime, mask, num_completions)
    n_down = len(self.encoder_widths)
    _, h, w, _ = i_masked.shape

    mask = mask.astype(self.dtype)
    x = ContentEncoder(tuple(self.encoder_widths), self.encoder, self.spectral_norm, self.eps,
                       self.dtype, name="encoder")(
                           jnp.concatenate([i_masked.astype(self.dtype), mask], axis=-1),
                           train=train)
    sizes = [(h // 2 ** (n_down - i), w // 2 ** (n_down - i)) for i in range(n_down + 1)]
    pyramid = condition_pyramid(i_style_prime.astype(self.dtype), mask, sizes)
    for i, (width, (cond, mask_hw)) in enumerate(zip(self.decoder_widths, pyramid)):
      x = SPARNResBlock(width, self.norm, self.rn_stats, self.spade_hidden, self.eps,
                        self.spectral_norm, self.dtype, name=f"block_{i}")(
                            x, cond, mask_hw, train=train, num_completions=num_completions,
                            valid=valid)
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
