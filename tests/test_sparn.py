"""Tests of difai_jax.models.sparn: region norm, SPARN, the DiFAI generator, composite.

Tiny shapes (32 px, widths 8-16); one compiled forward and one compiled gradient for region
norm (the paper's) and one for BatchNorm ('batch'; 'spade' runs in the SPADE block fixture test).
Parity with the reference code on fixtures made by running it (tests/fixtures, numbers only):

* ``rn_batch.npz``: geekyutao/RN ``rn.py`` RN_binarylabel (RN-B's parameter-free part) on each
  style variant's batch, on the whole folded batch and on each sample alone;
* ``spade_encoder.npz``: NVlabs/SPADE ConvEncoder layers with ``norm_E='spectralinstance'``
  (4-channel input, ngf 4, kept spatial), a training forward (one power iteration) then an
  inference forward (stored u, v);
* ``spade_resblock.npz``: SPADE's SPADEResnetBlock 8 -> 4 with ``norm_G='spectralspadebatch3x3'``
  (label_nc 4, nhidden 128): training forwards of the whole batch and of two variants apart, the
  updated running statistics and power-iteration vectors, then an inference forward.
"""

import functools
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from difai_jax import pipeline
from difai_jax.models import sparn
from difai_jax.nn import variants

SIZE = 32
FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
# The default depth (four downsamplings, bottleneck image_size / 16) at narrow widths: shapes.
TINY = dict(encoder_widths=(8, 16, 16, 16), decoder_widths=(16, 16, 16, 8, 8), spade_hidden=8)
# One downsampling (bottleneck image_size / 2) for the compiled tests: the same blocks (an
# identity and a learned shortcut), less to compile.
SHALLOW = dict(encoder_widths=(16,), decoder_widths=(16, 8), spade_hidden=8)


def _max_err(name, got, want):
  err = float(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64)).max())
  print(f"{name}: max abs error {err:.2e}")
  return err


def numpy_init(module, *args, seed=0, **kwargs):
  """Variables shaped as ``module.init`` gives them, filled from numpy.

  XLA:CPU takes seconds to compile the PRNG ops of a real ``init``; tracing it with eval_shape
  and filling the leaves here keeps the tests fast. Kernels ~ N(0, 1 / fan_in), biases and
  learned BatchNorm offsets ~ 0.1 N(0, 1), scales ~ 1 + 0.1 N(0, 1), running stats (0, 1);
  spectral-norm vectors one power iteration from random, as ``init`` leaves them.
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

  variables = jax.tree_util.tree_map_with_path(fill, shapes)
  if "spectral" in variables:
    variables["spectral"] = _power_iterated(variables["params"], variables["spectral"], rng)
  return variables


def _power_iterated(params, spectral, rng):
  """The spectral state of each ``<conv>_sn`` module: one power iteration on the kernel of the
  conv beside it (numpy, PyTorch's update order)."""
  out = {}
  for key, value in spectral.items():
    if not key.endswith("_sn"):
      out[key] = _power_iterated(params[key], value, rng)
      continue
    conv = key[:-len("_sn")]
    w = np.asarray(params[conv]["kernel"], np.float64)
    w = w.reshape(-1, w.shape[-1])
    u = rng.normal(size=w.shape[1])
    v = w @ u / np.linalg.norm(w @ u)
    u = w.T @ v / np.linalg.norm(w.T @ v)
    out[key] = {f"{conv}/kernel/u": jnp.asarray(u[None], jnp.float32),
                f"{conv}/kernel/v": jnp.asarray(v[None], jnp.float32),
                f"{conv}/kernel/sigma": jnp.asarray(v @ w @ u, jnp.float32)}
  return out


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


def _nhwc(a):
  return np.transpose(np.asarray(a), (0, 2, 3, 1))


def _sample_major(a, k):
  """A batch of K variant blocks (variant-major, as the fixtures store it) -> the generator's
  sample-major fold."""
  return variants.fold_variants(jnp.asarray(a).reshape((k, -1) + a.shape[1:]))


def _variant_major(a, k):
  return variants.unfold_variants(jnp.asarray(a), k).reshape(a.shape)


def test_region_norm_matches_rn_reference_per_variant():
  """RN-B (geekyutao/RN) run on each style variant's batch alone = our 'batch' statistics with
  num_completions = K on the folded batch, at RN-B's eps 1e-5 (fixture rn_batch.npz)."""
  ref = np.load(os.path.join(FIXTURES, "rn_batch.npz"))
  k = int(ref["num_variants"])
  x, m = _sample_major(_nhwc(ref["x"]), k), _sample_major(_nhwc(ref["mask"]), k)
  per_variant = _variant_major(sparn.region_norm(x, m, "batch", num_completions=k), k)
  pooled = _variant_major(sparn.region_norm(x, m, "batch"), k)
  per_sample = _variant_major(sparn.region_norm(x, m, "instance"), k)
  assert _max_err("RN-B per variant", per_variant, _nhwc(ref["out_per_variant"])) < 2e-5
  assert _max_err("RN-B pooled over all variants", pooled, _nhwc(ref["out_pooled"])) < 2e-5
  assert _max_err("RN-B per sample = 'instance'", per_sample, _nhwc(ref["out_per_sample"])) < 2e-5
  # Pooling across the variants (what the folded batch did before) is a different result.
  assert _max_err("per variant vs pooled", per_variant, pooled) > 1e-2


def test_region_norm_variants_never_share_statistics(features):
  x, m = features
  x2 = _sample_major(np.concatenate([x, 5.0 * x[::-1] - 2.0]), 2)   # K = 2 variants of 3 images
  m2 = _sample_major(np.concatenate([m, m[::-1]]), 2)
  both = variants.unfold_variants(sparn.region_norm(x2, m2, "batch", num_completions=2), 2)
  alone = np.asarray(sparn.region_norm(jnp.asarray(x), jnp.asarray(m), "batch"))
  assert _max_err("variant 0 within K = 2 vs alone", both[0], alone) < 1e-6
  with pytest.raises(ValueError, match="num_completions = 4 equal blocks"):
    sparn.region_norm(jnp.asarray(x2), jnp.asarray(m2), "batch", num_completions=4)


def test_region_norm_padding_rows_stay_out_of_batch_statistics(features):
  """A batch filled up with padding rows (valid = 0): the real rows get exactly what a batch of
  them alone gives, for K = 2 variants too; without the flags they would not."""
  x, m = features
  real = np.concatenate([x, 5.0 * x[::-1] - 2.0])                     # K = 2 variants of 3
  real_m = np.concatenate([m, m[::-1]])
  def pad(a, rows):        # (2 * 3, ...) variant-major -> (2 * 5, ...): 2 padding rows each
    blocks = np.concatenate([a.reshape((2, 3) + a.shape[1:]), np.stack([rows] * 2)], axis=1)
    return blocks.reshape((10,) + a.shape[1:])
  x_pad = _sample_major(pad(real, x[:2] * 7.0 + 3.0), 2)
  m_pad = _sample_major(pad(real_m, 1.0 - m[:2]), 2)
  valid = jnp.asarray(np.repeat([1.0, 1.0, 1.0, 0.0, 0.0], 2))   # per row, sample-major
  alone = variants.unfold_variants(sparn.region_norm(_sample_major(real, 2),
                                                  _sample_major(real_m, 2), "batch",
                                                  num_completions=2), 2)
  padded = variants.unfold_variants(sparn.region_norm(x_pad, m_pad, "batch", num_completions=2,
                                                   valid=valid), 2)
  assert _max_err("real rows with padding flagged vs alone", padded[:, :3], alone) < 1e-5
  unflagged = variants.unfold_variants(
      sparn.region_norm(x_pad, m_pad, "batch", num_completions=2), 2)
  assert float(jnp.max(jnp.abs(unflagged[:, :3] - alone))) > 1e-2
  # 'instance' statistics are per row: the flags change nothing
  np.testing.assert_array_equal(
      np.asarray(sparn.region_norm(x_pad, m_pad, "instance", num_completions=2, valid=valid)),
      np.asarray(sparn.region_norm(x_pad, m_pad, "instance", num_completions=2)))
  with pytest.raises(ValueError, match="one flag per row"):
    sparn.region_norm(x_pad, m_pad, "batch", num_completions=2, valid=valid[:4])


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

  # 'spade' / 'batch': BatchNorm with torch defaults (momentum 0.1, eps 1e-5, unbiased
  # variance into the running average).
  batch_mean = np.asarray(x).mean(axis=(0, 1, 2))
  batch_var = np.asarray(x).var(axis=(0, 1, 2), ddof=1)
  # K = 2 variants: the first is x, the second x shifted and scaled.
  x2 = _sample_major(jnp.concatenate([x, 3.0 * x + 1.0]), 2)
  cond2, m2 = _sample_major(jnp.concatenate([cond, cond]), 2), _sample_major(
      jnp.concatenate([m, m]), 2)
  for norm, learned in (("spade", False), ("batch", True)):
    layer = sparn.SPARN(norm=norm, hidden=8)
    variables = numpy_init(layer, x, cond, m)
    assert ("batch_norm" in variables["params"]) == learned  # learned scale / bias or none
    alone, updates = layer.apply(variables, x, cond, m, train=True, mutable=["batch_stats"])
    stats = updates["batch_stats"]["batch_norm"]
    np.testing.assert_allclose(np.asarray(stats["mean"]), 0.1 * batch_mean, atol=1e-6)
    np.testing.assert_allclose(np.asarray(stats["var"]), 0.9 + 0.1 * batch_var, atol=1e-5)
    # Training statistics per variant: variant 0 of K = 2 is x alone; the running statistics
    # move by the average of the two variants' statistics.
    both, updates = layer.apply(variables, x2, cond2, m2, train=True, num_completions=2,
                                mutable=["batch_stats"])
    assert _max_err(f"{norm}: variant 0 of K = 2 vs alone", variants.unfold_variants(both, 2)[0],
                    alone) < 1e-5
    stats = updates["batch_stats"]["batch_norm"]
    np.testing.assert_allclose(np.asarray(stats["mean"]), 0.1 * (2.0 * batch_mean + 0.5),
                               atol=1e-5)
    np.testing.assert_allclose(np.asarray(stats["var"]), 0.9 + 0.1 * 5.0 * batch_var,
                               rtol=1e-5)
    # Eval uses the running statistics: with the initial ones (0, 1) and the affines zeroed,
    # the layer is x / sqrt(1 + eps).
    zeroed = {"params": jax.tree.map(jnp.zeros_like, variables["params"]),
              "batch_stats": variables["batch_stats"]}
    if learned:
      bn = zeroed["params"]["batch_norm"]
      zeroed["params"]["batch_norm"] = {"scale": jnp.ones_like(bn["scale"]), "bias": bn["bias"]}
    np.testing.assert_allclose(np.asarray(layer.apply(zeroed, x, cond, m, train=False)),
                               np.asarray(x) / np.sqrt(1 + 1e-5), atol=1e-6)


# ------------------------------------------------------------------- SPADE parity (fixtures) ---

def _kernel(weight):
  """PyTorch conv weight (C_out, C_in, kh, kw) -> Flax kernel (kh, kw, C_in, C_out)."""
  return jnp.asarray(np.transpose(weight, (2, 3, 1, 0)))


def _spectral_state(conv, u, v, c_in, k):
  """PyTorch weight_u (C_out,), weight_v (C_in * k * k, in (C_in, kh, kw) order) -> our state."""
  v = np.transpose(np.reshape(v, (c_in, k, k)), (1, 2, 0)).reshape(1, -1)
  return {f"{conv}_sn": {f"{conv}/kernel/u": jnp.asarray(u[None]),
                         f"{conv}/kernel/v": jnp.asarray(v),
                         f"{conv}/kernel/sigma": jnp.ones((), jnp.float32)}}


def _check_spectral(name, got, conv, u, v, c_in, k):
  want = _spectral_state(conv, u, v, c_in, k)[f"{conv}_sn"]
  got = got[f"{conv}_sn"]
  for leaf in ("u", "v"):
    key = f"{conv}/kernel/{leaf}"
    assert _max_err(f"{name} {leaf}", got[key], want[key]) < 1e-5


def test_content_encoder_matches_spade_conv_encoder():
  """SPADE's ConvEncoder layers (norm_E='spectralinstance', leaky ReLU 0.2, kept spatial) on a
  4-channel input: a training forward (one power iteration per conv), the updated u and v, then
  an inference forward with the stored u and v (fixture spade_encoder.npz)."""
  ref = np.load(os.path.join(FIXTURES, "spade_encoder.npz"))
  weights = [ref[f"layer{i + 1}_weight"] for i in range(4)]
  module = sparn.ContentEncoder(widths=tuple(w.shape[0] for w in weights))

  def state(tag):
    spectral = {}
    for i, w in enumerate(weights):
      spectral.update(_spectral_state(f"down_{i}", ref[f"layer{i + 1}_u{tag}"],
                                      ref[f"layer{i + 1}_v{tag}"], w.shape[1], 3))
    return spectral

  params = {f"down_{i}": {"kernel": _kernel(w)} for i, w in enumerate(weights)}
  x = jnp.asarray(_nhwc(ref["x"]))
  out, updates = jax.jit(functools.partial(module.apply, train=True, mutable=["spectral"]))(
      {"params": params, "spectral": state(0)}, x)
  assert _max_err("SPADE encoder, training forward", out, _nhwc(ref["out_train"])) < 5e-5
  for i, w in enumerate(weights):
    _check_spectral(f"SPADE encoder down_{i}", updates["spectral"], f"down_{i}",
                    ref[f"layer{i + 1}_u1"], ref[f"layer{i + 1}_v1"], w.shape[1], 3)
  out = jax.jit(functools.partial(module.apply, train=False))(
      {"params": params, "spectral": state(1)}, x)
  # (instance norm over the last 2 x 2 maps magnifies float32 rounding: 5e-5, not 1e-5)
  assert _max_err("SPADE encoder, inference forward", out, _nhwc(ref["out_eval"])) < 5e-5


def test_res_block_matches_spade_resnet_block():
  """SPADE's SPADEResnetBlock 8 -> 4 (norm_G='spectralspadebatch3x3') = our block with
  norm='spade': training forwards of one variant of 4 images and of K = 2 variants of 2 images
  (the reference run on each variant alone), the running statistics and power-iteration vectors
  after the first, and an inference forward with them (fixture spade_resblock.npz)."""
  ref = np.load(os.path.join(FIXTURES, "spade_resblock.npz"))
  s0 = lambda key: ref["state0." + key]
  params, stats, spectral = {}, {}, {}
  for conv in ("conv_0", "conv_1", "conv_s"):
    w = s0(f"{conv}.weight_orig")
    params[conv] = {"kernel": _kernel(w)}
    if conv != "conv_s":
      params[conv]["bias"] = jnp.asarray(s0(f"{conv}.bias"))
    spectral.update(_spectral_state(conv, s0(f"{conv}.weight_u"), s0(f"{conv}.weight_v"),
                                    w.shape[1], w.shape[2]))
  for norm in ("norm_0", "norm_1", "norm_s"):
    params[norm] = {name: {"kernel": _kernel(s0(f"{norm}.{key}.weight")),
                           "bias": jnp.asarray(s0(f"{norm}.{key}.bias"))}
                    for name, key in (("shared", "mlp_shared.0"), ("gamma", "mlp_gamma"),
                                      ("beta", "mlp_beta"))}
    stats[norm] = {"batch_norm": {
        "mean": jnp.asarray(s0(f"{norm}.param_free_norm.running_mean")),
        "var": jnp.asarray(s0(f"{norm}.param_free_norm.running_var"))}}
  block = sparn.SPARNResBlock(features=4, norm="spade", hidden=128)
  x, seg = jnp.asarray(_nhwc(ref["x"])), jnp.asarray(_nhwc(ref["seg"]))
  mask = seg[..., 3:]
  variables = {"params": params, "batch_stats": stats, "spectral": spectral}
  train = jax.jit(functools.partial(block.apply, train=True, mutable=["batch_stats", "spectral"]),
                  static_argnames="num_completions")

  out, updates = train(variables, x, seg, mask)
  assert _max_err("SPADE block, training forward", out, _nhwc(ref["out_train"])) < 1e-5
  out_k2, _ = train(variables, _sample_major(x, 2), _sample_major(seg, 2),
                    _sample_major(mask, 2), num_completions=2)
  assert _max_err("SPADE block, training forward per variant (K = 2)",
                  _variant_major(out_k2, 2), _nhwc(ref["out_train_variants"])) < 1e-5
  s1 = lambda key: ref["state1." + key]
  for norm in ("norm_0", "norm_1", "norm_s"):
    got = updates["batch_stats"][norm]["batch_norm"]
    assert _max_err(f"{norm} running mean", got["mean"],
                    s1(f"{norm}.param_free_norm.running_mean")) < 1e-5
    assert _max_err(f"{norm} running var", got["var"],
                    s1(f"{norm}.param_free_norm.running_var")) < 1e-5
  for conv in ("conv_0", "conv_1", "conv_s"):
    w = s0(f"{conv}.weight_orig")
    _check_spectral(f"SPADE block {conv}", updates["spectral"], conv, s1(f"{conv}.weight_u"),
                    s1(f"{conv}.weight_v"), w.shape[1], w.shape[2])
  out = block.apply({"params": params, **updates}, x, seg, mask, train=False)
  assert _max_err("SPADE block, inference forward", out, _nhwc(ref["out_eval"])) < 1e-5


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


@pytest.fixture(scope="module", params=("sparn", "batch"))
def generator(request, batch):
  """A tiny generator with region norm (the paper) and with BatchNorm (paper defaults otherwise:
  batch region statistics, SPADE encoder, spectral norm), with its compiled eval forward and
  train gradient. norm='spade' is 'batch' without BatchNorm's affine: the SPADE block fixture
  test runs it, test_generator_default_depth_shapes builds it."""
  module = sparn.from_config(dict(SHALLOW, norm=request.param))
  variables = numpy_init(module, batch["i_masked"], batch["i_style_prime"], batch["mask"])
  collections = sorted(set(variables) - {"params"})

  @jax.jit
  def forward(variables, i_masked, i_style_prime, mask):
    return module.apply(variables, i_masked, i_style_prime, mask, train=False)

  @jax.jit
  def train_grad(variables, i_masked, i_style_prime, mask, i_gt):
    def loss_fn(params):
      out, updates = module.apply({**variables, "params": params}, i_masked, i_style_prime, mask,
                                  train=True, mutable=collections)
      return jnp.mean(jnp.square(out - i_gt)), updates
    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
    return loss, grads, updates

  return request.param, module, variables, forward, train_grad


def test_generator_default_depth_shapes(batch):
  args = (batch["i_masked"], batch["i_style_prime"], batch["mask"])
  module = sparn.from_config(TINY)
  variables = jax.eval_shape(module.init, jax.random.key(0), *args)
  out = jax.eval_shape(module.apply, variables, *args)
  assert out.shape == (2, SIZE, SIZE, 3) and out.dtype == jnp.float32
  # SPADE encoder: four bias-free stride-2 convs to SIZE / 16 = 2 px, each spectral-normalised.
  encoder = variables["params"]["encoder"]
  assert sorted(encoder) == [f"down_{i}" for i in range(4)]
  assert encoder["down_3"] == {"kernel": jax.ShapeDtypeStruct((3, 3, 16, 16), jnp.float32)}
  assert variables["spectral"]["encoder"]["down_0_sn"]["down_0/kernel/v"].shape == (1, 3 * 3 * 4)
  assert sorted(k for k in variables["params"] if k.startswith("block_")) == [
      f"block_{i}" for i in range(5)]
  assert "conv_s" in variables["params"]["block_3"]  # 16 -> 8: learned shortcut
  assert "conv_s" not in variables["params"]["block_1"]  # 16 -> 16: identity
  assert sorted(variables["spectral"]["block_3"]) == ["conv_0_sn", "conv_1_sn", "conv_s_sn"]
  # norm='spade': parameter-free BatchNorm, running statistics only.
  module = sparn.from_config(dict(TINY, norm="spade"))
  variables = jax.eval_shape(module.init, jax.random.key(0), *args)
  assert set(variables) == {"params", "batch_stats", "spectral"}
  assert "batch_norm" not in variables["params"]["block_0"]["norm_0"]
  assert set(variables["batch_stats"]["block_0"]["norm_0"]["batch_norm"]) == {"mean", "var"}
  assert jax.eval_shape(module.apply, variables, *args).shape == (2, SIZE, SIZE, 3)
  # Options: the plain encoder (7x7 conv, biased stride-2 convs) and no spectral norm at all.
  module = sparn.from_config(dict(TINY, encoder="plain", spectral_norm=False))
  variables = jax.eval_shape(module.init, jax.random.key(0), *args)
  assert set(variables) == {"params"}
  assert variables["params"]["encoder"]["conv_in"]["kernel"].shape == (7, 7, 4, 8)
  assert variables["params"]["encoder"]["down_0"]["bias"].shape == (8,)
  assert jax.eval_shape(module.apply, variables, *args).shape == (2, SIZE, SIZE, 3)


def test_generator_forward_shapes_and_range(generator, batch):
  norm, _, variables, forward, _ = generator
  assert set(variables) == {"params", "spectral"} | ({"batch_stats"} if norm != "sparn" else set())
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
  # The power iteration moved u in training (one step from the state numpy_init left).
  u_new = updates["spectral"]["block_0"]["conv_0_sn"]["conv_0/kernel/u"]
  u_old = variables["spectral"]["block_0"]["conv_0_sn"]["conv_0/kernel/u"]
  assert np.abs(np.asarray(u_new - u_old)).max() > 1e-6
  if norm == "sparn":
    assert set(updates) == {"spectral"}
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
    i_style_prime = pipeline.composite(i_masked, i_style, mask)
    out = forward(variables, i_masked, i_style_prime, mask)
    assert np.isfinite(np.asarray(out)).all()
    loss, grads, _ = train_grad(variables, i_masked, i_style_prime, mask, batch["i_gt"])
    assert np.isfinite(float(loss))
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


def test_generator_batch_mates(generator, batch):
  """Batch region statistics (the paper's, RN-B) tie a sample to its batch-mates at inference
  too; BatchNorm's running statistics in eval do not ('instance' region statistics neither: see
  the region-norm tests)."""
  norm, _, variables, forward, _ = generator
  args = [batch["i_masked"], batch["i_style_prime"], batch["mask"]]
  other = [a.at[1].set(jnp.flip(a[1], axis=0)) for a in args]  # another second sample
  out_a = np.asarray(forward(variables, *args))
  out_b = np.asarray(forward(variables, *other))
  assert np.abs(out_a[1] - out_b[1]).max() > 1e-4, norm
  change = _max_err(f"{norm}: sample 0 after its batch-mate changed", out_a[0], out_b[0])
  assert change > 1e-4 if norm == "sparn" else change < 1e-6


def test_completion_does_not_change_with_k(batch):
  """The paper config (batch region statistics): pipeline.generate folds the K variants into
  one batch, yet completion j is the same for K = 2 and K = 4 (same first two variants) and when
  another variant changes; it still depends on its batch-mates, as RN-B. (BatchNorm's per-variant
  training statistics: test_sparn_layer_modes and the SPADE block fixture.)"""
  module = sparn.from_config(SHALLOW)   # module defaults = the paper's (see test_from_config)
  assert (module.norm, module.rn_stats) == ("sparn", "batch")
  i_masked, mask = batch["i_masked"], batch["mask"]
  variables = numpy_init(module, i_masked, i_masked, mask)
  rng = np.random.default_rng(6)
  styles = jnp.asarray(rng.uniform(-1, 1, size=(4, 2, SIZE, SIZE, 3)).astype(np.float32))

  @jax.jit
  def generate(i_masked, i_style):
    i_style_prime = pipeline.style_prime(i_masked, mask, i_style)
    return pipeline.generate(module, variables, i_masked, i_style_prime, mask)

  out_2 = generate(i_masked, styles[:2])
  out_4 = generate(i_masked, styles)
  assert _max_err("completions 0-1 with K = 2 vs K = 4", out_2, out_4[:2]) < 1e-5
  other_variant = generate(i_masked, styles[:2].at[1].set(styles[3]))
  assert _max_err("completion 0 after variant 1 changed", out_2[0], other_variant[0]) < 1e-6
  mate = generate(i_masked.at[1].set(jnp.flip(i_masked[1], axis=0)), styles[:2])
  assert _max_err("completion (j=0, image 0) after image 1 changed", out_2[0, 0],
                  mate[0, 0]) > 1e-4


def test_composite_keeps_known_pixels_bit_exact(generator, batch):
  _, _, variables, forward, _ = generator
  i_masked, mask = batch["i_masked"], batch["mask"]
  i_out = forward(variables, i_masked, batch["i_style_prime"], mask)
  out = np.asarray(pipeline.composite(i_masked, i_out, mask))
  known = np.broadcast_to(np.asarray(mask) == 1, out.shape)
  np.testing.assert_array_equal(out[known], np.asarray(i_masked)[known])
  np.testing.assert_array_equal(out[~known], np.asarray(i_out)[~known])


def test_generator_validates_inputs_and_config(batch):
  args = (batch["i_masked"], batch["i_style_prime"], batch["mask"])
  init = lambda module, *a: jax.eval_shape(module.init, jax.random.key(0), *a)
  with pytest.raises(ValueError, match="one more width than the encoder"):
    init(sparn.DiFAIGenerator(encoder_widths=(8, 8, 8), decoder_widths=(8, 8)), *args)
  with pytest.raises(ValueError, match="encoder must be one of"):
    init(sparn.from_config(dict(TINY, encoder="vae")), *args)
  with pytest.raises(ValueError, match="num_completions = 3 equal blocks"):
    jax.eval_shape(functools.partial(sparn.from_config(TINY).init, num_completions=3),
                   jax.random.key(0), *args)
  with pytest.raises(ValueError, match="mask must have shape"):
    init(sparn.from_config(TINY), args[0], args[1], args[2][..., 0])
  with pytest.raises(ValueError, match="divisible by 16"):
    init(sparn.from_config(TINY), *(a[:, :24, :24] for a in args))
  with pytest.raises(ValueError, match="norm must be one of"):
    init(sparn.from_config(dict(TINY, norm="instance")), *args)
  with pytest.raises(ValueError, match="unknown fields"):
    sparn.from_config(dict(TINY, widths=(8,)))
  # Shallower decoders build too (bottleneck = image_size / 4 here).
  shapes = init(sparn.DiFAIGenerator(encoder_widths=(8, 8), decoder_widths=(8, 8, 8),
                                     spade_hidden=4), *args)
  assert shapes["params"]["conv_out"]["kernel"].shape == (3, 3, 8, 3)


def test_from_config_accepts_model_defaults_as_json():
  cfg = _model_defaults().generator_config()
  module = sparn.from_config(cfg)
  assert module.decoder_widths == (512, 512, 256, 128, 64) and module.norm == "sparn"
  # The paper's reading: SPADE's encoder and spectral norm, RN-B's batch statistics.
  assert (module.encoder, module.spectral_norm, module.rn_stats) == ("spade", True, "batch")
  assert module.encoder_widths == (64, 128, 256, 512)
  as_json = {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.to_dict().items()}
  assert sparn.from_config(as_json) == module


def _conv(k, c_in, c_out, bias=True):
  return k * k * c_in * c_out + (c_out if bias else 0)


def test_summary_256px_parameter_counts_match_the_design():
  from difai_jax import summary  # pylint: disable=import-outside-toplevel
  rows = {name: (n, others) for name, n, others in
          summary.parameter_table(_model_defaults().get_config())}

  # Generator (DESIGN "DiFAI generator"): SPADE encoder of bias-free stride-2 convs, SPARN
  # res-blocks; spectral state u (C_out) + v (fan_in) + sigma per normalised conv.
  enc = (4, 64, 128, 256, 512)
  want = sum(_conv(3, a, b, bias=False) for a, b in zip(enc[:-1], enc[1:]))
  spectral = sum(b + 9 * a + 1 for a, b in zip(enc[:-1], enc[1:]))
  sparn_layer = lambda c: _conv(3, 4, 128) + 2 * _conv(3, 128, c)
  c_in = 512
  for c_out in (512, 512, 256, 128, 64):
    c_mid = min(c_in, c_out)
    want += sparn_layer(c_in) + _conv(3, c_in, c_mid) + sparn_layer(c_mid) + _conv(3, c_mid, c_out)
    spectral += (c_mid + 9 * c_in + 1) + (c_out + 9 * c_mid + 1)
    if c_in != c_out:
      want += sparn_layer(c_in) + _conv(1, c_in, c_out, bias=False)
      spectral += c_out + c_in + 1
    c_in = c_out
  want += _conv(3, 64, 3)
  assert rows["generator"] == (want, {"spectral": spectral})
  print(f"generator at 256 px: {want:,} params, {spectral:,} spectral-norm entries")

  # Coarse net: MLGN at its reference widths; the reference PyTorch generator has 15,054,659
  # parameters (counted with the public code when making tests/fixtures/mlgn_small.npz).
  assert rows["coarse"] == (15_054_659, {})

  # Critic: 4x4 stride-2 convs and a 3x3 conv to one channel; spectral state u (C_out) +
  # v (fan_in) + sigma per conv.
  widths = (3, 64, 128, 256, 512, 512)
  want = sum(_conv(4, a, b) for a, b in zip(widths[:-1], widths[1:])) + _conv(3, 512, 1)
  spectral = sum(b + 16 * a + 1 for a, b in zip(widths[:-1], widths[1:])) + (1 + 9 * 512 + 1)
  assert rows["critic"] == (want, {"spectral": spectral})
  assert "total" in summary.format_table(list((k,) + v for k, v in rows.items()), 256)
