"""Tests of difai_jax.models.critic: shapes, WGAN-GP gradients, spectral normalisation.

Tiny critic (32 px, widths 8-32). The spectral-norm checks compare the power-iteration state
with numpy's SVD of each reshaped kernel, and the critic's output with a forward written here
with the exactly normalised kernels.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difai_jax.models import critic

SIZE = 32
TINY = dict(widths=(8, 16, 16, 32, 32))
CONVS = ("conv_0", "conv_1", "conv_2", "conv_3", "conv_4", "conv_out")


def numpy_init(module, *args, seed=0):
  """Variables shaped as ``module.init`` gives them (traced only), filled from numpy: XLA:CPU
  takes seconds to compile a real init's PRNG ops. Kernels ~ N(0, 1/fan_in), biases ~ 0.1 N,
  power-iteration vectors ~ N(0, 1), sigma 1 (Flax's init)."""
  shapes = jax.eval_shape(module.init, jax.random.key(0), *args)
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if name.endswith("/sigma']"):
      return jnp.ones(leaf.shape, leaf.dtype)
    value = rng.normal(size=leaf.shape)
    if name.endswith("['kernel']"):
      value /= np.sqrt(np.prod(leaf.shape[:-1]))
    elif name.endswith("['bias']"):
      value *= 0.1
    return jnp.asarray(value, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def _spectral(variables, conv, what):
  return variables["spectral"][f"{conv}_sn"][f"{conv}/kernel/{what}"]


def _top_singular_value(kernel):
  return np.linalg.svd(np.asarray(kernel, np.float64).reshape(-1, kernel.shape[-1]),
                       compute_uv=False)[0]


@pytest.fixture(scope="module")
def images():
  rng = np.random.default_rng(0)
  return jnp.asarray(rng.uniform(-1, 1, size=(3, SIZE, SIZE, 3)).astype(np.float32))


@pytest.fixture(scope="module")
def net(images):
  module = critic.from_config(dict(TINY, lambda_gp=10.0))
  variables = numpy_init(module, images)

  @jax.jit
  def evaluate(variables, x):
    return module.apply(variables, x, train=False, mutable=["spectral"])

  @jax.jit
  def train_apply(variables, x):
    return module.apply(variables, x, train=True, mutable=["spectral"])

  @jax.jit
  def gp_grad(params, spectral, x):
    """WGAN-GP penalty and its gradient (a gradient of a gradient through SpectralNorm)."""
    def penalty(p):
      score = lambda xi: module.apply({"params": p, "spectral": spectral}, xi[None])[0]
      g = jax.vmap(jax.grad(score))(x)
      norms = jnp.sqrt(jnp.sum(jnp.square(g), axis=(1, 2, 3)) + 1e-12)
      return jnp.mean(jnp.square(norms - 1.0))
    return jax.value_and_grad(penalty)(params)

  @jax.jit
  def power_iterate(variables, x):
    def body(_, spectral):
      _, upd = module.apply({**variables, "spectral": spectral}, x, train=True,
                            mutable=["spectral"])
      return upd["spectral"]
    return jax.lax.fori_loop(0, 300, body, variables["spectral"])

  return module, variables, evaluate, train_apply, gp_grad, power_iterate


def test_critic_scores_and_collections(net, images):
  _, variables, evaluate, _, _, _ = net
  assert set(variables) == {"params", "spectral"}  # no batch_stats: WGAN-GP safe
  scores, _ = evaluate(variables, images)
  scores = np.asarray(scores)
  assert scores.shape == (3,) and scores.dtype == np.float32 and np.isfinite(scores).all()
  assert np.ptp(scores) > 0


def test_critic_score_does_not_depend_on_batch_mates(net, images):
  _, variables, evaluate, _, _, _ = net
  other = images.at[1:].set(-images[1:])
  a, _ = evaluate(variables, images)
  b, _ = evaluate(variables, other)
  np.testing.assert_allclose(float(a[0]), float(b[0]), atol=1e-6)


def test_critic_gradient_penalty_backward(net, images):
  _, variables, _, _, gp_grad, _ = net
  gp, grads = gp_grad(variables["params"], variables["spectral"], images)
  assert np.isfinite(float(gp)) and float(gp) > 0
  flat = jax.tree_util.tree_flatten_with_path(grads)[0]
  assert all(np.isfinite(np.asarray(g)).all() for _, g in flat)
  kernels = [jax.tree_util.keystr(p) for p, g in flat
             if "kernel" in jax.tree_util.keystr(p) and not np.abs(np.asarray(g)).max() > 0]
  assert not kernels, kernels


def test_spectral_state_changes_only_in_training(net, images):
  _, variables, evaluate, train_apply, _, _ = net
  _, state = evaluate(variables, images)
  for a, b in zip(jax.tree.leaves(state["spectral"]), jax.tree.leaves(variables["spectral"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  _, state = train_apply(variables, images)
  for conv in CONVS:
    sigma = float(_spectral(state, conv, "sigma"))
    assert sigma != 1.0 and sigma > 0, conv  # was 1.0 at init
    if conv != "conv_out":  # a (1, 1) u of a one-output conv is just re-normalised to +-1
      assert np.abs(np.asarray(_spectral(state, conv, "u") - _spectral(variables, conv, "u"))
                    ).max() > 1e-3, conv


def test_power_iteration_converges_to_the_largest_singular_value(net, images):
  _, variables, evaluate, _, _, power_iterate = net
  spectral = power_iterate(variables, images)
  for conv in CONVS:
    kernel = variables["params"][conv]["kernel"]
    sigma_true = _top_singular_value(kernel)
    sigma = float(spectral[f"{conv}_sn"][f"{conv}/kernel/sigma"])
    np.testing.assert_allclose(sigma, sigma_true, rtol=1e-4, err_msg=conv)
    # The normalised weight has spectral norm 1.
    np.testing.assert_allclose(_top_singular_value(np.asarray(kernel) / sigma), 1.0, rtol=1e-4)

  # The critic in eval mode computes with kernel / sigma: compare with a hand-written forward
  # using numpy's exact sigma.
  def conv(x, name, stride, pad):
    p = variables["params"][name]
    w = p["kernel"] / _top_singular_value(p["kernel"])
    y = jax.lax.conv_general_dilated(x, w, (stride, stride), ((pad, pad), (pad, pad)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     precision=jax.lax.Precision.HIGHEST)
    return y + p["bias"]

  x = images
  for name in CONVS[:-1]:
    x = jax.nn.leaky_relu(conv(x, name, 2, 1), 0.2)
  want = np.asarray(conv(x, "conv_out", 1, 1).mean(axis=(1, 2, 3)))
  got, _ = evaluate({"params": variables["params"], "spectral": spectral}, images)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-3, atol=1e-5)


def test_critic_validation():
  with pytest.raises(ValueError, match="divisible by 32"):
    jax.eval_shape(critic.Critic(**TINY).init, jax.random.key(0), jnp.zeros((1, 48, 48, 3)))
  with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
    jax.eval_shape(critic.Critic(**TINY).init, jax.random.key(0), jnp.zeros((1, 32, 32, 1)))
  with pytest.raises(ValueError, match="unknown fields"):
    critic.from_config(dict(TINY, norm="batch"))


def test_the_critic_scores_raw_outputs_by_default():
  # Eq. 9-10 write D(I_out): every shipped config and the step's default score the raw
  # generator output, not the composite (which equals I_gt's known pixels exactly).
  from configs import celebahq, demo, toy_difai  # pylint: disable=import-outside-toplevel
  from difai_jax.training import steps  # pylint: disable=import-outside-toplevel
  from difai_jax.training.stages import inpainting  # pylint: disable=import-outside-toplevel
  for module in (celebahq, demo, toy_difai):
    assert inpainting.step_config(module.get_config()).critic_input == "raw", module.__name__
  i_masked = jnp.zeros((1, 4, 4, 3))
  i_out = jnp.full((1, 4, 4, 3), 0.5)
  mask = jnp.ones((1, 4, 4, 1)).at[:, :2].set(0.0)
  cfg = inpainting.step_config(demo.get_config())
  np.testing.assert_array_equal(np.asarray(steps.critic_input(cfg, i_masked, i_out, mask)),
                                np.asarray(i_out))
  composite = steps.critic_input(dataclasses.replace(cfg, critic_input="composite"),
                                 i_masked, i_out, mask)
  assert float(composite[0, 3, 0, 0]) == 0.0 and float(composite[0, 0, 0, 0]) == 0.5
