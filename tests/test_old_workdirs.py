"""Workdirs written by earlier code keep loading and resuming.

``fixtures/workdir_stylegan2_19025c2.tar.gz`` is a 2-step StyleGAN2 run (32 px, widths 4) written
by commit 19025c2, before the package was reorganised: its checkpoint holds the train state's
``g_*`` / ``d_*`` / ``aux`` fields and its metadata the stage name ``stylegan2`` and the config of
that day. The same config resumes it at step 2 and trains on; the export reads it too.
"""

import os
import tarfile

import jax
import ml_collections
import numpy as np

from configs import toy_stylegan2
from difai_jax import pretrained
from difai_jax.training import checkpoints
from difai_jax.training import export
from difai_jax.training import loop
from tests.conftest import fixture_path


def _old_stylegan2_workdir(tmp_path) -> str:
  with tarfile.open(fixture_path("workdir_stylegan2_19025c2.tar.gz")) as tar:
    tar.extractall(tmp_path, filter="data")
  return os.path.join(tmp_path, "stylegan2")


def _config(num_steps: int) -> ml_collections.ConfigDict:
  """The config the fixture was trained with (configs/toy_stylegan2.py, shrunk)."""
  config = toy_stylegan2.get_config()
  config.image_size = 32
  c = config.stylegan2
  c.size, c.style_dim, c.n_mlp = 32, 4, 1
  c.channels = (4, 4, 4, 4)
  c.d_channels = (4, 4, 4, 4)
  c.d_reg_every, c.g_reg_every = 4, 2
  config.train.batch_size = 2
  config.train.num_steps = ml_collections.ConfigDict({"stylegan2": num_steps})
  config.train.log_every = 1
  config.train.sample_every = 0
  config.train.checkpoint_every = 2
  config.train.keep_checkpoints = 1
  return config


def test_stylegan2_workdir_of_19025c2_resumes_and_exports(tmp_path, capsys):
  workdir = _old_stylegan2_workdir(tmp_path)
  assert checkpoints.latest_meta(workdir)["step"] == 2
  results = loop.run(_config(num_steps=3), workdir)   # one step: one compile
  assert "resuming" in capsys.readouterr().out
  assert results[-1].final_step == 3 and not results[-1].preempted
  meta = checkpoints.latest_meta(workdir)
  assert meta["step"] == 3 and meta["architecture"]["stage"] == "stylegan2"
  out = os.path.join(tmp_path, "export")
  export.export(workdir, out)
  module, variables = pretrained.load(out)
  image = jax.jit(module.apply)(variables, [np.zeros((1, 4), np.float32)])
  assert image.shape == (1, 32, 32, 3) and np.all(np.isfinite(image))
  _, d_variables = pretrained.load(os.path.join(out, "discriminator"))
  assert "params" in d_variables
