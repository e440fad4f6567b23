"""What computing in bfloat16 costs: DiFAI's frozen path and its training losses, bf16 vs float32.

  python -m benchmarks.precision_tolerance [--steps 300] [--quick] [--write_results]

bfloat16 here is the compute dtype of the networks (``precision.with_dtype`` for the frozen
pSp and VGG-19, ``config.<network>.dtype`` for the coarse net, generator and critic): every
conv and matmul takes bfloat16 inputs, activations are stored in bfloat16, weights stay
float32. That is what runs on any backend, CPU included (the matmul precision policy alone
changes nothing on CPU). The float32 side runs with the ``highest`` matmul policy, so that on a
GPU / TPU it is true float32 too.

(a) Frozen path, on toy faces: the pSp encoder and its StyleGAN2 decoder in bfloat16 against
    float32, for a random pSp of the FFHQ shape (IR-SE50, 1024 px decoder pooled to 256 px; the
    paper's cost, random weights) and the shipped ``toy-psp`` (trained). Rows: encoder alone
    (W+ max abs error, also relative to the codes' spread around ``latent_avg``), decoder alone
    (float32 codes decoded in bfloat16) and both (bfloat16 end to end); PSNR of the decoded style
    images against float32's (peak-to-peak 2, images in [-1, 1]).
(b) Training: ``--steps`` DiFAI steps of the tiny config (tests/tiny_config.py, 32 px, batch 4)
    in float32 and with every network in bfloat16, from the same initial weights, batches and
    random keys. Per loss term: the step-0 deviation (same weights and batch: pure numeric
    error), mean and final (last 10% of steps) of each run, and the largest deviation of the two
    runs' 25-step moving averages (after step 0 the runs follow their own trajectories, as any
    two GAN runs do), both relative to the term's mean |float32 value|. Curves:
    benchmarks/figures/precision_loss_curves.png.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from benchmarks import difai_setup
from difai_jax import pipeline
from difai_jax.nn import precision

SECTION = "bfloat16 tolerance"
FIGURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures",
                      "precision_loss_curves.png")
SMOOTH = 25


def psnr(a: np.ndarray, b: np.ndarray) -> float:
  """PSNR (dB) of ``a`` against ``b`` for images in [-1, 1] (peak-to-peak 2)."""
  mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
  return float("inf") if mse == 0 else 10.0 * np.log10(4.0 / mse)


def frozen_path(name: str, module, variables, faces: jax.Array, size: int) -> list[list]:
  """Table rows (encoder / decoder / both in bfloat16) for one pSp on ``faces``."""
  bf16 = precision.with_dtype(module, "bfloat16")
  encode = {m: jax.jit(lambda v, x, m=m: pipeline.invert(m, v, x)) for m in (module, bf16)}
  decode = {m: jax.jit(lambda v, w, m=m: pipeline.style_images(m, v, w[None], size)[0])
            for m in (module, bf16)}
  t0 = time.perf_counter()
  w32 = encode[module](variables, faces)
  w16 = encode[bf16](variables, faces)
  i32 = np.asarray(decode[module](variables, w32))
  images = {"encoder": decode[module](variables, w16), "decoder": decode[bf16](variables, w32),
            "encoder + decoder": decode[bf16](variables, w16)}
  spread = float(jnp.max(jnp.abs(w32 - variables["constants"]["latent_avg"])))
  w_err = float(jnp.max(jnp.abs(w16 - w32)))
  w_mean = float(jnp.mean(jnp.abs(w16 - w32)))
  print(f"{name}: W+ max abs error {w_err:.3g} (mean {w_mean:.3g}, spread {spread:.3g}); "
        f"float32 style images std {i32.std():.3g}; {time.perf_counter() - t0:.0f} s", flush=True)
  rows = []
  for part, image in images.items():
    w_cell = (f"{w_err:.3g} ({100 * w_err / spread:.2f}% of {spread:.3g}); mean {w_mean:.2g}"
              if "encoder" in part else "0 (float32 codes)")
    rows.append([name, part, w_cell, f"{psnr(image, i32):.1f}",
                 common.fmt(float(np.max(np.abs(np.asarray(image) - i32))))])
    print(f"  bfloat16 {part}: PSNR {rows[-1][3]} dB", flush=True)
  return rows


def frozen_rows(num_faces: int, ffhq: bool) -> tuple[list[list], str]:
  from difai_jax import pretrained  # pylint: disable=import-outside-toplevel
  from difai_jax.evaluation.metrics import toy  # pylint: disable=import-outside-toplevel
  rows = []
  module, variables = pretrained.load(pretrained.resolve("toy-psp"))
  faces, _ = toy.toy_test_faces(num_faces, size=module.input_size)
  rows += frozen_path("toy-psp (trained, 64 px)", module, variables, jnp.asarray(faces),
                      module.input_size)
  if ffhq:
    module, variables = difai_setup.ffhq_psp(0)
    faces, _ = toy.toy_test_faces(num_faces, size=256)
    rows += frozen_path("FFHQ shape (random, 1024 -> 256 px)", module, variables,
                        jnp.asarray(faces), 256)
  return rows, f"{num_faces} toy test faces"


# ---- (b) training ----

def tiny_config(dtype: str):
  from tests import tiny_config as tiny  # pylint: disable=import-outside-toplevel
  config = tiny.get_config()
  config.pretrained.random_init = True
  for section in (config.coarse, config.generator, config.critic):
    section.dtype = dtype
  config.pretrained.dtype.psp = dtype
  config.pretrained.dtype.vgg19 = dtype
  return config


def train_curves(dtype: str, batches: list, num_steps: int) -> dict[str, np.ndarray]:
  """Loss terms per step of ``num_steps`` DiFAI steps of the tiny config in ``dtype``."""
  from benchmarks import train_step  # pylint: disable=import-outside-toplevel
  config = tiny_config(dtype)
  jitted, state, frozen, batch_sharding, _ = train_step.build_step(config, "config")
  batches = [{k: jax.device_put(v, batch_sharding) for k, v in b.items()} for b in batches]
  rng = jax.random.key(1)
  compiled = jitted.lower(state, batches[0], frozen, rng).compile()
  history: dict[str, list[float]] = {}
  t0 = time.perf_counter()
  for i in range(num_steps):
    state, metrics = compiled(state, batches[i % len(batches)], frozen,
                              jax.random.fold_in(rng, i))
    for k, v in jax.device_get(metrics).items():
      history.setdefault(k, []).append(float(v))
  print(f"{dtype}: {num_steps} steps in {time.perf_counter() - t0:.0f} s", flush=True)
  return {k: np.asarray(v) for k, v in history.items()}


def moving_average(x: np.ndarray, n: int = SMOOTH) -> np.ndarray:
  n = max(1, min(n, len(x)))
  return np.convolve(x, np.ones(n) / n, mode="valid")


def curve_rows(f32: dict, bf16: dict) -> list[list]:
  """Per loss term; deviations are relative to the term's mean |float32 value| over the run (the
  critic's Wasserstein terms cross zero, so a pointwise relative error would mean nothing)."""
  rows = []
  for name in sorted(f32):
    a, b = f32[name], bf16[name]
    scale = max(float(np.mean(np.abs(a))), 1e-12)
    tail = max(1, len(a) // 10)
    smooth_dev = float(np.max(np.abs(moving_average(b) - moving_average(a)))) / scale
    rows.append([name, common.fmt(a[0], 4), f"{100 * abs(b[0] - a[0]) / scale:.2g}%",
                 f"{common.fmt(a.mean())} / {common.fmt(b.mean())}",
                 f"{common.fmt(a[-tail:].mean())} / {common.fmt(b[-tail:].mean())}",
                 f"{100 * smooth_dev:.1f}%"])
  return rows


def plot(f32: dict, bf16: dict, path: str) -> None:
  """Loss curves, one panel per term: float32 (blue) and bfloat16 (orange), raw (light) and
  the 25-step moving average (dark). A PIL drawing (matplotlib is not a dependency)."""
  from PIL import Image, ImageDraw  # pylint: disable=import-outside-toplevel
  names = sorted(f32)
  cols, pw, ph, pad = 3, 420, 230, 42
  rows = -(-len(names) // cols)
  img = Image.new("RGB", (cols * pw, rows * ph + 30), "white")
  draw = ImageDraw.Draw(img)
  draw.text((10, 8), "DiFAI tiny config: float32 (blue) vs bfloat16 (orange); thin = per step, "
            f"thick = {SMOOTH}-step mean", fill="black")
  colors = {"f32": ((160, 190, 235), (20, 70, 180)), "bf16": ((245, 200, 150), (220, 110, 0))}
  for i, name in enumerate(names):
    x0, y0 = (i % cols) * pw + pad, (i // cols) * ph + 30 + 18
    w, h = pw - pad - 12, ph - 18 - 30
    series = {"f32": f32[name], "bf16": bf16[name]}
    lo = min(float(np.percentile(s, 1)) for s in series.values())
    hi = max(float(np.percentile(s, 99)) for s in series.values())
    hi = hi if hi > lo else lo + 1.0
    draw.rectangle([x0, y0, x0 + w, y0 + h], outline="gray")
    draw.text((x0, y0 - 14), name, fill="black")
    draw.text((x0 - pad + 2, y0), common.fmt(hi), fill="gray")
    draw.text((x0 - pad + 2, y0 + h - 10), common.fmt(lo), fill="gray")
    n = len(series["f32"])
    draw.text((x0 + w - 40, y0 + h + 4), f"{n} steps", fill="gray")
    for key, values in series.items():
      light, dark = colors[key]
      for data, color, width, offset in ((values, light, 1, 0),
                                         (moving_average(values), dark, 2, SMOOTH // 2)):
        ys = np.clip((data - lo) / (hi - lo), 0.0, 1.0)
        pts = [(x0 + w * (j + offset) / max(n - 1, 1), y0 + h * (1.0 - y))
               for j, y in enumerate(ys)]
        draw.line(pts, fill=color, width=width)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  img.save(path)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.precision_tolerance",
                                   description=__doc__.split("\n", maxsplit=1)[0])
  parser.add_argument("--steps", type=int, default=300, help="training steps per dtype")
  parser.add_argument("--faces", type=int, default=2, help="faces through the frozen path")
  parser.add_argument("--no_ffhq", "--no-ffhq", action="store_true",
                      help="skip the FFHQ-shape pSp (the slow part of (a))")
  parser.add_argument("--figure", default=FIGURE)
  parser.add_argument("--quick", action="store_true",
                      help="toy-psp only, 30 steps, figure in /tmp (< 2 min)")
  parser.add_argument("--write_results", "--write-results", action="store_true")
  args = parser.parse_args(argv)
  if args.quick:
    args.steps, args.no_ffhq, args.figure = 30, True, "/tmp/precision_loss_curves.png"
  if args.steps < 2:
    raise SystemExit("--steps must be at least 2")
  print(common.machine(), flush=True)
  t_start = time.perf_counter()
  with precision.scope("highest"):
    frozen, faces_text = frozen_rows(args.faces, not args.no_ffhq)
    from difai_jax.data import loader as data_pipeline  # pylint: disable=import-outside-toplevel
    config = tiny_config("float32")
    it = data_pipeline.make_train_iterator(
        config.data, image_size=config.image_size, global_batch_size=config.train.batch_size,
        seed=config.seed, process_index=0, process_count=1, num_workers=0, verbose=False)
    batches = [{k: np.asarray(v) for k, v in next(it).items()} for _ in range(args.steps)]
    f32 = train_curves("float32", batches, args.steps)
    bf16 = train_curves("bfloat16", batches, args.steps)
  plot(f32, bf16, args.figure)
  total = time.perf_counter() - t_start

  cmd = "python -m benchmarks.precision_tolerance " + (
      "--quick" if args.quick else f"--steps {args.steps} --faces {args.faces}"
      + (" --no_ffhq" if args.no_ffhq else ""))
  figure = os.path.relpath(args.figure, os.path.dirname(common.RESULTS))
  body = "\n".join([
      common.header(), "",
      f"`{cmd}` ({total / 60:.1f} min): bfloat16 = the compute dtype of every "
      "network (inputs of each conv / matmul and the activations in bfloat16, weights float32, "
      "outputs returned in float32); float32 with the `highest` matmul policy.", "",
      f"(a) Frozen path on {faces_text}: bfloat16 in the part named, float32 elsewhere, against "
      "all-float32. W+ error relative to the largest |W+ - latent_avg|; PSNR of the decoded "
      "style images (peak-to-peak 2) against float32's.", "",
      common.markdown_table(["pSp", "bfloat16 in", "W+ max abs error", "style image PSNR dB",
                             "style image max abs diff"], frozen, "llrrr"), "",
      f"(b) {args.steps} DiFAI steps of the tiny config (32 px, batch 4, every network "
      "bfloat16 vs float32; same initial weights, batches and keys). Step 0 sees the same "
      "weights and batch (pure numeric error); later steps follow each run's own trajectory, "
      f"so the runs are compared on {SMOOTH}-step moving averages. Deviations are relative to the "
      "term's mean |float32 value| over the run (the critic's terms cross zero). Final = mean of "
      f"the last 10% of steps. Curves: [{figure}]({figure}).", "",
      common.markdown_table(["loss term", "step 0 float32", "step 0 rel. dev.",
                             "mean f32 / bf16", "final f32 / bf16",
                             f"max rel. dev. ({SMOOTH}-step means)"], curve_rows(f32, bf16)),
  ])
  common.publish(SECTION, body, args.write_results)
  return 0


if __name__ == "__main__":
  sys.exit(main())
