"""StyleGAN2 generator (Karras et al. 2020), re-expressing rosinality/stylegan2-pytorch.

Same semantics as rosinality's ``Generator``: mapping network (PixelNorm + equalized dense
layers with lr multiplier and fused leaky ReLU), a learned 4x4 constant, modulated 3x3 convs with
demodulation, transposed-conv upsampling followed by the [1, 3, 3, 1] blur, per-layer noise
injection, ToRGB layers whose skip is upsampled with the same filter,
``n_latent = 2 log2(size) - 2``.

Differences in form only: NHWC; explicit rngs; the modulated conv demodulates activations
(see ``layers.ModulatedConv2d``); ``randomize_noise`` defaults to False (stored buffers).

One addition for networks converted from NVIDIA's StyleGAN2-ADA (``conv_clamp``, off by
default): every conv layer's and ToRGB's output is clamped to +-conv_clamp after its bias and
activation, as NVIDIA's ``bias_act(..., clamp=conv_clamp)``.

Variables:
  params: ``style/dense_{i}``, ``input``, ``conv1``, ``to_rgb1``, ``convs_{i}``, ``to_rgbs_{i}``
  noises: ``noise_{i}`` of shape (1, H, W, 1), the stored noise buffers (rosinality
          ``noises.noise_{i}``), used when ``noise`` is None and ``randomize_noise`` is False.
  constants (optional): ``latent_avg`` (1, style_dim), a stored truncation centre (NVIDIA's
          ``w_avg``), used when ``truncation < 1`` and no ``truncation_latent`` is given.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from difai_jax.nn import layers

Dtype = Any


def rosinality_channels(size: int, channel_multiplier: int = 2,
                        divisor: int = 1) -> tuple[int, ...]:
  """Widths at resolutions 4, 8, ..., size of rosinality's table (config-f: multiplier 2)."""
  cm = channel_multiplier
  table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm,
           512: 32 * cm, 1024: 16 * cm, 2048: 8 * cm}
  return tuple(table[2 ** i] // divisor for i in range(2, int(math.log2(size)) + 1))


def num_latents(size: int) -> int:
  return 2 * int(math.log2(size)) - 2


def noise_shapes(size: int) -> list[tuple[int, int, int, int]]:
  """Shapes (1, H, W, 1) of the per-layer noise inputs, layer 0 first."""
  n_layers = 2 * (int(math.log2(size)) - 2) + 1
  return [(1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2), 1) for i in range(n_layers)]


class MappingNetwork(nn.Module):
  """z (N, style_dim) -> w (N, style_dim): PixelNorm then ``n_mlp`` equalized lrelu layers."""
  style_dim: int
  n_mlp: int
  lr_mul: float = 0.01

  @nn.compact
  def __call__(self, z):
    x = layers.PixelNorm()(z)
    for i in range(self.n_mlp):
      x = layers.EqualLinear(self.style_dim, lr_mul=self.lr_mul, activation="fused_lrelu",
                             name=f"dense_{i}")(x)
    return x


def _clamp(x, conv_clamp: float | None):
  """NVIDIA's ``conv_clamp``: limits activations to +-conv_clamp (no-op for None)."""
  return x if conv_clamp is None else jnp.clip(x, -conv_clamp, conv_clamp)


class StyledConv(nn.Module):
  """Modulated conv -> noise injection -> fused leaky ReLU [-> clamp] (rosinality
  ``StyledConv``; the clamp is NVIDIA's ``conv_clamp``)."""
  features: int
  upsample: bool = False
  blur_kernel: Sequence[float] = (1, 3, 3, 1)
  dtype: Dtype = jnp.float32
  conv_clamp: float | None = None

  @nn.compact
  def __call__(self, x, style, noise):
    conv = layers.ModulatedConv2d(self.features, 3, upsample=self.upsample,
                                  blur_kernel=self.blur_kernel, dtype=self.dtype, name="conv")
    x = conv(x, style)
    # NoiseInjection: a single learned scalar per layer; noise (1 or N, H, W, 1).
    weight = self.param("noise_weight", nn.initializers.zeros, (1,))
    x = x + (weight * noise).astype(x.dtype)
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    return _clamp(layers.fused_leaky_relu(x, bias), self.conv_clamp)


class ToRGB(nn.Module):
  """1x1 modulated conv to RGB without demodulation [, clamped], plus the upsampled skip."""
  upsample: bool = True
  blur_kernel: Sequence[float] = (1, 3, 3, 1)
  dtype: Dtype = jnp.float32
  conv_clamp: float | None = None

  @nn.compact
  def __call__(self, x, style, skip=None):
    out = layers.ModulatedConv2d(3, 1, demodulate=False, dtype=self.dtype, name="conv")(x, style)
    out = out + self.param("bias", nn.initializers.zeros, (3,)).astype(out.dtype)
    out = _clamp(out, self.conv_clamp)
    if skip is not None:
      out = out + layers.upsample(skip, self.blur_kernel)
    return out


class Generator(nn.Module):
  """rosinality's StyleGAN2 ``Generator`` in Flax (NHWC output in about [-1, 1]).

  Attributes:
    size: output resolution (a power of two >= 4).
    style_dim: width of z and w.
    n_mlp: depth of the mapping network.
    channels: widths at resolutions 4, 8, ..., size; default rosinality's table with
      ``channel_multiplier``.
    channel_multiplier: used only when ``channels`` is None.
    blur_kernel: FIR taps of the up-sampling filter.
    lr_mlp: learning-rate multiplier of the mapping network.
    dtype: compute dtype (params stay float32).
    conv_clamp: clamp every conv and ToRGB output to +-conv_clamp (NVIDIA StyleGAN2-ADA's
      ``conv_clamp``, 256 in its configs); None (rosinality) disables it.
  """
  size: int
  style_dim: int = 512
  n_mlp: int = 8
  channels: tuple[int, ...] | None = None
  channel_multiplier: int = 2
  blur_kernel: tuple[float, ...] = (1, 3, 3, 1)
  lr_mlp: float = 0.01
  dtype: Dtype = jnp.float32
  conv_clamp: float | None = None

  @property
  def log_size(self) -> int:
    return int(math.log2(self.size))

  @property
  def n_latent(self) -> int:
    return num_latents(self.size)

  @property
  def num_layers(self) -> int:
    return 2 * (self.log_size - 2) + 1

  @property
  def widths(self) -> tuple[int, ...]:
    return tuple(self.channels or rosinality_channels(self.size, self.channel_multiplier))

  def setup(self):
    if self.size < 4 or 2 ** self.log_size != self.size:
      raise ValueError(f"size must be a power of two >= 4, got {self.size}")
    if len(self.widths) != self.log_size - 1:
      raise ValueError(f"channels needs one width per resolution 4..{self.size} "
                       f"({self.log_size - 1} values), got {self.widths}")
    widths = self.widths
    self.style = MappingNetwork(self.style_dim, self.n_mlp, self.lr_mlp)
    self.input = self.param("input", nn.initializers.normal(1.0), (1, 4, 4, widths[0]))
    clamp = self.conv_clamp
    self.conv1 = StyledConv(widths[0], blur_kernel=self.blur_kernel, dtype=self.dtype,
                            conv_clamp=clamp)
    self.to_rgb1 = ToRGB(upsample=False, blur_kernel=self.blur_kernel, dtype=self.dtype,
                         conv_clamp=clamp)
    convs, to_rgbs = [], []
    for width in widths[1:]:
      convs.append(StyledConv(width, upsample=True, blur_kernel=self.blur_kernel,
                              dtype=self.dtype, conv_clamp=clamp))
      convs.append(StyledConv(width, blur_kernel=self.blur_kernel, dtype=self.dtype,
                              conv_clamp=clamp))
      to_rgbs.append(ToRGB(blur_kernel=self.blur_kernel, dtype=self.dtype, conv_clamp=clamp))
    self.convs = convs
    self.to_rgbs = to_rgbs

  def _stored_noise(self) -> list[jax.Array]:
    """The ``noises`` collection (created, N(0, 1), when initialising)."""
    out = []
    for i, shape in enumerate(noise_shapes(self.size)):
      name = f"noise_{i}"
      if self.is_initializing() and not self.has_variable("noises", name):
        self.put_variable("noises", name, jax.random.normal(self.make_rng("params"), shape))
      if not self.has_variable("noises", name):
        raise ValueError(
            f"the variables have no stored noise buffer noises/{name}: pass noise=[...] or "
            "randomize_noise=True with rngs={'noise': key}")
      out.append(self.get_variable("noises", name))
    return out

  # ---- public methods ----

  def mapping(self, z):
    """The mapping network alone: z (N, style_dim) -> w (N, style_dim)."""
    return self.style(z)

  def mean_latent(self, n_latent: int = 4096, rng: jax.Array | None = None):
    """Mean of ``n_latent`` mapped random z, shape (1, style_dim) (rosinality ``mean_latent``)."""
    rng = self.make_rng("latent") if rng is None else rng
    z = jax.random.normal(rng, (n_latent, self.style_dim))
    return jnp.mean(self.style(z), axis=0, keepdims=True)

  def synthesis(self, latent, noise: Sequence[jax.Array], stop_at: int | None = None):
    """W+ (N, n_latent, style_dim) and per-layer noise -> image (N, size, size, 3).

    ``stop_at`` (a power of two in [4, size]; None = size): return the ToRGB skip image at that
    resolution, (N, stop_at, stop_at, 3), without running the layers above it.
    """
    stop_at = self.size if stop_at is None else stop_at
    if stop_at < 4 or stop_at > self.size or stop_at & (stop_at - 1):
      raise ValueError(f"stop_at must be a power of two in [4, {self.size}], got {stop_at}")
    n = latent.shape[0]
    x = jnp.broadcast_to(self.input, (n,) + self.input.shape[1:]).astype(self.dtype)
    x = self.conv1(x, latent[:, 0], noise[0])
    skip = self.to_rgb1(x, latent[:, 1])
    i = 1
    for b, to_rgb in enumerate(self.to_rgbs[:int(math.log2(stop_at)) - 2]):
      x = self.convs[2 * b](x, latent[:, i], noise[2 * b + 1])
      x = self.convs[2 * b + 1](x, latent[:, i + 1], noise[2 * b + 2])
      skip = to_rgb(x, latent[:, i + 2], skip)
      i += 2
    return skip.astype(jnp.float32)

  def _noise(self, noise, randomize_noise: bool, n: int) -> list:
    """The noise inputs of every layer: given, fresh from the ``noise`` rng, or stored."""
    if self.is_initializing():
      self._stored_noise()
    if noise is None:
      if randomize_noise:
        rng = self.make_rng("noise")
        return [jax.random.normal(k, (n,) + shape[1:])
                for k, shape in zip(jax.random.split(rng, self.num_layers),
                                    noise_shapes(self.size))]
      return self._stored_noise()
    if len(noise) != self.num_layers:
      raise ValueError(f"noise must be a list of {self.num_layers} arrays, got {len(noise)}")
    return noise

  def __call__(self, styles, *, input_is_latent: bool = False, noise=None,
               randomize_noise: bool = False, truncation: float = 1.0, truncation_latent=None,
               inject_index: int | None = None, return_latents: bool = False,
               stop_at: int | None = None):
    """rosinality's ``Generator.forward`` (see the module docstring).

    Args:
      styles: list of 1 or 2 arrays: z (N, style_dim), or, with ``input_is_latent``, w (N, D)
        or W+ (N, n_latent, D). Two entries mix styles at ``inject_index``.
      input_is_latent: styles are w / W+ (skip the mapping network).
      noise: optional list of ``num_layers`` arrays (1 or N, H, W, 1).
      randomize_noise: draw fresh noise from the ``noise`` rng (else the stored buffers).
      truncation, truncation_latent: ``w <- w_avg + truncation * (w - w_avg)`` when < 1;
        ``truncation_latent`` defaults to the stored ``constants/latent_avg`` when present.
      inject_index: style-mixing crossover layer; drawn from the ``mixing`` rng when None.
      return_latents: also return the W+ latent used.
      stop_at: stop synthesis at this resolution and return its ToRGB skip image (see
        :meth:`synthesis`; not part of rosinality's forward).

    Returns:
      image (N, size, size, 3) ((N, stop_at, stop_at, 3) with ``stop_at``), or (image, latent
      (N, n_latent, style_dim)).
    """
    if not isinstance(styles, (list, tuple)) or not 1 <= len(styles) <= 2:
      raise ValueError("styles must be a list of 1 or 2 arrays (as in rosinality's Generator)")
    if not input_is_latent:
      styles = [self.style(s) for s in styles]
    if truncation < 1:
      if truncation_latent is None and self.has_variable("constants", "latent_avg"):
        truncation_latent = self.get_variable("constants", "latent_avg")
      if truncation_latent is None:
        raise ValueError("truncation < 1 needs truncation_latent (e.g. Generator.mean_latent)")
      styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]

    n_latent = self.n_latent
    if len(styles) == 1:
      s = styles[0]
      latent = s if s.ndim == 3 else jnp.repeat(s[:, None], n_latent, axis=1)
    else:
      if inject_index is None:
        inject_index = int(jax.random.randint(self.make_rng("mixing"), (), 1, n_latent))
      first, second = (s if s.ndim == 3 else jnp.repeat(s[:, None], n_latent, axis=1)
                       for s in styles)
      latent = jnp.concatenate([first[:, :inject_index], second[:, inject_index:]], axis=1)
    if latent.shape[1] != n_latent:
      raise ValueError(f"W+ latent has {latent.shape[1]} styles, this generator needs {n_latent}")

    image = self.synthesis(latent, self._noise(noise, randomize_noise, latent.shape[0]), stop_at)
    return (image, latent) if return_latents else image


def _module_kwargs(config: dict, kind: str, known: set[str]) -> dict:
  """A converted ``config.json``'s fields as constructor arguments (lists -> tuples); unknown
  fields are refused."""
  config = dict(config)
  unknown = set(config) - known
  if unknown:
    raise ValueError(f"unknown {kind} config fields: {sorted(unknown)}")
  for key in ("channels", "blur_kernel"):
    if config.get(key) is not None:
      config[key] = tuple(config[key])
  return config


def from_config(config: dict) -> Generator:
  """Builds a Generator from a converted model's ``config.json`` fields."""
  return Generator(**_module_kwargs(config, "stylegan2", {
      "size", "style_dim", "n_mlp", "channels", "channel_multiplier", "blur_kernel", "lr_mlp",
      "conv_clamp"}))


# ---- Discriminator ----


class ConvLayer(nn.Module):
  """rosinality ``ConvLayer``: [blur ->] equalized conv [-> fused leaky ReLU].

  With ``downsample`` the input is blurred with the FIR filter (pads chosen so that the stride-2,
  unpadded conv that follows halves the resolution), else the conv pads ``kernel_size // 2``.
  The bias lives in the fused leaky ReLU when ``activate`` (param ``bias``), else in the conv.

  Params: ``conv/kernel`` (k, k, in, out) at unit scale, and ``bias`` (out,) or ``conv/bias``.
  """
  features: int
  kernel_size: int
  downsample: bool = False
  blur_kernel: Sequence[float] = (1, 3, 3, 1)
  use_bias: bool = True
  activate: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    if self.downsample:
      p = (len(self.blur_kernel) - 2) + (self.kernel_size - 1)
      x = layers.blur(x, self.blur_kernel, pad=((p + 1) // 2, p // 2))
      stride, padding = 2, 0
    else:
      stride, padding = 1, self.kernel_size // 2
    x = layers.EqualConv2d(self.features, self.kernel_size, stride=stride, padding=padding,
                           use_bias=self.use_bias and not self.activate, dtype=self.dtype,
                           name="conv")(x)
    if self.activate:
      bias = (self.param("bias", nn.initializers.zeros, (self.features,))
              if self.use_bias else None)
      x = layers.fused_leaky_relu(x, bias)
    return x


class ResBlock(nn.Module):
  """rosinality ``ResBlock``: two 3x3 ConvLayers (the second downsamples) plus a blurred,
  downsampled 1x1 skip without bias or activation; the sum is scaled by 1/sqrt(2).

  (N, H, W, in) -> (N, H/2, W/2, features).
  """
  features: int
  blur_kernel: Sequence[float] = (1, 3, 3, 1)
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    out = ConvLayer(x.shape[-1], 3, dtype=self.dtype, name="conv1")(x)
    out = ConvLayer(self.features, 3, downsample=True, blur_kernel=self.blur_kernel,
                    dtype=self.dtype, name="conv2")(out)
    skip = ConvLayer(self.features, 1, downsample=True, blur_kernel=self.blur_kernel,
                     use_bias=False, activate=False, dtype=self.dtype, name="skip")(x)
    return (out + skip) * (1.0 / math.sqrt(2.0))


def minibatch_stddev(x: jax.Array, group_size: int = 4, num_features: int = 1) -> jax.Array:
  """Appends the minibatch standard deviation as ``num_features`` extra channels (rosinality).

  The batch of N is split into ``group = min(N, group_size)`` members of ``N // group`` groups,
  sample ``i`` belonging to group ``i % (N // group)`` (rosinality's ``view(group, -1, ...)``,
  a strided split). Per group: the std over the members (biased variance + 1e-8, sqrt) averaged
  over channels (per feature slice) and pixels, broadcast back to every member and pixel.

  Args:
    x: (N, H, W, C) with C divisible by ``num_features``.
  Returns:
    (N, H, W, C + num_features).
  Raises:
    ValueError: if N is not a multiple of ``min(N, group_size)`` (rosinality's ``view`` fails
      there too): use a batch of 1-4 or a multiple of ``group_size``.
  """
  n, h, w, c = x.shape
  group = min(n, group_size)
  if n % group:
    raise ValueError(
        f"minibatch stddev: batch size {n} is not a multiple of the group size {group} "
        f"(= min(batch, stddev_group={group_size})); rosinality's Discriminator fails on such "
        f"batches too. Use a batch size <= {group_size} or a multiple of {group_size}.")
  f = num_features
  # A batch sharded over an Explicit mesh axis cannot be split by reshape without naming the
  # result's sharding; the statistics are tiny, so compute them on a replicated copy. (Auto
  # axes, which train.py uses, leave this to the partitioner: the spec entries are None there.)
  sharding = jax.typeof(x).sharding
  spec = getattr(sharding, "spec", None)
  batch_axis = spec[0] if spec else None
  stats = x.astype(jnp.float32)
  if batch_axis is not None:
    stats = jax.sharding.reshard(stats, jax.sharding.NamedSharding(sharding.mesh, P()))
  # (N, H, W, C) -> (group, N/group, H, W, f, C/f): member axis first, as view(group, -1, ...).
  y = stats.reshape(group, n // group, h, w, f, c // f)
  y = jnp.sqrt(jnp.var(y, axis=0) + 1e-8)                      # (N/group, H, W, f, C/f)
  y = jnp.mean(y, axis=(1, 2, 4))                               # (N/group, f)
  y = jnp.tile(y, (group, 1))                                   # (N, f): sample i -> i % (N/group)
  y = jnp.broadcast_to(y[:, None, None, :], (n, h, w, f)).astype(x.dtype)
  if batch_axis is not None:
    y = jax.sharding.reshard(y, jax.sharding.NamedSharding(sharding.mesh, P(batch_axis)))
  return jnp.concatenate([x, y], axis=-1)


class Discriminator(nn.Module):
  """rosinality's StyleGAN2 ``Discriminator`` in Flax: images (N, size, size, 3) in [-1, 1]
  -> logits (N, 1) (float32).

  1x1 ConvLayer from RGB, ``log2(size) - 2`` ResBlocks down to 4x4, minibatch stddev (group
  ``stddev_group``, one feature), a 3x3 ConvLayer, then EqualLinear (fused lrelu) and
  EqualLinear to one logit. The first linear reads the 4x4 map flattened in NHWC order
  (the converter permutes rosinality's NCHW-ordered weight once).

  Attributes:
    size: input resolution (a power of two >= 4).
    channel_multiplier: used only when ``channels`` is None.
    channels: widths at resolutions 4, 8, ..., size (as ``rosinality_channels``).
    blur_kernel: FIR taps of the downsampling blur (rosinality's ResBlock always uses
      [1, 3, 3, 1]; here the attribute reaches every blur, the same for the default).
    stddev_group: minibatch-stddev group size (see ``minibatch_stddev``).
    stddev_feat: number of minibatch-stddev features.
    dtype: compute dtype (params stay float32).

  Params: ``convs_0`` (ConvLayer), ``convs_{1..}`` (ResBlock: ``conv1``, ``conv2``, ``skip``),
  ``final_conv`` (ConvLayer), ``final_linear_0``, ``final_linear_1`` (EqualLinear).
  """
  size: int
  channel_multiplier: int = 2
  channels: tuple[int, ...] | None = None
  blur_kernel: tuple[float, ...] = (1, 3, 3, 1)
  stddev_group: int = 4
  stddev_feat: int = 1
  dtype: Dtype = jnp.float32

  @property
  def log_size(self) -> int:
    return int(math.log2(self.size))

  @property
  def widths(self) -> tuple[int, ...]:
    return tuple(self.channels or rosinality_channels(self.size, self.channel_multiplier))

  @nn.compact
  def __call__(self, images):
    if self.size < 4 or 2 ** self.log_size != self.size:
      raise ValueError(f"size must be a power of two >= 4, got {self.size}")
    widths = self.widths
    if len(widths) != self.log_size - 1:
      raise ValueError(f"channels needs one width per resolution 4..{self.size} "
                       f"({self.log_size - 1} values), got {widths}")
    if images.ndim != 4 or images.shape[1:] != (self.size, self.size, 3):
      raise ValueError(f"images must be (N, {self.size}, {self.size}, 3) NHWC, "
                       f"got shape {images.shape}")
    x = ConvLayer(widths[-1], 1, dtype=self.dtype, name="convs_0")(images.astype(self.dtype))
    # (N, size, size, C) -> ... -> (N, 4, 4, widths[0]), one ResBlock per halving.
    for i, width in enumerate(reversed(widths[:-1])):
      x = ResBlock(width, blur_kernel=self.blur_kernel, dtype=self.dtype,
                   name=f"convs_{i + 1}")(x)
    x = minibatch_stddev(x, self.stddev_group, self.stddev_feat)   # (N, 4, 4, C + feat)
    x = ConvLayer(widths[0], 3, dtype=self.dtype, name="final_conv")(x)
    x = x.reshape(x.shape[0], -1)                                   # (N, 4 * 4 * C), HWC order
    x = layers.EqualLinear(widths[0], activation="fused_lrelu", dtype=self.dtype,
                           name="final_linear_0")(x)
    x = layers.EqualLinear(1, dtype=self.dtype, name="final_linear_1")(x)
    return x.astype(jnp.float32)


def discriminator_from_config(config: dict) -> Discriminator:
  """Builds a Discriminator from a converted model's ``config.json`` fields."""
  return Discriminator(**_module_kwargs(config, "stylegan2_discriminator", {
      "size", "channel_multiplier", "channels", "blur_kernel", "stddev_group", "stddev_feat"}))
