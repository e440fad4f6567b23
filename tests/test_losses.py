"""Losses of eq. 6-11 on hand-made tensors, closed forms, and pytorch-msssim."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import pytorch_msssim
import torch

from difai_jax import losses
from difai_jax.models import vgg


def _pixels(values, channels=3):
  """(H, W) nested list -> (1, H, W, channels) with the value repeated over channels."""
  a = np.asarray(values, np.float32)[None, :, :, None]
  return np.repeat(a, channels, axis=-1)


# ---- pixel L1 ----

def test_hole_and_valid_l1_hand_made():
  i_out = _pixels([[1, 2], [3, 4]])
  i_gt = np.zeros_like(i_out)
  mask = np.array([[1, 0], [0, 0]], np.float32)[None, :, :, None]  # one known pixel
  # Default: the partial-convolution normalisation, over all 4 pixels of the image.
  assert float(losses.hole_l1(i_out, i_gt, mask)) == pytest.approx((2 + 3 + 4) / 4)
  assert float(losses.valid_l1(i_out, i_gt, mask)) == pytest.approx(1 / 4)
  # Per region: over the region's own pixels.
  assert float(losses.hole_l1(i_out, i_gt, mask, "region")) == pytest.approx((2 + 3 + 4) / 3)
  assert float(losses.valid_l1(i_out, i_gt, mask, "region")) == pytest.approx(1.0)
  # Batch: regions are pooled over images (3 + 1 hole pixels; 1 + 3 known pixels).
  i_out2 = np.concatenate([i_out, 10 * i_out])
  mask2 = np.concatenate([mask, np.array([[1, 1], [1, 0]], np.float32)[None, :, :, None]])
  zeros = np.zeros_like(i_out2)
  assert float(losses.hole_l1(i_out2, zeros, mask2, "region")) == pytest.approx(
      (2 + 3 + 4 + 40) / 4)
  assert float(losses.valid_l1(i_out2, zeros, mask2, "region")) == pytest.approx(
      (1 + 10 + 20 + 30) / 4)
  assert float(losses.hole_l1(i_out2, zeros, mask2)) == pytest.approx((2 + 3 + 4 + 40) / 8)
  with pytest.raises(ValueError, match="normalization"):
    losses.hole_l1(i_out, i_gt, mask, "pixels")


def test_l1_image_normalization_equals_partial_conv_loss():
  """The default equals the partial-convolution loss's terms (NVIDIA/partialconv: nn.L1Loss of
  the masked output and target, hole weighted 6, valid 1), computed here with torch."""
  rng = np.random.default_rng(3)
  i_out, i_gt = rng.uniform(-1, 1, (2, 3, 16, 16, 3)).astype(np.float32)
  mask = (rng.uniform(size=(3, 16, 16, 1)) > 0.3).astype(np.float32)
  l1 = torch.nn.L1Loss()
  to_t = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
  out_t, gt_t, m_t = to_t(i_out), to_t(i_gt), to_t(mask)
  hole_ref = float(l1((1 - m_t) * out_t, (1 - m_t) * gt_t))
  valid_ref = float(l1(m_t * out_t, m_t * gt_t))
  hole, valid = losses.hole_l1(i_out, i_gt, mask), losses.valid_l1(i_out, i_gt, mask)
  print(f"hole {float(hole):.8f} vs {hole_ref:.8f}; valid {float(valid):.8f} vs {valid_ref:.8f}")
  assert float(hole) == pytest.approx(hole_ref, rel=1e-6)
  assert float(valid) == pytest.approx(valid_ref, rel=1e-6)


def test_l1_empty_regions_are_zero_with_finite_gradients():
  rng = np.random.default_rng(0)
  i_out, i_gt = rng.uniform(-1, 1, (2, 2, 4, 4, 3)).astype(np.float32)
  for fn, mask_value in ((losses.hole_l1, 1.0), (losses.valid_l1, 0.0)):
    mask = np.full((2, 4, 4, 1), mask_value, np.float32)
    value, grad = jax.value_and_grad(fn)(i_out, i_gt, mask)
    assert float(value) == 0.0
    assert np.all(np.asarray(grad) == 0.0)
  with pytest.raises(ValueError, match=r"\(N, H, W, 1\)"):
    losses.hole_l1(i_out, i_gt, np.ones((2, 4, 4), np.float32))


# ---- resizing, Gram ----

def test_resize_mask_is_area_average_with_floor_crop():
  m = np.array([[1, 1, 0, 0],
                [1, 0, 0, 0],
                [1, 1, 1, 1],
                [1, 1, 0, 1]], np.float32)[None, :, :, None]
  np.testing.assert_allclose(np.asarray(losses.resize_mask(m, (2, 2)))[0, :, :, 0],
                             [[0.75, 0.0], [1.0, 0.75]])
  m5 = np.pad(m, ((0, 0), (0, 1), (0, 1), (0, 0)), constant_values=7.0)  # dropped by the crop
  np.testing.assert_allclose(np.asarray(losses.resize_mask(m5, (2, 2))),
                             np.asarray(losses.resize_mask(m, (2, 2))))


def test_gram_matrix_hand_made():
  f = np.array([[[1.0, 2.0], [3.0, 4.0]]], np.float32)[None]  # (1, h=1, w=2, C=2)
  np.testing.assert_allclose(np.asarray(losses.gram_matrix(f))[0],
                             np.array([[10.0, 14.0], [14.0, 20.0]]) / (2 * 1 * 2))
  stacked = np.stack([f, 2 * f])  # (K, N, h, w, C) -> (K, N, C, C)
  g = np.asarray(losses.gram_matrix(stacked))
  assert g.shape == (2, 1, 2, 2)
  np.testing.assert_allclose(g[1], 4 * g[0])


# ---- perceptual / style (eq. 6-7) ----

HALF_HOLE = np.concatenate([np.zeros((1, 4, 8, 1)), np.ones((1, 4, 8, 1))], axis=1)  # top = hole


def test_perceptual_hand_made():
  rng = np.random.default_rng(1)
  k = 2
  feats_out, feats_style, feats_gt = {}, {}, {}
  for tap, size in (("a", 4), ("b", 2)):  # the 8x8 mask is resized to 4x4 and 2x2
    style = rng.standard_normal((k, 1, size, size, 3)).astype(np.float32)
    out = style + 1.0                                 # |out_j - style_j| = 1 everywhere
    gt = out[0] - 3.0                                 # |out_0 - gt| = 3 where known ...
    gt[:, : size // 2] += 100.0                       # ... and anything in the hole
    feats_out[tap], feats_style[tap], feats_gt[tap] = out, style, gt
  value = losses.perceptual_loss(feats_out, feats_style, feats_gt, HALF_HOLE)
  assert float(value) == pytest.approx(2 * (k * 1.0 + 3.0))
  # Feature differences in the known region do not reach the style terms.
  for tap in feats_style:
    feats_style[tap][:, :, feats_style[tap].shape[2] // 2:] += 50.0
  assert float(losses.perceptual_loss(feats_out, feats_style, feats_gt, HALF_HOLE)) == (
      pytest.approx(2 * (k * 1.0 + 3.0)))


def test_perceptual_matches_explicit_loops_on_random_mask():
  rng = np.random.default_rng(2)
  k, n = 3, 2
  mask = (rng.random((n, 16, 16, 1)) > 0.4).astype(np.float32)
  fo = {"t1": rng.standard_normal((k, n, 8, 8, 4)), "t2": rng.standard_normal((k, n, 4, 4, 5))}
  fs = {t: rng.standard_normal(v.shape) for t, v in fo.items()}
  fg = {t: rng.standard_normal(v.shape[1:]) for t, v in fo.items()}
  expected = 0.0
  for t in fo:
    size = fo[t].shape[2]
    f = 16 // size
    known = mask.reshape(n, size, f, size, f, 1).mean(axis=(2, 4))
    hole = 1 - known
    for j in range(k):
      expected += np.sum(hole * np.abs(fo[t][j] - fs[t][j])) / (np.sum(hole) * fo[t].shape[-1])
    expected += np.sum(known * np.abs(fo[t][0] - fg[t])) / (np.sum(known) * fo[t].shape[-1])
  cast = lambda d: {t: v.astype(np.float32) for t, v in d.items()}
  value = losses.perceptual_loss(cast(fo), cast(fs), cast(fg), mask)
  assert float(value) == pytest.approx(expected, rel=1e-5)


def test_style_hand_made():
  # One tap, 2x2 cells, C = 1; the 8x8 mask's top half is the hole (top row of cells).
  out = np.array([[[1.0], [1.0]], [[3.0], [0.0]]], np.float32)      # (h, w, C)
  style = np.array([[[2.0], [0.0]], [[9.0], [9.0]]], np.float32)
  gt = np.array([[[5.0], [5.0]], [[0.0], [0.0]]], np.float32)
  feats_out = {"a": np.stack([out, out])[:, None]}                  # (K=2, N=1, 2, 2, 1)
  feats_style = {"a": np.stack([style, style])[:, None]}
  feats_gt = {"a": gt[None]}
  # Hole: G(out) = (1 + 1) / 4, G(style) = (4 + 0) / 4 -> 0.5 per j, two outputs.
  # Known: G(out_0) = (9 + 0) / 4, G(gt) = 0 -> 2.25.
  value = losses.style_loss(feats_out, feats_style, feats_gt, HALF_HOLE)
  assert float(value) == pytest.approx(2 * 0.5 + 2.25)


def test_feature_losses_check_taps():
  f = {"a": np.zeros((1, 1, 2, 2, 1), np.float32)}
  with pytest.raises(ValueError, match="taps"):
    losses.perceptual_loss(f, {"b": f["a"]}, {"a": f["a"][0]}, HALF_HOLE)


# ---- MS-SSIM (eq. 8) ----

def test_ms_ssim_loss_matches_pytorch_msssim():
  rng = np.random.default_rng(3)
  i_gt = rng.uniform(-1, 1, (2, 168, 165, 3)).astype(np.float32)
  i_out = np.clip(i_gt + 0.3 * rng.standard_normal(i_gt.shape), -1, 1).astype(np.float32)
  to01 = lambda a: torch.from_numpy(np.ascontiguousarray((a.transpose(0, 3, 1, 2) + 1) / 2))
  ref = 1.0 - pytorch_msssim.ms_ssim(to01(i_out), to01(i_gt), data_range=1.0).item()
  value, grad = jax.jit(jax.value_and_grad(losses.ms_ssim_loss))(i_out, i_gt)
  assert abs(float(value) - ref) <= 1e-5
  assert 0.05 < float(value) < 0.95
  assert np.all(np.isfinite(np.asarray(grad)))
  with pytest.raises(ValueError, match="j = 0"):
    losses.ms_ssim_loss(i_out[None], i_gt)


# ---- WGAN-GP (eq. 9-10) ----

def _linear_critic(w, b=0.3):
  return lambda x: jnp.sum(x * w, axis=(1, 2, 3)) + b


@pytest.fixture(scope="module")
def gan_data():
  rng = np.random.default_rng(4)
  w = rng.standard_normal((4, 4, 3)).astype(np.float32) * 0.2
  real = rng.uniform(-1, 1, (3, 4, 4, 3)).astype(np.float32)
  fake = rng.uniform(-1, 1, (2, 3, 4, 4, 3)).astype(np.float32)  # K = 2 stacked outputs
  return w, real, fake


def test_gradient_penalty_linear_critic_closed_form(gan_data):
  w, real, fake = gan_data
  expected = (np.linalg.norm(w) - 1.0) ** 2
  for f in (fake, fake[0]):
    gp = losses.gradient_penalty(_linear_critic(w), real, f, jax.random.key(0))
    assert float(gp) == pytest.approx(expected, rel=1e-5)
  # Differentiable in the critic's parameters: d/dw (|w| - 1)^2 = 2 (|w| - 1) w / |w|.
  grad = jax.grad(lambda w_: losses.gradient_penalty(_linear_critic(w_), real, fake,
                                                     jax.random.key(0)))(w)
  norm = np.linalg.norm(w)
  np.testing.assert_allclose(np.asarray(grad), 2 * (norm - 1) * w / norm, rtol=1e-4, atol=1e-6)


def test_gradient_penalty_uses_random_interpolates(gan_data):
  _, real, fake = gan_data
  rng = jax.random.key(7)
  x_hat = np.asarray(losses.random_interpolates(real, fake, rng))
  eps = np.asarray(jax.random.uniform(rng, (2, 3, 1, 1, 1)))
  np.testing.assert_allclose(x_hat, eps * real + (1 - eps) * fake, atol=1e-6)
  assert len(np.unique(eps)) == 6 and np.all((eps >= 0) & (eps < 1))
  # D(x) = |x|^2 / 2 has gradient x: GP = mean over interpolates of (|x_hat| - 1)^2.
  critic = lambda x: 0.5 * jnp.sum(x ** 2, axis=(1, 2, 3))
  expected = np.mean((np.linalg.norm(x_hat.reshape(6, -1), axis=1) - 1) ** 2)
  assert float(losses.gradient_penalty(critic, real, fake, rng)) == pytest.approx(expected,
                                                                                 rel=1e-5)


def test_critic_and_generator_losses(gan_data):
  w, real, fake = gan_data
  critic = _linear_critic(w)
  d_real = np.sum(real * w, axis=(1, 2, 3)) + 0.3
  d_fake = np.sum(fake * w, axis=(2, 3, 4)) + 0.3
  loss, terms = losses.critic_loss(critic, real, fake, jax.random.key(1))
  gp = (np.linalg.norm(w) - 1.0) ** 2
  assert float(loss) == pytest.approx(d_fake.mean() - d_real.mean() + 10 * gp, rel=1e-5)
  assert float(terms["gradient_penalty"]) == pytest.approx(gp, rel=1e-5)
  assert float(terms["wasserstein"]) == pytest.approx(d_real.mean() - d_fake.mean(), rel=1e-5)
  # The critic loss does not train the generator.
  g = jax.grad(lambda f: losses.critic_loss(critic, real, f, jax.random.key(1))[0])(fake)
  assert np.all(np.asarray(g) == 0)
  adv = losses.generator_adversarial_loss(critic, fake)
  assert float(adv) == pytest.approx(-d_fake.mean(), rel=1e-5)
  g = jax.grad(lambda f: losses.generator_adversarial_loss(critic, f))(fake)
  np.testing.assert_allclose(np.asarray(g), np.broadcast_to(-w / 6, fake.shape), rtol=1e-5)


# ---- eq. 11 ----

def test_total_generator_loss():
  terms = {"hole": 1.0, "valid": 2.0, "perceptual": 3.0, "style": 4.0, "ms_ssim": 5.0,
           "adversarial": -6.0}
  lambdas = {"hole": 6.0, "valid": 1.0, "perceptual": 0.05, "style": 120.0, "ms_ssim": 0.5,
             "adversarial": 0.1}
  total, logged = losses.total_generator_loss(terms, lambdas)
  assert float(total) == pytest.approx(6 + 2 + 0.15 + 480 + 2.5 - 0.6)
  assert float(logged["total"]) == float(total) and logged["style"] == 4.0
  with pytest.raises(ValueError, match="no lambda.*style"):
    losses.total_generator_loss(terms, {k: v for k, v in lambdas.items() if k != "style"})
  with pytest.raises(ValueError, match="ms_ssim"):
    losses.total_generator_loss({k: v for k, v in terms.items() if k != "ms_ssim"}, lambdas)
  lambdas_off = dict(lambdas, ms_ssim=0.0)  # a disabled term may be absent
  losses.total_generator_loss({k: v for k, v in terms.items() if k != "ms_ssim"}, lambdas_off)


# ---- every term through VGG: finite gradients on all-hole / no-hole / mixed masks ----

@pytest.fixture(scope="module")
def generator_grad():
  vgg_module = vgg.VGG19Features()
  vgg_vars = jax.jit(vgg_module.init)(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  feature_fn = lambda x: vgg_module.apply(vgg_vars, x)
  w = jnp.asarray(np.random.default_rng(5).standard_normal((32, 32, 3)) * 0.01, jnp.float32)
  critic = _linear_critic(w)
  lambdas = {"hole": 6.0, "valid": 1.0, "perceptual": 0.05, "style": 120.0, "adversarial": 0.1}

  def loss(i_out, i_style, i_gt, mask):
    feats_out = losses.stacked_features(feature_fn, i_out)
    feats_style = losses.stacked_features(feature_fn, i_style)
    feats_gt = losses.stacked_features(feature_fn, i_gt)
    composite = i_gt * mask + (1 - mask) * i_out
    terms = {
        "hole": losses.hole_l1(i_out[0], i_gt, mask),
        "valid": losses.valid_l1(i_out[0], i_gt, mask),
        "perceptual": losses.perceptual_loss(feats_out, feats_style, feats_gt, mask),
        "style": losses.style_loss(feats_out, feats_style, feats_gt, mask),
        "adversarial": losses.generator_adversarial_loss(critic, composite),
    }
    return losses.total_generator_loss(terms, lambdas)

  return jax.jit(jax.value_and_grad(loss, has_aux=True))


@pytest.mark.parametrize("kind", ["all_hole", "no_hole", "mixed"])
def test_total_loss_gradients_finite(kind, generator_grad):
  rng = np.random.default_rng(6)
  i_out = rng.uniform(-1, 1, (2, 2, 32, 32, 3)).astype(np.float32)  # K = 2, N = 2
  i_style = rng.uniform(-1, 1, (2, 2, 32, 32, 3)).astype(np.float32)
  i_gt = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  mask = {"all_hole": np.zeros((2, 32, 32, 1)), "no_hole": np.ones((2, 32, 32, 1)),
          "mixed": np.stack([np.zeros((32, 32, 1)), np.ones((32, 32, 1))])}[kind]
  (total, terms), grad = generator_grad(i_out, i_style, i_gt, mask.astype(np.float32))
  assert np.isfinite(float(total))
  assert all(np.isfinite(float(v)) for v in terms.values())
  grad = np.asarray(grad)
  assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0
  if kind == "all_hole":
    assert float(terms["valid"]) == 0.0 and float(terms["hole"]) > 0
    assert np.all(grad[1] != 0)  # j = 1 is pulled toward its style image everywhere
  if kind == "no_hole":
    assert float(terms["hole"]) == 0.0 and float(terms["valid"]) > 0
    assert np.all(grad[1] == 0)  # no hole: nothing constrains the j >= 1 outputs
