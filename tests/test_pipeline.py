"""pipeline.inpaint: the K style variants in groups of ``variants_per_call`` give the same
completions as one batch of K (each variant's region statistics are its own)."""

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
