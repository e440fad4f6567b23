"""``config.pretrained.init_from``: a new run's coarse net and generator start from another
run's trained weights (the demo starts from the shipped toy DiFAI); shapes must match."""

import os
import shutil

import jax
import numpy as np
import pytest

from difai_jax.training import checkpoints
from difai_jax.training import loop
from difai_jax.training import stages
from difai_jax.training import steps
from tests import tiny_config
from tests.test_evaluate import trained_tiny_run


def _equal(a, b) -> bool:
  return jax.tree.structure(a) == jax.tree.structure(b) and all(
      np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_init_from_starts_both_stages_from_a_trained_run(tmp_path_factory, tmp_path):
  run = trained_tiny_run(tmp_path_factory)
  config = tiny_config.get_config()
  config.pretrained.init_from = run
  previous = {"coarse": os.path.join(run, "coarse")}
  for name in ("coarse", "difai"):
    stage = stages.build(name, config, str(tmp_path / name), previous)
    state = jax.jit(stage.init)(steps.prng_key(1))
    params, collections = checkpoints.load_stage_params(
        checkpoints.find_stage_dir(run, name))
    assert _equal(state.network, (params, collections)), name
    # Without init_from the same seed gives other (random) weights.
    config.pretrained.init_from = ""
    fresh = stages.build(name, config, str(tmp_path / f"{name}_fresh"), previous)
    assert not _equal(jax.jit(fresh.init)(steps.prng_key(1)).network[0], params), name
    config.pretrained.init_from = run


def test_init_from_refuses_another_architecture(tmp_path_factory, tmp_path):
  run = trained_tiny_run(tmp_path_factory)
  config = tiny_config.get_config()
  config.pretrained.init_from = run
  config.coarse.widths = (4, 8, 12, 20)
  stage = stages.build("coarse", config, str(tmp_path / "coarse"))
  with pytest.raises(ValueError, match="does not have this config's shapes"):
    jax.jit(stage.init)(steps.prng_key(0))


def test_a_resumed_run_ignores_init_from(tmp_path_factory, tmp_path, capsys):
  # init_from is read by a new run only: a run resumed with an init_from whose network no longer
  # fits (a shipped checkpoint replaced by a wider one, say) resumes from its own checkpoint.
  run = trained_tiny_run(tmp_path_factory)
  config = tiny_config.get_config()
  config.stages = ("coarse",)
  config.train.num_steps.coarse = 1
  config.pretrained.init_from = run                # a new run says where its weights came from
  loop.run(config, str(tmp_path / "warm"))
  assert (f"[coarse] new run in {tmp_path / 'warm'}, from the weights of {run} "
          "(pretrained.init_from)") in capsys.readouterr().out
  workdir = tmp_path / "coarse"
  shutil.copytree(os.path.join(run, "coarse"), workdir)
  done = checkpoints.latest_meta(str(workdir))["step"]
  config = tiny_config.get_config()
  config.stages = ("coarse",)
  config.train.num_steps.coarse = done
  config.pretrained.init_from = "toy-difai"      # another coarse architecture
  with pytest.raises(ValueError, match="does not have this config's shapes"):
    jax.jit(stages.build("coarse", config, str(tmp_path / "new")).init)(steps.prng_key(0))
  [result] = loop.run(config, str(workdir))
  assert result.final_step == done
  out = capsys.readouterr().out
  assert f"[coarse] resuming {workdir}" in out and "from the weights of" not in out, out
