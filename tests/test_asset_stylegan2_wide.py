"""The wider toy StyleGAN2 in training (assets/toy/stylegan2_wide) and the pSp in training on it
(assets/toy/psp_next): pinned on fixed inputs, and everything a later session needs to continue
them is there."""

import json
import os

import jax
import numpy as np

from difai_jax import pretrained


def test_wide_generator_is_pinned_and_carries_its_discriminator():
  module, variables = pretrained.load("toy-stylegan2-wide")
  assert module.style_dim == 128 and tuple(module.channels) == (128, 128, 64, 32, 16)
  z = jax.random.normal(jax.random.key(0), (2, module.style_dim))
  x = np.asarray(module.apply(variables, [z]))
  assert x.shape == (2, 64, 64, 3)
  # recorded when the asset was exported (285 kimg in all); a changed file or layer shows here
  np.testing.assert_allclose(x[0, 32, 32], [-0.63898110, -0.68183666, -0.69301504], atol=2e-4)
  np.testing.assert_allclose(x[1, 10, 50], [-0.05117111, 0.43066555, 0.73150504], atol=2e-4)
  np.testing.assert_allclose(x.mean(), -0.05574972555, atol=2e-5)
  root = pretrained.resolve("toy-stylegan2-wide")
  with open(os.path.join(root, "discriminator", "config.json"), encoding="utf-8") as f:
    assert json.load(f)["kind"] == "stylegan2_discriminator"
  with open(os.path.join(root, "training.json"), encoding="utf-8") as f:
    training = json.load(f)
  # its last run (10,300 steps of 16) continued the 7,540 steps of the asset before it
  assert training["step"] == 10300 and training["mean_path_length"] > 0
  assert training["kimg_total"] == training["kimg"] + training["continued_from"]["kimg_total"]
  assert training["continued_from"] == {"init_from": "toy-stylegan2-wide", "kimg_total": 120.64}


def test_next_psp_decodes_with_the_wide_generator_and_is_pinned():
  """toy-psp-next (in training): its frozen decoder is toy-stylegan2-wide as shipped now, and
  its reconstructions of two test faces are pinned."""
  from difai_jax.data import toy_faces
  from difai_jax.training.stages import psp as psp_stage
  module, variables = pretrained.load("toy-psp-next")
  generator = pretrained.load("toy-stylegan2-wide")[1]
  same = jax.tree.map(np.array_equal, variables["params"]["decoder"], generator["params"])
  assert all(jax.tree.leaves(same))
  faces = np.stack([np.asarray(toy_faces.render_face(28000 + i, 0, 64)) for i in range(2)])
  x = faces.astype(np.float32) / 127.5 - 1.0
  y = np.asarray(psp_stage.reconstruct(module, variables, x))
  np.testing.assert_allclose(y[0, 32, 32], [0.21480331, -0.14415897, -0.43095464], atol=2e-4)
  np.testing.assert_allclose(y[1, 10, 50], [-0.04206544, -0.23139259, -0.01131605], atol=2e-4)
  np.testing.assert_allclose(y.mean(), -0.0421153195, atol=2e-5)
  assert np.mean((y - x) ** 2) < 0.05                  # a reconstruction, not noise
