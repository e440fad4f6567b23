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


def run(checkpoint: str, image_path: str, out_dir: str, *, resize: bool = True,
        randomize_noise: bool = False, seed: int = 0) -> dict[str, str]:
  """Inverts ``image_path`` and writes the three files; returns their paths by role.

  The output folder, the model's kind and the image are checked before the weights are loaded.
  """
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
                randomize_noise=_RANDOMIZE_NOISE.value, seed=_SEED.value)
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
