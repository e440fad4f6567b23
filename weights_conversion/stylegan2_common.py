"""What both StyleGAN2 converters (rosinality's ``.pt``, NVIDIA's ``.pkl``) share: the FIR blur
the Flax networks are built with and the check that converted variables fit them.

Numpy at import: the NVIDIA reader runs in numpy-only processes (tests/hostile_child.py, under
an address-space limit that JAX's import alone exceeds); the checks import JAX when called.
"""

from __future__ import annotations

import numpy as np

from weights_conversion import torch_io

DEFAULT_BLUR = (1, 3, 3, 1)


def fir_kernel(taps, gain):
  """The 2-d FIR kernel of separable ``taps``, normalised to sum ``gain``."""
  k = np.outer(np.asarray(taps, np.float32), np.asarray(taps, np.float32))
  return k / k.sum() * gain


def _expected(module, example_shape: tuple[int, ...], init_input) -> dict:
  """The variables' shapes ``module.init`` makes from ``init_input(x)``, x float32 of
  ``example_shape``."""
  import jax  # pylint: disable=import-outside-toplevel
  example = jax.ShapeDtypeStruct(example_shape, np.float32)
  return jax.eval_shape(lambda x: module.init(jax.random.key(0), init_input(x)), example)


def check_against_module(config: dict, variables: dict) -> None:
  """Raises ConversionError if ``variables`` do not fit the Flax Generator built from config."""
  from difai_jax.models import stylegan2  # pylint: disable=import-outside-toplevel
  module = stylegan2.from_config(config)
  expected = _expected(module, (1, config["style_dim"]), lambda z: [z])
  if "noises" not in variables:
    expected = {k: v for k, v in expected.items() if k != "noises"}
  torch_io.check_shapes(variables, expected)


def check_discriminator_against_module(config: dict, variables: dict) -> None:
  """Raises ConversionError if ``variables`` do not fit the Flax Discriminator of config."""
  from difai_jax.models import stylegan2  # pylint: disable=import-outside-toplevel
  module = stylegan2.discriminator_from_config(config)
  size = config["size"]
  torch_io.check_shapes(variables, _expected(module, (1, size, size, 3), lambda x: x))
