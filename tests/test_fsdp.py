"""FSDP (``config.train.fsdp``): the train state sharded over 2 devices gives the same step as
the replicated one, and round-trips through a checkpoint with its shardings.

Fake CPU devices need fresh XLA flags, so the check runs in a subprocess (as tests/test_train.py
does for data parallelism), on the tiny config's coarse stage (the smallest train step).
"""

import os
import subprocess
import sys

import jax
import numpy as np
from jax.sharding import PartitionSpec as P

from difai_jax import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SCRIPT = r"""
import sys
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from difai_jax import checkpoints, stages, steps, train
from tests import tiny_config

assert jax.device_count() == 2, jax.devices()
config = tiny_config.get_config()
config.pretrained.random_init = True
stage = stages.build("coarse", config, sys.argv[1], {})
mesh = train.make_mesh()
replicated = NamedSharding(mesh, P())
abstract = jax.eval_shape(stage.init, steps.prng_key(0))
# min_size 256: the tiny config's arrays are small; the default threshold would shard none.
shardings = {name: train.state_shardings(abstract, mesh, fsdp=(name == "fsdp"), min_size=256)
             for name in ("replicated", "fsdp")}
split = [s for s in jax.tree.leaves(shardings["fsdp"]) if s.spec != P()]
assert split and all("data" in s.spec for s in split)
print("sharded arrays", len(split), "of", len(jax.tree.leaves(abstract)))

batch = {k: np.asarray(v) for k, v in next(stage.batches(0)).items()}
batch_sharding = NamedSharding(mesh, P("data"))
# One initial state for both (the 'rbg' PRNG's draws depend on the output sharding).
initial = jax.jit(stage.init, out_shardings=shardings["replicated"])(steps.prng_key(config.seed))
outs = {}
for name, sh in shardings.items():
  state = jax.device_put(initial, sh)
  step = jax.jit(stage.step, in_shardings=(sh, batch_sharding, replicated, replicated),
                 out_shardings=(sh, replicated))
  batch_global = {k: jax.device_put(v, batch_sharding) for k, v in batch.items()}
  state, metrics = step(state, batch_global, {}, steps.prng_key(1))
  outs[name] = (state, metrics)

state_f, metrics_f = outs["fsdp"]
state_r, metrics_r = outs["replicated"]
leaf = [x for x, s in zip(jax.tree.leaves(state_f), jax.tree.leaves(shardings["fsdp"]))
        if s.spec != P()][0]
assert not leaf.is_fully_replicated and leaf.sharding.spec != P()
worst = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
            for a, b in zip(jax.tree.leaves(state_f), jax.tree.leaves(state_r)))
print("largest state difference", worst)
for a, b in zip(jax.tree.leaves(state_f), jax.tree.leaves(state_r)):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
np.testing.assert_allclose(float(metrics_f["coarse/loss"]), float(metrics_r["coarse/loss"]),
                           rtol=1e-6)
print("loss fsdp", float(metrics_f["coarse/loss"]), "replicated", float(metrics_r["coarse/loss"]))

manager = checkpoints.checkpoint_manager(sys.argv[1], 1)
checkpoints.save_checkpoint(manager, 1, state_f, {"architecture": stage.architecture, "step": 1})
target = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      abstract, shardings["fsdp"])
restored, meta = checkpoints.restore_checkpoint(manager, target, stage.architecture)
manager.close()
for a, b, s in zip(jax.tree.leaves(restored), jax.tree.leaves(state_f),
                   jax.tree.leaves(shardings["fsdp"])):
  assert a.sharding.spec == s.spec, (a.sharding, s)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
assert meta["step"] == 1
print("fsdp ok")
"""


def test_fsdp_step_matches_replicated_and_checkpoint_round_trips(tmp_path):
  env = dict(os.environ)
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  flags = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
  env["XLA_FLAGS"] = " ".join(flags + ["--xla_force_host_platform_device_count=2"])
  env["TF_CPP_MIN_LOG_LEVEL"] = "3"
  proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path)], capture_output=True,
                        text=True, env=env, cwd=ROOT, timeout=300)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  print(proc.stdout)
  assert "fsdp ok" in proc.stdout


def test_state_shardings_split_the_largest_divisible_dimension():
  state = {"big": jax.ShapeDtypeStruct((3, 3, 64, 128), np.float32),
           "odd": jax.ShapeDtypeStruct((3, 3, 64, 130), np.float32),
           "prime": jax.ShapeDtypeStruct((4099,), np.float32),
           "small": jax.ShapeDtypeStruct((16,), np.float32)}
  mesh = jax.sharding.AbstractMesh((4,), ("data",))
  specs = {k: s.spec for k, s in train.state_shardings(state, mesh, fsdp=True).items()}
  assert specs == {"big": P(None, None, None, "data"),    # the largest dim, 128 = 4 x 32
                   "odd": P(None, None, "data", None),    # 130 is not divisible by 4: 64
                   "prime": P(),                          # nothing divisible
                   "small": P()}                          # < FSDP_MIN_SIZE elements
  default = train.state_shardings(state, mesh)
  assert all(s.spec == P() for s in default.values())
  one = train.state_shardings(state, jax.sharding.AbstractMesh((1,), ("data",)), fsdp=True)
  assert all(s.spec == P() for s in one.values())
