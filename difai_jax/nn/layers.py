"""Layers shared by StyleGAN2, pSp and the DiFAI networks (NHWC throughout).

Re-expresses the building blocks of rosinality/stylegan2-pytorch (`model.py`, `op/`):

* equalized learning rate: parameters are stored at unit scale and multiplied by
  ``lr_mul / sqrt(fan_in)`` at run time (Karras et al. 2018), so converted PyTorch weights are
  stored unchanged (only transposed to Flax layouts);
* ``fused_leaky_relu``: ``leaky_relu(x + bias, 0.2) * sqrt(2)``;
* ``upfirdn2d``: upsample by zero insertion, pad (negative pads crop), FIR filter, downsample;
* the [1, 3, 3, 1] blur and the x2 upsampler used by modulated convolutions and ToRGB skips;
* ``ModulatedConv2d`` in the "demodulate the activations" form (scale the input by the style,
  convolve with the shared kernel, scale the output by the demodulation coefficients), which is
  exactly equal to the per-sample weight form and batches without grouped convolutions.

Padding convention: ``pad = (x0, x1, y0, y1)`` as in rosinality's ``upfirdn2d``; a 2-tuple
``(p0, p1)`` means the same pads on both axes.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Dtype = Any

_LRELU_SLOPE = 0.2
_LRELU_GAIN = math.sqrt(2.0)


def fused_leaky_relu(x: jax.Array, bias: jax.Array | None = None,
                     negative_slope: float = _LRELU_SLOPE, scale: float = _LRELU_GAIN):
  """``leaky_relu(x + bias) * scale`` with bias broadcast over the last (channel) axis."""
  if bias is not None:
    x = x + bias.astype(x.dtype)
  return jnp.where(x >= 0, x, x * negative_slope) * scale


def make_fir_kernel(taps: Sequence[float]) -> np.ndarray:
  """1-d taps -> normalised 2-d separable FIR kernel (outer product, sums to 1)."""
  k = np.asarray(taps, dtype=np.float32)
  if k.ndim == 1:
    k = np.outer(k, k)
  return k / k.sum()


def _normalize_pad(pad: Sequence[int]) -> tuple[int, int, int, int]:
  if len(pad) == 2:
    return (pad[0], pad[1], pad[0], pad[1])
  if len(pad) == 4:
    return tuple(pad)  # type: ignore[return-value]
  raise ValueError(f"pad must have 2 or 4 entries (x0, x1[, y0, y1]), got {pad}")


def separable_taps(kernel) -> tuple[np.ndarray, np.ndarray] | None:
  """``(ky, kx)`` with ``outer(ky, kx) == kernel`` for a concrete rank-1 2-d kernel, else None.

  Every FIR kernel StyleGAN2 uses is the outer product of 1-d taps; filtering with the two 1-d
  factors in turn is exact and, on CPU, far faster than a depthwise 2-d convolution.
  """
  try:
    k = np.asarray(kernel, dtype=np.float64)
  except jax.errors.TracerArrayConversionError:   # a traced kernel: no static taps
    return None
  total = k.sum()
  if k.ndim != 2 or total == 0:
    return None
  ky, kx = k.sum(axis=1), k.sum(axis=0) / total
  if not np.allclose(np.outer(ky, kx), k, rtol=1e-6, atol=1e-7 * np.abs(k).max()):
    return None
  return ky, kx


def _fir_1d(x: jax.Array, taps: np.ndarray, axis: int, down: int) -> jax.Array:
  """Correlation of ``x`` with static 1-d ``taps`` along ``axis`` ('valid'), then keep every
  ``down``-th sample: a sum of strided slices, which XLA fuses into one elementwise loop."""
  n_out = (x.shape[axis] - len(taps)) // down + 1
  out = None
  for j, t in enumerate(taps):
    if t == 0:
      continue
    term = lax.slice_in_dim(x, j, j + (n_out - 1) * down + 1, stride=down, axis=axis)
    term = term * jnp.asarray(t, x.dtype)
    out = term if out is None else out + term
  if out is None:
    shape = list(x.shape)
    shape[axis] = n_out
    out = jnp.zeros(shape, x.dtype)
  return out


def upfirdn2d(x: jax.Array, kernel: np.ndarray | jax.Array, up: int = 1, down: int = 1,
              pad: Sequence[int] = (0, 0)) -> jax.Array:
  """Upsample, FIR-filter and downsample a NHWC batch (rosinality's ``upfirdn2d``).

  Args:
    x: (N, H, W, C).
    kernel: (kh, kw) FIR kernel; it is flipped before correlation, as the original does.
    up, down: integer factors applied to both spatial axes.
    pad: (x0, x1, y0, y1) or (p0, p1); negative values crop.

  Returns:
    (N, (H*up + y0 + y1 - kh) // down + 1, (W*up + x0 + x1 - kw) // down + 1, C).

  A concrete separable kernel (all of StyleGAN2's) is applied as two 1-d passes of shifted
  slices; any other kernel as a depthwise convolution.
  """
  x0, x1, y0, y1 = _normalize_pad(pad)
  kh, kw = np.shape(kernel)
  c = x.shape[-1]
  # Zero insertion (up - 1 zeros after every sample, the last included) and padding in one op.
  x = lax.pad(x, jnp.zeros((), x.dtype),
              [(0, 0, 0), (y0, y1 + up - 1, up - 1), (x0, x1 + up - 1, up - 1), (0, 0, 0)])
  taps = separable_taps(kernel)
  if taps is not None:
    ky, kx = taps
    x = _fir_1d(x, ky[::-1], axis=1, down=down)
    return _fir_1d(x, kx[::-1], axis=2, down=down)
  kernel = jnp.asarray(kernel, dtype=x.dtype)
  w = jnp.flip(kernel, (0, 1))
  w = jnp.broadcast_to(w[:, :, None, None], (kh, kw, 1, c))  # depthwise HWIO
  return lax.conv_general_dilated(
      x, w, window_strides=(down, down), padding="VALID",
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c,
      precision=None)


def blur(x: jax.Array, taps: Sequence[float], pad: Sequence[int],
         upsample_factor: int = 1) -> jax.Array:
  """rosinality ``Blur``: the FIR filter (times ``upsample_factor**2``) with the given pad."""
  kernel = make_fir_kernel(taps) * (upsample_factor ** 2)
  return upfirdn2d(x, kernel, pad=pad)


def upsample(x: jax.Array, taps: Sequence[float], factor: int = 2) -> jax.Array:
  """rosinality ``Upsample``: x``factor`` zero-insertion upsampling followed by the FIR filter."""
  kernel = make_fir_kernel(taps) * (factor ** 2)
  p = kernel.shape[0] - factor
  return upfirdn2d(x, kernel, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample(x: jax.Array, taps: Sequence[float], factor: int = 2) -> jax.Array:
  """rosinality ``Downsample``: FIR filter followed by x``factor`` decimation."""
  kernel = make_fir_kernel(taps)
  p = kernel.shape[0] - factor
  return upfirdn2d(x, kernel, down=factor, pad=((p + 1) // 2, p // 2))


class PixelNorm(nn.Module):
  """Normalises each vector to unit root-mean-square over its last axis (eps 1e-8)."""
  eps: float = 1e-8

  def __call__(self, x):
    return x * lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + self.eps)


class EqualLinear(nn.Module):
  """Equalized-learning-rate dense layer (rosinality ``EqualLinear``).

  Params: ``kernel`` (in, out) stored at unit scale (init N(0, 1) / lr_mul), ``bias`` (out,)
  (init ``bias_init``). Effective weight ``kernel * lr_mul / sqrt(in)``, bias ``bias * lr_mul``.
  With ``activation='fused_lrelu'`` the bias is added inside the fused leaky ReLU.
  """
  features: int
  use_bias: bool = True
  bias_init: float = 0.0
  lr_mul: float = 1.0
  activation: str | None = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    in_features = x.shape[-1]
    kernel = self.param(
        "kernel", lambda k, s: jax.random.normal(k, s) / self.lr_mul,
        (in_features, self.features))
    scale = self.lr_mul / math.sqrt(in_features)
    y = jnp.dot(x.astype(self.dtype), (kernel * scale).astype(self.dtype),
                precision=None)
    bias = None
    if self.use_bias:
      bias = self.param("bias", nn.initializers.constant(self.bias_init), (self.features,))
      bias = bias * self.lr_mul
    if self.activation == "fused_lrelu":
      return fused_leaky_relu(y, bias)
    if self.activation is not None:
      raise ValueError(f"unknown activation {self.activation!r}")
    return y if bias is None else y + bias.astype(y.dtype)


class EqualConv2d(nn.Module):
  """Equalized-learning-rate conv (rosinality ``EqualConv2d``), HWIO kernel, symmetric pad."""
  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  use_bias: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    k, cin = self.kernel_size, x.shape[-1]
    kernel = self.param("kernel", nn.initializers.normal(1.0), (k, k, cin, self.features))
    scale = 1.0 / math.sqrt(cin * k * k)
    x, kernel = x.astype(self.dtype), (kernel * scale).astype(self.dtype)
    if self.stride == 2:
      p = self.padding
      y = conv_stride2(jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0))), kernel)
    else:
      y = lax.conv_general_dilated(
          x, kernel, (self.stride, self.stride), [(self.padding, self.padding)] * 2,
          dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=None)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
    return y


def _conv(x, kernel, *, padding):
  return lax.conv_general_dilated(
      x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=None)


def _phase_taps(k: int, lo: int) -> dict[int, list[tuple[int, int]]]:
  """For a correlation of a x2 zero-dilated signal padded by ``lo`` with a ``k``-tap kernel:
  output ``2m + r`` reads kernel tap ``t`` at input sample ``m + c``, listed as ``(c, t)``."""
  return {r: [((r + t - lo) // 2, t) for t in range(k) if (r + t - lo) % 2 == 0] for r in (0, 1)}


def conv_dilated_input(x: jax.Array, kernel: jax.Array,
                       padding: Sequence[tuple[int, int]]) -> jax.Array:
  """``lax.conv_general_dilated(x, kernel, (1, 1), padding, lhs_dilation=(2, 2))`` (NHWC, HWIO),
  the core of every stride-2 transposed convolution, computed without dilating the input.

  Each of the four output phases (even / odd row, even / odd column) reads only some kernel taps
  at un-dilated input samples, so the four are one ordinary convolution of the input with a small
  kernel holding four phase kernels side by side in its output channels, then interleaved
  (depth to space). Exactly the same sums; XLA:CPU runs the gradients of an lhs-dilated
  convolution 5-10x slower than those of an ordinary one (benchmarks/toy_training.py).
  """
  n, h, w, _ = x.shape
  kh, kw, cin, cout = kernel.shape
  (lo_h, hi_h), (lo_w, hi_w) = padding
  taps_h, taps_w = _phase_taps(kh, lo_h), _phase_taps(kw, lo_w)
  offsets = lambda taps: [c for r in taps for c, _ in taps[r]]
  cmin_h, cmin_w = min(offsets(taps_h)), min(offsets(taps_w))
  k2h, k2w = max(offsets(taps_h)) - cmin_h + 1, max(offsets(taps_w)) - cmin_w + 1
  # Gather the phase kernels from the flattened kernel; index kh * kw is a zero tap.
  index = np.full((k2h, k2w, 2, 2), kh * kw, np.int32)
  for ry in (0, 1):
    for rx in (0, 1):
      for cy, ty in taps_h[ry]:
        for cx, tx in taps_w[rx]:
          index[cy - cmin_h, cx - cmin_w, ry, rx] = ty * kw + tx
  flat = jnp.concatenate([kernel.reshape(kh * kw, cin, cout),
                          jnp.zeros((1, cin, cout), kernel.dtype)])
  phases = flat[index.reshape(-1)].reshape(k2h, k2w, 2, 2, cin, cout)
  phases = phases.transpose(0, 1, 4, 2, 3, 5).reshape(k2h, k2w, cin, 4 * cout)
  out_h, out_w = 2 * h - 1 + lo_h + hi_h - kh + 1, 2 * w - 1 + lo_w + hi_w - kw + 1
  m_h, m_w = (out_h + 1) // 2, (out_w + 1) // 2
  # Negative pads crop (lax.pad): the input rows each phase reads, m + c for m < m_h.
  x = lax.pad(x, jnp.zeros((), x.dtype),
              [(0, 0, 0), (-cmin_h, m_h + k2h - 1 + cmin_h - h, 0),
               (-cmin_w, m_w + k2w - 1 + cmin_w - w, 0), (0, 0, 0)])
  y = _conv(x, phases.astype(x.dtype), padding="VALID")             # (n, m_h, m_w, 4 cout)
  y = y.reshape(n, m_h, m_w, 2, 2, cout).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(n, 2 * m_h, 2 * m_w, cout)[:, :out_h, :out_w]


def _strided_conv(x, kernel):
  return lax.conv_general_dilated(x, kernel, (2, 2), "VALID",
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=None)


@jax.custom_vjp
def conv_stride2(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """``lax.conv_general_dilated(x, kernel, (2, 2), 'VALID')`` (NHWC, HWIO) whose input gradient
  is computed by :func:`conv_dilated_input`: the same numbers, and the gradient's own derivatives
  (R1 and gradient penalties differentiate it once more) are ordinary convolutions, which
  XLA:CPU runs 2-3x faster than the dilated ones of a strided convolution's default gradient."""
  return _strided_conv(x, kernel)


def _conv_stride2_fwd(x, kernel):
  return _strided_conv(x, kernel), (x, kernel)


def _conv_stride2_bwd(residuals, g):
  x, kernel = residuals
  kh, kw = kernel.shape[:2]
  (h, w), (oh, ow) = x.shape[1:3], g.shape[1:3]
  # dx[i] = sum_t kernel[t] g[(i - t) / 2]: a correlation of the dilated g with the flipped,
  # in/out-swapped kernel, padded so that the output has the input's size.
  flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
  dx = conv_dilated_input(g, flipped, [(kh - 1, h - 2 * oh + 1), (kw - 1, w - 2 * ow + 1)])
  _, kernel_vjp = jax.vjp(lambda k: _strided_conv(x, k), kernel)
  return dx, kernel_vjp(g)[0]


conv_stride2.defvjp(_conv_stride2_fwd, _conv_stride2_bwd)


class ConvTranspose2x(nn.Module):
  """``flax.linen.ConvTranspose(features, kernel, strides=(2, 2), padding=padding)`` (explicit
  padding, kernel not transposed): same parameters (``kernel`` HWIO, ``bias``) and the same sums,
  computed by :func:`conv_dilated_input`."""
  features: int
  kernel_size: tuple[int, int]
  padding: tuple[tuple[int, int], tuple[int, int]]
  use_bias: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        tuple(self.kernel_size) + (x.shape[-1], self.features))
    y = conv_dilated_input(x.astype(self.dtype), kernel.astype(self.dtype), self.padding)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(self.dtype)
    return y


class ModulatedConv2d(nn.Module):
  """StyleGAN2 modulated convolution (rosinality ``ModulatedConv2d``).

  Params: ``kernel`` (k, k, in, out) at unit scale; ``modulation`` an EqualLinear(style -> in,
  bias_init=1). With ``upsample`` the conv is a stride-2 transposed conv (written as a
  correlation of the zero-dilated input with the spatially flipped kernel) followed by the blur,
  which is what PyTorch's ``conv_transpose2d`` + ``Blur`` compute.

  Call: ``(x (N, H, W, in), style (N, style_dim)) -> (N, H', W', out)``.
  """
  features: int
  kernel_size: int
  demodulate: bool = True
  upsample: bool = False
  blur_kernel: Sequence[float] = (1, 3, 3, 1)
  eps: float = 1e-8
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, style):
    k, cin = self.kernel_size, x.shape[-1]
    kernel = self.param("kernel", nn.initializers.normal(1.0), (k, k, cin, self.features))
    # The equalized-lr scale 1/sqrt(fan_in) rides on the style vector: conv(x * s, c * W) ==
    # conv(x * (c * s), W), and scaling (N, in) costs nothing next to scaling the kernel.
    s = EqualLinear(cin, bias_init=1.0, name="modulation")(style)  # (N, in)
    s = s * (1.0 / math.sqrt(cin * k * k))
    x = x * s[:, None, None, :].astype(x.dtype)
    if self.upsample:
      # (N, H, W, in) -> (N, 2H + k - 2 + 1, ...): transposed conv of stride 2, no padding.
      y = conv_dilated_input(x.astype(self.dtype), jnp.flip(kernel, (0, 1)).astype(self.dtype),
                             padding=[(k - 1, k - 1)] * 2)
      p = (len(self.blur_kernel) - 2) - (k - 1)
      y = blur(y, self.blur_kernel, pad=((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)
    else:
      y = _conv(x.astype(self.dtype), kernel.astype(self.dtype),
                padding=[(k // 2, k // 2)] * 2)
    if self.demodulate:
      # sum over (kh, kw, in) of (W * s)^2, as one (N, k*k*in) @ (k*k*in, out) product: the
      # HWIO kernel flattens to rows (kh, kw, in), matched by s^2 tiled k*k times. (A reduce
      # over (kh, kw) followed by a dot is the same number, but XLA:CPU fuses that reduce into
      # its dot kernel, which runs it slowly.)
      energy = jnp.dot(jnp.tile(jnp.square(s), (1, k * k)),
                       jnp.square(kernel).reshape(k * k * cin, self.features),
                       precision=None)                     # (N, out)
      y = y * lax.rsqrt(energy + self.eps)[:, None, None, :].astype(y.dtype)
    return y
