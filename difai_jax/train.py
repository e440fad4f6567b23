"""Training entry point: ``python -m difai_jax.train --config configs/celebahq.py --workdir DIR``.

Runs the stages named by ``config.stages`` back to back through one loop; what each stage
trains, its step, its frozen networks and its samples come from :mod:`difai_jax.stages`
(``coarse``, ``difai``, ``stylegan2``, ``psp``, ``recognizer``). With several stages each gets
its own sub-directory of the workdir (``DIR/coarse``, ``DIR/difai``) and a later stage finds the
earlier ones there (the DiFAI stage loads the coarse net the first stage trained).

The same code runs on one CPU, one GPU or a multi-host TPU pod: one ``jax.jit``-ed step over a
mesh with a single ``data`` axis spanning every device of every host (params replicated, batch
split), ``jax.distributed.initialize()`` on multi-host launches, and each host feeding only its
own data shard (``jax.make_array_from_process_local_data``).

Checkpoints (orbax ``CheckpointManager``, atomic, last ``keep`` kept) hold the train state and
JSON metadata (the architecture and the data position); a run resumes from its workdir
automatically and takes exactly the steps it would have taken. SIGTERM (TPU preemption) and
Ctrl-C save a checkpoint and exit with status 75 (``EXIT_PREEMPTED``; a second Ctrl-C stops at
once, status 130); a non-finite loss stops the run naming the step and term, keeping the last
good checkpoint (status 1). Nothing is written before the data and the workdir are checked.
JAX's persistent compilation cache (``--compilation_cache``, as the other tools) lets a resumed
or restarted run load its compiled steps instead of compiling them again.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import time
import dataclasses
from typing import Any, Mapping

from absl import app
from absl import flags
import jax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import ml_collections
from ml_collections import config_flags
import numpy as np

from difai_jax import checkpoints
from difai_jax import cli
from difai_jax import image_io
from difai_jax import precision
from difai_jax import stages
from difai_jax import steps
from difai_jax import tensorboard_writer
from difai_jax.data import sources

_CONFIG = config_flags.DEFINE_config_file("config", None, "training config file",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "directory for checkpoints, logs and samples")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "multi-process runs: host:port of process 0 (otherwise "
                                   "auto-detected on TPU pods)")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "multi-process runs")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "multi-process runs")
cli.define_cache_flag()


class NonFiniteLossError(RuntimeError):
  """A loss term became NaN or Inf."""


# ----------------------------------------------------------------------------------------------
# Setup
# ----------------------------------------------------------------------------------------------

# Exit status of a run stopped by SIGTERM / SIGINT after saving (sysexits' EX_TEMPFAIL: "try
# again later"), so that a scheduler can tell a preempted run from a finished one (status 0).
EXIT_PREEMPTED = 75


def maybe_initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                                 process_id: int | None = None) -> None:
  """``jax.distributed.initialize`` for multi-process launches; a no-op on one host."""
  if coordinator:
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
  elif len(os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",")) > 1 or os.environ.get(
      "JAX_COORDINATOR_ADDRESS"):
    jax.distributed.initialize()   # TPU pod slices / cluster environments auto-detect


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-d mesh with axis ``data`` over every device of every host (GSPMD ``Auto`` axis: the
  compiler propagates the batch sharding through the model). ``devices``: another set, e.g.
  the compile-only devices of a TPU topology (``benchmarks.tpu_compile``)."""
  n = jax.device_count() if devices is None else len(devices)
  return jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices)


def state_shardings(abstract_state, mesh: jax.sharding.Mesh):
  """Shardings of the train state over ``mesh``: replicated on every device (data parallel).

  Params and optimizer state are a small part of a DiFAI step's memory (benchmarks/RESULTS.md,
  "DiFAI train step compiled for TPU pods"), so sharding them (FSDP) would not raise the batch.
  """
  return jax.tree.map(lambda _: NamedSharding(mesh, P()), abstract_state)


def check_workdir(path: str) -> str:
  """Absolute ``path`` if a run can write there (cloud URLs such as gs:// pass as they are);
  creates nothing, so a run that fails before its first checkpoint leaves nothing behind."""
  if "://" in path:
    return path
  return cli.check_output_dir(path, "--workdir")


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------

class _Interruption:
  """SIGTERM (TPU preemption) and SIGINT (Ctrl-C) -> save at the end of this step and stop; a
  second SIGINT stops at once. Multi-process runs use JAX's preemption sync point for SIGTERM
  (JAX catches SIGTERM itself after ``jax.distributed.initialize``)."""

  def __init__(self):
    self.requested = None
    self.multi = jax.process_count() > 1
    self._previous = {}
    signals = [signal.SIGINT] + ([] if self.multi else [signal.SIGTERM])
    for sig in signals:
      self._previous[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    del frame
    if self.requested is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt   # the second Ctrl-C: stop now
    self.requested = signal.Signals(signum).name
    if signum == signal.SIGINT:
      print("\ninterrupted: saving a checkpoint after this step (Ctrl-C again to stop now)",
            file=sys.stderr, flush=True)

  def reached(self, step: int) -> bool:
    if self.multi and multihost_utils.reached_preemption_sync_point(step):
      self.requested = self.requested or "SIGTERM"
    return self.requested is not None

  def close(self):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _check_finite(metrics: Mapping[str, Any], step: int) -> None:
  bad = sorted(k for k, v in metrics.items() if not np.all(np.isfinite(v)))
  if bad:
    raise NonFiniteLossError(
        f"step {step}: non-finite loss term(s) {bad} "
        f"({ {k: float(np.asarray(metrics[k])) for k in bad} }); stopping. The workdir keeps "
        "the last good checkpoint; lower the learning rates or check the data.")


def _format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


@dataclasses.dataclass
class StageResult:
  workdir: str
  final_step: int
  preempted: bool


def _restore_or_init(stage: stages.Stage, workdir: str, config, replicated):
  """(state, start step, checkpoint manager or None); creates nothing on disk."""
  abstract = jax.eval_shape(stage.init, steps.prng_key(0))
  state_sharding = state_shardings(abstract, replicated.mesh)
  state, meta, manager = None, None, None
  if os.path.isdir(os.path.join(workdir, "checkpoints")):
    manager = checkpoints.checkpoint_manager(workdir, config.train.keep_checkpoints)
    abstract_restore = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract,
        state_sharding)
    state, meta = checkpoints.restore_checkpoint(manager, abstract_restore, stage.architecture)
  if state is None:
    state = jax.jit(stage.init, out_shardings=state_sharding)(steps.prng_key(config.seed))
    print(f"[{stage.name}] new run in {workdir}", flush=True)
    return state, state_sharding, 0, manager
  start = int(meta["step"])
  print(f"[{stage.name}] resuming {workdir} from step {start}", flush=True)
  return state, state_sharding, start, manager


def _progress_line(name, step, num_steps, rate, batch_size, metrics, prefixes) -> str:
  short = (lambda k: k.split("/")[-1]) if len(prefixes) == 1 else (lambda k: k)
  terms = " ".join(f"{short(k)}={float(v):.4g}" for k, v in sorted(metrics.items())
                   if k.startswith(prefixes))
  speed = (f"{rate:.2f} steps/s | {rate * batch_size:.1f} img/s | ETA "
           f"{_format_eta((num_steps - step) / rate)}" if rate > 0 else "compiled")
  return f"[{name}] step {step}/{num_steps} | {speed} | {terms}"


def train_stage(config: ml_collections.ConfigDict, name: str, workdir: str,
                previous: Mapping[str, str] | None = None) -> StageResult:
  """Trains stage ``name`` in ``workdir`` (resuming from its latest checkpoint); ``previous``
  maps the stages run before it to their workdirs."""
  from clu import periodic_actions  # pylint: disable=import-outside-toplevel

  tc = config.train
  num_steps = int(tc.num_steps[name])
  mesh = make_mesh()
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P("data"))
  if tc.batch_size % jax.device_count():
    raise ValueError(f"train.batch_size {tc.batch_size} must be divisible by the "
                     f"{jax.device_count()} devices")
  stage = stages.build(name, config, workdir, previous)
  # From host memory, so that every process places its (identical) copy of the replicated tree.
  frozen = jax.device_put(jax.device_get(stage.frozen), replicated)
  state, state_sharding, start, manager = _restore_or_init(stage, workdir, config, replicated)
  data_iter = stage.batches(start)   # bad data fails here, before anything is written
  local = next(data_iter)
  os.makedirs(workdir, exist_ok=True)
  if manager is None:
    manager = checkpoints.checkpoint_manager(workdir, tc.keep_checkpoints)
  if jax.process_index() == 0 and stage.describe is not None:
    print(f"[{name}] {stage.describe(state)}", flush=True)

  compiled_steps = {}

  def train_step(state, batch, frozen, rng, step):
    """The jitted step of ``step``'s phase (one compiled function per phase)."""
    phase = stage.step_phase(step) if stage.step_phase is not None else None
    if phase not in compiled_steps:
      fn = stage.step if phase is None else functools.partial(stage.step, phase=phase)
      compiled_steps[phase] = jax.jit(
          fn, in_shardings=(state_sharding, batch_sharding, replicated, replicated),
          out_shardings=(state_sharding, replicated), donate_argnums=(0,))
    return compiled_steps[phase](state, batch, frozen, rng)

  def global_batch(local):
    return {k: jax.make_array_from_process_local_data(batch_sharding, np.asarray(v))
            for k, v in local.items()}

  writer = tensorboard_writer.create_default_writer(workdir,
                                                   just_logging=jax.process_index() > 0)
  report = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=writer)
  preview_batch, preview_fn = None, None
  base_rng = steps.prng_key(config.seed + 1)
  interruption = _Interruption()
  meta_base = {"architecture": stage.architecture,
               "config": json.loads(config.to_json_best_effort())}
  save = lambda step: checkpoints.save_checkpoint(manager, step, state,
                                                  {**meta_base, "step": step})
  t_start, step_start = time.time(), start
  step = start
  preempted = False
  if step < num_steps:
    print(f"[{name}] compiling the train step (the first step; minutes for large networks on "
          "CPU) ...", flush=True)
  try:
    while step < num_steps:
      batch = global_batch(local if local is not None else next(data_iter))
      local = None
      if preview_batch is None:
        preview_batch = batch
      state, metrics = train_step(state, batch, frozen, jax.random.fold_in(base_rng, step), step)
      metrics = jax.device_get(metrics)          # also blocks: one step at a time
      step += 1
      if step == start + 1:                       # rates exclude the first step's compile
        t_start, step_start = time.time(), step
      _check_finite(metrics, step)
      report(step)
      if step % tc.log_every == 0 or step == num_steps:
        elapsed = time.time() - t_start
        rate = (step - step_start) / elapsed if step > step_start and elapsed > 0 else 0.0
        scalars = {k: float(v) for k, v in metrics.items()}
        if rate > 0:
          scalars["perf/steps_per_sec"] = rate
          scalars["perf/images_per_sec"] = rate * tc.batch_size
        writer.write_scalars(step, scalars)
        print(_progress_line(name, step, num_steps, rate, tc.batch_size, metrics,
                             stage.log_prefixes), flush=True)
      if stage.preview is not None and tc.sample_every and (
          step % tc.sample_every == 0 or step == num_steps):
        preview_fn = preview_fn or jax.jit(stage.preview)
        write_preview(workdir, step, name, preview_fn, state, preview_batch, frozen)
      if step % tc.checkpoint_every == 0 or step == num_steps:
        save(step)
      if interruption.reached(step):
        if step % tc.checkpoint_every and step != num_steps:
          save(step)
        print(f"[{name}] {interruption.requested}: saved step {step} and stopped; run the same "
              "command again to resume", flush=True)
        preempted = True
        break
  finally:
    interruption.close()
    writer.flush()
    manager.close()
  print(f"[{name}] params checksum {params_checksum(state.g_params):.12e}", flush=True)
  return StageResult(workdir, step, preempted)


def params_checksum(params) -> float:
  """Sum of |p| over this process's copy of replicated params (float64): a cheap fingerprint
  that lets processes, devices and resumed runs be compared from their logs."""
  return float(sum(np.abs(np.asarray(x.addressable_shards[0].data, np.float64)).sum()
                   for x in jax.tree.leaves(params)))


# ----------------------------------------------------------------------------------------------
# Sample grids
# ----------------------------------------------------------------------------------------------

def write_preview(workdir, step, name, preview_fn, state, batch, frozen) -> None:
  params = state.ema_params if state.ema_params is not None else state.g_params
  columns = preview_fn(params, state.g_collections, frozen, batch)
  # A collective: every process gathers, process 0 writes.
  columns = [np.asarray(multihost_utils.process_allgather(c, tiled=True))[:8] for c in columns]
  if jax.process_index() != 0:
    return
  n = columns[0].shape[0]
  rows = np.stack(columns, axis=1).reshape((n * len(columns),) + columns[0].shape[1:])
  path = os.path.join(workdir, "samples", f"{name}_{step:07d}.png")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image_io.save_png(path, image_io.make_grid(rows, ncol=len(columns)))


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------

def run(config: ml_collections.ConfigDict, workdir: str) -> list[StageResult]:
  """Runs every stage of ``config.stages`` in order; returns their results. With several
  stages each gets its own sub-directory of the workdir."""
  names = tuple(config.stages)
  unknown = [s for s in names if s not in stages.NAMES]
  if unknown or not names:
    raise ValueError(f"config.stages must name stages among {stages.NAMES}, got {names}")
  workdir = check_workdir(workdir)
  results, previous = [], {}
  for name in names:
    stage_dir = os.path.join(workdir, name) if len(names) > 1 else workdir
    t0 = time.time()
    with precision.scope(config.get("precision")):
      result = train_stage(config, name, stage_dir, previous)
    print(f"[{name}] done at step {result.final_step} in {time.time() - t0:.1f} s "
          f"({stage_dir})", flush=True)
    results.append(result)
    previous[name] = stage_dir
    if result.preempted:
      break
  return results


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _WORKDIR.value is None:
    raise app.UsageError("--workdir is required")
  if _CONFIG.value is None:
    raise app.UsageError("--config is required (e.g. --config configs/demo.py)")
  maybe_initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  cli.enable_compilation_cache(flags.FLAGS.compilation_cache)   # a resumed run skips compiling
  print(f"devices: {jax.device_count()} ({jax.devices()[0].platform}) over "
        f"{jax.process_count()} process(es)", flush=True)
  try:
    results = run(_CONFIG.value, _WORKDIR.value)
  except KeyboardInterrupt:
    print("stopped at once (second Ctrl-C); the workdir keeps its last checkpoint",
          file=sys.stderr, flush=True)
    return 130
  return EXIT_PREEMPTED if results and results[-1].preempted else 0


if __name__ == "__main__":
  cli.run(main, user_errors=(NonFiniteLossError, checkpoints.WorkdirMismatchError,
                             FileNotFoundError, sources.DataError))
