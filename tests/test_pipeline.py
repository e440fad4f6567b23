"""pipeline.inpaint: the K style variants in groups of ``variants_per_call`` give the same
completions as one batch of K (each variant's region statistics are its own), and a batch split
over devices stays split through the K variants."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difai_jax import pipeline
from difai_jax.models import coarse as coarse_lib
from difai_jax.models import psp as psp_lib
from difai_jax.models import sparn
from difai_jax.models import stylegan2
from tests import tiny_config
from tests.test_sparn import SHALLOW
from tests.test_sparn import SIZE
from tests.test_sparn import numpy_init

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _models_and_variables():
  image = jnp.zeros((1, SIZE, SIZE, 3))
  mask = jnp.ones((1, SIZE, SIZE, 1))
  decoder = stylegan2.Generator(size=SIZE, style_dim=16, n_mlp=1, channels=(16,) * 4)
  encoder = psp_lib.GradualStyleEncoder(unit_counts=(1, 1, 1, 1), widths=(16,) * 4,
                                        input_width=8, n_styles=decoder.n_latent, style_dim=16)
  models = pipeline.Models(coarse=coarse_lib.from_config(tiny_config.get_config().coarse),
                           psp=psp_lib.PSP(encoder, decoder, input_size=SIZE, pool_size=SIZE),
                           generator=sparn.from_config(SHALLOW), image_size=SIZE)
  variables = {"coarse": numpy_init(models.coarse, image, mask, seed=1),
               "psp": numpy_init(models.psp, image, seed=2),
               "generator": numpy_init(models.generator, image, image, mask, seed=3),
               "sefa": jnp.asarray(np.random.default_rng(4).normal(size=(4, 16)), jnp.float32)}
  return models, variables


def test_variants_per_call_does_not_change_the_completions():
  models, variables = _models_and_variables()
  rng = np.random.default_rng(5)
  image = jnp.asarray(rng.uniform(-1, 1, size=(2, SIZE, SIZE, 3)), jnp.float32)
  mask = jnp.ones((2, SIZE, SIZE, 1)).at[:, 8:24, 4:20].set(0.0)
  components = jnp.asarray([[0, 1, 2], [3, 2, 1]], jnp.int32)          # K = 4
  degrees = jnp.asarray([[3.0, -3.0, 5.0], [-2.0, 4.0, 3.0]], jnp.float32)

  @jax.jit
  def both():          # one compilation for the two groupings
    return {c: pipeline.inpaint(models, variables, image, mask, components, degrees,
                                variants_per_call=c) for c in (4, 1)}

  out = both()
  for name in ("i_style", "i_out", "completions"):
    assert out[4][name].shape == (4, 2, SIZE, SIZE, 3)
    err = float(jnp.max(jnp.abs(out[1][name] - out[4][name])))
    assert err < 1e-5, (name, err)
  spread = float(jnp.max(jnp.abs(out[4]["completions"][1] - out[4]["completions"][0])))
  assert spread > 1e-3                     # the variants differ, so the check means something
  with pytest.raises(ValueError, match="variants_per_call must divide K = 4"):
    pipeline.inpaint(models, variables, image, mask, components, degrees, variants_per_call=3)


def test_complete_with_codes_takes_any_codes_and_keeps_the_known_pixels():
  """pipeline.complete_with_codes on codes that did not come from SeFa (the other image's W+):
  the style images are the decoder's images of those codes, known pixels stay bit-exact."""
  models, variables = _models_and_variables()
  rng = np.random.default_rng(7)
  image = jnp.asarray(rng.uniform(-1, 1, size=(2, SIZE, SIZE, 3)), jnp.float32)
  mask = jnp.ones((2, SIZE, SIZE, 1)).at[:, 8:24, 4:20].set(0.0)
  own = jax.jit(lambda i, m: pipeline.inpaint(models, variables, i, m,
                                               jnp.zeros((2, 0), jnp.int32),
                                               jnp.zeros((2, 0))))(image, mask)
  swapped = jnp.stack([own["w_plus"], own["w_plus"][::-1]])            # K = 2
  complete = lambda l: pipeline.complete_with_codes(models, variables, own["i_masked"], mask, l)
  out = jax.jit(complete)(swapped)
  want = jax.jit(lambda l: pipeline.style_images(models.psp, variables["psp"], l, SIZE))(swapped)
  assert float(jnp.max(jnp.abs(out["i_style"] - want))) < 1e-5
  assert float(jnp.max(jnp.abs(out["completions"][0] - own["completions"][0]))) < 1e-5
  known = np.broadcast_to(np.asarray(mask) == 1, out["completions"].shape)
  np.testing.assert_array_equal(np.asarray(out["completions"])[known],
                                np.broadcast_to(np.asarray(own["i_masked"]), known.shape)[known])
  assert float(jnp.max(jnp.abs(out["completions"][1] - out["completions"][0]))) > 1e-3


def test_padding_rows_do_not_change_the_real_completions():
  """A last batch filled up with padding rows (valid False): the real images' completions are
  those of a batch of them alone (region norm's batch statistics leave the padding out)."""
  models, variables = _models_and_variables()
  assert models.generator.rn_stats == "batch"
  rng = np.random.default_rng(6)
  image = jnp.asarray(rng.uniform(-1, 1, size=(3, SIZE, SIZE, 3)), jnp.float32)
  mask = jnp.ones((3, SIZE, SIZE, 1)).at[:, 8:24, 4:20].set(0.0).at[2, :, :16].set(0.0)
  components = jnp.asarray([[0, 1], [2, 3], [1, 0]], jnp.int32)
  degrees = jnp.asarray([[3.0, -3.0], [-2.0, 4.0], [5.0, 5.0]], jnp.float32)
  run = jax.jit(lambda i, m, c, d, v: pipeline.inpaint(models, variables, i, m, c, d,
                                                       valid=v)["completions"])
  alone = run(image[:2], mask[:2], components[:2], degrees[:2], None)
  padded = run(image, mask, components, degrees, jnp.asarray([True, True, False]))
  unflagged = run(image, mask, components, degrees, None)
  err = float(jnp.max(jnp.abs(padded[:, :2] - alone)))
  print(f"real rows with a flagged padding row vs alone: {err:.2e}")
  assert err < 1e-5
  assert float(jnp.max(jnp.abs(unflagged[:, :2] - alone))) > 1e-3


def _known_pixel_error(models, variables, i_masked, mask, w_plus):
  """Each image's mean squared error of its style image over its known pixels, (N,)."""
  image = pipeline.style_images(models.psp, variables["psp"], w_plus[None], SIZE)[0]
  return jnp.sum(mask * jnp.square(image - i_masked), axis=(1, 2, 3)) / (3 * jnp.sum(
      mask, axis=(1, 2, 3)))


def test_fitting_the_codes_to_the_known_pixels():
  """pipeline.fit_codes_to_known: Adam on W+ against the known pixels only. Its first step moves
  every coordinate by lr against the known-pixel loss's gradient (Adam's first, bias-corrected
  step is lr * g / (|g| + eps), eps = 1e-8); more steps lower each image's known-pixel error;
  the hole's target pixels and the other rows of the batch play no part; 0 steps change
  nothing. (On the shipped networks: benchmarks.toy_inpainting --refine_steps 50, README.)"""
  models, variables = _models_and_variables()
  rng = np.random.default_rng(8)
  image = jnp.asarray(rng.uniform(-1, 1, size=(3, SIZE, SIZE, 3)), jnp.float32)
  mask = jnp.ones((3, SIZE, SIZE, 1)).at[:, 8:24, 4:20].set(0.0).at[2, :, :10].set(0.0)
  i_masked = pipeline.masked_image(image, mask)
  error = lambda x, w: _known_pixel_error(models, variables, x, mask, w)
  fit = lambda x, w, steps: pipeline.fit_codes_to_known(models, variables, x, mask, w, steps,
                                                        lr=0.01)

  @jax.jit            # one compilation for every call below; x: the target of the fitting
  def probe(x):
    w0 = pipeline.invert(models.psp, variables["psp"], pipeline.coarse_completion(
        models.coarse, variables["coarse"], i_masked, mask))      # pSp's codes, as inpaint's
    g = jax.grad(lambda w: jnp.sum(error(x, w)))(w0)
    w30 = fit(x, w0, 30)
    return w0, g, fit(x, w0, 1), w30, error(x, w0), error(x, w30)

  w0, g, w1, w30, before, after = map(np.asarray, probe(i_masked))
  assert np.mean(np.abs(g) > 1e-6) > 0.9
  np.testing.assert_allclose(w1 - w0, -0.01 * g / (np.abs(g) + 1e-8), atol=1e-6)
  print(f"known-pixel MSE per image: {before} -> {after}")
  assert np.all(after < 0.9 * before)
  garbage = probe(jnp.where(mask > 0, i_masked, 7.0))        # the hole's target is not read
  np.testing.assert_allclose(garbage[3], w30, atol=1e-5)
  other = probe(i_masked.at[1:].set(-i_masked[1:]))          # rows are independent
  np.testing.assert_allclose(other[3][0], w30[0], atol=1e-5)
  assert float(jnp.max(jnp.abs(other[3][1] - w30[1]))) > 1e-3
  assert pipeline.fit_codes_to_known(models, variables, i_masked, mask, w0, 0) is w0
  with pytest.raises(ValueError, match="refine_steps must be >= 0"):
    pipeline.fit_codes_to_known(models, variables, i_masked, mask, w0, -1)


_FOLD_ON_A_MESH = """
import sys
import jax, jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
from difai_jax import pipeline
from difai_jax import mesh as mesh_lib
from difai_jax.models import sparn
from tests.test_pipeline import _models_and_variables

models, variables = _models_and_variables()
mesh = mesh_lib.make_mesh()
k, n, s = 3, 2 * jax.device_count(), models.image_size
split = lambda *spec: NamedSharding(mesh, P(*spec))
image = jax.ShapeDtypeStruct((n, s, s, 3), jnp.float32, sharding=split("data"))
mask = jax.ShapeDtypeStruct((n, s, s, 1), jnp.float32, sharding=split("data"))
style = jax.ShapeDtypeStruct((k, n, s, s, 3), jnp.float32, sharding=split(None, "data"))
latents = jax.ShapeDtypeStruct((k, n, models.psp.decoder.n_latent, 16), jnp.float32,
                               sharding=split(None, "data"))


def variant_major(v, x, st, m):      # the fold we replaced: K outermost
  fold = lambda a: jnp.broadcast_to(a[None], (k,) + a.shape).reshape((k * n,) + a.shape[1:])
  return models.generator.apply(v, fold(x), st.reshape((k * n,) + st.shape[2:]), fold(m),
                                num_completions=k)


def gathers(fn, *args):
  text = jax.jit(fn).lower(*args).compile().as_text()
  return sum(text.count(op) for op in ("all-gather", "all-to-all", "collective-permute"))

g = variables["generator"]
print("GATHERS", gathers(lambda v, x, st, m: pipeline.generate(models.generator, v, x, st, m),
                         g, image, style, mask),
      gathers(lambda v, w: pipeline.style_images(models.psp, v, w, s), variables["psp"], latents),
      gathers(variant_major, g, image, style, mask))
"""


def test_a_batch_split_over_devices_stays_split_through_the_k_variants():
  """K variants folded sample-major into the batch: with the batch split over 4 devices, the
  decoder and the generator move no activations between devices (only the statistics are
  all-reduced); the variant-major fold made XLA gather the whole batch on every device."""
  env = dict(os.environ)
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  env["XLA_FLAGS"] = " ".join(
      [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
      + ["--xla_force_host_platform_device_count=4"])
  proc = subprocess.run([sys.executable, "-c", _FOLD_ON_A_MESH], capture_output=True, text=True,
                        env=env, cwd=ROOT, timeout=300, check=False)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  generate, decode, old = map(int, proc.stdout.split("GATHERS")[-1].split())
  print(f"gather-type collectives: generate {generate}, decode {decode}, variant-major {old}")
  assert generate == 0 and decode == 0
  assert old > 0
