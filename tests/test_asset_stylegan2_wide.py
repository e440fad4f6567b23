"""The wider toy StyleGAN2 in training (assets/toy/stylegan2_wide): pinned on fixed inputs,
everything a later session needs to continue it is there, and the shipped toy-psp keeps the
decoder it was trained against (this generator at 285 kimg)."""

import json
import os

import jax
import numpy as np
import pytest

from difai_jax import pretrained


def test_wide_generator_is_pinned_and_carries_its_discriminator():
  module, variables = pretrained.load("toy-stylegan2-wide")
  assert module.style_dim == 128 and tuple(module.channels) == (128, 128, 64, 32, 16)
  z = jax.random.normal(jax.random.key(0), (2, module.style_dim))
  x = np.asarray(module.apply(variables, [z]))
  assert x.shape == (2, 64, 64, 3)
  # recorded when the asset was exported (794 kimg in all); a changed file or layer shows here
  np.testing.assert_allclose(x[0, 32, 32], [0.71840417, 0.40646309, 0.05167726], atol=2e-4)
  np.testing.assert_allclose(x[1, 10, 50], [-0.02512303, 0.44904363, 0.76141012], atol=2e-4)
  np.testing.assert_allclose(x.mean(), -0.06533148140, atol=2e-5)
  root = pretrained.resolve("toy-stylegan2-wide")
  with open(os.path.join(root, "discriminator", "config.json"), encoding="utf-8") as f:
    assert json.load(f)["kind"] == "stylegan2_discriminator"
  with open(os.path.join(root, "training.json"), encoding="utf-8") as f:
    training = json.load(f)
  # its last run (5,500 steps of 16 at lr 0.00025) continued a local export of 706 kimg (the
  # 517 kimg asset continued 11,837 steps at lr 0.0005; README "Next StyleGAN2")
  assert training["step"] == 5500 and training["mean_path_length"] > 0
  assert training["kimg_total"] == pytest.approx(training["kimg"]
                                                 + training["continued_from"]["kimg_total"])
  assert training["continued_from"] == {"init_from": "runs/sg2c_e2", "kimg_total": 706.192}


def test_shipped_psp_decodes_with_the_285_kimg_generator():
  """toy-psp (and toy-difai, which reads it) carries its own frozen decoder: the wide generator
  as exported at 285 kimg, whatever toy-stylegan2-wide has become since (pins recorded from
  that export)."""
  module = pretrained.load("toy-stylegan2-wide")[0]
  psp = pretrained.load("toy-psp")[1]
  decoder = {"params": psp["params"]["decoder"], "noises": psp["noises"]["decoder"]}
  z = jax.random.normal(jax.random.key(0), (2, module.style_dim))
  x = np.asarray(module.apply(decoder, [z]))
  np.testing.assert_allclose(x[0, 32, 32], [-0.63898110, -0.68183666, -0.69301504], atol=2e-4)
  np.testing.assert_allclose(x[1, 10, 50], [-0.05117111, 0.43066555, 0.73150504], atol=2e-4)
  np.testing.assert_allclose(x.mean(), -0.05574972555, atol=2e-5)
