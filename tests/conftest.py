"""Shared test setup: float32 parity settings and fixtures built once per session."""

import os

import jax
import numpy as np
import pytest

# Parity tests compare float32 results with PyTorch: use full-precision matmuls/convs.
jax.config.update("jax_default_matmul_precision", "highest")

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def fixture_path(name: str) -> str:
  return os.path.join(FIXTURES, name)


def nchw_to_nhwc(x):
  return np.transpose(np.asarray(x), (0, 2, 3, 1))


@pytest.fixture(scope="session")
def stylegan2_small():
  """(module, variables, config) of the fixture's g_ema, converted once per session."""
  from weights_conversion import stylegan2 as convert
  from weights_conversion import torch_io
  from difai_jax.models import stylegan2
  checkpoint = torch_io.load_checkpoint(fixture_path("stylegan2_small.pt"))
  config, variables = convert.convert_generator(
      torch_io.StateDict(checkpoint["g_ema"], source="stylegan2_small.pt[g_ema]"))
  return stylegan2.from_config(config), variables, config
