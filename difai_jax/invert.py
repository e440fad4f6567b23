"""Inverts a face image into StyleGAN2's W+ with a converted pSp model.

Usage::

    python -m difai_jax.invert --checkpoint PSP_DIR --image face.png --out DIR

``PSP_DIR`` is a directory written by ``python -m weights_conversion.psp SRC.pt PSP_DIR``. The
image may be any size (it is resized to the encoder's input, 256 px for pSp, with a printed
note; a non-square image is stretched, so crop the face first for best results) and RGB, RGBA
(composited on white) or grayscale. Writes, for ``face.png``:

* ``DIR/face_reconstruction.png``: the decoder's image (pSp's 256 px face pool unless
  ``--noresize``, then the decoder's own resolution);
* ``DIR/face_wplus.npy``: the W+ codes (n_styles, style_dim), float32, latent_avg included:
  what the DiFAI pipeline feeds to StyleGAN2 and moves along SeFa directions;
* ``DIR/face_side_by_side.png``: input | reconstruction.

This is the ``pSp.encode -> W+ -> StyleGAN2`` step of the DiFAI pipeline (paper Sec. 3) on its
own, useful to check a converted encoder on real faces.

``--refine_steps N`` (not pSp's, not the DiFAI pipeline's: an encoder-then-optimise hybrid)
continues from the encoder's codes with N Adam steps on W+ that lower the pixel MSE between
the reconstruction and the input (the decoder frozen), and writes the refined codes and image;
it prints the PSNR before and after. It tells the encoder's share of a reconstruction error
from the generator's: what the refined codes reach, the generator can draw.
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags
import numpy as np

# JAX and the models are imported where they are used, so that a wrong --out or --image is
# refused in a second, before those imports.
from difai_jax import cli
from difai_jax.data import image_io

SMALL_INPUT_FACTOR = 2   # a note when the encoder upscales an input more than this

# allow_override: other entry points define flags of the same names (--checkpoint, --out); a
# process (e.g. the test session) that imports several of them must not fail.
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "converted pSp model directory",
                                  allow_override=True)
_IMAGE = flags.DEFINE_string("image", None, "face image file (png, jpg, ...)",
                             allow_override=True)
_OUT = flags.DEFINE_string("out", None, "output directory", allow_override=True)
_RESIZE = flags.DEFINE_boolean(
    "resize", True, "pool the reconstruction to 256 px as pSp's face_pool does (else the "
    "decoder's resolution)", allow_override=True)
_RANDOMIZE_NOISE = flags.DEFINE_boolean(
    "randomize_noise", False, "fresh StyleGAN2 noise (from --seed) instead of the stored "
    "buffers", allow_override=True)
_SEED = flags.DEFINE_integer("seed", 0, "random seed for --randomize_noise", allow_override=True)
_REFINE_STEPS = flags.DEFINE_integer(
    "refine_steps", 0, "Adam steps on the W+ codes after the encoder, lowering the pixel MSE "
    "to the input (0: the encoder's codes, as pSp)", lower_bound=0, allow_override=True)
_REFINE_LR = flags.DEFINE_float("refine_lr", 0.01, "Adam's learning rate for --refine_steps",
                                lower_bound=0.0, allow_override=True)
cli.define_cache_flag()


def read_psp_config(checkpoint: str) -> dict:
  """The ``config.json`` of a converted pSp directory (no weights); a clear error otherwise."""
  from difai_jax import pretrained  # pylint: disable=import-outside-toplevel
  config = pretrained.read_config(checkpoint)
  if config["kind"] != "psp":
    raise ValueError(f"{checkpoint} holds a {config['kind']!r} model, not a pSp encoder; "
                     "convert a pSp checkpoint with python -m weights_conversion.psp")
  return config


def load_psp(checkpoint: str):
  """``(module, variables)`` of a converted pSp directory; a clear error for other kinds."""
  from difai_jax import pretrained  # pylint: disable=import-outside-toplevel
  from difai_jax.models import psp  # pylint: disable=import-outside-toplevel
  read_psp_config(checkpoint)
  module, variables = pretrained.load(checkpoint)
  assert isinstance(module, psp.PSP)
  return module, variables


def load_input(path: str, size: int) -> np.ndarray:
  """The image at ``path`` as float32 (size, size, 3) in [-1, 1]; prints a note if resized."""
  native = image_io.load_image_uint8(path)
  h, w = native.shape[:2]
  if (h, w) != (size, size):
    note = f"note: {path} is {w}x{h}; resized to {size}x{size} (the pSp encoder's input)"
    if min(h, w) * SMALL_INPUT_FACTOR < size:
      note += (f"; it is far smaller than that (upscaled {size / min(h, w):.1f}x), so expect a "
               "blurry reconstruction")
    if h != w:
      note += "; it is not square, so the face is stretched: crop it first for best results"
    print(note)
  return image_io.load_image(path, size=size)


def invert(module, variables, image: np.ndarray, *, resize: bool = True,
           randomize_noise: bool = False, seed: int = 0):
  """One image (S, S, 3) in [-1, 1] -> (reconstruction (R, R, 3), W+ (n_styles, style_dim))."""
  import jax  # pylint: disable=import-outside-toplevel
  fn = jax.jit(lambda v, x, key: module.apply(
      v, x, resize=resize, randomize_noise=randomize_noise, return_latents=True,
      rngs={"noise": key}))
  recon, codes = fn(variables, image[None], jax.random.key(seed))
  return np.asarray(recon[0]), np.asarray(codes[0], np.float32)


def refine(module, variables, images, codes, *, steps: int, lr: float = 0.01,
           resize: bool = True, randomize_noise: bool = False, seed: int = 0,
           log_every: int = 0):
  """Adam on W+ codes (N, n_styles, style_dim) from ``codes``, lowering the mean squared error
  between the frozen decoder's image and ``images`` (N, S, S, 3) in [-1, 1].

  The images are compared at the reconstruction's size (``images`` resized to it when they
  differ, as ``pipeline.resize``). With ``randomize_noise`` one noise draw (``seed``) is kept
  for every step, so that the codes are fitted to a fixed decoder. ``log_every`` > 0 prints
  the mean PSNR every that many steps. Returns ``(reconstructions, codes)`` of the last step.
  """
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  from difai_jax import pipeline  # pylint: disable=import-outside-toplevel
  key = jax.random.key(seed)

  def decode(v, w):
    return module.apply(v, w, method="decode", resize=resize, randomize_noise=randomize_noise,
                        return_latents=False, rngs={"noise": key})

  codes = jnp.asarray(codes, jnp.float32)
  target = pipeline.resize(jnp.asarray(images, jnp.float32),
                           jax.eval_shape(decode, variables, codes).shape[1])
  optimizer = optax.adam(lr)

  @jax.jit      # weights and target as arguments, not constants baked into the program
  def step(v, target, w, state):
    loss, grad = jax.value_and_grad(lambda w: jnp.mean(jnp.square(decode(v, w) - target)))(w)
    updates, state = optimizer.update(grad, state)
    return optax.apply_updates(w, updates), state, loss

  state = optimizer.init(codes)
  for i in range(1, steps + 1):
    codes, state, loss = step(variables, target, codes, state)
    if log_every and (i % log_every == 0 or i == steps):
      mean_psnr = 10 * np.log10(4.0 / max(float(loss), 1e-12))
      print(f"refine step {i}/{steps}: PSNR {mean_psnr:.2f} dB (of the mean MSE, before the "
            "step's update)", flush=True)
  return np.asarray(jax.jit(decode)(variables, codes)), np.asarray(codes, np.float32)


def run(checkpoint: str, image_path: str, out_dir: str, *, resize: bool = True,
        randomize_noise: bool = False, seed: int = 0, refine_steps: int = 0,
        refine_lr: float = 0.01) -> dict[str, str]:
  """Inverts ``image_path`` and writes the three files; returns their paths by role.

  With ``refine_steps`` > 0 the encoder's codes are refined (:func:`refine`) before writing.

  The output folder, the model's kind and the image are checked before the weights are loaded.
  """
  if refine_steps < 0:
    raise ValueError(f"--refine_steps must be >= 0, got {refine_steps}")
  cli.check_output_dir(out_dir, "--out")
  config = read_psp_config(checkpoint)
  image = load_input(image_path, int(config.get("input_size", 256)))
  module, variables = load_psp(checkpoint)
  nc = np.shape(variables["params"]["encoder"]["backbone"]["input_conv"]["kernel"])[2]
  if nc != 3:
    raise ValueError(f"this pSp encoder takes {nc}-channel inputs (a conditional pSp), not RGB "
                     "face images")
  recon, codes = invert(module, variables, image, resize=resize,
                        randomize_noise=randomize_noise, seed=seed)
  side = recon.shape[0]
  shown = image if side == image.shape[0] else image_io.load_image(image_path, size=side)
  if refine_steps:
    # pylint: disable-next=import-outside-toplevel
    from difai_jax.evaluation.metrics import psnr as psnr_lib

    def psnr(a, b):                       # images in [-1, 1]
      return float(psnr_lib.psnr(a[None], b[None], data_range=2.0)[0])

    before = psnr(recon, shown)
    print(f"encoder's codes: PSNR {before:.2f} dB; refining W+ for {refine_steps} steps ...")
    recons, refined = refine(module, variables, image[None], codes[None], steps=refine_steps,
                             lr=refine_lr, resize=resize, randomize_noise=randomize_noise,
                             seed=seed, log_every=max(refine_steps // 5, 1))
    recon, codes = recons[0], refined[0]
    print(f"refined codes: PSNR {psnr(recon, shown):.2f} dB")
  stem = os.path.splitext(os.path.basename(image_path))[0]
  paths = {"reconstruction": os.path.join(out_dir, f"{stem}_reconstruction.png"),
           "wplus": os.path.join(out_dir, f"{stem}_wplus.npy"),
           "side_by_side": os.path.join(out_dir, f"{stem}_side_by_side.png")}
  os.makedirs(out_dir, exist_ok=True)
  image_io.save_png(paths["reconstruction"], recon)
  np.save(paths["wplus"], codes)
  image_io.save_png(paths["side_by_side"], image_io.make_grid(np.stack([shown, recon]), ncol=2))
  return paths


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  for holder in (_CHECKPOINT, _IMAGE, _OUT):
    if not holder.value:
      raise app.UsageError(f"--{holder.name} is required")
  cli.enable_compilation_cache(flags.FLAGS.compilation_cache)
  try:
    paths = run(_CHECKPOINT.value, _IMAGE.value, _OUT.value, resize=_RESIZE.value,
                randomize_noise=_RANDOMIZE_NOISE.value, seed=_SEED.value,
                refine_steps=_REFINE_STEPS.value, refine_lr=_REFINE_LR.value)
  except (ValueError, FileNotFoundError, cli.CliError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  codes = np.load(paths["wplus"])
  print(f"W+ codes {codes.shape} -> {paths['wplus']}")
  print(f"reconstruction -> {paths['reconstruction']}")
  print(f"input | reconstruction -> {paths['side_by_side']}")
  return 0


if __name__ == "__main__":
  cli.run(main)
