"""DiFAI train step: images/s, peak memory, FLOPs per step, achieved FLOP/s and MFU, and the
input pipeline's images/s against the step's.

  python -m benchmarks.train_step [--config demo|celebahq] [--batch 8] [--steps 5] [--quick]
      [--psp config|ffhq] [--pipeline_seconds 5] [--write_results]

Builds the step exactly as ``difai_jax.train`` does (``steps.difai_train_step`` jitted over the
``data`` mesh with the same shardings and donation; frozen coarse net, pSp, VGG-19 and SeFa
directions; random weights via ``pretrained.random_init``), feeds batches from the real input
pipeline (``data.pipeline.make_train_iterator``, toy faces + training masks), and reports:

* images/s: median step time after the compiling first step, batch / time;
* FLOPs per step from XLA's cost analysis of the compiled step (``compiled.cost_analysis()``),
  achieved FLOP/s = FLOPs / median step time, MFU = achieved / the device's peak (table below);
* peak memory: XLA's ``memory_analysis()`` of the step (arguments + outputs + temporaries -
  donated aliases), plus the device's ``peak_bytes_in_use`` on GPU/TPU or the process' peak RSS
  on CPU;
* the input pipeline's images/s at the same size and batch (toy source, the config's workers)
  and its ratio to the step's images/s (it must stay >= 2x so that it never starves the step).

Default: ``demo`` config (64 px) on CPU; ``celebahq`` (256 px, the paper's widths) where a GPU
or TPU is present.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import jax
import numpy as np

from difai_jax.nn import precision
from difai_jax.training.stages import inpainting
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from benchmarks import common
from benchmarks import difai_setup
from benchmarks import peaks

SECTION = "DiFAI train step"


def build_step(config, psp: str):
  """(jitted step, state, frozen, shardings, networks) as difai_jax.train builds them."""
  from difai_jax import mesh as mesh_lib  # pylint: disable=import-outside-toplevel
  from difai_jax.training import loop as train  # pylint: disable=import-outside-toplevel
  nets = difai_setup.build(config, psp)
  mesh = mesh_lib.make_mesh()
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P("data"))
  init_fn, step_fn = inpainting.difai_step_functions(config, nets.models, nets.critic, nets.vgg)
  abstract = jax.eval_shape(init_fn, jax.random.key(0))
  state_sharding = train.state_shardings(abstract, mesh)
  state = jax.jit(init_fn, out_shardings=state_sharding)(jax.random.key(config.seed))
  frozen = jax.device_put(nets.frozen, replicated)
  jitted = jax.jit(step_fn, in_shardings=(state_sharding, batch_sharding, replicated,
                                          replicated),
                   out_shardings=(state_sharding, replicated), donate_argnums=(0,))
  return jitted, state, frozen, batch_sharding, nets


def pipeline_rate(config, batch: int, seconds: float, workers: int | None) -> float:
  """Images/s of the training input pipeline at the step's size and batch."""
  from difai_jax.data import loader as data_pipeline  # pylint: disable=import-outside-toplevel
  it = data_pipeline.make_train_iterator(config.data, image_size=config.image_size,
                                         global_batch_size=batch, seed=0, process_index=0,
                                         process_count=1, num_workers=workers, verbose=False)
  next(it)   # start-up
  n, t0 = 0, time.perf_counter()
  while time.perf_counter() - t0 < seconds:
    n += next(it)["image"].shape[0]
  return n / (time.perf_counter() - t0)


def device_peak_memory() -> tuple[float, str]:
  dev = jax.devices()[0]
  stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
  if stats and "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"], "device peak_bytes_in_use"
  # Linux reports ru_maxrss in KiB.
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0, "process peak RSS"


def main(argv=None) -> int:
  on_accelerator = jax.devices()[0].platform != "cpu"
  parser = argparse.ArgumentParser(prog="python -m benchmarks.train_step",
                                   description=__doc__.split("\n", maxsplit=1)[0])
  parser.add_argument("--config", default="celebahq" if on_accelerator else "demo",
                      choices=("demo", "celebahq"))
  parser.add_argument("--batch", type=int, default=0, help="global batch (default: config's)")
  parser.add_argument("--steps", type=int, default=5, help="timed steps after the first")
  parser.add_argument("--psp", default="config", choices=("config", "ffhq"),
                      help="frozen pSp: the config's small random one, or a random one of the "
                      "FFHQ shape (IR-SE50 + 1024 px decoder) as the paper runs")
  parser.add_argument("--pipeline_seconds", type=float, default=5.0)
  parser.add_argument("--workers", type=int, default=None,
                      help="input-pipeline workers (default: the config's)")
  parser.add_argument("--precision", default=None, choices=precision.POLICIES,
                      help="matmul / conv precision policy (default: the config's, 'default': "
                      "TF32 on NVIDIA GPUs, bf16 passes on TPU; 'highest': true float32)")
  parser.add_argument("--dtype", default="float32", choices=precision.DTYPES,
                      help="compute dtype of every network, frozen ones included (weights and "
                      "optimizer state stay float32)")
  parser.add_argument("--quick", action="store_true",
                      help="demo config, batch 4, 2 timed steps, 2 s of pipeline (< 1 min)")
  parser.add_argument("--write_results", "--write-results", action="store_true")
  args = parser.parse_args(argv)
  if args.quick:
    args.config, args.batch, args.steps, args.pipeline_seconds = "demo", 4, 2, 2.0

  config = difai_setup.load_config(args.config)
  with config.unlocked():
    if args.batch:
      config.train.batch_size = args.batch
    for section in (config.coarse, config.generator, config.critic):
      section.dtype = args.dtype
    config.pretrained.dtype.psp = config.pretrained.dtype.vgg19 = args.dtype
  policy = args.precision or config.precision
  compute = peaks.compute_kind(policy, args.dtype)
  batch_size, size = config.train.batch_size, config.image_size
  print(f"{common.machine()}; config {args.config} ({size} px), batch {batch_size}, precision "
        f"{policy}, dtype {args.dtype}", flush=True)

  jitted, state, frozen, batch_sharding, nets = build_step(config, args.psp)
  from difai_jax.data import loader as data_pipeline  # pylint: disable=import-outside-toplevel
  it = data_pipeline.make_train_iterator(config.data, image_size=size,
                                         global_batch_size=batch_size, seed=config.seed,
                                         process_index=0, process_count=1, num_workers=0,
                                         verbose=False)
  batches = [{k: jax.make_array_from_process_local_data(batch_sharding, np.asarray(v))
              for k, v in next(it).items()} for _ in range(2)]
  rng = jax.random.key(1)

  t0 = time.perf_counter()
  with precision.scope(policy):       # as difai_jax.train traces its step
    compiled = jitted.lower(state, batches[0], frozen, rng).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get("flops", float("nan")))
  mem = compiled.memory_analysis()
  xla_peak = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
              - mem.alias_size_in_bytes) if mem is not None else float("nan")

  # Every call goes through the AOT-compiled executable (calling `jitted` would compile again):
  # one compilation, and a shape or sharding change would raise instead of recompiling.
  state, metrics = compiled(state, batches[0], frozen, rng)    # first call: warm-up
  jax.block_until_ready(metrics)
  times = []
  for i in range(args.steps):
    t0 = time.perf_counter()
    state, metrics = compiled(state, batches[i % 2], frozen, jax.random.fold_in(rng, i))
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - t0)
  step_s = common.median(times)
  step_rate = batch_size / step_s
  achieved = flops / step_s
  peak, peak_text = peaks.device_peak_flops(compute)
  observed_mem, mem_text = device_peak_memory()
  pipe_rate = pipeline_rate(config, batch_size, args.pipeline_seconds, args.workers)
  workers = config.data.num_workers if args.workers is None else args.workers

  print(f"step {step_s * 1e3:.0f} ms (median of {args.steps}), {step_rate:.2f} img/s; compile "
        f"{compile_s:.1f} s; {flops / 1e9:.1f} GFLOP/step -> {achieved / 1e9:.1f} GFLOP/s = "
        f"{100 * achieved / peak:.1f}% of {peak / 1e9:.0f} GFLOP/s ({peak_text}); XLA memory "
        f"{xla_peak / 2**20:.0f} MiB, {mem_text} {observed_mem / 2**20:.0f} MiB; pipeline "
        f"{pipe_rate:.1f} img/s = {pipe_rate / step_rate:.1f}x the step",
        flush=True)

  device = jax.devices()[0]
  rows = [[f"{args.config} ({size} px), {device.platform}, {policy} / {args.dtype}", batch_size,
           f"{step_s * 1e3:.0f}", common.fmt(step_rate), f"{compile_s:.1f}", f"{flops / 1e9:,.1f}",
           common.fmt(achieved / 1e9), f"{100 * achieved / peak:.1f}%",
           f"{xla_peak / 2**20:,.0f}", f"{observed_mem / 2**20:,.0f}",
           f"{pipe_rate:.1f} ({workers} workers)", f"**{pipe_rate / step_rate:.1f}x**"]]
  table = common.markdown_table(
      ["config", "batch", "step ms", "img/s", "compile s", "GFLOP/step", "GFLOP/s", "MFU",
       "XLA peak MiB", f"{mem_text} MiB", "pipeline img/s", "pipeline / step"], rows)
  cmd = "python -m benchmarks.train_step " + ("--quick" if args.quick else
                                              f"--config {args.config} --batch {batch_size} "
                                              f"--steps {args.steps} --psp {args.psp}")
  cmd += f" --precision {policy} --dtype {args.dtype}"
  body = "\n".join([
      common.header(), "",
      f"`{cmd}`: `steps.difai_train_step` (n_critic {config.optim.n_critic} critic update + one "
      f"generator update, frozen coarse / pSp / VGG-19 forward inside the step) jitted as "
      f"`difai_jax.train` does; frozen pSp: {nets.description}. Median of {args.steps} steps "
      f"after the first; FLOPs from XLA's cost analysis of the compiled step; MFU against "
      f"{peak / 1e9:,.0f} GFLOP/s ({peak_text}); XLA peak = arguments + outputs + temporaries - "
      f"donated aliases from `memory_analysis()`. Pipeline: toy faces + training masks at the "
      f"same size and batch, {args.pipeline_seconds:g} s after a warm-up batch.",
      "", table])
  print(body)
  if args.write_results:
    # One section per precision; the config's own (float32 weights, its policy) keeps the name.
    default = policy == config.precision and args.dtype == "float32"
    common.write_section(SECTION if default else f"{SECTION} ({policy} / {args.dtype})", body)
  return 0


if __name__ == "__main__":
  sys.exit(main())
