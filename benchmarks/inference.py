"""Inference: wall time for K completions of one face after compilation, and the compile time.

  python -m benchmarks.inference [--config celebahq|demo] [--psp ffhq|config] [--ks 1,4,8]
      [--variants_per_call default,all,1] [--iters 2] [--quick] [--write_results]

Runs the whole DiFAI forward of ``difai_jax.pipeline.inpaint`` (coarse net, pSp inversion, K - 1
SeFa-perturbed W+ codes + the unperturbed one, StyleGAN2 decoding of the K codes, the SPARN
generator on the K style images, composite) for one face, jitted, with random weights of the
config's shapes. Default: the CelebA-HQ config (256 px, the paper's widths) with a random pSp of
the FFHQ shape (IR-SE50 encoder, 1024 px decoder pooled to 256 px), i.e. the paper's cost.

Each K is its own executable (the K axis is a shape): compile time = ``lower().compile()``;
wall time = median of ``--iters`` calls of the compiled executable after one warm-up call.
``--variants_per_call`` times several settings of ``pipeline.inpaint(variants_per_call=...)``
(``all``: the K variants in one decoder / generator batch; ``1``: one after another; ``default``:
the backend's default) in the same loop, their calls alternating, so that a loaded machine
slows them alike; XLA temp = the executable's ``memory_analysis().temp_size_in_bytes``.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from benchmarks import difai_setup

SECTION = "Inference (K completions of one face)"


def face_and_mask(size: int):
  """A toy face (1, size, size, 3) in [-1, 1] and a mask with a centred square hole."""
  from difai_jax.data.toy_faces import render_face  # pylint: disable=import-outside-toplevel
  image = render_face(0, 0, size).astype(np.float32) / 127.5 - 1.0
  mask = np.ones((1, size, size, 1), np.float32)
  mask[:, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 0.0
  return jnp.asarray(image[None]), jnp.asarray(mask)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.inference",
                                   description=__doc__.split("\n", maxsplit=1)[0])
  parser.add_argument("--config", default="celebahq", choices=("demo", "celebahq"))
  parser.add_argument("--psp", default="ffhq", choices=("config", "ffhq"),
                      help="frozen pSp: FFHQ shape (the paper's) or the config's small one")
  parser.add_argument("--ks", default="1,4,8", help="numbers of completions to time")
  parser.add_argument("--iters", type=int, default=2, help="timed calls per K")
  parser.add_argument("--variants_per_call", "--variants-per-call", default="default",
                      help="comma-separated settings of pipeline.inpaint's variants_per_call: "
                      "'default', 'all' (= K) or a number dividing every K")
  parser.add_argument("--quick", action="store_true",
                      help="demo config (64 px, small pSp), K = 1 and 4, 2 calls (< 1 min)")
  parser.add_argument("--write_results", "--write-results", action="store_true")
  args = parser.parse_args(argv)
  if args.quick:
    args.config, args.psp, args.ks, args.iters = "demo", "config", "1,4", 2
  ks = [int(k) for k in args.ks.split(",")]

  from difai_jax import pipeline  # pylint: disable=import-outside-toplevel
  config = difai_setup.load_config(args.config)
  size = config.image_size
  print(f"{common.machine()}; config {args.config} ({size} px), pSp {args.psp}", flush=True)
  nets = difai_setup.build(config, args.psp)
  models = nets.models
  image, mask = face_and_mask(size)
  g_vars = jax.jit(models.generator.init)(jax.random.key(2), image, image, mask)
  variables = {"coarse": nets.frozen["coarse"], "psp": nets.frozen["psp"], "generator": g_vars,
               "sefa": nets.frozen["sefa"]}
  layers = tuple(config.sefa.layers) if config.sefa.layers else None
  n_dirs = variables["sefa"].shape[0]

  settings = args.variants_per_call.split(",")
  default = 1 if jax.default_backend() == "cpu" else "all"

  def per_call(setting: str, k: int) -> int:
    setting = str(default) if setting == "default" else setting
    return k if setting == "all" else int(setting)

  rows = []
  for k in ks:
    alpha = k - 1
    components = jnp.asarray(np.arange(alpha)[None] % n_dirs, jnp.int32)          # (1, alpha)
    degrees = jnp.asarray(config.sefa.max_degree * np.where(np.arange(alpha) % 2, -1.0, 1.0),
                          jnp.float32)[None]
    runs, cells = [], []
    unique = {per_call(setting, k): setting for setting in reversed(settings)}   # K = 1: one
    for setting in [s for s in settings if unique.get(per_call(s, k)) == s]:
      def completions(v, image, mask, components, degrees, c=per_call(setting, k)):
        return pipeline.inpaint(models, v, image, mask, components, degrees, layers,
                                variants_per_call=c)["completions"]
      t0 = time.perf_counter()
      compiled = jax.jit(completions).lower(variables, image, mask, components, degrees).compile()
      compile_s = time.perf_counter() - t0
      mem = compiled.memory_analysis()
      temp = mem.temp_size_in_bytes / 2**30 if mem is not None else float("nan")
      run = lambda c=compiled, a=components, d=degrees: jax.block_until_ready(
          c(variables, image, mask, a, d))
      out = run()                                     # warm-up
      assert out.shape == (k, 1, size, size, 3), out.shape
      runs.append(run)
      cells.append((setting, compile_s, temp))
    for (setting, compile_s, temp), times in zip(
        cells, common.time_calls(runs, iters=args.iters, warmup=0)):
      wall = common.median(times)
      print(f"K={k}, variants per call {setting} ({per_call(setting, k)}): {wall:.2f} s per call "
            f"({k / wall:.2f} completions/s), compile {compile_s:.1f} s, XLA temp {temp:.2f} GiB",
            flush=True)
      rows.append((k, f"{setting} ({per_call(setting, k)})", common.fmt(wall),
                   common.fmt(wall / k), common.fmt(k / wall), f"{compile_s:.1f}",
                   f"{temp:.2f}"))

  table = common.markdown_table(["K completions", "variants per call", "wall s (after compile)",
                                 "s / completion", "completions/s", "compile s",
                                 "XLA temp GiB"], rows, "rlrrrrr")
  cmd = "python -m benchmarks.inference " + ("--quick" if args.quick else
                                             f"--config {args.config} --psp {args.psp} "
                                             f"--ks {args.ks} --iters {args.iters}")
  if args.variants_per_call != "default":
    cmd += f" --variants_per_call {args.variants_per_call}"
  body = "\n".join([
      common.header(), "",
      f"`{cmd}`: `pipeline.inpaint` on one {size} px face (centred square hole), jitted, "
      f"random weights of the `{args.config}` config's shapes; frozen pSp: {nets.description}. "
      f"Median of {args.iters} calls of the compiled executable after one warm-up call; compile "
      "= `jit(...).lower(...).compile()` per K (K is a shape, so each K compiles once). "
      "Variants per call: how many of the K style variants go through the StyleGAN2 decoder and "
      "the generator in one batch (`pipeline.inpaint(variants_per_call=...)`; the coarse net and "
      "the pSp encoder run once whatever K); settings of one K alternate call by call.",
      "", table])
  common.publish(SECTION, body, args.write_results)
  return 0


if __name__ == "__main__":
  sys.exit(main())
