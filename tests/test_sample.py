"""difai_jax.sample truncates towards the generator's stored centre (NVIDIA's w_avg) when the
weights carry one."""

import jax
import jax.numpy as jnp
import numpy as np

from difai_jax import sample
from difai_jax.models import stylegan2


def test_truncation_uses_the_stored_latent_avg():
  module = stylegan2.Generator(size=8, style_dim=8, n_mlp=1, channels=(8, 8))
  variables = module.init(jax.random.key(0), [jnp.zeros((1, 8))], randomize_noise=False)
  centre = jnp.asarray(np.random.default_rng(0).normal(size=(1, 8)), jnp.float32)
  stored = {**variables, "constants": {**variables.get("constants", {}), "latent_avg": centre}}
  # truncation 0 puts every sample on the centre: each image is the centre's image
  grid, _ = sample.sample_images(module, stored, num=2, truncation=0.0, seed=1, direction=0,
                                 max_degree=1.0, steps=2, method="genforce")
  expected = module.apply(stored, [centre], input_is_latent=True, randomize_noise=False)
  np.testing.assert_allclose(np.asarray(grid), np.repeat(np.asarray(expected), 2, 0), atol=1e-5)
  # without a stored centre the sampled mean of mapped z is used, another point
  grid, _ = sample.sample_images(module, variables, num=2, truncation=0.0, seed=1, direction=0,
                                 max_degree=1.0, steps=2, method="genforce")
  assert np.max(np.abs(np.asarray(grid) - np.asarray(expected))) > 1e-3
