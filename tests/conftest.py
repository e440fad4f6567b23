"""Shared test setup: float32 parity settings and fixtures built once per session."""

import os
import shutil
import tempfile

import jax
import numpy as np
import pytest

# Parity tests compare float32 results with PyTorch: use full-precision matmuls/convs.
jax.config.update("jax_default_matmul_precision", "highest")

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")

# The tools that tests start as subprocesses (train, evaluate, inpaint, ...) compile the same
# tiny programs again and again: one persistent compilation cache for the whole test run (every
# xdist worker, which inherit it from the main pytest process; a test that checks the cache
# passes a folder of its own). This process's own JAX has read its settings already; only its
# children see this. The main process removes the folder at the end.
_TEST_CACHE = os.path.join(tempfile.gettempdir(), f"difai_jax_test_cache_{os.getpid()}")
if "DIFAI_JAX_CACHE_DIR" not in os.environ:
  os.environ["DIFAI_JAX_CACHE_DIR"] = _TEST_CACHE
# Most tests are compile-bound (tiny networks, a few steps): every process of the test run,
# this one and the tools it starts, compiles without LLVM's optimisation passes. A StyleGAN2
# step with both lazy regularisers compiles in 28 s instead of 62 here; results differ at
# rounding level only (parity tolerances are 1e-5 and up), and bit-identity tests compare two
# results of the same settings. Set before this process starts its backend.
os.environ["XLA_FLAGS"] = " ".join(
    os.environ.get("XLA_FLAGS", "").split() + ["--xla_backend_optimization_level=0"])
jax.devices()
# The tests' own compiles share that cache too (both xdist workers, every module): many tests
# train, resume and evaluate the same tiny networks, and a program compiled once in the run is
# then loaded. Programs that compile in under a second are not worth the write.
jax.config.update("jax_compilation_cache_dir", os.environ["DIFAI_JAX_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def pytest_sessionfinish(session, exitstatus):
  del session, exitstatus
  if os.environ.get("DIFAI_JAX_CACHE_DIR") == _TEST_CACHE:    # ours: the main process's
    shutil.rmtree(_TEST_CACHE, ignore_errors=True)


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
