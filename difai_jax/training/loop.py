"""The training loop behind ``python -m difai_jax.train --config configs/celebahq.py --workdir
DIR``.

Runs the stages named by ``config.stages`` back to back through one loop; what each stage
trains, its step, its frozen networks and its samples come from :mod:`difai_jax.training.stages`
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
import gc
import inspect
import json
import os
import signal
import sys
import threading
import time
import dataclasses
from typing import Any, Mapping

from clu import periodic_actions
import jax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import ml_collections
import numpy as np

from difai_jax import mesh as mesh_lib
from difai_jax import runtime
from difai_jax.data import image_io
from difai_jax.nn import precision
from difai_jax.training import checkpoints
from difai_jax.training import stages
from difai_jax.training import steps
from difai_jax.training import tensorboard_writer


class NonFiniteLossError(RuntimeError):
  """A loss term became NaN or Inf."""


# ----------------------------------------------------------------------------------------------
# Setup
# ----------------------------------------------------------------------------------------------

# Exit status of a run stopped by SIGTERM / SIGINT after saving (sysexits' EX_TEMPFAIL: "try
# again later"), so that a scheduler can tell a preempted run from a finished one (status 0).
EXIT_PREEMPTED = 75


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
  return runtime.check_output_dir(path, "--workdir")


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------

class _Interruption:
  """SIGTERM (TPU preemption) and SIGINT (Ctrl-C) -> save at the end of this step and stop; a
  second SIGINT stops at once. Multi-process runs use JAX's preemption sync point for SIGTERM
  (JAX catches SIGTERM itself after ``jax.distributed.initialize``)."""

  def __init__(self):
    self.requested = None
    self.abort = False     # a second Ctrl-C came (its KeyboardInterrupt may have been lost)
    self.multi = jax.process_count() > 1
    self._previous = {}
    signals = [signal.SIGINT] + ([] if self.multi else [signal.SIGTERM])
    for sig in signals:
      self._previous[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    if self.requested is not None and signum == signal.SIGINT:
      # The second Ctrl-C: stop now. Raised inside a gc callback (JAX's runs at any allocation)
      # Python would only print it: then the signal is sent again a moment later, and the
      # flag makes the loop raise it at its next check in any case.
      self.abort = True
      if _inside_gc_callback(frame):
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
        return
      raise KeyboardInterrupt
    self.requested = signal.Signals(signum).name
    if signum == signal.SIGINT:
      print("\ninterrupted: saving a checkpoint after this step (Ctrl-C again to stop now)",
            file=sys.stderr, flush=True)

  def check_abort(self) -> None:
    if self.abort:
      raise KeyboardInterrupt

  def reached(self, step: int) -> bool:
    self.check_abort()
    if self.multi and multihost_utils.reached_preemption_sync_point(step):
      self.requested = self.requested or "SIGTERM"
    return self.requested is not None

  def close(self):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _inside_gc_callback(frame) -> bool:
  """Whether `frame` or a caller of it runs one of the callbacks in `gc.callbacks` (JAX
  registers one), where an exception raised is only printed by Python."""
  codes = {getattr(getattr(cb, "__func__", cb), "__code__", None) for cb in gc.callbacks}
  codes.discard(None)
  while frame is not None:
    if frame.f_code in codes:
      return True
    frame = frame.f_back
  return False


def _check_finite(metrics: Mapping[str, Any], step: int) -> None:
  bad = sorted(k for k, v in metrics.items() if not np.all(np.isfinite(v)))
  if bad:
    raise NonFiniteLossError(
        f"step {step}: non-finite loss term(s) {bad} "
        f"({ {k: float(np.asarray(metrics[k])) for k in bad} }); stopping. The workdir keeps "
        "the last good checkpoint; lower the learning rates or check the data.")


@dataclasses.dataclass
class StageResult:
  workdir: str
  final_step: int
  preempted: bool


def _restore_or_init(stage: stages.Stage, workdir: str, config, replicated):
  """(state, its shardings, start step, checkpoint manager or None, provenance: the stage's on a
  new run, the first start's on a resume (:func:`resumed_provenance`)); creates nothing on
  disk."""
  # The state's shapes from the stage's own init: a warm-started init (pretrained.init_from,
  # functools.wraps'd) reads and checks its source, which only a new run may need.
  abstract = jax.eval_shape(inspect.unwrap(stage.init), steps.prng_key(0))
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
    source = ""
    if stage.init is not inspect.unwrap(stage.init):     # warm-started (see above)
      source = f", from the weights of {config.pretrained.init_from} (pretrained.init_from)"
    print(f"[{stage.name}] new run in {workdir}{source}", flush=True)
    return state, state_sharding, 0, manager, stage.provenance
  start = int(meta["step"])
  print(f"[{stage.name}] resuming {workdir} from step {start}", flush=True)
  provenance, warning = resumed_provenance(meta.get("provenance"), stage.provenance)
  if warning:
    print(f"[{stage.name}] warning: {warning}", flush=True)
  return state, state_sharding, start, manager, provenance


def resumed_provenance(recorded: dict | None, now: dict | None) -> tuple[dict | None, str]:
  """(the provenance a resumed run keeps, the warning to print).

  The first start's record, except where a frozen network was replaced since
  (:func:`replaced_networks`): the run trains against the one loaded now from here on, so the
  record takes its entries (a later load checks against them) and lists what it replaced
  under ``"replaced"``."""
  warning = replaced_networks(recorded, now)
  if not warning:
    return recorded, ""
  earlier = {k: v for k, v in recorded.items() if k in now}
  return {**recorded, **now, "replaced": [*recorded.get("replaced", []), earlier]}, warning


def replaced_networks(recorded: dict | None, now: dict | None) -> str:
  """What differs between the ``*fingerprint`` entries of a run's recorded provenance and the
  stage's now (a frozen network replaced under a resumed run), or "" when nothing does."""
  recorded, now = recorded or {}, now or {}
  changed = sorted(k for k in recorded if k.endswith("fingerprint") and k in now
                   and now[k] != recorded[k])
  if not changed:
    return ""
  return (f"{', '.join(f'{k} {recorded[k]} -> {now[k]}' for k in changed)} since the run "
          "started: a frozen network was replaced; the run goes on with the one loaded now")


def _progress_line(name, step, num_steps, rate, batch_size, metrics, prefixes) -> str:
  short = (lambda k: k.split("/")[-1]) if len(prefixes) == 1 else (lambda k: k)
  terms = " ".join(f"{short(k)}={float(v):.4g}" for k, v in sorted(metrics.items())
                   if k.startswith(prefixes))
  speed = (f"{rate:.2f} steps/s | {rate * batch_size:.1f} img/s | ETA "
           f"{runtime.format_eta((num_steps - step) / rate)}" if rate > 0 else "compiled")
  return f"[{name}] step {step}/{num_steps} | {speed} | {terms}"


@dataclasses.dataclass
class _Run:
  """One stage's run as the loop drives it: the stage, its state and where it goes."""
  name: str
  workdir: str
  stage: stages.Stage
  state: Any
  start: int
  num_steps: int
  frozen: Any
  manager: Any
  data_iter: Any
  first_batch: Any
  state_sharding: Any
  batch_sharding: NamedSharding
  replicated: NamedSharding
  provenance: dict | None = None


def _prepare(config: ml_collections.ConfigDict, name: str, workdir: str,
             previous: Mapping[str, str] | None) -> _Run:
  """Builds the stage, restores or initialises its state and reads the first batch; bad data
  fails here, before anything is written. Creates the workdir last."""
  tc = config.train
  mesh = mesh_lib.make_mesh()
  replicated = NamedSharding(mesh, P())
  if tc.batch_size % jax.device_count():
    raise ValueError(f"train.batch_size {tc.batch_size} must be divisible by the "
                     f"{jax.device_count()} devices")
  stage = stages.build(name, config, workdir, previous)
  # From host memory, so that every process places its (identical) copy of the replicated tree.
  frozen = jax.device_put(jax.device_get(stage.frozen), replicated)
  state, state_sharding, start, manager, provenance = _restore_or_init(stage, workdir, config,
                                                                     replicated)
  data_iter = stage.batches(start)
  first_batch = next(data_iter)
  os.makedirs(workdir, exist_ok=True)
  if manager is None:
    manager = checkpoints.checkpoint_manager(workdir, tc.keep_checkpoints)
  if jax.process_index() == 0 and stage.describe is not None:
    print(f"[{name}] {stage.describe(state)}", flush=True)
  return _Run(name, workdir, stage, state, start, int(tc.num_steps[name]), frozen, manager,
              data_iter, first_batch, state_sharding, NamedSharding(mesh, P("data")), replicated,
              provenance)


def _step_function(run: _Run):
  """``(state, batch, frozen, rng, step) -> (state, metrics)``: the jitted step of ``step``'s
  phase (one compiled function per phase)."""
  compiled = {}
  stage = run.stage

  def train_step(state, batch, frozen, rng, step):
    phase = stage.step_phase(step) if stage.step_phase is not None else None
    if phase not in compiled:
      fn = stage.step if phase is None else functools.partial(stage.step, phase=phase)
      compiled[phase] = jax.jit(
          fn, in_shardings=(run.state_sharding, run.batch_sharding, run.replicated,
                            run.replicated),
          out_shardings=(run.state_sharding, run.replicated), donate_argnums=(0,))
    return compiled[phase](state, batch, frozen, rng)
  return train_step


class _Log:
  """The progress line and TensorBoard scalars every ``train.log_every`` steps (rates exclude
  the first step's compile)."""

  def __init__(self, run: _Run, config: ml_collections.ConfigDict, writer):
    self.run, self.tc, self.writer = run, config.train, writer
    self.t_start, self.step_start = time.time(), run.start

  def __call__(self, step: int, metrics: Mapping[str, Any]) -> None:
    if step == self.run.start + 1:
      self.t_start, self.step_start = time.time(), step
    if step % self.tc.log_every and step != self.run.num_steps:
      return
    elapsed = time.time() - self.t_start
    rate = (step - self.step_start) / elapsed if step > self.step_start and elapsed > 0 else 0.0
    scalars = {k: float(v) for k, v in metrics.items()}
    if rate > 0:
      scalars["perf/steps_per_sec"] = rate
      scalars["perf/images_per_sec"] = rate * self.tc.batch_size
    self.writer.write_scalars(step, scalars)
    print(_progress_line(self.run.name, step, self.run.num_steps, rate, self.tc.batch_size,
                         metrics, self.run.stage.log_prefixes), flush=True)


# Tests only: seconds to wait between an interruption and its checkpoint, so that a second
# Ctrl-C is sure to arrive while the save is pending (tests/test_train.py).
HOLD_SAVE_ENV = "DIFAI_JAX_TEST_HOLD_SAVE_S"


def _hold_for_tests() -> None:
  seconds = float(os.environ.get(HOLD_SAVE_ENV) or 0)
  if seconds > 0:
    time.sleep(seconds)


def _loop(run: _Run, config: ml_collections.ConfigDict, writer, save) -> tuple[int, bool]:
  """Steps from ``run.start`` to ``run.num_steps``; returns (last step, preempted)."""
  tc, stage = config.train, run.stage
  train_step, log = _step_function(run), _Log(run, config, writer)
  report = periodic_actions.ReportProgress(num_train_steps=run.num_steps, writer=writer)
  base_rng = steps.prng_key(config.seed + 1)
  interruption = _Interruption()
  local, preview_batch, preview_fn, step = run.first_batch, None, None, run.start
  try:
    while step < run.num_steps:
      batch = {k: jax.make_array_from_process_local_data(run.batch_sharding, np.asarray(v))
               for k, v in (local if local is not None else next(run.data_iter)).items()}
      local, preview_batch = None, preview_batch or batch
      run.state, metrics = train_step(run.state, batch, run.frozen,
                                      jax.random.fold_in(base_rng, step), step)
      metrics = jax.device_get(metrics)          # also blocks: one step at a time
      step += 1
      _check_finite(metrics, step)
      report(step)
      log(step, metrics)
      if stage.preview is not None and tc.sample_every and (
          step % tc.sample_every == 0 or step == run.num_steps):
        preview_fn = preview_fn or jax.jit(stage.preview)
        write_preview(run.workdir, step, run.name, preview_fn, run.state, preview_batch,
                      run.frozen)
      if step % tc.checkpoint_every == 0 or step == run.num_steps:
        save(step)
      if interruption.reached(step):
        _hold_for_tests()
        interruption.check_abort()
        if step % tc.checkpoint_every and step != run.num_steps:
          save(step)
        print(f"[{run.name}] {interruption.requested}: saved step {step} and stopped; run the "
              "same command again to resume", flush=True)
        return step, True
  finally:
    interruption.close()
  return step, False


def train_stage(config: ml_collections.ConfigDict, name: str, workdir: str,
                previous: Mapping[str, str] | None = None) -> StageResult:
  """Trains stage ``name`` in ``workdir`` (resuming from its latest checkpoint); ``previous``
  maps the stages run before it to their workdirs."""
  run = _prepare(config, name, workdir, previous)
  writer = tensorboard_writer.create_default_writer(workdir,
                                                   just_logging=jax.process_index() > 0)
  meta_base = {"architecture": run.stage.architecture,
               "config": json.loads(config.to_json_best_effort())}
  if run.provenance is not None:
    meta_base["provenance"] = run.provenance
  save = lambda step: checkpoints.save_checkpoint(run.manager, step, run.state,
                                                  {**meta_base, "step": step})
  if run.start < run.num_steps:
    print(f"[{name}] compiling the train step (the first step; minutes for large networks on "
          "CPU) ...", flush=True)
  try:
    step, preempted = _loop(run, config, writer, save)
  finally:
    writer.flush()
    run.manager.close()
  print(f"[{name}] params checksum {params_checksum(run.state.network[0]):.12e}", flush=True)
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
  params, collections = state.network
  if state.ema_params is not None:
    params = state.ema_params
  columns = preview_fn(params, collections, frozen, batch)
  # A collective: every process gathers, process 0 writes.
  columns = [np.asarray(multihost_utils.process_allgather(c, tiled=True))[:8] for c in columns]
  if jax.process_index() != 0:
    return
  n = columns[0].shape[0]
  rows = np.stack(columns, axis=1).reshape((n * len(columns),) + columns[0].shape[1:])
  path = os.path.join(workdir, "samples", f"{name}_{step:07d}.png")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image_io.save_png(path, image_io.make_grid(rows, ncol=len(columns)))


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
