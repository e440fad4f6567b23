"""Where the DiFAI train step's FLOPs go, and what the frozen path's levers save.

  python -m benchmarks.frozen_cost [--config celebahq] [--psp ffhq] [--batch 8]
      [--decode_size 256] [--psnr_samples 4] [--write_results]

XLA's cost analysis (``jax.jit(f).lower(...).compile().cost_analysis()`` on this CPU; nothing
runs) of the whole step (``stages.inpainting.difai_step_functions``, as
``difai_jax.train`` runs it) and of the pieces it is made of, each lowered alone at the shapes
the step gives it (batch N, K = 1 + alpha style images):

* coarse net on I_masked (N), eq. 2;
* pSp encoder on I_coarse (N);
* StyleGAN2 decode of the K * N W+ codes (one decoder batch) at the decoder's resolution,
  pooled to the image size, eq. 3 (``pipeline.style_images``);
* VGG-19: features of the K + 1 targets (I_style_j and I_gt) and of the K outputs with their
  backward pass to the images (the perceptual / style losses, eq. 6-7);
* generator + critic: the rest (their forward and backward passes, the gradient penalty, the
  MS-SSIM and L1 terms, Adam).

Then the non-paper option ``config.pretrained.psp_decode_size`` (off by default): stopping the
decode at ``--decode_size`` (the decoder's ToRGB skip image there) instead of decoding at full
resolution and pooling. Its FLOP saving comes from the same cost analysis; its difference in the
style images is the PSNR between the two on a few random codes: of a random StyleGAN2 of the
pSp decoder's shape (what this machine has), and of the shipped toy StyleGAN2 (a trained 64 px
network, stopped one octave lower at 32 px) as a trained-network check.
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

SECTION = "Frozen path cost"


def compiled_flops(fn, *args) -> float:
  """FLOPs of ``fn(*args)`` from XLA's cost analysis of the program compiled for this CPU.

  The compiled program, not the lowered one: what XLA's simplifications (common
  subexpressions, algebraic rewrites) leave is what a device computes.
  """
  cost = jax.jit(fn).lower(*args).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"])


def spec(shape, dtype=jnp.float32) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(tuple(shape), dtype)


def piece_flops(config, nets: difai_setup.Networks, batch: int,
                decode_size: int) -> dict[str, float]:
  """GFLOP-level costs of the step and its pieces at a global batch of ``batch``."""
  from difai_jax import losses  # pylint: disable=import-outside-toplevel
  from difai_jax import pipeline  # pylint: disable=import-outside-toplevel
  from difai_jax.training import steps  # pylint: disable=import-outside-toplevel
  from difai_jax.training.stages import inpainting  # pylint: disable=import-outside-toplevel
  models, frozen = nets.models, nets.frozen
  size, k = config.image_size, config.sefa.num_completions
  psp = models.psp
  image, mask = spec((batch, size, size, 3)), spec((batch, size, size, 1))
  latents = spec((k, batch, psp.decoder.n_latent, psp.decoder.style_dim))

  init_fn, step_fn = inpainting.difai_step_functions(config, models, nets.critic, nets.vgg)
  state = jax.eval_shape(init_fn, steps.prng_key(0))
  rng = jax.eval_shape(lambda: steps.prng_key(0))
  batch_spec = {"image": image, "mask": mask}
  out = {"step": compiled_flops(step_fn, state, batch_spec, frozen, rng)}
  lowered = jax.jit(step_fn).lower(state, batch_spec, frozen, rng).cost_analysis()
  out["step, lowered"] = float((lowered[0] if isinstance(lowered, list) else lowered)["flops"])
  out["coarse net"] = compiled_flops(
      lambda v, x, m: pipeline.coarse_completion(models.coarse, v, x, m), frozen["coarse"],
      image, mask)
  out["pSp encoder"] = compiled_flops(lambda v, x: pipeline.invert(psp, v, x), frozen["psp"],
                                     image)
  out["StyleGAN2 decode"] = compiled_flops(
      lambda v, w: pipeline.style_images(psp, v, w, size), frozen["psp"], latents)
  out["decode stopped"] = compiled_flops(
      lambda v, w: pipeline.style_images(psp, v, w, size, decode_size), frozen["psp"], latents)

  def vgg_losses(v, targets, outputs):
    feature_fn = lambda x: nets.vgg.apply(v, x)
    fixed = losses.stacked_features(feature_fn, targets)
    total = lambda x: sum(jnp.sum(f) for f in losses.stacked_features(feature_fn, x).values())
    return fixed, jax.grad(total)(outputs)

  out["VGG-19"] = compiled_flops(vgg_losses, frozen["vgg"], spec((k + 1, batch, size, size, 3)),
                                spec((k, batch, size, size, 3)))
  return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
  """PSNR in dB of images in [-1, 1] (clipped), over the range [0, 1]."""
  a = (np.clip(a, -1, 1) + 1) / 2
  b = (np.clip(b, -1, 1) + 1) / 2
  mse = float(np.mean((a.astype(np.float64) - b) ** 2))
  return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def stopped_decode_psnr(module, params_and_noise, stop_at: int, samples: int,
                        seed: int = 0) -> tuple[float, float]:
  """(mean, min) PSNR of the decode stopped at ``stop_at`` against the full decode pooled to
  ``stop_at``, for ``samples`` codes w = mapping(z) (one per image, all W+ layers)."""
  from difai_jax.models import psp as psp_lib  # pylint: disable=import-outside-toplevel
  z = jax.random.normal(jax.random.key(seed), (samples, module.style_dim))

  @jax.jit
  def both(variables, z):
    w = module.apply(variables, z, method="mapping")
    full = module.apply(variables, [w], input_is_latent=True)
    stopped = module.apply(variables, [w], input_is_latent=True, stop_at=stop_at)
    return psp_lib.adaptive_avg_pool(full, stop_at, stop_at), stopped

  values = []
  for i in range(samples):       # one image at a time: a 1024 px decode is heavy on a CPU
    pooled, stopped = jax.device_get(both(params_and_noise, z[i:i + 1]))
    values.append(psnr(pooled, stopped))
  return float(np.mean(values)), float(np.min(values))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.frozen_cost",
                                   description=__doc__.split("\n", maxsplit=1)[0])
  parser.add_argument("--config", default="celebahq", choices=("celebahq", "demo"))
  parser.add_argument("--psp", default="ffhq", choices=("ffhq", "config"))
  parser.add_argument("--batch", type=int, default=0, help="global batch (default: config's)")
  parser.add_argument("--decode_size", type=int, default=256,
                      help="where the non-paper option stops the decode")
  parser.add_argument("--psnr_samples", type=int, default=4,
                      help="random codes for the PSNR of the stopped decode (0: skip)")
  parser.add_argument("--write_results", "--write-results", action="store_true")
  args = parser.parse_args(argv)
  config = difai_setup.load_config(args.config)
  batch = args.batch or config.train.batch_size
  from difai_jax.nn import precision  # pylint: disable=import-outside-toplevel
  from difai_jax.training import steps  # pylint: disable=import-outside-toplevel
  from difai_jax.models import stylegan2  # pylint: disable=import-outside-toplevel
  nets = difai_setup.build_abstract(config, args.psp)
  decoder = nets.models.psp.decoder
  if not 4 <= args.decode_size <= decoder.size or args.decode_size & (args.decode_size - 1):
    raise SystemExit(f"--decode_size must be a power of two in [4, {decoder.size}], got "
                     f"{args.decode_size}")
  t0 = time.perf_counter()
  with precision.scope(config.get("precision")):
    flops = piece_flops(config, nets, batch, args.decode_size)
  print(f"cost analysis of 7 programs compiled in {time.perf_counter() - t0:.1f} s", flush=True)

  k = config.sefa.num_completions
  step = flops["step"]
  frozen_names = ("StyleGAN2 decode", "pSp encoder", "coarse net")
  named = frozen_names + ("VGG-19",)
  rest = step - sum(flops[n] for n in named)
  what = {
      "StyleGAN2 decode": f"{k} x {batch} codes, {decoder.size} px, one batch; pooled to "
                          f"{config.image_size}",
      "pSp encoder": f"{batch} images at {nets.models.psp.input_size} px",
      "coarse net": f"{batch} images",
      "VGG-19": f"{k + 1} x {batch} targets forward, {k} x {batch} outputs forward + backward",
  }
  rows = [[n, what[n], f"{flops[n] / 1e9:,.0f}", f"{100 * flops[n] / step:.1f}%"] for n in named]
  frozen_total = sum(flops[n] for n in frozen_names)
  rows.append(["frozen path (decode + encoder + coarse)", "no gradients",
               f"{frozen_total / 1e9:,.0f}", f"**{100 * frozen_total / step:.1f}%**"])
  rows.append(["generator + critic", "the rest: fwd + bwd, gradient penalty, losses, Adam",
               f"{rest / 1e9:,.0f}", f"{100 * rest / step:.1f}%"])
  rows.append(["whole step", f"batch {batch}, n_critic {config.optim.n_critic} (the lowered, "
               f"unsimplified program: {flops['step, lowered'] / 1e9:,.0f})",
               f"{step / 1e9:,.0f}", "100%"])
  table = common.markdown_table(["piece", "what", "GFLOP / step", "share"], rows, "llrr")
  saving = flops["StyleGAN2 decode"] - flops["decode stopped"]
  print(table)
  print(f"decode stopped at {args.decode_size} px: {flops['decode stopped'] / 1e9:,.0f} GFLOP "
        f"instead of {flops['StyleGAN2 decode'] / 1e9:,.0f}: saves {saving / 1e9:,.0f} GFLOP = "
        f"{100 * saving / step:.1f}% of the step", flush=True)

  psnr_rows = []
  if args.psnr_samples:
    module = stylegan2.Generator(size=decoder.size, style_dim=decoder.style_dim,
                                 n_mlp=decoder.n_mlp, channels=decoder.channels,
                                 channel_multiplier=decoder.channel_multiplier)
    variables = jax.jit(module.init)(steps.prng_key(config.seed),
                                     [jnp.zeros((1, decoder.style_dim))])
    t0 = time.perf_counter()
    mean, low = stopped_decode_psnr(module, variables, args.decode_size, args.psnr_samples)
    psnr_rows.append([f"random StyleGAN2 of the pSp decoder's shape ({decoder.size} px)",
                      f"{args.decode_size} px", f"{mean:.1f}", f"{low:.1f}"])
    print(f"PSNR random {decoder.size} px: mean {mean:.2f} dB, min {low:.2f} dB "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    from difai_jax import pretrained  # pylint: disable=import-outside-toplevel
    toy, toy_vars = pretrained.load("toy-stylegan2")
    mean, low = stopped_decode_psnr(toy, toy_vars, toy.size // 2, max(args.psnr_samples, 16))
    psnr_rows.append([f"shipped toy StyleGAN2 (trained, {toy.size} px)", f"{toy.size // 2} px",
                      f"{mean:.1f}", f"{low:.1f}"])
    print(f"PSNR toy: mean {mean:.2f} dB, min {low:.2f} dB", flush=True)

  cmd = (f"python -m benchmarks.frozen_cost --config {args.config} --psp {args.psp} "
         f"--batch {batch} --decode_size {args.decode_size} --psnr_samples {args.psnr_samples}")
  body = [
      common.header(), "",
      f"`{cmd}`: FLOPs from XLA's cost analysis of the whole DiFAI step and of its pieces, "
      f"each compiled for this CPU at the step's shapes (nothing runs); {args.config} "
      f"config ({config.image_size} px), frozen pSp: {nets.description}; precision "
      f"'{config.precision}'.", "", table, "",
      "Levers that keep the method (what the step already does, and what is left):", "",
      f"- **One batched decode**: the step already decodes all K = 1 + alpha = {k} codes of "
      f"every image in one decoder batch of K x N (`pipeline.style_images`); nothing to gain.",
      "- **bfloat16 compute for the frozen networks** (`config.pretrained.dtype.psp` / "
      "`.vgg19` = \"bfloat16\"; weights stay float32): the same FLOPs, but on TPU / recent GPUs "
      "the configs' \"default\" precision already runs float32 convs as one bf16 / TF32 pass, "
      "so the gain is memory and bandwidth (activations halved), not MXU time.",
      "- **No rematerialisation is needed for the frozen path**: it runs under "
      "`stop_gradient`, so none of its activations are kept for the backward pass; "
      "`jax.checkpoint` would only matter for the generator and VGG-19 inside the loss.",
      "",
      f"Non-paper option, off by default: `config.pretrained.psp_decode_size = "
      f"{args.decode_size}` stops the decode at {args.decode_size} px (the decoder's ToRGB "
      f"skip image there) instead of decoding at {decoder.size} px and pooling to "
      f"{config.image_size}: {flops['decode stopped'] / 1e9:,.0f} instead of "
      f"{flops['StyleGAN2 decode'] / 1e9:,.0f} GFLOP, saving **{100 * saving / step:.1f}%** of "
      f"the step's FLOPs. The style images it gives differ from the paper's:"]
  if psnr_rows:
    body += ["", common.markdown_table(
        ["decoder", "stopped at", "PSNR mean dB", "PSNR min dB"], psnr_rows, "llrr"),
             "", "PSNR of the stopped decode against the full decode average-pooled to the same "
             "size (images clipped to [-1, 1], range 1 after mapping to [0, 1]); codes "
             "w = mapping(z), z ~ N(0, I), one per image. Random weights say little about a "
             "trained decoder's fine layers; the toy row is a trained network."]
  body = "\n".join(body)
  print(body)
  if args.write_results:
    common.write_section(f"{SECTION} ({args.config})", body)
  return 0


if __name__ == "__main__":
  sys.exit(main())
