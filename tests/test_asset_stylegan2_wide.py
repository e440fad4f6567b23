"""The wider toy StyleGAN2 in training (assets/toy/stylegan2_wide): pinned on fixed inputs,
everything a later session needs to continue it is there, and the shipped toy-psp keeps the
decoder it was trained against (this generator as shipped at 890 kimg)."""

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
  x = np.asarray(jax.jit(module.apply)(variables, [z]))
  assert x.shape == (2, 64, 64, 3)
  # recorded when the asset was exported (890 kimg in all); a changed file or layer shows here
  np.testing.assert_allclose(x[0, 32, 32], [0.77443546, 0.44034344, 0.08378345], atol=2e-4)
  np.testing.assert_allclose(x[1, 10, 50], [-0.03640046, 0.43846846, 0.77356821], atol=2e-4)
  np.testing.assert_allclose(x.mean(), -0.06914644688, atol=2e-5)
  root = pretrained.resolve("toy-stylegan2-wide")
  with open(os.path.join(root, "discriminator", "config.json"), encoding="utf-8") as f:
    assert json.load(f)["kind"] == "stylegan2_discriminator"
  with open(os.path.join(root, "training.json"), encoding="utf-8") as f:
    training = json.load(f)
  # its last run (6,000 steps of 16 with the feature critic, lr 0.00025 then 0.000125)
  # continued the asset as shipped at 794 kimg (README "Next StyleGAN2")
  assert training["step"] == 6000 and training["mean_path_length"] > 0
  assert training["kimg_total"] == pytest.approx(training["kimg"]
                                                 + training["continued_from"]["kimg_total"])
  assert training["continued_from"] == {"init_from": "toy-stylegan2-wide", "kimg_total": 794.192}


def test_shipped_psp_decodes_with_the_shipped_890_kimg_generator():
  """toy-psp and toy-psp-coarse (which toy-difai reads) carry their own frozen decoder: since
  stop 38 the wide generator exactly as shipped here at 890 kimg (a later continuation of this
  asset leaves the pSps' copies alone until they are retrained)."""
  module, variables = pretrained.load("toy-stylegan2-wide")
  for name in ("toy-psp-coarse", "toy-psp"):
    psp = pretrained.load(name)[1]
    decoder = {"params": psp["params"]["decoder"], "noises": psp["noises"]["decoder"]}
    same = jax.tree.map(lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b))),
                        decoder["params"], dict(variables)["params"])
    assert all(jax.tree.leaves(same)), name
  z = jax.random.normal(jax.random.key(0), (2, module.style_dim))
  x = np.asarray(jax.jit(module.apply)(decoder, [z]))
  # the pins of test_wide_generator_is_pinned_and_carries_its_discriminator
  np.testing.assert_allclose(x[0, 32, 32], [0.77443546, 0.44034344, 0.08378345], atol=2e-4)
  np.testing.assert_allclose(x[1, 10, 50], [-0.03640046, 0.43846846, 0.77356821], atol=2e-4)
  np.testing.assert_allclose(x.mean(), -0.06914644688, atol=2e-5)
