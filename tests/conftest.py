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


# The slowest single tests (seconds on 2 cores, `--durations`): started first, so that under
# xdist the two workers end together instead of one finishing a two-minute test alone.
SLOW_FIRST = (
    "test_train.py::test_two_processes_train_in_lockstep",            # 132
    "test_browser_app.py::test_browser_demo_end_to_end",              # 95
    "test_train.py::test_data_parallel_matches_one_device",           # 74
    "test_train.py::test_difai_stage_lowers_its_loss",                # 73, 55
    "test_evaluate.py::test_cli_scores_a_trained_run_under_the_paper_protocol",   # 49
    "test_shipped.py::test_toy_difai_inpaints_keeping_known_pixels",  # 49
    "test_train.py::test_kill9_then_resume_is_bit_identical",         # 48
)


def _slow_rank(item) -> int:
  name = item.nodeid.split("/")[-1]
  return next((i for i, slow in enumerate(SLOW_FIRST) if name.startswith(slow)),
              len(SLOW_FIRST))


# Module fixtures cheaper to build twice than to tie their (slow) tests to one worker.
SPREAD = ("fixed_batch",)   # test_train.py: one data batch; its users train for a minute each


@pytest.hookimpl(tryfirst=True)             # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
  """Under ``--dist loadgroup`` (README's test line): the tests of a module that share one of
  its module-scoped fixtures (a small training, a converted network) run on one worker, which
  builds the fixture once instead of once per worker; the slowest single tests go first."""
  del config
  items.sort(key=_slow_rank)                  # stable: the rest keep their order
  for item in items:
    module = item.nodeid.split("::")[0]
    shared = any(d.scope == "module" and d.baseid == module and name not in SPREAD
                 for name, defs in item._fixtureinfo.name2fixturedefs.items() for d in defs)
    if shared:
      item.add_marker(pytest.mark.xdist_group(os.path.basename(module).removesuffix(".py")))


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


@pytest.fixture(scope="module")
def compilation_cache(tmp_path_factory):
  """A persistent compilation cache for a test module whose runs compile the same functions
  several times (each train.run jits its step anew): later compiles load them from disk.
  Restored to the session's setting afterwards."""
  from jax.experimental.compilation_cache import compilation_cache as cc
  previous = {k: getattr(jax.config, k) for k in (
      "jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
      "jax_persistent_cache_min_entry_size_bytes")}
  jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
  cc.reset_cache()
  yield
  for key, value in previous.items():
    jax.config.update(key, value)
  cc.reset_cache()
