"""SSIM / MS-SSIM against pytorch-msssim and scikit-image."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import pytorch_msssim
import torch
from skimage.metrics import structural_similarity

from difai_jax.evaluation.metrics import ssim as ssim_lib

TOL = 1e-5


def _structured(rng, n, h, w):
  """Smooth colour gradients with a rectangle, a disc and mild noise, in [0, 1]."""
  yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
  images = []
  for _ in range(n):
    a, b, c = rng.uniform(0.2, 1.0, 3)
    img = np.stack([a * xx, b * yy, c * (1 - xx) * yy], axis=-1)
    y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
    img[y0:y0 + h // 3, x0:x0 + w // 4] = rng.uniform(0, 1, 3)
    cy, cx, r = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w, h / 6
    img[(yy * (h - 1) - cy) ** 2 + (xx * (w - 1) - cx) ** 2 < r ** 2] = rng.uniform(0, 1, 3)
    img += 0.02 * rng.standard_normal(img.shape)
    images.append(img)
  return np.clip(np.stack(images), 0, 1).astype(np.float32)


def _pairs():
  rng = np.random.default_rng(0)
  pairs = {}
  # Random: y a noisy x (high SSIM) and z independent of x (SSIM near 0, negative cs at fine
  # scales: exercises the clamping of MS-SSIM).
  x = rng.random((2, 171, 164, 3)).astype(np.float32)
  pairs["random_noisy"] = (x, np.clip(x + 0.2 * rng.standard_normal(x.shape), 0, 1))
  pairs["random_independent"] = (x, rng.random(x.shape))
  s = _structured(rng, 2, 176, 181)
  pairs["structured"] = (s, np.clip(np.roll(s, 2, axis=2) + 0.05 * rng.standard_normal(s.shape),
                                    0, 1))
  return {k: (a.astype(np.float32), b.astype(np.float32)) for k, (a, b) in pairs.items()}


PAIRS = _pairs()


def _torch(a):
  return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))


@pytest.fixture(scope="module")
def jit_ssim():
  return jax.jit(lambda x, y, r: ssim_lib.ssim(x, y, data_range=r))


@pytest.fixture(scope="module")
def jit_ms_ssim():
  return jax.jit(lambda x, y: ssim_lib.ms_ssim(x, y, data_range=1.0))


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_ssim_matches_pytorch_msssim_and_skimage(name, jit_ssim):
  x, y = PAIRS[name]
  ours = np.asarray(jit_ssim(x, y, 1.0))
  ref = pytorch_msssim.ssim(_torch(x), _torch(y), data_range=1.0, size_average=False).numpy()
  np.testing.assert_allclose(ours, ref, rtol=0, atol=TOL)
  sk = [structural_similarity(x[i].astype(np.float64), y[i].astype(np.float64),
                              gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                              data_range=1.0, channel_axis=-1) for i in range(len(x))]
  np.testing.assert_allclose(ours, sk, rtol=0, atol=TOL)


def test_ssim_data_range_and_mean(jit_ssim):
  x, y = PAIRS["structured"]
  x255, y255 = x * 255.0, y * 255.0
  ours = np.asarray(jit_ssim(x255, y255, 255.0))
  ref = pytorch_msssim.ssim(_torch(x255), _torch(y255), data_range=255.0,
                            size_average=False).numpy()
  np.testing.assert_allclose(ours, ref, rtol=0, atol=TOL)
  mean = ssim_lib.ssim(x, y, data_range=1.0, size_average=True)
  np.testing.assert_allclose(float(mean), float(np.mean(np.asarray(jit_ssim(x, y, 1.0)))),
                             atol=1e-7)
  np.testing.assert_allclose(np.asarray(jit_ssim(x, x, 1.0)), 1.0, atol=1e-6)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_ms_ssim_matches_pytorch_msssim(name, jit_ms_ssim):
  x, y = PAIRS[name]
  ours = np.asarray(jit_ms_ssim(x, y))
  ref = pytorch_msssim.ms_ssim(_torch(x), _torch(y), data_range=1.0, size_average=False).numpy()
  np.testing.assert_allclose(ours, ref, rtol=0, atol=TOL)
  if name != "random_independent":
    assert np.all(ours > 0.3)  # a real comparison, not 0 == 0


def test_ms_ssim_mean_and_identity(jit_ms_ssim):
  x, y = PAIRS["structured"]
  ref = pytorch_msssim.ms_ssim(_torch(x), _torch(y), data_range=1.0, size_average=True).item()
  ours = ssim_lib.ms_ssim(x, y, data_range=1.0, size_average=True)
  assert abs(float(ours) - ref) <= TOL
  np.testing.assert_allclose(np.asarray(jit_ms_ssim(x, x)), 1.0, atol=1e-6)


def test_ms_ssim_gradients_finite():
  grad = jax.jit(jax.grad(lambda a, b: jnp.sum(ssim_lib.ms_ssim(a, b, data_range=1.0))))
  for name in ("random_independent", "structured"):
    x, y = PAIRS[name]
    g = np.asarray(grad(x, y))
    assert np.all(np.isfinite(g)), name
    assert np.abs(g).max() > 0, name
  x, _ = PAIRS["structured"]
  assert np.all(np.isfinite(np.asarray(grad(x, x))))


def test_gaussian_window_and_errors():
  win = ssim_lib.gaussian_window(11, 1.5)
  reference_module = importlib.import_module("pytorch_msssim.ssim")  # the package shadows it
  ref = reference_module._fspecial_gauss_1d(11, 1.5).numpy().ravel()  # pylint: disable=W0212
  np.testing.assert_allclose(win, ref, atol=1e-7)
  x = np.zeros((1, 160, 200, 3), np.float32)
  with pytest.raises(ValueError, match="must exceed 160"):
    ssim_lib.ms_ssim(x, x, data_range=1.0)
  with pytest.raises(ValueError, match="same shape"):
    ssim_lib.ssim(x, x[:, :100], data_range=1.0)
  with pytest.raises(ValueError, match="window"):
    ssim_lib.ssim(x[:, :8], x[:, :8], data_range=1.0)
