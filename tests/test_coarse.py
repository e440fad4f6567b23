"""Tests of difai_jax.models.coarse: the coarse net and its multi-scale hole-weighted L1 loss.

Tiny net (32 px, widths 8-16, two dilated blocks); one compiled forward and one compiled loss
gradient shared by the module.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difai_jax.models import coarse
from difai_jax.models.sparn import composite

SIZE = 32
TINY = dict(widths=(8, 8, 16, 16), dilations=(1, 2))


def numpy_init(module, *args, seed=0):
  """Variables shaped as ``module.init`` gives them (traced only), filled from numpy: XLA:CPU
  takes seconds to compile a real init's PRNG ops. Kernels ~ N(0, 1/fan_in), biases ~ 0.1 N."""
  shapes = jax.eval_shape(module.init, jax.random.key(0), *args)
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    value = rng.normal(size=leaf.shape)
    if jax.tree_util.keystr(path).endswith("['kernel']"):
      value /= np.sqrt(np.prod(leaf.shape[:-1]))
    else:
      value *= 0.1
    return jnp.asarray(value, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def _mask(n, hole=((8, 24), (4, 20))):
  m = np.ones((n, SIZE, SIZE, 1), np.float32)
  (r0, r1), (c0, c1) = hole
  m[:, r0:r1, c0:c1] = 0.0
  return m


@pytest.fixture(scope="module")
def batch():
  rng = np.random.default_rng(0)
  i_gt = rng.uniform(-1, 1, size=(2, SIZE, SIZE, 3)).astype(np.float32)
  mask = _mask(2)
  return dict(i_gt=jnp.asarray(i_gt), mask=jnp.asarray(mask), i_masked=jnp.asarray(i_gt * mask))


@pytest.fixture(scope="module")
def net(batch):
  module = coarse.from_config(dict(TINY, hole_weight=6.0, lambda_adv=0.0))
  variables = numpy_init(module, batch["i_masked"], batch["mask"])
  forward = jax.jit(module.apply)

  @jax.jit
  def loss_and_grad(params, i_masked, mask, i_gt):
    loss_fn = lambda p: coarse.coarse_loss(module.apply({"params": p}, i_masked, mask), i_gt, mask)
    return jax.value_and_grad(loss_fn)(params)

  return module, variables, forward, loss_and_grad


def test_coarse_outputs_three_levels(net, batch):
  _, variables, forward, _ = net
  out = forward(variables, batch["i_masked"], batch["mask"])
  assert isinstance(out, coarse.CoarseOutputs)
  for image, size in ((out.full, SIZE), (out.half, SIZE // 2), (out.quarter, SIZE // 4)):
    image = np.asarray(image)
    assert image.shape == (2, size, size, 3) and image.dtype == np.float32
    assert np.isfinite(image).all() and np.abs(image).max() <= 1.0
    assert image.std() > 1e-3


def test_coarse_backward(net, batch):
  _, variables, _, loss_and_grad = net
  loss, grads = loss_and_grad(variables["params"], batch["i_masked"], batch["mask"],
                              batch["i_gt"])
  assert np.isfinite(float(loss)) and float(loss) > 0
  flat = jax.tree_util.tree_flatten_with_path(grads)[0]
  assert all(np.isfinite(np.asarray(g)).all() for _, g in flat)
  zero = [jax.tree_util.keystr(p) for p, g in flat if not np.abs(np.asarray(g)).max() > 0]
  assert not zero, zero


def test_coarse_all_hole_and_no_hole_masks_stay_finite(net, batch):
  _, variables, forward, loss_and_grad = net
  for known in (0.0, 1.0):
    mask = jnp.full((2, SIZE, SIZE, 1), known, jnp.float32)
    i_masked = batch["i_gt"] * mask
    out = forward(variables, i_masked, mask)
    assert all(np.isfinite(np.asarray(x)).all() for x in out)
    loss, grads = loss_and_grad(variables["params"], i_masked, mask, batch["i_gt"])
    assert np.isfinite(float(loss))
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


def test_coarse_sample_does_not_depend_on_batch_mates(net, batch):
  _, variables, forward, _ = net
  other = batch["i_masked"].at[1].set(-batch["i_masked"][1])
  a = forward(variables, batch["i_masked"], batch["mask"])
  b = forward(variables, other, batch["mask"])
  for x, y in zip(a, b):
    np.testing.assert_allclose(np.asarray(x[0]), np.asarray(y[0]), atol=1e-6)


def test_composite_of_the_coarse_completion_keeps_known_pixels(net, batch):
  _, variables, forward, _ = net
  i_masked, mask = batch["i_masked"], batch["mask"]
  full = forward(variables, i_masked, mask).full
  out = np.asarray(composite(i_masked, full, mask))
  known = np.broadcast_to(np.asarray(mask) == 1, out.shape)
  np.testing.assert_array_equal(out[known], np.asarray(i_masked)[known])
  np.testing.assert_array_equal(out[~known], np.asarray(full)[~known])


def test_coarse_loss_matches_stated_math():
  mask = jnp.asarray(_mask(2))
  p = float(np.mean(np.asarray(mask)))  # known fraction, the same at every area-pooled scale
  gt = jnp.zeros((2, SIZE, SIZE, 3))
  ones = coarse.CoarseOutputs(full=jnp.ones((2, SIZE, SIZE, 3)),
                              half=jnp.ones((2, SIZE // 2, SIZE // 2, 3)),
                              quarter=jnp.ones((2, SIZE // 4, SIZE // 4, 3)))
  # |out - gt| = 1 everywhere: each scale gives valid * p + hole * (1 - p).
  loss = coarse.coarse_loss(ones, gt, mask, hole_weight=6.0, valid_weight=1.0,
                            scale_weights=(1.0, 0.5, 0.25))
  np.testing.assert_allclose(float(loss), 1.75 * (p + 6.0 * (1 - p)), rtol=1e-6)
  # Errors only in the hole, only at full resolution: hole_weight * 0.5 * (1 - p).
  hole_err = coarse.CoarseOutputs(full=0.5 * (1 - mask) * jnp.ones((1, 1, 1, 3)),
                                  half=jnp.zeros_like(ones.half),
                                  quarter=jnp.zeros_like(ones.quarter))
  loss = coarse.coarse_loss(hole_err, gt, mask, hole_weight=6.0)
  np.testing.assert_allclose(float(loss), 6.0 * 0.5 * (1 - p), rtol=1e-6)
  # The WGAN generator term: - lambda_adv * mean(D(fake)).
  scores = jnp.array([0.5, 1.5])
  loss_adv = coarse.coarse_loss(hole_err, gt, mask, hole_weight=6.0, lambda_adv=0.1,
                                fake_scores=scores)
  np.testing.assert_allclose(float(loss_adv - loss), -0.1, rtol=1e-5)
  with pytest.raises(ValueError, match="no fake_scores"):
    coarse.coarse_loss(hole_err, gt, mask, lambda_adv=0.1)


def test_coarse_config_and_validation(batch):
  cfg = dict(TINY, hole_weight=3.0, valid_weight=1.0, scale_weights=[1.0, 1.0, 0.5],
             lambda_adv=0.01, dtype="float32")
  module = coarse.from_config(cfg)
  assert module.widths == (8, 8, 16, 16) and module.dilations == (1, 2)
  assert coarse.loss_kwargs(cfg) == dict(hole_weight=3.0, valid_weight=1.0,
                                         scale_weights=(1.0, 1.0, 0.5), lambda_adv=0.01)
  with pytest.raises(ValueError, match="unknown fields"):
    coarse.from_config(dict(TINY, lambda_gp=10.0))
  init = functools.partial(jax.eval_shape, coarse.CoarseNet(**TINY).init, jax.random.key(0))
  with pytest.raises(ValueError, match="divisible by 8"):
    init(batch["i_masked"][:, :28, :28], batch["mask"][:, :28, :28])
  with pytest.raises(ValueError, match="mask must be"):
    init(batch["i_masked"], batch["mask"][..., 0])
  with pytest.raises(ValueError, match="4 entries"):
    jax.eval_shape(coarse.CoarseNet(widths=(8, 8, 8)).init, jax.random.key(0),
                   batch["i_masked"], batch["mask"])
