"""Training entry point: ``python -m difai_jax.train --config configs/celebahq.py --workdir DIR``.

Runs the stages named by ``config.stages`` back to back (``coarse``: the coarse net; ``difai``:
the SPARN generator and critic with frozen coarse net, pSp, StyleGAN2 and VGG-19). With several
stages each gets its own sub-directory of the workdir (``DIR/coarse``, ``DIR/difai``) and the
DiFAI stage loads the coarse net the first stage trained.

The same code runs on one CPU, one GPU or a multi-host TPU pod: one ``jax.jit``-ed step over a
mesh with a single ``data`` axis spanning every device of every host (params replicated, batch
split), ``jax.distributed.initialize()`` on multi-host launches, and each host feeding only its
own data shard (``jax.make_array_from_process_local_data``).

Checkpoints (orbax ``CheckpointManager``, atomic, last ``keep`` kept) hold the train state and
JSON metadata (the architecture and the data position); a run resumes from its workdir
automatically and takes exactly the steps it would have taken. SIGTERM (TPU preemption) saves a
checkpoint and exits; a non-finite loss stops the run naming the step and term, keeping the last
good checkpoint.
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
from absl import logging
import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import ml_collections
from ml_collections import config_flags
import numpy as np

from difai_jax import checkpoints
from difai_jax import image_io
from difai_jax import pipeline
from difai_jax import sefa as sefa_lib
from difai_jax import steps
from difai_jax.data import pipeline as data_pipeline
from difai_jax.models import coarse as coarse_lib
from difai_jax.models import critic as critic_lib
from difai_jax.models import sparn as sparn_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "training config file",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "directory for checkpoints, logs and samples")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "multi-process runs: host:port of process 0 (otherwise "
                                   "auto-detected on TPU pods)")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "multi-process runs")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "multi-process runs")


class NonFiniteLossError(RuntimeError):
  """A loss term became NaN or Inf."""


# ----------------------------------------------------------------------------------------------
# Setup
# ----------------------------------------------------------------------------------------------

def maybe_initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                                 process_id: int | None = None) -> None:
  """``jax.distributed.initialize`` for multi-process launches; a no-op on one host."""
  if coordinator:
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
  elif len(os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",")) > 1 or os.environ.get(
      "JAX_COORDINATOR_ADDRESS"):
    jax.distributed.initialize()   # TPU pod slices / cluster environments auto-detect


def make_mesh() -> jax.sharding.Mesh:
  """A 1-d mesh with axis ``data`` over every device of every host (GSPMD ``Auto`` axis: the
  compiler propagates the batch sharding through the model)."""
  return jax.make_mesh((jax.device_count(),), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))


def build_generator(config, stage: str):
  if stage == "coarse":
    return coarse_lib.from_config(config.coarse)
  return sparn_lib.from_config(config.generator)


def step_config(config: ml_collections.ConfigDict, stage: str) -> steps.StepConfig:
  lambdas = tuple(sorted(config.loss.lambdas.to_dict().items()))
  sc = config.sefa
  return steps.StepConfig(
      lambdas=lambdas, lambda_gp=config.critic.lambda_gp, n_critic=config.optim.n_critic,
      ema_decay=config.train.ema_decay, ms_ssim_weights=tuple(config.loss.ms_ssim_weights),
      coarse_loss_kwargs=tuple(sorted(coarse_lib.loss_kwargs(config.coarse).items())),
      sefa=pipeline.SefaSampling(num_edits=sc.num_edits, top_k=sc.top_k,
                                 min_degree=sc.min_degree, max_degree=sc.max_degree,
                                 layers=tuple(sc.layers) if sc.layers else None))


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------

class _Preemption:
  """SIGTERM -> save and stop. Multi-process runs use JAX's preemption sync point instead (JAX
  catches SIGTERM itself after ``jax.distributed.initialize``)."""

  def __init__(self):
    self.requested = False
    self.multi = jax.process_count() > 1
    if not self.multi:
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def reached(self, step: int) -> bool:
    if self.multi:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.requested

  def close(self):
    if not self.multi:
      signal.signal(signal.SIGTERM, self._previous)


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


def train_stage(config: ml_collections.ConfigDict, stage: str, workdir: str,
                coarse_workdir: str | None = None) -> StageResult:
  """Trains one stage in ``workdir`` (resuming from its latest checkpoint)."""
  from clu import metric_writers  # pylint: disable=import-outside-toplevel
  from clu import parameter_overview  # pylint: disable=import-outside-toplevel
  from clu import periodic_actions  # pylint: disable=import-outside-toplevel

  os.makedirs(workdir, exist_ok=True)
  tc = config.train
  num_steps = int(tc.num_steps[stage])
  mesh = make_mesh()
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P("data"))
  n_dev = jax.device_count()
  if tc.batch_size % n_dev:
    raise ValueError(f"train.batch_size {tc.batch_size} must be divisible by the {n_dev} devices")
  size = config.image_size
  arch = checkpoints.architecture(config, stage)
  cfg = step_config(config, stage)

  generator = build_generator(config, stage)
  use_critic = stage == "difai" or bool(config.coarse.lambda_adv)
  critic = critic_lib.from_config(config.critic) if use_critic else None
  g_tx = steps.adam(config.optim.g_lr, config.optim.b1, config.optim.b2, config.optim.grad_clip)
  d_tx = steps.adam(config.optim.d_lr, config.optim.b1, config.optim.b2, config.optim.grad_clip)

  # ---- frozen networks (stage difai) ----
  frozen: dict[str, Any] = {}
  models = None
  vgg = None
  if stage == "difai":
    coarse_dir = coarse_workdir or config.pretrained.coarse_workdir
    if not coarse_dir:
      raise FileNotFoundError("config.pretrained.coarse_workdir is not set: train the coarse "
                              "stage first (configs/celebahq_coarse.py) and point to its workdir")
    coarse_params, _ = checkpoints.load_stage_params(coarse_dir)
    frozen["coarse"] = {"params": coarse_params}
    psp, frozen["psp"] = checkpoints.load_pretrained(config, "psp")
    vgg, frozen["vgg"] = checkpoints.load_pretrained(config, "vgg19")
    factors = sefa_lib.cached(os.path.join(workdir, "sefa.npz"),
                              frozen["psp"]["params"]["decoder"], config.sefa.method,
                              config.sefa.factor_layers)
    frozen["sefa"] = factors.directions
    models = pipeline.Models(coarse=coarse_lib.from_config(config.coarse), psp=psp,
                             generator=generator, image_size=size)
    logging.info("SeFa (%s) top eigenvalues: %s", factors.method,
                 np.round(np.asarray(factors.values[:5]), 3))
  # From host memory, so that every process places its (identical) copy of the replicated tree.
  frozen = jax.device_put(jax.device_get(frozen), replicated)

  # ---- state ----
  image_shape = (1, size, size, 3)
  if stage == "coarse":
    g_inputs = (jnp.zeros(image_shape), jnp.ones(image_shape[:3] + (1,)))
  else:
    g_inputs = (jnp.zeros(image_shape), jnp.zeros(image_shape), jnp.ones(image_shape[:3] + (1,)))
  init_fn = functools.partial(steps.init_state, generator, g_inputs, critic, image_shape, g_tx,
                              d_tx, use_ema=bool(tc.ema_decay))
  abstract = jax.eval_shape(init_fn, steps.prng_key(0))
  state_sharding = jax.tree.map(lambda _: replicated, abstract)
  manager = checkpoints.checkpoint_manager(workdir, tc.keep_checkpoints)
  abstract_restore = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), abstract)
  state, meta = checkpoints.restore_checkpoint(manager, abstract_restore, arch)
  if state is None:
    state = jax.jit(init_fn, out_shardings=state_sharding)(steps.prng_key(config.seed))
    start = 0
    print(f"[{stage}] new run in {workdir}")
  else:
    start = int(meta["step"])
    print(f"[{stage}] resuming {workdir} from step {start}")
  if jax.process_index() == 0:
    parameter_overview.log_parameter_overview(state.g_params, msg=f"{stage} trained network")
    n_params = sum(x.size for x in jax.tree.leaves(state.g_params))
    print(f"[{stage}] trained network: {n_params:,} parameters"
          + (f"; critic {sum(x.size for x in jax.tree.leaves(state.d_params)):,}"
             if use_critic else ""))

  # ---- the jitted step ----
  if stage == "coarse":
    step_fn = functools.partial(steps.coarse_train_step, coarse=generator, critic=critic,
                                g_tx=g_tx, d_tx=d_tx, cfg=cfg)
  else:
    step_fn = functools.partial(steps.difai_train_step, models=models, critic=critic, vgg=vgg,
                                g_tx=g_tx, d_tx=d_tx, cfg=cfg)
  train_step = jax.jit(step_fn, in_shardings=(state_sharding, batch_sharding, replicated,
                                              replicated),
                       out_shardings=(state_sharding, replicated), donate_argnums=(0,))

  # ---- data ----
  data_iter = data_pipeline.make_train_iterator(
      config.data, image_size=size, global_batch_size=tc.batch_size, seed=config.seed,
      start_step=start, verbose=jax.process_index() == 0)

  def global_batch(local):
    return {k: jax.make_array_from_process_local_data(batch_sharding, np.asarray(v))
            for k, v in local.items()}

  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  report = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=writer)
  preview = None
  preview_fn = None
  base_rng = steps.prng_key(config.seed + 1)
  preemption = _Preemption()
  meta_base = {"architecture": arch, "config": json.loads(config.to_json_best_effort())}
  t_start, step_start = time.time(), start
  step = start
  preempted = False
  try:
    while step < num_steps:
      local = next(data_iter)
      batch = global_batch(local)
      if preview is None:
        preview = batch
      rng = jax.random.fold_in(base_rng, step)
      state, metrics = train_step(state, batch, frozen, rng)
      metrics = jax.device_get(metrics)          # also blocks: one step at a time
      step += 1
      if step == start + 1:                       # rates exclude the first step's compile
        t_start, step_start = time.time(), step
      _check_finite(metrics, step)
      report(step)
      if step % tc.log_every == 0 or step == num_steps:
        elapsed = time.time() - t_start
        rate = (step - step_start) / elapsed if step > step_start else float("nan")
        scalars = {k: float(v) for k, v in metrics.items()}
        if rate > 0:
          scalars["perf/steps_per_sec"] = rate
          scalars["perf/images_per_sec"] = rate * tc.batch_size
        writer.write_scalars(step, scalars)
        terms = " ".join(f"{k.split('/')[-1]}={float(v):.4g}" for k, v in sorted(metrics.items())
                         if k.startswith(("g/", "coarse/")))
        speed = (f"{rate:.2f} steps/s | {rate * tc.batch_size:.1f} img/s | ETA "
                 f"{_format_eta((num_steps - step) / rate)}" if rate > 0 else "compiled")
        print(f"[{stage}] step {step}/{num_steps} | {speed} | {terms}", flush=True)
      if tc.sample_every and (step % tc.sample_every == 0 or step == num_steps):
        if preview_fn is None:
          preview_fn = _make_preview_fn(stage, config, models, generator, cfg)
        write_preview(workdir, step, stage, preview_fn, state, preview, frozen)
      if step % tc.checkpoint_every == 0 or step == num_steps:
        checkpoints.save_checkpoint(manager, step, state, {**meta_base, "step": step})
      if preemption.reached(step):
        checkpoints.save_checkpoint(manager, step, state, {**meta_base, "step": step})
        print(f"[{stage}] preemption signal: saved step {step} and stopped", flush=True)
        preempted = True
        break
  finally:
    preemption.close()
    writer.flush()
    manager.close()
  print(f"[{stage}] params checksum {params_checksum(state.g_params):.12e}", flush=True)
  return StageResult(workdir, step, preempted)


def params_checksum(params) -> float:
  """Sum of |p| over this process's copy of replicated params (float64): a cheap fingerprint
  that lets processes, devices and resumed runs be compared from their logs."""
  return float(sum(np.abs(np.asarray(x.addressable_shards[0].data, np.float64)).sum()
                   for x in jax.tree.leaves(params)))


# ----------------------------------------------------------------------------------------------
# Sample grids
# ----------------------------------------------------------------------------------------------

def _make_preview_fn(stage, config, models, generator, cfg: steps.StepConfig):
  if stage == "coarse":
    @jax.jit
    def coarse_preview(g_params, g_collections, frozen, batch):
      del g_collections, frozen
      i_masked = pipeline.masked_image(batch["image"], batch["mask"])
      coarse = pipeline.coarse_completion(generator, {"params": g_params}, i_masked,
                                          batch["mask"])
      return [i_masked, coarse, batch["image"]]
    return coarse_preview

  alpha = cfg.sefa.num_edits

  @jax.jit
  def difai_preview(g_params, g_collections, frozen, batch):
    n = batch["image"].shape[0]
    # Fixed, evenly spread edits: direction i, degrees alternating in sign.
    components = jnp.broadcast_to(jnp.arange(alpha, dtype=jnp.int32), (n, alpha))
    degrees = jnp.broadcast_to(
        cfg.sefa.max_degree * jnp.where(jnp.arange(alpha) % 2 == 0, 1.0, -1.0), (n, alpha))
    variables = {**frozen, "generator": {"params": g_params, **g_collections}}
    out = pipeline.inpaint(models, variables, batch["image"], batch["mask"], components,
                           degrees, cfg.sefa.layers)
    return ([out["i_masked"], out["i_coarse"], out["i_style"][0]]
            + [c for c in out["completions"]] + [batch["image"]])
  return difai_preview


def write_preview(workdir, step, stage, preview_fn, state, batch, frozen) -> None:
  params = state.ema_params if state.ema_params is not None else state.g_params
  columns = preview_fn(params, state.g_collections, frozen, batch)
  # A collective: every process gathers, process 0 writes.
  columns = [np.asarray(multihost_utils.process_allgather(c, tiled=True))[:8] for c in columns]
  if jax.process_index() != 0:
    return
  n = columns[0].shape[0]
  rows = np.stack(columns, axis=1).reshape((n * len(columns),) + columns[0].shape[1:])
  path = os.path.join(workdir, "samples", f"{stage}_{step:07d}.png")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image_io.save_png(path, image_io.make_grid(rows, ncol=len(columns)))


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------

def run(config: ml_collections.ConfigDict, workdir: str) -> list[StageResult]:
  """Runs every stage of ``config.stages`` in order; returns their results."""
  stages = tuple(config.stages)
  unknown = [s for s in stages if s not in ("coarse", "difai")]
  if unknown or not stages:
    raise ValueError(f"config.stages must name 'coarse' and/or 'difai', got {stages}")
  workdir = os.path.abspath(workdir)
  results = []
  for stage in stages:
    stage_dir = os.path.join(workdir, stage) if len(stages) > 1 else workdir
    coarse_dir = results[0].workdir if stage == "difai" and results else None
    t0 = time.time()
    result = train_stage(config, stage, stage_dir, coarse_workdir=coarse_dir)
    print(f"[{stage}] done at step {result.final_step} in {time.time() - t0:.1f} s "
          f"({stage_dir})", flush=True)
    results.append(result)
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
  logging.set_verbosity(logging.WARNING)
  maybe_initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  print(f"devices: {jax.device_count()} ({jax.devices()[0].platform}) over "
        f"{jax.process_count()} process(es)", flush=True)
  try:
    run(_CONFIG.value, _WORKDIR.value)
  except (NonFiniteLossError, checkpoints.WorkdirMismatchError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
