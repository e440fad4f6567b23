"""Tests of difai_jax.models.coarse: MLGN's generator and loss (the paper's coarse net).

Parity: ``fixtures/mlgn_small.npz`` holds the reference generator (JieLiu95/MLGN
``Models/models_gd.py``, every width divided by 32: 2, 4, 6, 8) run in PyTorch on two 128 px
masked images: its state dict (``w/<name>``), the inputs, the raw output and the reference loss
terms (``SmoothL1Loss`` on the hole, pytorch-msssim ``MS_SSIM(data_range=1)`` with 4 scales, of
the composite). The fixture's weights pass through ``weights_conversion.mlgn``.

Behaviour: a tiny net (32 px, floor_stride 4, widths 4-16); one compiled forward and one
compiled loss gradient shared by the module.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import model_defaults
from difai_jax.models import coarse
from difai_jax import losses as losses_lib
from difai_jax.pipeline import composite
from tests.conftest import fixture_path
from weights_conversion import mlgn as mlgn_convert
from weights_conversion import torch_io

SIZE = 32
TINY = dict(widths=(4, 8, 12, 16), floor_stride=4)
TINY_MS_SSIM = (0.1356, 0.8644)   # 2 scales fit 32 px
MLGN_PARAMS_256 = 15_054_659      # sum(p.numel() for p in Generator().parameters()), reference


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


def _mask(n, size=SIZE, hole=((8, 24), (4, 20))):
  m = np.ones((n, size, size, 1), np.float32)
  (r0, r1), (c0, c1) = hole
  m[:, r0:r1, c0:c1] = 0.0
  return m


# ---- parity with the reference code ----

@pytest.fixture(scope="module")
def reference():
  data = np.load(fixture_path("mlgn_small.npz"))
  state_dict = {k[2:]: data[k] for k in data.files if k.startswith("w/")}
  image = data["image_u8"].astype(np.float32) / np.float32(127.5) - np.float32(1.0)
  mask = np.ones(image.shape[:3] + (1,), np.float32)
  for n, (top, left, h, w) in enumerate(data["boxes"]):
    mask[n, top:top + h, left:left + w] = 0.0   # the reference's hole mask is 1 - ours
  return dict(state_dict=state_dict, image=image, mask=mask, out=data["out"],
              smooth_l1=float(data["smooth_l1"]), ms_ssim=float(data["ms_ssim"]),
              ms_ssim_weights=tuple(float(w) for w in data["ms_ssim_weights"]),
              widths=tuple(int(w) for w in data["widths"]))


def test_mlgn_generator_matches_reference(reference):
  config, variables = mlgn_convert.convert(reference["state_dict"], source="mlgn_small.npz")
  assert config == {"widths": list(reference["widths"]), "floor_stride": 16, "dtype": "float32"}
  module = coarse.from_config(config)
  mask = reference["mask"]
  out = jax.jit(module.apply)(variables, reference["image"] * mask, mask)
  err = float(np.abs(np.asarray(out.full) - reference["out"]).max())
  print(f"MLGN generator vs reference (128 px, widths {reference['widths']}): max |diff| "
        f"{err:.3g} (output std {reference['out'].std():.3f})")
  assert out.full.shape == reference["out"].shape
  assert err < 1e-4


def test_mlgn_loss_terms_match_reference(reference):
  outputs = coarse.CoarseOutputs(full=jnp.asarray(reference["out"]))
  image, mask = jnp.asarray(reference["image"]), jnp.asarray(reference["mask"])
  weights = reference["ms_ssim_weights"]

  @jax.jit
  def losses(outputs, image, mask):
    return (losses_lib.coarse_loss_terms(outputs, image, mask, ms_ssim_weights=weights),
            losses_lib.coarse_loss(outputs, image, mask, ms_ssim_weights=weights))

  terms, total = losses(outputs, image, mask)
  rec_err = abs(float(terms["rec"]) - reference["smooth_l1"])
  ssim_err = abs(float(terms["ms_ssim"]) - (1.0 - reference["ms_ssim"]))
  print(f"MLGN loss vs reference: SmoothL1 |diff| {rec_err:.3g}, 1 - MS-SSIM |diff| "
        f"{ssim_err:.3g}")
  assert rec_err < 1e-6 and ssim_err < 1e-5
  # backward_G with the customised lambda: lambda_l1 * SmoothL1 + 5 * (1 - MS-SSIM) + 0 * GAN.
  expected = 100.0 * reference["smooth_l1"] + 5.0 * (1.0 - reference["ms_ssim"])
  np.testing.assert_allclose(float(total), expected, rtol=1e-5)


def test_mlgn_default_config_has_the_reference_parameter_count():
  module = coarse.from_config(model_defaults.coarse_config())
  shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 256, 256, 3)),
                          jnp.ones((1, 256, 256, 1)))
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
  assert n == MLGN_PARAMS_256
  assert module.floor_stride == 16 and module.widths == (64, 128, 192, 256)


def test_converter_refuses_unknown_and_missing_keys(reference):
  extra = dict(reference["state_dict"], **{"conv_0_0.11.weight": np.zeros((3,), np.float32)})
  with pytest.raises(torch_io.ConversionError, match="conv_0_0.11.weight"):
    mlgn_convert.convert(extra)
  missing = {k: v for k, v in reference["state_dict"].items() if k != "up_2_1.0.weight"}
  with pytest.raises(torch_io.ConversionError, match="up_2_1.0.weight"):
    mlgn_convert.convert(missing)


# ---- behaviour of a tiny net ----

@pytest.fixture(scope="module")
def batch():
  rng = np.random.default_rng(0)
  i_gt = rng.uniform(-1, 1, size=(2, SIZE, SIZE, 3)).astype(np.float32)
  mask = _mask(2)
  return dict(i_gt=jnp.asarray(i_gt), mask=jnp.asarray(mask), i_masked=jnp.asarray(i_gt * mask))


@pytest.fixture(scope="module")
def net(batch):
  """(variables, run): ``run(params, i_masked, mask, i_gt) -> (loss, full, grads)``, compiled
  once (the MLGN's gradient takes XLA:CPU most of this file's time to compile)."""
  cfg = dict(TINY, lambda_rec=100.0, lambda_ms_ssim=5.0, lambda_adv=0.0,
             ms_ssim_weights=TINY_MS_SSIM)
  module = coarse.from_config(cfg)
  variables = numpy_init(module, batch["i_masked"], batch["mask"])
  kwargs = coarse.loss_kwargs(cfg)

  @jax.jit
  def run(params, i_masked, mask, i_gt):
    def loss_fn(p):
      outputs = module.apply({"params": p}, i_masked, mask)
      return losses_lib.coarse_loss(outputs, i_gt, mask, **kwargs), outputs.full
    (loss, full), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return loss, full, grads

  return variables, run


def _forward(net, i_masked, mask, i_gt):
  variables, run = net
  return run(variables["params"], i_masked, mask, i_gt)


def test_coarse_output_is_one_full_resolution_image(net, batch):
  module = coarse.CoarseNet(**TINY)
  out = jax.eval_shape(module.apply, net[0], batch["i_masked"], batch["mask"])
  assert isinstance(out, coarse.CoarseOutputs) and len(out) == 1
  _, full, _ = _forward(net, batch["i_masked"], batch["mask"], batch["i_gt"])
  full = np.asarray(full)
  assert full.shape == (2, SIZE, SIZE, 3) and full.dtype == np.float32
  assert np.isfinite(full).all() and np.abs(full).max() <= 1.0
  assert full.std() > 1e-3


def test_coarse_backward_reaches_every_parameter(net, batch):
  loss, _, grads = _forward(net, batch["i_masked"], batch["mask"], batch["i_gt"])
  assert np.isfinite(float(loss)) and float(loss) > 0
  flat = jax.tree_util.tree_flatten_with_path(grads)[0]
  assert all(np.isfinite(np.asarray(g)).all() for _, g in flat)
  # Every kernel learns; so do the biases of the two convs without InstanceNorm after them (the
  # others are cancelled by the mean subtraction, in the reference too).
  live = [(jax.tree_util.keystr(p), np.abs(np.asarray(g)).max()) for p, g in flat
          if jax.tree_util.keystr(p).endswith("['kernel']")
          or "'down_0_0'" in jax.tree_util.keystr(p) or "'to_rgb'" in jax.tree_util.keystr(p)]
  assert len(live) == 72 + 2
  zero = [name for name, g in live if not g > 0]
  assert not zero, zero


def test_coarse_extreme_masks_stay_finite(net, batch):
  nearly_all_hole = np.zeros((2, SIZE, SIZE, 1), np.float32)
  nearly_all_hole[:, :2] = 1.0   # 94% hole: only the top two rows known
  for mask in (np.ones_like(nearly_all_hole), nearly_all_hole):
    mask = jnp.asarray(mask)
    loss, full, grads = _forward(net, batch["i_gt"] * mask, mask, batch["i_gt"])
    assert np.isfinite(np.asarray(full)).all() and np.isfinite(float(loss))
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
    if mask.min() == 1.0:   # nothing to fill: SmoothL1 and 1 - MS-SSIM(gt, gt) are 0
      assert abs(float(loss)) < 1e-5
  # All hole: the input is constant, so is the output (finite). Its gradient is not: each
  # InstanceNorm of a constant map scales it by 1 / sqrt(eps), as in the reference.
  all_hole = jnp.zeros((2, SIZE, SIZE, 1), jnp.float32)
  _, full, _ = _forward(net, batch["i_gt"] * all_hole, all_hole, batch["i_gt"])
  full = np.asarray(full)
  # Finite and in tanh's range. The two (identical) rows are not compared: each InstanceNorm of
  # a near-constant map divides float32 rounding noise by sqrt(eps), so how XLA:CPU happens to
  # vectorise the batch decides their difference (0 to O(1) across machines and conv forms).
  assert np.isfinite(full).all() and np.abs(full).max() <= 1.0


def test_coarse_sample_does_not_depend_on_batch_mates(net, batch):
  other = batch["i_masked"].at[1].set(-batch["i_masked"][1])
  _, a, _ = _forward(net, batch["i_masked"], batch["mask"], batch["i_gt"])
  _, b, _ = _forward(net, other, batch["mask"], batch["i_gt"])
  np.testing.assert_allclose(np.asarray(a[0]), np.asarray(b[0]), atol=1e-6)


def test_composite_of_the_coarse_completion_keeps_known_pixels(net, batch):
  i_masked, mask = batch["i_masked"], batch["mask"]
  _, full, _ = _forward(net, i_masked, mask, batch["i_gt"])
  out = np.asarray(composite(i_masked, full, mask))
  known = np.broadcast_to(np.asarray(mask) == 1, out.shape)
  np.testing.assert_array_equal(out[known], np.asarray(i_masked)[known])
  np.testing.assert_array_equal(out[~known], np.asarray(full)[~known])


# ---- loss arithmetic ----

def test_coarse_loss_matches_stated_math():
  mask = jnp.asarray(_mask(2))
  hole_share = 1.0 - float(np.mean(np.asarray(mask)))
  gt = jnp.zeros((2, SIZE, SIZE, 3))
  # Error 0.5 everywhere: only the hole counts, SmoothL1(0.5) = 0.125, averaged over all pixels.
  out = coarse.CoarseOutputs(full=jnp.full((2, SIZE, SIZE, 3), 0.5))
  terms = losses_lib.coarse_loss_terms(out, gt, mask, ms_ssim_weights=TINY_MS_SSIM)
  np.testing.assert_allclose(float(terms["rec"]), 0.125 * hole_share, rtol=1e-6)
  # Error 1.5 (the linear branch of SmoothL1): 1.5 - 0.5.
  far = coarse.CoarseOutputs(full=jnp.full((2, SIZE, SIZE, 3), 1.5))
  np.testing.assert_allclose(float(losses_lib.coarse_loss_terms(far, gt, mask,
                                                            ms_ssim_weights=TINY_MS_SSIM)["rec"]),
                             1.0 * hole_share, rtol=1e-6)
  # A perfect hole: both terms vanish.
  exact = losses_lib.coarse_loss_terms(coarse.CoarseOutputs(full=gt), gt, mask,
                                   ms_ssim_weights=TINY_MS_SSIM)
  assert float(exact["rec"]) == 0.0 and abs(float(exact["ms_ssim"])) < 1e-6
  # Weighted sum, and the WGAN generator term -lambda_adv * mean(D(fake)).
  loss = losses_lib.coarse_loss(out, gt, mask, lambda_rec=2.0, lambda_ms_ssim=3.0,
                            ms_ssim_weights=TINY_MS_SSIM)
  np.testing.assert_allclose(float(loss), 2.0 * float(terms["rec"])
                             + 3.0 * float(terms["ms_ssim"]), rtol=1e-6)
  scores = jnp.array([0.5, 1.5])
  loss_adv = losses_lib.coarse_loss(out, gt, mask, lambda_rec=2.0, lambda_ms_ssim=3.0,
                                lambda_adv=0.1, fake_scores=scores, ms_ssim_weights=TINY_MS_SSIM)
  np.testing.assert_allclose(float(loss_adv - loss), -0.1, rtol=1e-5)
  # The customised lambda 0 ignores the critic's scores.
  loss_0 = losses_lib.coarse_loss(out, gt, mask, lambda_rec=2.0, lambda_ms_ssim=3.0,
                              fake_scores=scores, ms_ssim_weights=TINY_MS_SSIM)
  assert float(loss_0) == float(loss)
  with pytest.raises(ValueError, match="no fake_scores"):
    losses_lib.coarse_loss(out, gt, mask, lambda_adv=0.1, ms_ssim_weights=TINY_MS_SSIM)


# ---- config and validation ----

def test_coarse_config_and_validation(batch):
  cfg = dict(TINY, lambda_rec=10.0, lambda_ms_ssim=1.0, lambda_adv=0.01,
             ms_ssim_weights=[0.5, 0.5], dtype="float32")
  module = coarse.from_config(cfg)
  assert module.widths == (4, 8, 12, 16) and module.floor_stride == 4
  assert coarse.loss_kwargs(cfg) == dict(lambda_rec=10.0, lambda_ms_ssim=1.0, lambda_adv=0.01,
                                         ms_ssim_weights=(0.5, 0.5))
  assert set(coarse.loss_kwargs(model_defaults.coarse_config())) == set(
      coarse.NON_ARCHITECTURE_FIELDS)
  with pytest.raises(ValueError, match="unknown fields"):
    coarse.from_config(dict(TINY, lambda_gp=10.0))

  def init(module, size, mask_shape=None):
    image = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    mask = jax.ShapeDtypeStruct(mask_shape or (1, size, size, 1), jnp.float32)
    return jax.eval_shape(module.init, jax.random.key(0), image, mask)

  # The smallest size of each floor_stride: floor 2 at 2 px; the output keeps the input's size.
  for floor_stride, size in ((4, 32), (8, 64), (16, 128)):
    m = coarse.CoarseNet(widths=(4, 8, 12, 16), floor_stride=floor_stride)
    shape = jax.eval_shape(m.apply, init(m, size),
                           jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32),
                           jax.ShapeDtypeStruct((1, size, size, 1), jnp.float32)).full.shape
    assert shape == (1, size, size, 3)
    with pytest.raises(ValueError, match="does not fit floor_stride"):
      init(m, size // 2)
  with pytest.raises(ValueError, match="does not fit floor_stride"):
    init(coarse.CoarseNet(**TINY), 40)   # not a multiple of 16
  with pytest.raises(ValueError, match="mask must be"):
    init(coarse.CoarseNet(**TINY), SIZE, mask_shape=(1, SIZE, SIZE))
  with pytest.raises(ValueError, match="4 channel counts"):
    init(coarse.CoarseNet(widths=(8, 8, 8)), SIZE)
  with pytest.raises(ValueError, match="floor_stride must be one of"):
    init(coarse.CoarseNet(widths=(4, 8, 12, 16), floor_stride=2), SIZE)
