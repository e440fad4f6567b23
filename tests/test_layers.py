"""upfirdn2d and the FIR helpers against a direct numpy re-statement of their definition."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difai_jax.nn import layers


def upfirdn2d_reference(x, kernel, up, down, pad):
  """Definition: zero-insert by `up`, pad (x0, x1, y0, y1; negative crops), correlate with the
  flipped kernel, keep every `down`-th sample. x is (N, H, W, C)."""
  x0, x1, y0, y1 = pad
  n, h, w, c = x.shape
  u = np.zeros((n, h * up, w * up, c), x.dtype)
  u[:, ::up, ::up] = x
  u = np.pad(u, ((0, 0), (max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0)), (0, 0)))
  u = u[:, max(-y0, 0):u.shape[1] - max(-y1, 0), max(-x0, 0):u.shape[2] - max(-x1, 0)]
  k = kernel[::-1, ::-1]
  kh, kw = k.shape
  oh, ow = u.shape[1] - kh + 1, u.shape[2] - kw + 1
  out = np.zeros((n, oh, ow, c), np.float64)
  for i in range(kh):
    for j in range(kw):
      out += k[i, j] * u[:, i:i + oh, j:j + ow]
  return out[:, ::down, ::down]


@pytest.mark.parametrize("up,down,pad", [
    (1, 1, (2, 1, 0, 3)),      # asymmetric, different per axis
    (2, 1, (2, 1, 1, 2)),      # the x2 upsampler's pads, transposed on y
    (1, 2, (1, 0, -1, 2)),     # a negative (cropping) pad
    (2, 2, (0, 3, 2, 0)),
])
def test_upfirdn2d_matches_definition(up, down, pad):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 7, 9, 3)).astype(np.float32)
  kernel = rng.standard_normal((4, 3)).astype(np.float32)   # not symmetric: catches flips
  got = np.asarray(layers.upfirdn2d(x, kernel, up=up, down=down, pad=pad))
  want = upfirdn2d_reference(x, kernel, up, down, pad)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_upsample_preserves_constant_and_doubles_size():
  x = np.full((1, 5, 5, 2), 3.0, np.float32)
  y = np.asarray(layers.upsample(x, (1, 3, 3, 1)))
  assert y.shape == (1, 10, 10, 2)
  # interior samples of a constant stay constant (the filter has gain factor**2 = 4)
  np.testing.assert_allclose(y[:, 2:-2, 2:-2], 3.0, rtol=1e-6)


def test_fused_leaky_relu():
  x = np.array([-2.0, 0.0, 1.5], np.float32)
  bias = np.array([0.5], np.float32)
  got = np.asarray(layers.fused_leaky_relu(x[:, None], bias))[:, 0]
  want = np.where(x + 0.5 >= 0, x + 0.5, 0.2 * (x + 0.5)) * np.sqrt(2)
  np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("up,down,pad", [(1, 1, (2, 1, 0, 3)), (2, 1, (2, 1, 1, 2)),
                                         (1, 2, (1, 0, -1, 2))])
def test_upfirdn2d_separable_fast_path_matches_definition(up, down, pad):
  # A rank-1 kernel with different, non-symmetric row and column taps takes the two-pass path;
  # swapped or unflipped axes would fail here.
  rng = np.random.default_rng(1)
  x = rng.standard_normal((2, 7, 9, 3)).astype(np.float32)
  kernel = np.outer([1.0, 2.0, 0.5, -1.0], [0.3, 1.0, 2.0]).astype(np.float32)
  assert layers.separable_taps(kernel) is not None
  got = np.asarray(layers.upfirdn2d(x, kernel, up=up, down=down, pad=pad))
  np.testing.assert_allclose(got, upfirdn2d_reference(x, kernel, up, down, pad), atol=1e-5)


# ---- transposed and strided convolutions in XLA:CPU-friendly forms ----

_DN = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize("k,padding", [(3, ((2, 2), (2, 2))), (4, ((2, 2), (2, 2))),
                                       (1, ((0, 0), (0, 0))), (3, ((1, 3), (0, 2))),
                                       (4, ((3, 0), (1, 1)))])
def test_conv_dilated_input_equals_lhs_dilated_conv(k, padding):
  x = jax.random.normal(jax.random.key(0), (2, 5, 6, 3))
  kernel = jax.random.normal(jax.random.key(1), (k, k, 3, 4))
  want = jax.lax.conv_general_dilated(x, kernel, (1, 1), padding, lhs_dilation=(2, 2),
                                      dimension_numbers=_DN, precision="highest")
  got = layers.conv_dilated_input(x, kernel, padding)
  assert got.shape == want.shape
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)


def test_conv_transpose2x_equals_flax_conv_transpose():
  x = jax.random.normal(jax.random.key(0), (2, 7, 5, 6))
  flax_t = nn.ConvTranspose(4, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)))
  variables = flax_t.init(jax.random.key(1), x)
  variables = jax.tree.map(lambda v: v + 0.1, variables)     # a non-zero bias too
  ours = layers.ConvTranspose2x(4, (4, 4), padding=((2, 2), (2, 2)))
  assert jax.tree.map(jnp.shape, ours.init(jax.random.key(1), x)) == jax.tree.map(
      jnp.shape, variables)
  np.testing.assert_allclose(np.asarray(ours.apply(variables, x)),
                             np.asarray(flax_t.apply(variables, x)), atol=1e-5)


@pytest.mark.parametrize("size", [9, 10])
def test_conv_stride2_values_and_derivatives_equal_the_strided_conv(size):
  x = jax.random.normal(jax.random.key(0), (2, size, size, 3))
  kernel = jax.random.normal(jax.random.key(1), (3, 3, 3, 5))
  plain = lambda x, w: jax.lax.conv_general_dilated(x, w, (2, 2), "VALID",
                                                    dimension_numbers=_DN)
  ours = layers.conv_stride2
  np.testing.assert_allclose(np.asarray(ours(x, kernel)), np.asarray(plain(x, kernel)),
                             atol=1e-5)
  loss = lambda conv: lambda x, w: jnp.sum(jnp.tanh(conv(x, w)))
  for a, b in zip(jax.grad(loss(ours), (0, 1))(x, kernel),
                  jax.grad(loss(plain), (0, 1))(x, kernel)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
  # R1's second order: d/dw |d loss / dx|^2.
  r1 = lambda conv: jax.grad(lambda w: jnp.sum(jax.grad(loss(conv))(x, w) ** 2))
  np.testing.assert_allclose(np.asarray(r1(ours)(kernel)), np.asarray(r1(plain)(kernel)),
                             rtol=1e-4, atol=1e-4)
