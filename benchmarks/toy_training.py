"""Training throughput of the toy stages: images/s, FLOPs per image, GFLOP/s, against the same
machine's convolution throughput measured in the same run.

  python -m benchmarks.toy_training [--stages stylegan2,psp,coarse,difai] [--iters 4]
      [--baseline] [--write_results]

For each stage the step is built from its toy config (``configs/toy_*.py``) exactly as
``difai_jax.train`` builds it (``stages.build``; the DiFAI stage through ``benchmarks.difai_setup``
with random frozen networks of the config's shapes), fed one real batch, and timed after
compiling. A stage with step phases (StyleGAN2's lazy R1 / path length) is timed per phase and
averaged with the phases' frequencies over 16 steps. FLOPs come from XLA's cost analysis of each
compiled phase (so no branch is counted that does not run).

``--baseline`` also times each step as the code computed it before the rewrite, back to back
with the current one (alternating calls): lhs-dilated convolutions for transposed convs, XLA's
default gradient of strided convs, and both lazy regularisers inside ``lax.cond`` in one step.

The convolution column is the fwd + bwd throughput (weights and inputs) of a plain 3x3 conv at
each shape in the stage's list, the best of them being the reference for "% of conv".
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import tempfile
import time

import jax
import jax.numpy as jnp
from jax import lax

from benchmarks import common
from benchmarks import difai_setup
from difai_jax.nn import layers
from difai_jax.training import stages
from difai_jax.training.stages import inpainting

SECTION = "Toy training throughput"
_DN = ("NHWC", "HWIO", "NHWC")


# ---- the code before the rewrite, for --baseline ----

def _lhs_dilated(x, kernel, padding):
  return lax.conv_general_dilated(x, kernel, (1, 1), padding, lhs_dilation=(2, 2),
                                  dimension_numbers=_DN)


def _plain_stride2(x, kernel):
  return lax.conv_general_dilated(x, kernel, (2, 2), "VALID", dimension_numbers=_DN)


@contextlib.contextmanager
def baseline_layers():
  """The layers as they were: every transposed / strided conv in XLA's default form."""
  saved = layers.conv_dilated_input, layers.conv_stride2
  layers.conv_dilated_input, layers.conv_stride2 = _lhs_dilated, _plain_stride2
  try:
    yield
  finally:
    layers.conv_dilated_input, layers.conv_stride2 = saved


# ---- the stages ----

def _config(name: str):
  if name == "stylegan2":
    from configs import toy_stylegan2 as module  # pylint: disable=import-outside-toplevel
  elif name == "psp":
    from configs import toy_psp as module  # pylint: disable=import-outside-toplevel
  else:
    from configs import toy_difai as module  # pylint: disable=import-outside-toplevel
  return module.get_config()


def conv_shapes(name: str, config) -> list[tuple[int, int, int]]:
  """(resolution, in, out) of the stage's main 3x3 convolutions."""
  size = int(config.image_size)
  if name == "stylegan2":
    widths = config.stylegan2.channels
    return [(4 * 2 ** i, w, w) for i, w in enumerate(widths)]
  if name == "psp":
    return [(size, 64, 64), (size // 2, 128, 128), (size // 4, 256, 256)]
  if name == "coarse":
    return [(size // 2 ** i, c, c) for i, c in enumerate(config.coarse.widths)]
  widths = tuple(config.generator.decoder_widths)
  return [(size // 2 ** (len(widths) - 1 - i), c, c) for i, c in enumerate(widths)]


def build(name: str, workdir: str):
  """(config, step(phase) -> fn, phases {phase: weight}, state, batch, frozen)."""
  config = _config(name)
  if name == "difai":
    nets = difai_setup.build(config, "config")
    init, step = inpainting.difai_step_functions(config, nets.models, nets.critic, nets.vgg)
    frozen, step_phase = nets.frozen, None
    stage = stages.build("coarse", config, workdir, {})        # for its batches (with masks)
  else:
    stage = stages.build(name, config, workdir, {})
    init, step, frozen, step_phase = stage.init, stage.step, stage.frozen, stage.step_phase
  batch = {k: jnp.asarray(v) for k, v in next(stage.batches(0)).items()}
  state = jax.jit(init)(jax.random.key(0))
  phases: dict = {}
  for s in range(16):
    phase = step_phase(s) if step_phase else None
    phases[phase] = phases.get(phase, 0) + 1

  def step_fn(phase, old: bool):
    fn = step if phase is None or old else functools.partial(step, phase=phase)
    return jax.jit(fn).lower(state, batch, frozen, jax.random.key(1)).compile()

  return config, step_fn, phases, state, batch, frozen


def conv_rate(batch: int, shape: tuple[int, int, int], iters: int) -> float:
  """GFLOP/s of a plain 3x3 conv's forward + both gradients at ``shape``."""
  res, cin, cout = shape
  x = jnp.ones((batch, res, res, cin))
  w = jnp.ones((3, 3, cin, cout))
  f = lambda x, w: jnp.sum(lax.conv_general_dilated(x, w, (1, 1), [(1, 1)] * 2,
                                                   dimension_numbers=_DN))
  g = jax.jit(jax.grad(f, argnums=(0, 1)))
  t = common.median(common.time_calls([lambda: jax.block_until_ready(g(x, w))], iters)[0])
  return 3 * 2 * 9 * cin * cout * res * res * batch / t / 1e9


def measure(name: str, iters: int, baseline: bool) -> dict:
  with tempfile.TemporaryDirectory() as workdir:
    config, step_fn, phases, state, batch, frozen = build(name, workdir)
  n = next(iter(batch.values())).shape[0]
  rows = {}
  variants = [("now", False)] + ([("before", True)] if baseline else [])
  for label, old in variants:
    ctx = baseline_layers() if old else contextlib.nullcontext()
    with ctx:
      t0 = time.perf_counter()
      compiled = {p: step_fn(p, old) for p in ({None: 16} if old else phases)}
      compile_s = time.perf_counter() - t0
    rows[label] = (compiled, compile_s)
  total_time, total_flops = {}, {}
  for label, (compiled, _) in rows.items():
    # The old single step decides its phase from state.step: time it at every step number of
    # a 16-step cycle (steps 0..15), as the loop would run it.
    if label == "before":
      states = [state.replace(step=jnp.asarray(s, jnp.int32)) for s in range(16)]
      fn = compiled[None]
      calls = [functools.partial(lambda st: jax.block_until_ready(fn(st, batch, frozen,
                                                                       jax.random.key(2))), st)
               for st in states]
      times = common.time_calls(calls, max(1, iters // 4))
      total_time[label] = sum(common.median(t) for t in times)
      continue          # no FLOPs: its cost analysis counts both lax.cond branches
    t_sum, f_sum = 0.0, 0.0
    for phase, weight in phases.items():
      fn = compiled[phase]
      call = lambda fn=fn: jax.block_until_ready(fn(state, batch, frozen, jax.random.key(2)))
      t = common.median(common.time_calls([call], iters)[0])
      ca = fn.cost_analysis()
      ca = ca[0] if isinstance(ca, list) else ca
      t_sum += weight * t
      f_sum += weight * float(ca["flops"])
    total_time[label], total_flops[label] = t_sum, f_sum
  convs = {s: conv_rate(n, s, iters) for s in conv_shapes(name, config)}
  best_shape = max(convs, key=convs.get)
  now_rate = 16 * n / total_time["now"]
  gflops = total_flops["now"] / total_time["now"] / 1e9
  out = {"stage": name, "batch": n, "phases": len(phases), "img_s": now_rate,
         "gflop_img": total_flops["now"] / 16 / n / 1e9, "gflop_s": gflops,
         "conv_gflop_s": convs[best_shape], "conv_shape": best_shape,
         "pct_conv": 100 * gflops / convs[best_shape], "compile_s": rows["now"][1]}
  if baseline:
    out["img_s_before"] = 16 * n / total_time["before"]
    out["compile_s_before"] = rows["before"][1]
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--stages", default="stylegan2,psp,coarse,difai")
  parser.add_argument("--iters", type=int, default=4)
  parser.add_argument("--baseline", action="store_true",
                      help="also time the code before the rewrite, back to back")
  parser.add_argument("--write_results", action="store_true")
  args = parser.parse_args(argv)
  results = []
  for name in args.stages.split(","):
    print(f"[toy_training] {name} ...", flush=True)
    results.append(measure(name, args.iters, args.baseline))
  columns = ["stage", "batch", "img/s", "GFLOP/img", "GFLOP/s", "conv GFLOP/s (shape)",
             "% of conv", "compile s"]
  if args.baseline:
    columns += ["img/s before", "speed-up"]
  rows = []
  for r in results:
    row = [r["stage"], r["batch"], common.fmt(r["img_s"]), common.fmt(r["gflop_img"]),
           common.fmt(r["gflop_s"]),
           f"{common.fmt(r['conv_gflop_s'])} ({r['conv_shape'][0]} px, "
           f"{r['conv_shape'][1]}->{r['conv_shape'][2]})",
           f"{r['pct_conv']:.0f} %", f"{r['compile_s']:.0f}"]
    if args.baseline:
      row += [common.fmt(r["img_s_before"]), f"{r['img_s'] / r['img_s_before']:.2f}x"]
    rows.append(row)
  body = (common.header() + "\n\n" + common.markdown_table(columns, rows) + "\n\n"
          "FLOPs: XLA's cost analysis of each compiled phase, weighted by its frequency over 16 "
          "steps; conv: a plain 3x3 conv's fwd + bwd at the stage's shapes, the best one.")
  common.publish(SECTION, body, args.write_results)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
