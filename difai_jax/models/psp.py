"""pSp encoder (Richardson et al. 2021, "Encoding in Style") in Flax, NHWC.

Re-expresses eladrich/pixel2style2pixel: ``models/encoders/helpers.py`` (the IR / IR-SE
bottleneck units of the ArcFace ResNet, after TreB1eN's InsightFace port),
``models/encoders/psp_encoders.py`` (``GradualStyleEncoder``, ``GradualStyleBlock``) and
``models/psp.py`` (encoder + StyleGAN2 decoder + ``latent_avg`` + the 256 px face pool). DiFAI
uses this encoder to invert the coarse completion into StyleGAN2's W+ (paper, Sec. 3).

Architecture (defaults: IR-SE50, as pSp's FFHQ models):

* input layer: conv3x3 (no bias) -> BatchNorm -> PReLU (per-channel slopes);
* body: 4 stages of IR(-SE) units (3 / 4 / 14 / 3 units, widths 64 / 128 / 256 / 512); the
  first unit of each stage has stride 2. A unit is
  ``res = SE(BN(conv3x3_s(PReLU(conv3x3(BN(x))))))`` plus a shortcut that is a strided
  subsampling (pSp's ``MaxPool2d(1, stride)``) when widths match, else conv1x1_s -> BN;
* taps: the outputs of the last unit of stages 2, 3 and 4 (body units 6, 20, 23 for IR-SE50),
  ``c1`` (64 px), ``c2`` (32 px), ``c3`` (16 px) for a 256 px input;
* feature pyramid: ``p2 = up(c3) + latlayer1(c2)``, ``p1 = up(p2) + latlayer2(c1)`` with
  bilinear ``align_corners=True`` upsampling (written as interpolation matrices);
* one ``GradualStyleBlock`` per style: stride-2 conv3x3 + LeakyReLU(0.01) until 1x1, then an
  equalized linear (lr_mul 1). Styles 0-2 (coarse) read ``c3``, 3-6 (middle) ``p2``, the rest
  (fine) ``p1``. ``n_styles = 2 log2(decoder size) - 2`` (18 for 1024, 14 for 256, 10 for 64).

Variables of :class:`PSP` (what ``weights_conversion.psp`` writes):

* ``params/encoder/...``: ``backbone/{input_conv, input_bn, input_prelu, body_{i}}``,
  ``styles_{j}/{conv_{k}, linear}``, ``latlayer1``, ``latlayer2``;
* ``batch_stats/encoder/...``: BatchNorm running ``mean`` / ``var``;
* ``params/decoder/...`` and ``noises/decoder/...``: the StyleGAN2 generator
  (``difai_jax.models.stylegan2``);
* ``constants/latent_avg`` (n_styles, style_dim): the average W+ code pSp adds to the encoder
  output (``start_from_latent_avg``). It is not a trainable parameter, as in pSp;
* ``params/restyle/...``, ``batch_stats/restyle/...``: only with ``restyle_iterations`` > 0, a
  second GradualStyleEncoder of the encoder's architecture that reads 6 channels (the image and
  the current reconstruction) and returns a code residual: ReStyle's iterative refinement
  (Alaluf et al. 2021), an extension this project adds; pSp itself (and every converted pSp)
  has ``restyle_iterations = 0``.

BatchNorm: eps 1e-5, torch momentum 0.1 (flax ``momentum=0.9``); inference uses the stored
running statistics, ``train=True`` uses batch statistics and updates ``batch_stats`` (pass
``mutable=["batch_stats"]``). One small difference from torch in train mode: flax updates the
running variance with the biased batch variance, torch with the unbiased one (a factor
n/(n-1), n = N*H*W >= 4096 here).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from difai_jax.models import stylegan2
from difai_jax.nn import fingerprint
from difai_jax.nn import layers

Dtype = Any

# Unit counts of the four stages of pSp's ``get_blocks(num_layers)``.
IR_UNIT_COUNTS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
IR_WIDTHS = (64, 128, 256, 512)
MODES = ("ir", "ir_se")


def n_styles_for_size(size: int) -> int:
  """Number of W+ styles of a StyleGAN2 decoder of resolution ``size`` (2 log2(size) - 2)."""
  return 2 * int(math.log2(size)) - 2


# ---- resampling as small matrices (exactly torch's index arithmetic) ----

def align_corners_matrix(n_out: int, n_in: int) -> np.ndarray:
  """(n_out, n_in) linear-interpolation matrix of torch's ``align_corners=True`` resize."""
  m = np.zeros((n_out, n_in), np.float64)
  scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
  for i in range(n_out):
    src = i * scale
    i0 = min(int(math.floor(src)), n_in - 1)
    i1 = min(i0 + 1, n_in - 1)
    w1 = src - i0
    m[i, i0] += 1.0 - w1
    m[i, i1] += w1
  return m.astype(np.float32)


def adaptive_avg_pool_matrix(n_out: int, n_in: int) -> np.ndarray:
  """(n_out, n_in) averaging matrix of torch's ``AdaptiveAvgPool`` along one axis.

  Output bin ``i`` averages input ``[floor(i n_in / n_out), ceil((i + 1) n_in / n_out))``; for
  an integer factor this is a mean over blocks, for n_out > n_in it replicates pixels.
  """
  m = np.zeros((n_out, n_in), np.float64)
  for i in range(n_out):
    start = (i * n_in) // n_out
    end = -((-(i + 1) * n_in) // n_out)
    m[i, start:end] = 1.0 / (end - start)
  return m.astype(np.float32)


def _resize_with_matrices(x: jax.Array, mh: np.ndarray, mw: np.ndarray) -> jax.Array:
  """(N, H, W, C) -> (N, H', W', C) with row matrix ``mh`` (H', H) and column matrix ``mw``."""
  hi = None   # the run's precision policy (difai_jax.nn.precision)
  x = jnp.einsum("oh,nhwc->nowc", jnp.asarray(mh, x.dtype), x, precision=hi)
  return jnp.einsum("pw,nowc->nopc", jnp.asarray(mw, x.dtype), x, precision=hi)


def upsample_bilinear_align_corners(x: jax.Array, height: int, width: int) -> jax.Array:
  """``F.interpolate(x, (height, width), mode='bilinear', align_corners=True)`` in NHWC."""
  return _resize_with_matrices(x, align_corners_matrix(height, x.shape[1]),
                               align_corners_matrix(width, x.shape[2]))


def adaptive_avg_pool(x: jax.Array, height: int, width: int) -> jax.Array:
  """``AdaptiveAvgPool2d((height, width))`` in NHWC (pSp's ``face_pool`` with 256, 256)."""
  if x.shape[1:3] == (height, width):
    return x
  return _resize_with_matrices(x, adaptive_avg_pool_matrix(height, x.shape[1]),
                               adaptive_avg_pool_matrix(width, x.shape[2]))


# ---- layers ----

class PReLU(nn.Module):
  """torch ``PReLU(C)``: ``max(x, 0) + slope_c * min(x, 0)``; param ``slope`` (C,), init 0.25."""

  @nn.compact
  def __call__(self, x):
    slope = self.param("slope", nn.initializers.constant(0.25), (x.shape[-1],))
    return jnp.where(x >= 0, x, x * slope.astype(x.dtype))


def _batch_norm(train: bool, dtype: Dtype, name: str) -> nn.BatchNorm:
  # torch BatchNorm2d: eps 1e-5, momentum 0.1 (flax's momentum is the kept fraction).
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      use_fast_variance=False, dtype=dtype, name=name)


def _conv(features: int, kernel: int, stride: int, padding: int, use_bias: bool,
          dtype: Dtype, precision: Any, name: str) -> nn.Conv:
  # Explicit symmetric padding (PyTorch ``padding=p``), never flax's asymmetric 'SAME'.
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=[(padding, padding), (padding, padding)], use_bias=use_bias,
                 dtype=dtype, precision=precision, name=name)


class SEModule(nn.Module):
  """Squeeze-and-excitation: ``x * sigmoid(fc2(relu(fc1(mean_hw(x)))))``, fc without bias.

  Params ``fc1/kernel`` (C, C // reduction) and ``fc2/kernel`` (C // reduction, C) (pSp's 1x1
  convs ``fc1`` / ``fc2``).
  """
  reduction: int = 16
  dtype: Dtype = jnp.float32
  precision: Any = None   # the run's precision policy (difai_jax.nn.precision)

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    s = jnp.mean(x, axis=(1, 2))  # (N, C)
    s = nn.Dense(c // self.reduction, use_bias=False, dtype=self.dtype,
                 precision=self.precision, name="fc1")(s)
    s = nn.Dense(c, use_bias=False, dtype=self.dtype, precision=self.precision,
                 name="fc2")(nn.relu(s))
    return x * nn.sigmoid(s)[:, None, None, :]


class IRUnit(nn.Module):
  """pSp's ``bottleneck_IR`` (``use_se=False``) / ``bottleneck_IR_SE`` unit.

  ``(N, H, W, C_in) -> (N, H / stride, W / stride, depth)``. Submodules: ``bn1``, ``conv1``,
  ``prelu``, ``conv2`` (the strided one), ``bn2``, ``se`` and, when ``C_in != depth``,
  ``shortcut_conv`` / ``shortcut_bn``.
  """
  depth: int
  stride: int
  use_se: bool = True
  se_reduction: int = 16
  dtype: Dtype = jnp.float32
  precision: Any = None   # the run's precision policy (difai_jax.nn.precision)

  @nn.compact
  def __call__(self, x, train: bool = False):
    if x.shape[-1] == self.depth:
      shortcut = x[:, ::self.stride, ::self.stride]  # MaxPool2d(kernel 1, stride)
    else:
      shortcut = _conv(self.depth, 1, self.stride, 0, False, self.dtype, self.precision,
                       "shortcut_conv")(x)
      shortcut = _batch_norm(train, self.dtype, "shortcut_bn")(shortcut)
    res = _batch_norm(train, self.dtype, "bn1")(x)
    res = _conv(self.depth, 3, 1, 1, False, self.dtype, self.precision, "conv1")(res)
    res = PReLU(name="prelu")(res)
    res = _conv(self.depth, 3, self.stride, 1, False, self.dtype, self.precision, "conv2")(res)
    res = _batch_norm(train, self.dtype, "bn2")(res)
    if self.use_se:
      res = SEModule(self.se_reduction, self.dtype, self.precision, name="se")(res)
    return res + shortcut


class IRBackbone(nn.Module):
  """Input layer + body of the ArcFace IR / IR-SE ResNet (the part pSp's encoder reuses).

  Returns the list of every body unit's output, (N, H_i, W_i, C_i). Submodules ``input_conv``,
  ``input_bn``, ``input_prelu``, ``body_{i}`` (numbered as pSp's ``body.{i}``), so the weights of
  ``model_ir_se50.pth`` map one to one (``weights_conversion.psp.convert_backbone``).
  """
  unit_counts: tuple[int, ...] = IR_UNIT_COUNTS[50]
  widths: tuple[int, ...] = IR_WIDTHS
  input_width: int = 64
  mode: str = "ir_se"
  se_reduction: int = 16
  dtype: Dtype = jnp.float32
  precision: Any = None   # the run's precision policy (difai_jax.nn.precision)

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.mode not in MODES:
      raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
    if len(self.unit_counts) != len(self.widths):
      raise ValueError(f"unit_counts {self.unit_counts} and widths {self.widths} must have the "
                       "same length (one entry per stage)")
    x = _conv(self.input_width, 3, 1, 1, False, self.dtype, self.precision, "input_conv")(x)
    x = _batch_norm(train, self.dtype, "input_bn")(x)
    x = PReLU(name="input_prelu")(x)
    outputs = []
    for count, depth in zip(self.unit_counts, self.widths):
      for u in range(count):
        x = IRUnit(depth, 2 if u == 0 else 1, use_se=self.mode == "ir_se",
                   se_reduction=self.se_reduction, dtype=self.dtype, precision=self.precision,
                   name=f"body_{len(outputs)}")(x, train)
        outputs.append(x)
    return outputs


class GradualStyleBlock(nn.Module):
  """Stride-2 conv3x3 + LeakyReLU(0.01) until 1x1, then an equalized linear (lr_mul 1).

  ``(N, S, S, C) -> (N, features)`` with log2(S) convs ``conv_{k}`` (pSp's ``convs.{2k}``) and
  ``linear``. S must be a power of two (16 / 32 / 64 for a 256 px pSp input). The convs are
  ``width`` wide (default ``features``, as pSp's blocks).
  """
  features: int
  dtype: Dtype = jnp.float32
  precision: Any = None   # the run's precision policy (difai_jax.nn.precision)
  width: int | None = None

  @nn.compact
  def __call__(self, x):
    n, h, w, _ = x.shape
    num_pools = int(round(math.log2(h))) if h > 0 else -1
    if h != w or num_pools < 1 or 2 ** num_pools != h:
      raise ValueError(f"GradualStyleBlock needs a square power-of-two feature map, got {h}x{w}")
    for k in range(num_pools):
      x = _conv(self.width or self.features, 3, 2, 1, True, self.dtype, self.precision,
                f"conv_{k}")(x)
      x = nn.leaky_relu(x, 0.01)
    x = x.reshape(n, x.shape[-1])  # (N, 1, 1, C) -> (N, C)
    return layers.EqualLinear(self.features, lr_mul=1.0, dtype=self.dtype, name="linear")(x)


class GradualStyleEncoder(nn.Module):
  """pSp's ``GradualStyleEncoder``: images (N, S, S, input_nc) in [-1, 1] -> raw codes
  (N, n_styles, style_dim) (without ``latent_avg``).

  Attributes:
    unit_counts: units per stage (IR-SE50: 3, 4, 14, 3; see ``IR_UNIT_COUNTS``).
    widths: width of each stage (64, 128, 256, 512).
    input_width: width of the input layer (64).
    mode: ``"ir_se"`` (units with squeeze-excitation, pSp's choice) or ``"ir"``.
    se_reduction: SE bottleneck reduction (16).
    n_styles: number of W+ styles (18 for a 1024 px decoder).
    style_dim: width of each code (the decoder's style_dim, 512).
    coarse_ind, middle_ind: styles [0, coarse_ind) read c3, [coarse_ind, middle_ind) p2, the
      rest p1 (pSp: 3 and 7).
    block_width: width of the style blocks' convs (None: ``style_dim``, as pSp). Narrower
      blocks keep small encoders small: the blocks hold most of the parameters.
    dtype: compute dtype; precision: conv / matmul precision (``"highest"`` for parity).
  """
  unit_counts: tuple[int, ...] = IR_UNIT_COUNTS[50]
  widths: tuple[int, ...] = IR_WIDTHS
  input_width: int = 64
  mode: str = "ir_se"
  se_reduction: int = 16
  n_styles: int = 18
  style_dim: int = 512
  coarse_ind: int = 3
  middle_ind: int = 7
  dtype: Dtype = jnp.float32
  precision: Any = None   # the run's precision policy (difai_jax.nn.precision)
  block_width: int | None = None

  @property
  def taps(self) -> tuple[int, int, int]:
    """Body indices of c1, c2, c3: the last unit of stages 2, 3, 4 ((6, 20, 23) for IR-SE50)."""
    ends = np.cumsum(self.unit_counts) - 1
    return int(ends[1]), int(ends[2]), int(ends[3])

  @nn.compact
  def __call__(self, images, train: bool = False):
    if len(self.unit_counts) != 4:
      raise ValueError(f"the GradualStyleEncoder needs 4 stages, got unit_counts "
                       f"{self.unit_counts}")
    if images.ndim != 4:
      raise ValueError(f"images must be NHWC (N, H, W, C), got shape {images.shape}")
    feats = IRBackbone(self.unit_counts, self.widths, self.input_width, self.mode,
                       self.se_reduction, self.dtype, self.precision, name="backbone")(
                           images.astype(self.dtype), train)
    i1, i2, i3 = self.taps
    c1, c2, c3 = feats[i1], feats[i2], feats[i3]
    width = c3.shape[-1]

    def style(j, x):
      return GradualStyleBlock(self.style_dim, self.dtype, self.precision, self.block_width,
                               name=f"styles_{j}")(x)

    latents = [style(j, c3) for j in range(min(self.coarse_ind, self.n_styles))]
    lat1 = _conv(width, 1, 1, 0, True, self.dtype, self.precision, "latlayer1")(c2)
    p2 = upsample_bilinear_align_corners(c3, *c2.shape[1:3]) + lat1
    latents += [style(j, p2) for j in range(self.coarse_ind, min(self.middle_ind, self.n_styles))]
    lat2 = _conv(width, 1, 1, 0, True, self.dtype, self.precision, "latlayer2")(c1)
    p1 = upsample_bilinear_align_corners(p2, *c1.shape[1:3]) + lat2
    latents += [style(j, p1) for j in range(self.middle_ind, self.n_styles)]
    return jnp.stack(latents, axis=1).astype(jnp.float32)  # (N, n_styles, style_dim)


class PSP(nn.Module):
  """pSp: GradualStyleEncoder + StyleGAN2 decoder + latent_avg (+ the 256 px face pool).

  Attributes:
    encoder: the :class:`GradualStyleEncoder` (its ``n_styles`` / ``style_dim`` must match the
      decoder's ``n_latent`` / ``style_dim``).
    decoder: the ``stylegan2.Generator``.
    start_from_latent_avg: add ``constants/latent_avg`` to the encoder output (pSp's option).
    input_size: side of the images the encoder expects (256 for pSp).
    pool_size: side of pSp's ``face_pool`` (``AdaptiveAvgPool2d``) applied when ``resize``.
    restyle_iterations: refinement passes after the encoder's (ReStyle; 0 = pSp), each one
      decode plus one pass of the ``restyle`` encoder (:meth:`encode_passes`).
  """
  encoder: GradualStyleEncoder
  decoder: stylegan2.Generator
  start_from_latent_avg: bool = True
  input_size: int = 256
  pool_size: int = 256
  restyle_iterations: int = 0

  def setup(self):
    if self.encoder.n_styles != self.decoder.n_latent:
      raise ValueError(f"the encoder gives {self.encoder.n_styles} styles, the {self.decoder.size}"
                       f" px decoder needs {self.decoder.n_latent}")
    if self.encoder.style_dim != self.decoder.style_dim:
      raise ValueError(f"encoder style_dim {self.encoder.style_dim} != decoder style_dim "
                       f"{self.decoder.style_dim}")
    self.latent_avg = self.variable(
        "constants", "latent_avg", jnp.zeros, (self.encoder.n_styles, self.encoder.style_dim),
        jnp.float32)
    if self.restyle_iterations < 0:
      raise ValueError(f"restyle_iterations must be >= 0, got {self.restyle_iterations}")
    if self.restyle_iterations:
      self.restyle = GradualStyleEncoder(
          dtype=self.encoder.dtype, **{f: getattr(self.encoder, f) for f in _ENCODER_FIELDS})

  def encode(self, images, *, train: bool = False, add_latent_avg: bool = True):
    """Images (N, input_size, input_size, C) in [-1, 1] -> W+ codes (N, n_styles, style_dim).

    ``latent_avg`` is added when ``start_from_latent_avg`` and ``add_latent_avg`` (the codes the
    decoder takes); ``add_latent_avg=False`` gives the encoder's raw output (with
    ``restyle_iterations``, plus the residuals of the passes, :meth:`encode_passes`).
    """
    codes, _ = self.encode_passes(images, train=train)
    codes = codes[-1]
    if self.start_from_latent_avg and add_latent_avg:
      codes = codes + self.latent_avg.value[None]
    return codes

  def encode_passes(self, images, *, train: bool = False, randomize_noise: bool = False,
                    noise=None):
    """ReStyle's iterative refinement: ``(codes, images)``, the codes of every pass (without
    ``latent_avg``) and the pooled reconstruction of each code but the last.

    Pass 0 is pSp's encoder; pass ``t`` adds ``restyle([images, reconstruction t-1])`` to the
    previous codes. The reconstruction fed forward is a constant (gradients reach the passes
    through their own codes only, as in ReStyle's per-step backward). Without
    ``restyle_iterations`` this is ``([encoder(images)], [])``.
    """
    if images.ndim != 4 or images.shape[1:3] != (self.input_size, self.input_size):
      raise ValueError(f"pSp expects NHWC images of {self.input_size}x{self.input_size} "
                       f"(resize them first), got shape {images.shape}")
    codes, recons = [self.encoder(images, train)], []
    offset = self.latent_avg.value[None] if self.start_from_latent_avg else 0.0
    for _ in range(self.restyle_iterations):
      recon = self.decode(codes[-1] + offset, randomize_noise=randomize_noise, noise=noise,
                          return_latents=False)
      recons.append(recon)
      current = jax.lax.stop_gradient(recon)
      if current.shape[1:3] != images.shape[1:3]:
        current = jax.image.resize(current, images.shape[:3] + (current.shape[-1],), "linear")
      feedback = jnp.concatenate([images, current.astype(images.dtype)], axis=-1)
      codes.append(codes[-1] + self.restyle(feedback, train))
    return codes, recons

  def decode(self, codes, *, resize: bool = True, randomize_noise: bool = False,
             return_latents: bool = True, noise=None, stop_at: int | None = None):
    """W+ codes (N, n_styles, style_dim) -> image (N, S, S, 3) in about [-1, 1].

    ``S`` is ``pool_size`` when ``resize`` (pSp's face pool) else the decoder size, or
    ``stop_at`` when given: the decoder's ToRGB skip image at that resolution (not pSp's: a
    cheaper, approximate decode; see ``stylegan2.Generator.synthesis``). Noise: the stored
    buffers, an explicit list, or fresh noise from the ``noise`` rng with ``randomize_noise``.
    Returns ``(image, latents)`` when ``return_latents``.
    """
    image, latents = self.decoder([codes], input_is_latent=True, noise=noise,
                                  randomize_noise=randomize_noise, return_latents=True,
                                  stop_at=stop_at)
    if resize:
      image = adaptive_avg_pool(image, self.pool_size, self.pool_size)
    return (image, latents) if return_latents else image

  def __call__(self, images, resize: bool = True, randomize_noise: bool = False,
               return_latents: bool = True, noise=None, train: bool = False):
    """pSp's forward: ``decode(encode(images))``; returns (image, W+ latents) or the image."""
    codes = self.encode(images, train=train)
    if self.is_initializing():
      # pSp feeds W+ codes, so the decoder's mapping network is never run; create its params
      # anyway so that a converted pSp (which stores them) and an initialised one agree.
      self.decoder.mapping(jnp.zeros((1, self.decoder.style_dim), jnp.float32))
    return self.decode(codes, resize=resize, randomize_noise=randomize_noise,
                       return_latents=return_latents, noise=noise)


# ---- construction from config.json ----

_ENCODER_FIELDS = ("unit_counts", "widths", "input_width", "mode", "se_reduction", "n_styles",
                   "style_dim", "coarse_ind", "middle_ind", "precision", "block_width")
_BACKBONE_FIELDS = ("unit_counts", "widths", "input_width", "mode", "se_reduction", "precision")


def _fields(config: dict, allowed: Sequence[str], what: str) -> dict:
  unknown = set(config) - set(allowed)
  if unknown:
    raise ValueError(f"unknown {what} config fields: {sorted(unknown)} (known: {list(allowed)})")
  out = dict(config)
  for key in ("unit_counts", "widths"):
    if key in out:
      out[key] = tuple(int(v) for v in out[key])
  return out


def encoder_from_config(config: dict) -> GradualStyleEncoder:
  """GradualStyleEncoder from the ``encoder`` part of a pSp config."""
  return GradualStyleEncoder(**_fields(config, _ENCODER_FIELDS, "pSp encoder"))


def from_config(config: dict) -> PSP:
  """Builds :class:`PSP` from a converted model's ``config.json`` (kind ``"psp"``).

  Config fields: ``encoder`` (GradualStyleEncoder fields), ``decoder`` (stylegan2 config, as
  ``weights_conversion.stylegan2`` writes it), ``start_from_latent_avg``, ``input_size``,
  ``pool_size``, ``restyle_iterations`` (optional, 0: pSp's single pass).
  """
  config = dict(config)
  config.pop("kind", None)
  unknown = set(config) - {"encoder", "decoder", "start_from_latent_avg", "input_size",
                           "pool_size", "restyle_iterations"}
  if unknown:
    raise ValueError(f"unknown psp config fields: {sorted(unknown)}")
  if "encoder" not in config or "decoder" not in config:
    raise ValueError("a psp config needs 'encoder' and 'decoder' sections")
  decoder_config = {k: v for k, v in config["decoder"].items() if k != "kind"}
  return PSP(encoder=encoder_from_config(config["encoder"]),
             decoder=stylegan2.from_config(decoder_config),
             start_from_latent_avg=bool(config.get("start_from_latent_avg", True)),
             input_size=int(config.get("input_size", 256)),
             pool_size=int(config.get("pool_size", 256)),
             restyle_iterations=int(config.get("restyle_iterations", 0)))


def backbone_from_config(config: dict) -> IRBackbone:
  """Builds :class:`IRBackbone` (kind ``"ir_se_backbone"``: a converted ``model_ir_se50.pth``)."""
  config = {k: v for k, v in config.items() if k != "kind"}
  return IRBackbone(**_fields(config, _BACKBONE_FIELDS, "IR backbone"))


def init_encoder_from_backbone(psp_variables: dict, backbone_variables: dict) -> dict:
  """Returns ``psp_variables`` with the encoder's backbone replaced by a converted IR-SE backbone.

  This is how pSp starts training (its encoder loads ``model_ir_se50.pth`` non-strictly): the
  input layer and body come from the face-recognition net, the style blocks and lateral layers
  keep their fresh initialisation. Shapes must match (same unit counts and widths).
  """
  out = dict(psp_variables)
  for col in ("params", "batch_stats"):
    src = backbone_variables[col]
    dst = psp_variables[col]["encoder"]["backbone"]
    if jax.tree.map(np.shape, dst) != jax.tree.map(np.shape, src):
      raise ValueError(f"the backbone's {col} do not fit this encoder (different unit counts, "
                       "widths or SE mode)")
    out[col] = dict(psp_variables[col], encoder=dict(psp_variables[col]["encoder"],
                                                      backbone=src))
  return out


def restyle_from_encoder(encoder_params, encoder_batch_stats):
  """(params, batch_stats) that start a ``restyle`` encoder from a trained pSp encoder.

  The body, pyramid and style convs are the encoder's; the input conv reads the image with the
  encoder's kernel and the reconstruction with its negative, so that the first features are the
  encoder's features of the residual (image - reconstruction); every style block's final linear
  is zero, so that the residual codes, and with them the refinement, start at exactly zero.
  """
  params = jax.tree.map(jnp.asarray, encoder_params)
  kernel = params["backbone"]["input_conv"]["kernel"]
  backbone = dict(params["backbone"], input_conv={
      "kernel": jnp.concatenate([kernel, -kernel], axis=2)})
  params = dict(params, backbone=backbone)
  for name in params:
    if name.startswith("styles_"):
      params[name] = dict(params[name], linear=jax.tree.map(jnp.zeros_like,
                                                             params[name]["linear"]))
  return params, jax.tree.map(jnp.asarray, encoder_batch_stats)


def decoder_fingerprint(variables) -> str:
  """``nn.fingerprint`` of a pSp's variables less its encoders (and ReStyle's): the StyleGAN2
  decoder, its noises and latent_avg, what its W+ codes (and SeFa directions) mean."""
  return fingerprint({name: {k: v for k, v in tree.items() if k not in ("encoder", "restyle")}
                      for name, tree in variables.items()})
