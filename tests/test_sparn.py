"""Tests of difai_jax.models.sparn: region norm, SPARN, the DiFAI generator, composite.

Tiny shapes (32 px, widths 8-16); one compiled forward and one compiled gradient per norm mode.
Region normalisation is checked against stated math and against RN-B's own algorithm written in
PyTorch (mean fill + affine-free BatchNorm2d + sqrt(|r| / NHW) rescale, geekyutao/RN).
"""

import functools
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from difai_jax.models import sparn

SIZE = 32
# The default depth (five levels, bottleneck image_size / 16) at narrow widths: shapes only.
TINY = dict(encoder_widths=(8, 8, 16, 16, 16), decoder_widths=(16, 16, 16, 8, 8),
            spade_hidden=8)
# Three levels (bottleneck image_size / 4) for the compiled tests: same blocks, less to compile.
SHALLOW = dict(encoder_widths=(8, 16, 16), decoder_widths=(16, 16, 8), spade_hidden=8)


def numpy_init(module, *args, seed=0, **kwargs):
  """Variables shaped as ``module.init`` gives them, filled from numpy.

  XLA:CPU takes seconds to compile the PRNG ops of a real ``init``; tracing it with eval_shape
  and filling the leaves here keeps the tests fast. Kernels ~ N(0, 1 / fan_in), biases and
  learned BatchNorm offsets ~ 0.1 N(0, 1), scales ~ 1 + 0.1 N(0, 1), running stats (0, 1).
  """
  shapes = jax.eval_shape(functools.partial(module.init, **kwargs), jax.random.key(0), *args)
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if name.endswith("['mean']"):
      return jnp.zeros(leaf.shape, leaf.dtype)
    if name.endswith("['var']") or name.endswith("/sigma']"):
      return jnp.ones(leaf.shape, leaf.dtype)
    value = rng.normal(size=leaf.shape)
    if name.endswith("['kernel']"):
      value /= np.sqrt(np.prod(leaf.shape[:-1]))
    elif name.endswith("['scale']"):
      value = 1.0 + 0.1 * value
    elif name.endswith("['bias']"):
      value = 0.1 * value
    return jnp.asarray(value, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def _model_defaults():
  path = os.path.join(os.path.dirname(__file__), os.pardir, "configs", "model_defaults.py")
  spec = importlib.util.spec_from_file_location("model_defaults", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _mask(n, h, w, hole=((8, 24), (4, 20))):
  m = np.ones((n, h, w, 1), np.float32)
  (r0, r1), (c0, c1) = hole
  m[:, r0:r1, c0:c1] = 0.0
  return m


def _region_moments(x, m, axes):
  """Mean and biased variance of x where m == 1, over ``axes`` (numpy, float64)."""
  x = x.astype(np.float64)
  m = np.broadcast_to(m, x.shape).astype(np.float64)
  cnt = m.sum(axes)
  mean = (x * m).sum(axes) / cnt
  var = (((x - np.expand_dims(mean, axes)) ** 2) * m).sum(axes) / cnt
  return mean, var


# ------------------------------------------------------------------------------ region norm ---

@pytest.fixture(scope="module")
def features():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 8, 8, 4)).astype(np.float32) * 2.5 + 1.5
  m = (rng.uniform(size=(3, 8, 8, 1)) > 0.4).astype(np.float32)
  return x, m


def test_region_norm_instance_normalises_each_region_per_sample(features):
  x, m = features
  y = np.asarray(sparn.region_norm(jnp.asarray(x), jnp.asarray(m), "instance"))
  for region in (m, 1.0 - m):
    mean, var = _region_moments(y, region, (1, 2))  # per sample, per channel
    np.testing.assert_allclose(mean, 0.0, atol=1e-5)
    np.testing.assert_allclose(var, 1.0, atol=1e-4)


def test_region_norm_batch_normalises_each_region_over_the_batch(features):
  x, m = features
  x = x.copy()
  x[1] = 3.0 * x[1] + 2.0  # a batch-mate with other statistics
  y = np.asarray(sparn.region_norm(jnp.asarray(x), jnp.asarray(m), "batch"))
  for region in (m, 1.0 - m):
    mean, var = _region_moments(y, region, (0, 1, 2))
    np.testing.assert_allclose(mean, 0.0, atol=1e-5)
    np.testing.assert_allclose(var, 1.0, atol=1e-4)
    # Per sample the statistics are not normalised (sample 1 was scaled and shifted).
    mean_1, _ = _region_moments(y[1:2], region[1:2], (0, 1, 2))
    assert np.abs(mean_1).max() > 0.3


def test_region_norm_instance_ignores_batch_mates_and_batch_does_not(features):
  x, m = features
  other = x.copy()
  other[1:] = np.random.default_rng(1).normal(size=other[1:].shape) * 7.0 - 3.0
  for stats, same in (("instance", True), ("batch", False)):
    y0 = np.asarray(sparn.region_norm(jnp.asarray(x), jnp.asarray(m), stats))[0]
    y1 = np.asarray(sparn.region_norm(jnp.asarray(other), jnp.asarray(m), stats))[0]
    if same:
      np.testing.assert_allclose(y0, y1, atol=1e-6)
    else:
      assert np.abs(y0 - y1).max() > 0.1


def _rnb_reference(x_nhwc, m_nhwc, eps):
  """RN-B's parameter-free region normalisation, as geekyutao/RN computes it (PyTorch)."""
  x = torch.from_numpy(x_nhwc).permute(0, 3, 1, 2).double()
  m = torch.from_numpy(m_nhwc).permute(0, 3, 1, 2).double()
  bn = torch.nn.BatchNorm2d(x.shape[1], affine=False, track_running_stats=False, eps=eps).double()

  def rn(region, rmask):
    n, _, h, w = region.shape
    total = region.sum(dim=[0, 2, 3])
    count = rmask.sum(dim=[0, 2, 3])
    count[count == 0] = 1
    mu = total / count
    filled = region + (1 - rmask) * mu[None, :, None, None]
    return bn(filled) * torch.sqrt(count / (n * h * w))[None, :, None, None]

  out = rn(x * m, m) + rn(x * (1 - m), 1 - m)
  return out.permute(0, 2, 3, 1).numpy()


def test_region_norm_batch_matches_rnb_reference(features):
  x, m = features
  # RN-B adds eps to the variance of the filled map (eps * NHW / |r| on the region variance); with
  # a negligible eps both forms agree.
  eps = 1e-12
  want = _rnb_reference(x, m, eps)
  got = np.asarray(sparn.region_norm(jnp.asarray(x), jnp.asarray(m), "batch", eps=eps))
  np.testing.assert_allclose(got, want, atol=2e-5)


def test_region_norm_empty_regions_are_finite_with_finite_gradients(features):
  x, _ = features
  x = jnp.asarray(x)
  mean = x.mean(axis=(1, 2), keepdims=True)
  plain = (x - mean) / jnp.sqrt(x.var(axis=(1, 2), keepdims=True) + 1e-5)
  for m in (jnp.ones(x.shape[:3] + (1,)), jnp.zeros(x.shape[:3] + (1,))):
    y = sparn.region_norm(x, m, "instance")
    # With a single non-empty region this is plain instance norm.
    np.testing.assert_allclose(np.asarray(y), np.asarray(plain), atol=1e-5)
    for stats in sparn.RN_STATS:
      g = jax.grad(lambda v, s=stats: jnp.sum(sparn.region_norm(v, m, s) * v))(x)
      assert np.isfinite(np.asarray(g)).all()


def test_region_norm_rejects_bad_arguments(features):
  x, m = features
  with pytest.raises(ValueError, match="stats must be one of"):
    sparn.region_norm(x, m, "group")
  with pytest.raises(ValueError, match="mask must have shape"):
    sparn.region_norm(x, m[..., 0], "instance")


# ------------------------------------------------------------------------------- resizing ---

def test_resize_helpers_match_pytorch_interpolate():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(2, 12, 16, 3)).astype(np.float32)
  xt = torch.from_numpy(x).permute(0, 3, 1, 2)
  for size in ((6, 8), (3, 4), (5, 7), (12, 16)):
    want = torch.nn.functional.interpolate(xt, size=size, mode="nearest").permute(0, 2, 3, 1)
    np.testing.assert_array_equal(np.asarray(sparn.resize_nearest(jnp.asarray(x), size)),
                                  want.numpy())
  for size in ((6, 8), (3, 4), (1, 2)):
    want = torch.nn.functional.interpolate(xt, size=size, mode="area").permute(0, 2, 3, 1)
    np.testing.assert_allclose(np.asarray(sparn.downsample_area(jnp.asarray(x), size)),
                               want.numpy(), atol=1e-6)
  with pytest.raises(ValueError, match="integer multiple"):
    sparn.downsample_area(jnp.asarray(x), (5, 7))
  # A binary mask stays binary at every decoder resolution.
  m = _mask(1, SIZE, SIZE)
  for level, (cond, m_hw) in enumerate(sparn.condition_pyramid(
      jnp.zeros((1, SIZE, SIZE, 3)), jnp.asarray(m), [(2, 2), (4, 4), (8, 8), (32, 32)])):
    assert set(np.unique(np.asarray(m_hw))) <= {0.0, 1.0}, level
    assert cond.shape[-1] == 4
    np.testing.assert_array_equal(np.asarray(cond[..., 3:]), np.asarray(m_hw))


# ----------------------------------------------------------------------------------- SPARN ---

def test_sparn_layer_modes():
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(2, 8, 8, 4)).astype(np.float32) * 2.0 + 0.5)
  cond = jnp.asarray(rng.normal(size=(2, 8, 8, 4)).astype(np.float32))
  m = jnp.asarray(_mask(2, 8, 8, ((2, 6), (1, 5))))

  # 'sparn': with the SPADE affine zeroed the layer is exactly region norm.
  layer = sparn.SPARN(norm="sparn", hidden=8)
  variables = numpy_init(layer, x, cond, m)
  assert set(variables) == {"params"}
  zeroed = jax.tree.map(jnp.zeros_like, variables)
  np.testing.assert_allclose(np.asarray(layer.apply(zeroed, x, cond, m)),
                             np.asarray(sparn.region_norm(x, m)), atol=1e-6)
  # and the affine is spatially adaptive: it changes the output when the condition changes.
  y0 = layer.apply(variables, x, cond, m)
  y1 = layer.apply(variables, x, cond + 1.0, m)
  assert np.abs(np.asarray(y0 - y1)).max() > 1e-3

  # 'spade' / 'batch': BatchNorm with torch defaults (momentum 0.1, eps 1e-5).
  batch_mean = np.asarray(x).mean(axis=(0, 1, 2))
  batch_var = np.asarray(x).var(axis=(0, 1, 2))
  for norm, learned in (("spade", False), ("batch", True)):
    layer = sparn.SPARN(norm=norm, hidden=8)
    variables = numpy_init(layer, x, cond, m)
    assert ("batch_norm" in variables["params"]) == learned  # learned scale / bias or none
    _, updates = layer.apply(variables, x, cond, m, train=True, mutable=["batch_stats"])
    stats = updates["batch_stats"]["batch_norm"]
    np.testing.assert_allclose(np.asarray(stats["mean"]), 0.1 * batch_mean, atol=1e-6)
    np.testing.assert_allclose(np.asarray(stats["var"]), 0.9 + 0.1 * batch_var, atol=1e-5)
    # Eval uses the running statistics: with the initial ones (0, 1) and the affines zeroed,
    # the layer is x / sqrt(1 + eps).
    zeroed = {"params": jax.tree.map(jnp.zeros_like, variables["params"]),
              "batch_stats": variables["batch_stats"]}
    if learned:
      bn = zeroed["params"]["batch_norm"]
      zeroed["params"]["batch_norm"] = {"scale": jnp.ones_like(bn["scale"]), "bias": bn["bias"]}
    np.testing.assert_allclose(np.asarray(layer.apply(zeroed, x, cond, m, train=False)),
                               np.asarray(x) / np.sqrt(1 + 1e-5), atol=1e-6)


# ------------------------------------------------------------------------------- generator ---

@pytest.fixture(scope="module")
def batch():
  rng = np.random.default_rng(4)
  i_gt = rng.uniform(-1, 1, size=(2, SIZE, SIZE, 3)).astype(np.float32)
  mask = _mask(2, SIZE, SIZE)
  i_masked = i_gt * mask
  i_style = rng.uniform(-1, 1, size=i_gt.shape).astype(np.float32)
  i_style_prime = i_masked + (1 - mask) * i_style
  return {k: jnp.asarray(v) for k, v in dict(i_gt=i_gt, mask=mask, i_masked=i_masked,
                                                 i_style_prime=i_style_prime).items()}


@pytest.fixture(scope="module", params=sparn.NORMS)
def generator(request, batch):
  """One tiny generator per norm mode with its compiled eval forward and train gradient."""
  module = sparn.from_config(dict(SHALLOW, norm=request.param))
  variables = numpy_init(module, batch["i_masked"], batch["i_style_prime"], batch["mask"])

  @jax.jit
  def forward(variables, i_masked, i_style_prime, mask):
    return module.apply(variables, i_masked, i_style_prime, mask, train=False)

  @jax.jit
  def train_grad(variables, i_masked, i_style_prime, mask, i_gt):
    def loss_fn(params):
      out, updates = module.apply({**variables, "params": params}, i_masked, i_style_prime, mask,
                                  train=True, mutable=["batch_stats"])
      return jnp.mean(jnp.square(out - i_gt)), updates
    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
    return loss, grads, updates

  return request.param, module, variables, forward, train_grad


def test_generator_default_depth_shapes(batch):
  module = sparn.from_config(TINY)
  args = (batch["i_masked"], batch["i_style_prime"], batch["mask"])
  variables = jax.eval_shape(module.init, jax.random.key(0), *args)
  out = jax.eval_shape(module.apply, variables, *args)
  assert out.shape == (2, SIZE, SIZE, 3) and out.dtype == jnp.float32
  # Bottleneck at SIZE / 16 = 2 px: the last encoder conv and the first block are 16 wide.
  assert variables["params"]["encoder"]["down_3"]["kernel"].shape == (3, 3, 16, 16)
  assert sorted(k for k in variables["params"] if k.startswith("block_")) == [
      f"block_{i}" for i in range(5)]
  assert "conv_s" in variables["params"]["block_3"]  # 16 -> 8: learned shortcut
  assert "conv_s" not in variables["params"]["block_1"]  # 16 -> 16: identity


def test_generator_forward_shapes_and_range(generator, batch):
  norm, _, variables, forward, _ = generator
  assert ("batch_stats" in variables) == (norm != "sparn")
  out = np.asarray(forward(variables, batch["i_masked"], batch["i_style_prime"], batch["mask"]))
  assert out.shape == (2, SIZE, SIZE, 3) and out.dtype == np.float32
  assert np.isfinite(out).all() and np.abs(out).max() <= 1.0
  assert out.std() > 1e-3  # not a constant image


def test_generator_backward(generator, batch):
  norm, _, variables, _, train_grad = generator
  loss, grads, updates = train_grad(variables, batch["i_masked"], batch["i_style_prime"],
                                    batch["mask"], batch["i_gt"])
  assert np.isfinite(float(loss))
  flat = jax.tree_util.tree_flatten_with_path(grads)[0]
  assert all(np.isfinite(np.asarray(g)).all() for _, g in flat)
  kernels = [(jax.tree_util.keystr(p), np.abs(np.asarray(g)).max())
             for p, g in flat if "kernel" in jax.tree_util.keystr(p)]
  assert kernels and all(v > 0 for _, v in kernels), [k for k, v in kernels if v == 0]
  if norm == "sparn":
    assert not updates
  else:  # running statistics moved away from their (0, 1) init
    means = [np.abs(np.asarray(v)).max() for p, v in
             jax.tree_util.tree_flatten_with_path(updates["batch_stats"])[0]
             if "mean" in jax.tree_util.keystr(p)]
    assert means and max(means) > 1e-4


def test_generator_all_hole_and_no_hole_masks_stay_finite(generator, batch):
  _, _, variables, forward, train_grad = generator
  rng = np.random.default_rng(5)
  i_style = jnp.asarray(rng.uniform(-1, 1, size=(2, SIZE, SIZE, 3)).astype(np.float32))
  for known in (0.0, 1.0):
    mask = jnp.full((2, SIZE, SIZE, 1), known, jnp.float32)
    i_masked = batch["i_gt"] * mask
    i_style_prime = sparn.composite(i_masked, i_style, mask)
    out = forward(variables, i_masked, i_style_prime, mask)
    assert np.isfinite(np.asarray(out)).all()
    loss, grads, _ = train_grad(variables, i_masked, i_style_prime, mask, batch["i_gt"])
    assert np.isfinite(float(loss))
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


def test_generator_sample_does_not_depend_on_batch_mates(generator, batch):
  norm, _, variables, forward, _ = generator
  args = [batch["i_masked"], batch["i_style_prime"], batch["mask"]]
  other = [a.at[1].set(jnp.flip(a[1], axis=0)) for a in args]  # another second sample
  out_a = np.asarray(forward(variables, *args))
  out_b = np.asarray(forward(variables, *other))
  # 'sparn' (instance statistics) always; 'spade' / 'batch' in eval (running statistics).
  np.testing.assert_allclose(out_a[0], out_b[0], atol=1e-6)
  assert np.abs(out_a[1] - out_b[1]).max() > 1e-4, norm


def test_composite_keeps_known_pixels_bit_exact(generator, batch):
  _, _, variables, forward, _ = generator
  i_masked, mask = batch["i_masked"], batch["mask"]
  i_out = forward(variables, i_masked, batch["i_style_prime"], mask)
  out = np.asarray(sparn.composite(i_masked, i_out, mask))
  known = np.broadcast_to(np.asarray(mask) == 1, out.shape)
  np.testing.assert_array_equal(out[known], np.asarray(i_masked)[known])
  np.testing.assert_array_equal(out[~known], np.asarray(i_out)[~known])


def test_generator_validates_inputs_and_config(batch):
  args = (batch["i_masked"], batch["i_style_prime"], batch["mask"])
  init = lambda module, *a: jax.eval_shape(module.init, jax.random.key(0), *a)
  with pytest.raises(ValueError, match="same number of widths"):
    init(sparn.DiFAIGenerator(encoder_widths=(8, 8, 8), decoder_widths=(8, 8)), *args)
  with pytest.raises(ValueError, match="mask must have shape"):
    init(sparn.from_config(TINY), args[0], args[1], args[2][..., 0])
  with pytest.raises(ValueError, match="divisible by 16"):
    init(sparn.from_config(TINY), *(a[:, :24, :24] for a in args))
  with pytest.raises(ValueError, match="norm must be one of"):
    init(sparn.from_config(dict(TINY, norm="instance")), *args)
  with pytest.raises(ValueError, match="unknown fields"):
    sparn.from_config(dict(TINY, widths=(8,)))
  # Shallower decoders build too (bottleneck = image_size / 4 here).
  shapes = init(sparn.DiFAIGenerator(encoder_widths=(8, 8, 8), decoder_widths=(8, 8, 8),
                                     spade_hidden=4), *args)
  assert shapes["params"]["conv_out"]["kernel"].shape == (3, 3, 8, 3)


def test_from_config_accepts_model_defaults_as_json():
  cfg = _model_defaults().generator_config()
  module = sparn.from_config(cfg)
  assert module.decoder_widths == (512, 512, 256, 128, 64) and module.norm == "sparn"
  as_json = {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.to_dict().items()}
  assert sparn.from_config(as_json) == module


def _conv(k, c_in, c_out, bias=True):
  return k * k * c_in * c_out + (c_out if bias else 0)


def test_summary_256px_parameter_counts_match_the_design():
  from difai_jax.models import summary  # pylint: disable=import-outside-toplevel
  rows = {name: (n, others) for name, n, others in
          summary.parameter_table(_model_defaults().get_config())}

  # Generator (DESIGN "DiFAI generator"): encoder 7x7 conv + stride-2 convs, SPARN res-blocks.
  enc = (64, 128, 256, 512, 512)
  want = _conv(7, 4, 64) + sum(_conv(3, a, b) for a, b in zip(enc[:-1], enc[1:]))
  sparn_layer = lambda c: _conv(3, 4, 128) + 2 * _conv(3, 128, c)
  c_in = 512
  for c_out in (512, 512, 256, 128, 64):
    c_mid = min(c_in, c_out)
    want += sparn_layer(c_in) + _conv(3, c_in, c_mid) + sparn_layer(c_mid) + _conv(3, c_mid, c_out)
    if c_in != c_out:
      want += sparn_layer(c_in) + _conv(1, c_in, c_out, bias=False)
    c_in = c_out
  want += _conv(3, 64, 3)
  assert rows["generator"] == (want, {})

  # Coarse net: 5x5 stem, 3 stride-2 convs, 4 dilated res-blocks, 3 up levels with RGB heads.
  want = _conv(5, 4, 64) + _conv(3, 64, 128) + _conv(3, 128, 256) + _conv(3, 256, 256)
  want += 4 * 2 * _conv(3, 256, 256)
  c_in = 256
  for width in (256, 128, 64):
    want += _conv(3, c_in, width) + _conv(3, width, width) + _conv(3, width, 3)
    c_in = width
  assert rows["coarse"] == (want, {})

  # Critic: 4x4 stride-2 convs and a 3x3 conv to one channel; one u per conv output + sigma.
  widths = (3, 64, 128, 256, 512, 512)
  want = sum(_conv(4, a, b) for a, b in zip(widths[:-1], widths[1:])) + _conv(3, 512, 1)
  assert rows["critic"] == (want, {"spectral": sum(widths[1:]) + 1 + 6})
  assert "total" in summary.format_table(list((k,) + v for k, v in rows.items()), 256)
