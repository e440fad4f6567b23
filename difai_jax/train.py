"""``python -m difai_jax.train --config CONFIG --workdir DIR``: trains the stages of a config.

The loop, the stages and the checkpoints are :mod:`difai_jax.training`; this module parses the
flags, starts the processes of a multi-host run and maps the outcome to an exit status
(0 done, 75 preempted and saved, 130 stopped by a second Ctrl-C).
"""

import sys

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from difai_jax import cli
from difai_jax import mesh
from difai_jax.data import sources
from difai_jax.training import checkpoints
from difai_jax.training import loop

_CONFIG = config_flags.DEFINE_config_file("config", None, "training config file",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "directory for checkpoints, logs and samples")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "multi-process runs: host:port of process 0 (otherwise "
                                   "auto-detected on TPU pods)")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "multi-process runs")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "multi-process runs")
cli.define_cache_flag()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _WORKDIR.value is None:
    raise app.UsageError("--workdir is required")
  if _CONFIG.value is None:
    raise app.UsageError("--config is required (e.g. --config configs/demo.py)")
  mesh.maybe_initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  cli.enable_compilation_cache(flags.FLAGS.compilation_cache)   # a resumed run skips compiling
  print(f"devices: {jax.device_count()} ({jax.devices()[0].platform}) over "
        f"{jax.process_count()} process(es)", flush=True)
  try:
    results = loop.run(_CONFIG.value, _WORKDIR.value)
  except KeyboardInterrupt:
    print("stopped at once (second Ctrl-C); the workdir keeps its last checkpoint",
          file=sys.stderr, flush=True)
    return 130
  return loop.EXIT_PREEMPTED if results and results[-1].preempted else 0


if __name__ == "__main__":
  cli.run(main, user_errors=(loop.NonFiniteLossError, checkpoints.WorkdirMismatchError,
                             FileNotFoundError, sources.DataError))
