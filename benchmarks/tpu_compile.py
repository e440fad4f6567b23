"""Compiles the real DiFAI train step for a TPU pod this machine does not have.

  python -m benchmarks.tpu_compile --topology v5e:4x4 [--config celebahq] [--psp ffhq]
      [--batch_per_chip N | --find_max_batch] [--probe_only] [--variant KEY=VALUE,...]
      [--mfu 0.4] [--write_results]

``--topology`` takes one or several TPU topologies separated by commas (``v5e:4x4``,
``v5e:16x16``, ``v4:2x2x2``, ``v5p:4x4x4``, ``v6e:4x4``, ...). For each, libtpu (the version
``jax[tpu]`` pins for this jax: ``pip install libtpu`` or ``pip install "jax[tpu]"``) describes
the topology's chips through ``jax.experimental.topologies.get_topology_desc`` and XLA:TPU
compiles the step ahead of time for them, on this CPU machine. Nothing runs and no array is
made: the train state, the frozen networks and the batch are ``jax.ShapeDtypeStruct``s with
shardings.

What is compiled is what ``difai_jax.train`` runs for the ``difai`` stage:
``stages.inpainting.difai_step_functions`` (``steps.difai_train_step``: frozen coarse net, pSp
encoder, 1 + alpha StyleGAN2 decodes, n_critic critic updates and one generator update with
VGG-19 losses) jitted over ``mesh.make_mesh`` of all the topology's chips (axis ``data``, batch
split, state replicated as ``train.state_shardings`` places it),
the same in / out shardings and donation, under the config's precision policy. With ``--psp
ffhq`` (default) the frozen pSp has the shape of the paper's FFHQ encoder (IR-SE50, 18 styles,
1024 px config-f decoder).

Reported per chip: XLA's ``memory_analysis()`` (arguments = state + frozen + batch shard;
peak = arguments + outputs + temporaries - donated aliases) against the chip's HBM, the step's
FLOPs from ``cost_analysis()`` (per chip; x chips for the step), and the step time those FLOPs
take at a stated MFU of the chip's bf16 peak (``benchmarks/peaks.py``; the configs' "default"
precision runs float32 convs as one bf16 pass on TPU). ``--find_max_batch`` finds the largest
per-chip batch that compiles within HBM (a few compiles: memory grows linearly with the batch,
so two compiles predict the answer and one or two more confirm it).
"""

from __future__ import annotations

import argparse
import ast
import copy
import dataclasses
import importlib.util
import math
import os
import re
import sys
import time
from typing import Any

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from benchmarks import common
from benchmarks import difai_setup
from benchmarks import peaks

SECTION = "DiFAI train step compiled for TPU pods"
GIB = 2 ** 30


@dataclasses.dataclass(frozen=True)
class Chip:
  """A TPU generation: HBM per chip (Cloud TPU system-architecture pages) and its row of
  ``peaks.PEAKS_TFLOPS``; ``megacore``: one JAX device per chip spanning both TensorCores
  (how Cloud TPU runs v4 and v5p)."""
  hbm_gib: float
  peak_key: str
  megacore: bool = False

  @property
  def peak_flops(self) -> float:
    return peaks.PEAKS_TFLOPS[self.peak_key][2] * 1e12


CHIPS = {
    "v4": Chip(32.0, "TPU v4", megacore=True),
    "v5e": Chip(16.0, "TPU v5e"),
    "v5p": Chip(95.0, "TPU v5p", megacore=True),
    "v6e": Chip(32.0, "TPU v6"),
}


def topology_devices(name: str) -> tuple[list[Any], Chip]:
  """(compile-only devices, chip) of a topology name such as ``v5e:4x4`` or ``v4:2x2x2``."""
  generation = name.split(":", 1)[0]
  if generation not in CHIPS or ":" not in name:
    raise ValueError(f"--topology {name!r}: expected GENERATION:AxB[xC] with GENERATION one of "
                     f"{', '.join(CHIPS)} (e.g. v5e:4x4, v4:2x2x2)")
  if importlib.util.find_spec("libtpu") is None:
    raise ValueError(f"compiling for TPU needs libtpu: pip install \"jax[tpu]=={jax.__version__}\""
                     " (or the libtpu version it pins); no TPU is needed")
  # No TPU metadata server to ask on a CPU machine; the topology name says everything.
  os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
  from jax.experimental import topologies  # pylint: disable=import-outside-toplevel
  chip = CHIPS[generation]
  kwargs = {"chip_config_name": "megacore"} if chip.megacore else {}
  try:
    topology = topologies.get_topology_desc(name, "tpu", **kwargs)
  except jax.errors.JaxRuntimeError as e:
    raise ValueError(f"--topology {name!r}: {str(e).splitlines()[0]}") from None
  return list(topology.devices), chip


@dataclasses.dataclass
class Result:
  """One compile of the step at one per-chip batch."""
  batch_per_chip: int
  compiled: bool
  compile_s: float                        # wall
  compile_cpu_s: float                    # this process's CPU time (every thread)
  flops_per_chip: float = float("nan")
  argument_bytes: float = float("nan")
  temp_bytes: float = float("nan")
  peak_bytes: float = float("nan")        # arguments + outputs + temporaries - aliases
  code_bytes: float = float("nan")
  error: str = ""

  def fits(self, hbm_bytes: float) -> bool:
    return self.compiled and self.peak_bytes + self.code_bytes <= hbm_bytes


def _out_of_memory(error: Exception) -> bool:
  text = str(error)
  return "RESOURCE_EXHAUSTED" in text or "Ran out of memory" in text or "out of memory" in text


# XLA:TPU's early out-of-memory check: "the total memory required for HLO temporaries (43.30M)
# exceeds available HBM (1.00M)" (sizes in XLA's binary K / M / G units).
_TEMPORARIES = re.compile(r"HLO temporaries \(([0-9.]+)([KMGT]?)\)")
_UNITS = {"": 1, "K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40}


def temporaries_from_error(text: str) -> float | None:
  """Bytes of HLO temporaries an out-of-memory compile error reports (None if it does not)."""
  match = _TEMPORARIES.search(text)
  return float(match.group(1)) * _UNITS[match.group(2)] if match else None


@dataclasses.dataclass
class Probe:
  """A quick memory estimate: the compile stopped by XLA:TPU's early out-of-memory check."""
  batch_per_chip: int
  argument_bytes: float       # state + frozen + batch shard, from the shapes and shardings
  temp_bytes: float           # the temporaries the compiler's check reports
  seconds: float              # wall
  cpu_s: float                # this process's CPU time

  @property
  def bytes(self) -> float:
    return self.argument_bytes + self.temp_bytes


class StepCompiler:
  """The DiFAI step of ``config`` over a mesh of ``devices``, compiled for a per-chip batch."""

  def __init__(self, config, nets: difai_setup.Networks, devices):
    from difai_jax.training import steps  # pylint: disable=import-outside-toplevel
    from difai_jax import mesh as mesh_lib  # pylint: disable=import-outside-toplevel
    from difai_jax.training import loop as train  # pylint: disable=import-outside-toplevel
    from difai_jax.training.stages import inpainting  # pylint: disable=import-outside-toplevel
    self.config = config
    self.mesh = mesh_lib.make_mesh(devices)
    self.num_devices = len(devices)
    replicated = NamedSharding(self.mesh, P())
    self.batch_sharding = NamedSharding(self.mesh, P("data"))
    init_fn, step_fn = inpainting.difai_step_functions(config, nets.models, nets.critic,
                                                       nets.vgg)
    abstract_state = jax.eval_shape(init_fn, steps.prng_key(0))
    self.state_sharding = train.state_shardings(abstract_state, self.mesh)
    place = lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s)
    self.state = jax.tree.map(place, abstract_state, self.state_sharding)
    self.frozen = jax.tree.map(lambda x: place(x, replicated), nets.frozen)
    self.rng = place(jax.eval_shape(lambda: steps.prng_key(0)), replicated)
    self.step_fn = step_fn
    self.jitted = jax.jit(step_fn, in_shardings=(self.state_sharding, self.batch_sharding,
                                                 replicated, replicated),
                          out_shardings=(self.state_sharding, replicated), donate_argnums=(0,))

  def batch(self, global_batch: int) -> dict[str, jax.ShapeDtypeStruct]:
    size = self.config.image_size
    shape = lambda c: jax.ShapeDtypeStruct((global_batch, size, size, c), jax.numpy.float32,
                                           sharding=self.batch_sharding)
    return {"image": shape(3), "mask": shape(1)}

  def lower(self, batch_per_chip: int):
    from difai_jax.nn import precision  # pylint: disable=import-outside-toplevel
    with precision.scope(self.config.get("precision")):
      return self.jitted.lower(self.state, self.batch(batch_per_chip * self.num_devices),
                               self.frozen, self.rng)

  def cpu_flops(self, batch_per_chip: int) -> float:
    """FLOPs of one chip's share of the step: the step at the per-chip batch on one device,
    compiled for this CPU (a TPU compile's per-chip count, without its gradient all-reduce)."""
    from difai_jax.nn import precision  # pylint: disable=import-outside-toplevel
    plain = lambda tree: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)
    batch = {k: jax.ShapeDtypeStruct((batch_per_chip,) + v.shape[1:], v.dtype)
             for k, v in self.batch(self.num_devices).items()}
    with precision.scope(self.config.get("precision")):
      compiled = jax.jit(self.step_fn).lower(plain(self.state), batch, plain(self.frozen),
                                             plain(self.rng)).compile()
    cost = compiled.cost_analysis()
    return float((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])

  def argument_bytes(self, batch_per_chip: int) -> float:
    """Per-chip bytes of the step's arguments (each array's shard on one chip)."""
    args = (self.state, self.batch(batch_per_chip * self.num_devices), self.frozen)
    return float(sum(math.prod(x.sharding.shard_shape(x.shape)) * x.dtype.itemsize
                     for x in jax.tree.leaves(args)))

  def probe(self, batch_per_chip: int) -> Probe:
    """Per-chip memory without generating code (which is most of a compile's time): compiles
    for a chip of 1 MiB HBM, so that XLA:TPU stops at its early out-of-memory check, which
    reports the temporaries the program needs. Lower than ``memory_analysis()`` by the little
    that later passes add (7% of the temporaries for the tiny config)."""
    t0, c0 = time.perf_counter(), time.process_time()
    try:
      self.lower(batch_per_chip).compile(compiler_options={"xla_tpu_max_hbm_size_mib": 1})
    except jax.errors.JaxRuntimeError as e:
      temps = temporaries_from_error(str(e))
      if temps is None:
        raise
    else:
      raise RuntimeError("the probe compile fitted in 1 MiB of HBM: cannot estimate memory")
    return Probe(batch_per_chip, self.argument_bytes(batch_per_chip), temps,
                 time.perf_counter() - t0, time.process_time() - c0)

  def compile(self, batch_per_chip: int) -> Result:
    t0, c0 = time.perf_counter(), time.process_time()
    try:
      compiled = self.lower(batch_per_chip).compile()
    except jax.errors.JaxRuntimeError as e:
      if not _out_of_memory(e):
        raise
      return Result(batch_per_chip, False, time.perf_counter() - t0, time.process_time() - c0,
                    error=str(e))
    seconds, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    mem = compiled.memory_analysis()
    return Result(
        batch_per_chip, True, seconds, cpu_s, flops_per_chip=float(cost.get("flops", float("nan"))),
        argument_bytes=mem.argument_size_in_bytes, temp_bytes=mem.temp_size_in_bytes,
        peak_bytes=(mem.argument_size_in_bytes + mem.output_size_in_bytes
                    + mem.temp_size_in_bytes - mem.alias_size_in_bytes),
        code_bytes=mem.generated_code_size_in_bytes)


def find_max_batch(try_batch, capacity: float, start: int = 4, limit: int = 1024,
                   step: int = 0) -> int:
  """The largest batch ``b`` in [1, limit] that fits, or 0 if none (fitting is assumed
  monotone in ``b``).

  ``try_batch(b)`` compiles at batch ``b`` and returns its memory in bytes (None when it does
  not compile); ``b`` fits when that is <= ``capacity``. Each call is a compile (minutes for
  the DiFAI step), so the search uses the memory's linearity in the batch: it tries ``start``
  and ``start + step`` (``step`` 0: ``start``), then the batch the line through the two
  largest fitting batches predicts, then the next one up; bisection when a guess misses by
  more than a few. A known answer (from another topology of the same chip) as ``start`` with
  ``step=1`` confirms it in two compiles.
  """
  good, bad = 0, limit + 1           # largest batch known to fit, smallest known not to
  points: dict[int, float] = {}      # batch -> bytes, of the batches that fit
  b, missed = max(1, min(start, limit)), False
  while bad - good > 1:
    memory = try_batch(b)
    if memory is not None and memory <= capacity:
      good, missed = b, False
      points[b] = memory
    else:
      bad, missed = b, True
    if bad - good <= 1:
      break
    if len(points) < 2 or (missed and bad - good > 4):
      b = min(good + (step or good), bad - 1) if good and len(points) == 1 else (good + bad) // 2
      continue
    (b0, m0), (b1, m1) = sorted(points.items())[-2:]
    slope = (m1 - m0) / (b1 - b0)
    guess = int((capacity - m1) // slope) + b1 if slope > 0 else bad - 1
    b = min(max(guess, good + 1), bad - 1)
  return good


@dataclasses.dataclass
class Row:
  topology: str
  chips: int
  chip: Chip
  variant: str           # "" or the config overrides of this row
  result: Result | None  # the full compile reported (None: probes only)
  batch_per_chip: int
  probes: dict[int, Probe]
  compiles: dict[int, Result]
  search_s: float
  max_batch: bool        # result is the largest batch that fits (the next one up does not)
  cpu_flops: float | None = None   # probes only: per-chip FLOPs from a CPU compile


def measure(config, nets, topology: str, batch_per_chip: int, search: bool,
            start: int = 4, limit: int = 512, step: int = 0, variant: str = "",
            probe_only: bool = False, log=print) -> Row:
  """Compiles the step for ``topology`` at ``batch_per_chip``, or with ``search`` finds the
  largest per-chip batch that fits: quick probes (``StepCompiler.probe``) predict it, full
  compiles confirm it (it compiles within HBM, the next batch up does not). ``probe_only``:
  the probes' answer, without full compiles."""
  devices, chip = topology_devices(topology)
  compiler = StepCompiler(config, nets, devices)
  hbm = chip.hbm_gib * GIB
  results: dict[int, Result] = {}
  probes: dict[int, Probe] = {}
  name = f"{topology}{' ' + variant if variant else ''}"

  def run(b: int) -> Result:
    if b not in results:
      r = results[b] = compiler.compile(b)
      state = ("does not compile: " + r.error.splitlines()[0][:300] if not r.compiled else
               f"{(r.peak_bytes + r.code_bytes) / GIB:.2f} GiB/chip "
               f"({'fits' if r.fits(hbm) else 'over'} {chip.hbm_gib:g} GiB), "
               f"{r.flops_per_chip / 1e12:.2f} TFLOP/chip")
      log(f"  {name} batch/chip {b}: full compile {r.compile_s:.0f} s ({r.compile_cpu_s:.0f} "
          f"CPU s): {state}", flush=True)
    return results[b]

  def probe(b: int) -> float:
    if b not in probes:
      p = probes[b] = compiler.probe(b)
      log(f"  {name} batch/chip {b}: probe {p.seconds:.0f} s ({p.cpu_s:.0f} CPU s): about "
          f"{p.bytes / GIB:.2f} GiB/chip "
          f"({p.argument_bytes / GIB:.2f} arguments + {p.temp_bytes / GIB:.2f} temporaries)",
          flush=True)
    return probes[b].bytes

  t0 = time.perf_counter()
  if probe_only:
    b = find_max_batch(probe, hbm, start, limit, step) if search else batch_per_chip
    probe(max(b, 1))
    flops = compiler.cpu_flops(max(b, 1))
    return Row(topology, len(devices), chip, variant, None, max(b, 1), probes, results,
               time.perf_counter() - t0, search and b > 0, flops)
  if not search:
    result = run(batch_per_chip)
    return Row(topology, len(devices), chip, variant, result, batch_per_chip, probes, results,
               time.perf_counter() - t0, False)
  b = max(1, find_max_batch(probe, hbm, start, limit, step))
  while b > 1 and not run(b).fits(hbm):      # the probe was optimistic: step down
    b -= 1
  while run(b).fits(hbm) and b < limit and run(b + 1).fits(hbm):   # or pessimistic: step up
    b += 1
  result = run(b)
  confirmed = result.fits(hbm) and (b == limit or not run(b + 1).fits(hbm))
  return Row(topology, len(devices), chip, variant, result, b, probes, results,
             time.perf_counter() - t0, confirmed)


def table(rows: list[Row], mfu: float) -> str:
  out = []
  for row in rows:
    r, chip = row.result, row.chip
    hbm = chip.hbm_gib * GIB
    global_batch = row.batch_per_chip * row.chips
    probe = row.probes.get(row.batch_per_chip)
    estimate = f"{probe.bytes / GIB:.2f} ({100 * probe.bytes / hbm:.0f}%)" if probe else "-"
    if r is None:
      mem, speed = ["-", "-", "-", estimate], ["-"] * 3
      if row.cpu_flops:
        step_s = row.cpu_flops / (chip.peak_flops * mfu)
        speed = [f"{row.cpu_flops / 1e12:.2f} (CPU)", f"{step_s * 1e3:.0f}",
                 common.fmt(global_batch / step_s)]
    elif r.compiled:
      step_s = r.flops_per_chip / (chip.peak_flops * mfu)
      total = r.peak_bytes + r.code_bytes
      mem = [f"{r.argument_bytes / GIB:.2f}", f"{r.temp_bytes / GIB:.2f}",
             f"{total / GIB:.2f} ({100 * total / hbm:.0f}%)", estimate]
      speed = [f"{r.flops_per_chip / 1e12:.2f}", f"{step_s * 1e3:.0f}",
               common.fmt(global_batch / step_s)]
    else:
      mem, speed = ["-", "-", "out of memory", estimate], ["-"] * 3
    batch = f"**{row.batch_per_chip}** (max)" if row.max_batch else str(row.batch_per_chip)
    search = "-"
    if row.probes:
      probe_s = sum(p.cpu_s for p in row.probes.values())
      compile_s = sum(c.compile_cpu_s for c in row.compiles.values())
      search = (f"{len(row.probes)} probes ({probe_s:.0f} s) + {len(row.compiles)} compiles "
                f"({compile_s:.0f} s)")
    out.append([row.topology, row.chips, f"{chip.hbm_gib:g}", row.variant or "-",
                f"{batch} ({global_batch})", *mem, *speed,
                f"{r.compile_cpu_s:.0f}" if r else "-", search])
  return common.markdown_table(
      ["topology", "chips", "HBM GiB/chip", "variant", "batch/chip (global)",
       "arguments GiB/chip", "temporaries GiB/chip", "peak GiB/chip (% HBM)",
       "probe estimate GiB (% HBM)", "TFLOP/step/chip", f"step ms at {100 * mfu:g}% MFU",
       f"img/s at {100 * mfu:g}% MFU", "compile CPU s", "search (CPU s)"], out)


def parse_variant(spec: str) -> list[tuple[str, Any]]:
  """``"pretrained.psp_decode_size=256,pretrained.dtype.psp=bfloat16"`` -> [(key, value), ...];
  "" or "base":
  the config as it is."""
  out = []
  for item in spec.split(","):
    item = item.strip()
    if not item or item == "base":
      continue
    key, sep, text = item.partition("=")
    if not sep or not key:
      raise ValueError(f"--variant {spec!r}: expected KEY=VALUE[,KEY=VALUE...], e.g. "
                       "pretrained.psp_decode_size=256")
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text          # a bare string, e.g. bfloat16
    out.append((key.strip(), value))
  return out


def apply_overrides(config, overrides: list[tuple[str, Any]]):
  config = copy.deepcopy(config)
  with config.unlocked():
    for key, value in overrides:
      node, *path = key.split(".")
      parent = config
      for part in [node] + path[:-1]:
        if part not in parent:
          raise ValueError(f"--variant: the config has no {key!r}")
        parent = parent[part]
      leaf = (path or [node])[-1]
      if leaf not in parent:
        raise ValueError(f"--variant: the config has no {key!r}")
      parent[leaf] = value
  return config


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.tpu_compile",
                                   description=__doc__.split("\n", maxsplit=1)[0])
  parser.add_argument("--topology", required=True,
                      help="TPU topology, or several separated by commas (v5e:4x4,v4:2x2x2)")
  parser.add_argument("--config", default="celebahq", choices=("celebahq", "demo"))
  parser.add_argument("--psp", default="ffhq", choices=("ffhq", "config"),
                      help="frozen pSp: FFHQ shape (IR-SE50 + 1024 px decoder, the paper's) or "
                      "the config's small random one")
  parser.add_argument("--batch_per_chip", type=int, default=0,
                      help="per-chip batch (default: the config's global batch / chips, >= 1)")
  parser.add_argument("--find_max_batch", action="store_true",
                      help="search the largest per-chip batch that fits in HBM")
  parser.add_argument("--search_start", type=int, default=4,
                      help="first per-chip batch the search tries (e.g. a known answer for "
                      "another topology of the same chip)")
  parser.add_argument("--search_step", type=int, default=0,
                      help="second batch tried = start + step (0: 2 x start); 1 confirms a "
                      "known answer given as --search_start in two compiles")
  parser.add_argument("--max_batch_per_chip", type=int, default=512)
  parser.add_argument("--variant", action="append", default=None,
                      help="config overrides compared as rows, KEY=VALUE[,KEY=VALUE]; 'base' = "
                      "none; repeatable (e.g. --variant base --variant "
                      "pretrained.psp_decode_size=256)")
  parser.add_argument("--probe_only", action="store_true",
                      help="memory from the quick probes only (no full compile, no FLOPs)")
  parser.add_argument("--mfu", type=float, default=0.4,
                      help="model FLOP utilisation assumed for the implied step time")
  parser.add_argument("--write_results", "--write-results", action="store_true")
  parser.add_argument("--section", default="",
                      help="RESULTS.md section title (default: derived from the options)")
  args = parser.parse_args(argv)
  if not 0 < args.mfu <= 1:
    raise SystemExit(f"--mfu must be in (0, 1], got {args.mfu}")
  if (args.batch_per_chip < 0 or args.search_start < 1 or args.max_batch_per_chip < 1
      or args.search_step < 0):
    raise SystemExit("--batch_per_chip, --search_start, --search_step and "
                     "--max_batch_per_chip must be positive")
  # The host compiles; no TPU backend is started (there is none here).
  jax.config.update("jax_platforms", "cpu")
  topologies = [t.strip() for t in args.topology.split(",") if t.strip()]
  base = difai_setup.load_config(args.config)
  specs = args.variant or ["base"]
  try:
    for t in topologies:
      topology_devices(t)       # bad names and a missing libtpu fail before any work
    variants = [(spec, parse_variant(spec)) for spec in specs]
    configs = [apply_overrides(base, overrides) for _, overrides in variants]
  except ValueError as e:
    raise SystemExit(str(e)) from None

  rows = []
  for (spec, overrides), config in zip(variants, configs):
    t0 = time.perf_counter()
    nets = difai_setup.build_abstract(config, args.psp)
    label = ", ".join(f"{k}={v}" for k, v in overrides)
    print(f"{common.machine()}; config {args.config} ({config.image_size} px) {label}; frozen "
          f"pSp: {nets.description}; networks traced in {time.perf_counter() - t0:.1f} s",
          flush=True)
    for topology in topologies:
      chips = len(topology_devices(topology)[0])
      batch = args.batch_per_chip or max(1, config.train.batch_size // chips)
      rows.append(measure(config, nets, topology, batch, args.find_max_batch,
                          args.search_start, args.max_batch_per_chip, args.search_step, label,
                          args.probe_only))
      print(table(rows[-1:], args.mfu), flush=True)

  cmd = (f"python -m benchmarks.tpu_compile --topology {args.topology} --config {args.config} "
         f"--psp {args.psp} "
         + ("--find_max_batch " if args.find_max_batch else
            f"--batch_per_chip {args.batch_per_chip} " if args.batch_per_chip else "")
         + ("--probe_only " if args.probe_only else "")
         + "".join(f"--variant {spec or 'base'} " for spec in (args.variant or []))
         + f"--mfu {args.mfu:g}")
  config = configs[0]
  text = [
      common.header(), "",
      f"`{cmd}` (libtpu {_libtpu_version()}): `steps.difai_train_step` of the "
      f"{args.config} config ({config.image_size} px, the paper's widths; frozen pSp: "
      f"{nets.description}; n_critic {config.optim.n_critic}, "
      f"alpha {config.sefa.num_completions - 1}; "
      f"precision '{config.precision}') compiled ahead of time by XLA:TPU for every chip of "
      f"the topology, over `mesh.make_mesh` (axis `data`: batch split, state replicated); "
      f"nothing ran on a TPU. Memory per chip from `memory_analysis()` of the full "
      f"compile (arguments = state + frozen networks + batch shard; peak = arguments + outputs "
      f"+ temporaries - donated aliases + code); FLOPs per chip from its `cost_analysis()`; "
      f"step time = FLOPs per chip / ({100 * args.mfu:g}% of the chip's bf16 peak, "
      f"benchmarks/peaks.py). Probe estimate: arguments + the temporaries XLA:TPU's early "
      f"out-of-memory check reports when compiling for a 1 MiB chip (no code generation, "
      f"several times faster than a full compile; rows without a full compile take their "
      f"FLOPs per chip from the step at the per-chip batch compiled for this CPU, marked CPU). "
      f"\"max\": the probes predict the largest per-chip batch from the linear growth of "
      f"memory with the batch; full compiles confirm that it compiles within HBM and the next "
      f"batch up does not. Compile times are CPU seconds of the compiling process (wall time "
      f"depends on the load). Peak bf16 TFLOP/s per chip: "
      + ", ".join(f"{g} {c.peak_flops / 1e12:g}" for g, c in CHIPS.items())
      + "; HBM GiB: " + ", ".join(f"{g} {c.hbm_gib:g}" for g, c in CHIPS.items()) + ".",
      "", table(rows, args.mfu)]
  body = "\n".join(text)
  print(body)
  if args.write_results:
    title = args.section or f"{SECTION} ({args.config}{', probes' if args.probe_only else ''})"
    common.write_section(title, body)
  return 0


def _libtpu_version() -> str:
  try:
    from importlib import metadata  # pylint: disable=import-outside-toplevel
    return metadata.version("libtpu")
  except Exception:  # pylint: disable=broad-except
    return "unknown"


if __name__ == "__main__":
  sys.exit(main())
