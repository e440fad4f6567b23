"""The wider toy StyleGAN2 in training (assets/toy/stylegan2_wide): pinned on fixed inputs,
everything a later session needs to continue it is there, and the shipped pSps carry this very
generator as their decoder (retrained against it at stop 47)."""

import json
import os

import jax
import numpy as np
import pytest

from difai_jax import pretrained


def _pins(module, variables):
  z = jax.random.normal(jax.random.key(0), (2, module.style_dim))
  x = np.asarray(jax.jit(module.apply)(variables, [z]))
  assert x.shape == (2, 64, 64, 3)
  return x[0, 32, 32], x[1, 10, 50], x.mean()


def test_wide_generator_is_pinned_and_carries_its_discriminator():
  module, variables = pretrained.load("toy-stylegan2-wide")
  assert module.style_dim == 128 and tuple(module.channels) == (128, 128, 64, 32, 16)
  a, b, mean = _pins(module, variables)
  # recorded when the asset was exported (1,011 kimg in all); a changed file or layer shows
  np.testing.assert_allclose(a, [0.6842173, 0.34465858, 0.00407249], atol=2e-4)
  np.testing.assert_allclose(b, [-0.06139117, 0.4188217, 0.73990184], atol=2e-4)
  np.testing.assert_allclose(mean, -0.07284941524, atol=2e-5)
  root = pretrained.resolve("toy-stylegan2-wide")
  with open(os.path.join(root, "discriminator", "config.json"), encoding="utf-8") as f:
    assert json.load(f)["kind"] == "stylegan2_discriminator"
  with open(os.path.join(root, "training.json"), encoding="utf-8") as f:
    training = json.load(f)
  # its last run (README "Next StyleGAN2": the attribute term on predicted labels) continued
  # the exported first part of that run, which continued the asset as shipped at 890 kimg
  assert training["step"] == 1500 and training["mean_path_length"] > 0
  assert training["continued_from"] == {"init_from": "runs/sg46_exp/b_end", "kimg_total": 987.296}
  assert training["kimg_total"] == pytest.approx(training["kimg"]
                                                 + training["continued_from"]["kimg_total"])


def test_shipped_psps_decode_with_this_generator():
  """toy-psp and toy-psp-coarse (which toy-difai reads) carry their own frozen copy of the
  decoder: this generator as shipped (retrained against it at stop 47), weight for weight."""
  _, wide = pretrained.load("toy-stylegan2-wide")
  for name in ("toy-psp-coarse", "toy-psp"):
    psp = pretrained.load(name)[1]
    decoder = {"params": psp["params"]["decoder"], "noises": psp["noises"]["decoder"]}
    same = jax.tree.map(lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b))),
                        decoder, {"params": wide["params"], "noises": wide["noises"]})
    assert all(jax.tree.leaves(same)), name
