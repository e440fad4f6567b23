"""The inversion CLI on a pSp checkpoint converted from the fixture (tests/fixtures/psp_small.pt).

The fixture's decoder is 64 px, its encoder takes 256 px images and has 10 styles of width 32.
"""

import json
import os
import subprocess
import sys

from absl import flags
from absl.testing import flagsaver
import jax
import numpy as np
from PIL import Image
import pytest

from difai_jax.data import image_io
from difai_jax import invert
from difai_jax.evaluation.metrics import psnr as psnr_lib
from weights_conversion import psp as psp_conversion

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
  dst = tmp_path_factory.mktemp("ckpt") / "psp"
  psp_conversion.convert_file(os.path.join(FIXTURES, "psp_small.pt"), str(dst))
  return str(dst)


def _face_like(h, w):
  yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
  rgb = np.stack([np.sin(6 * xx) * 0.5 + 0.5, np.cos(4 * yy) * 0.5 + 0.5, xx * yy], -1)
  return (rgb * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
  d = tmp_path_factory.mktemp("images")
  rgba = np.concatenate([_face_like(80, 100), np.full((80, 100, 1), 200, np.uint8)], -1)
  rgba[:10, :10, 3] = 0  # a transparent corner: composited on white
  Image.fromarray(rgba, "RGBA").save(d / "rgba_face.png")
  Image.fromarray(_face_like(300, 300)[..., 0], "L").save(d / "gray_face.png")
  return {"rgba": str(d / "rgba_face.png"), "gray": str(d / "gray_face.png")}


@pytest.fixture(scope="module", autouse=True)
def _parsed_flags():
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def test_cli_writes_reconstruction_codes_and_side_by_side(checkpoint_dir, images, tmp_path,
                                                          capsys):
  out = tmp_path / "out"
  with flagsaver.flagsaver(checkpoint=checkpoint_dir, image=images["rgba"], out=str(out),
                           resize=True, randomize_noise=False):
    assert invert.main(["invert"]) == 0
  printed = capsys.readouterr().out
  assert "100x80; resized to 256x256" in printed and "not square" in printed

  recon = np.asarray(Image.open(out / "rgba_face_reconstruction.png"))
  codes = np.load(out / "rgba_face_wplus.npy")
  side = np.asarray(Image.open(out / "rgba_face_side_by_side.png"))
  assert recon.shape == (256, 256, 3) and recon.dtype == np.uint8
  assert codes.shape == (10, 32) and codes.dtype == np.float32
  assert side.shape == (2 + 256 + 2, 2 + 256 + 2 + 256 + 2, 3)
  np.testing.assert_array_equal(side[2:258, 260:516], recon)

  # The files are what the model computes from the image as image_io reads it.
  module, variables = invert.load_psp(checkpoint_dir)
  x = image_io.load_image(images["rgba"], size=256)
  np.testing.assert_array_equal(side[2:258, 2:258], image_io.to_uint8(x))
  assert np.all(side[2:8, 2:8] == 255)  # the transparent corner became white

  def reference(v, x):
    codes = module.apply(v, x, method="encode")
    raw = module.apply(v, x, method="encode", add_latent_avg=False)
    image = module.apply(v, codes, method="decode", resize=True, return_latents=False)
    return codes[0], raw[0], image[0]
  with jax.default_matmul_precision("highest"):
    want_codes, raw, want_image = jax.jit(reference)(variables, x[None])
  np.testing.assert_allclose(codes, np.asarray(want_codes), atol=1e-5)
  assert np.abs(recon.astype(int) - image_io.to_uint8(want_image).astype(int)).max() <= 1
  # The codes include latent_avg (they are what the decoder takes).
  np.testing.assert_allclose(codes - np.asarray(raw),
                             np.asarray(variables["constants"]["latent_avg"]), atol=1e-5)


def test_grayscale_input_and_decoder_resolution(checkpoint_dir, images, tmp_path, capsys):
  paths = invert.run(checkpoint_dir, images["gray"], str(tmp_path), resize=False)
  assert "300x300; resized to 256x256" in capsys.readouterr().out
  recon = np.asarray(Image.open(paths["reconstruction"]))
  side = np.asarray(Image.open(paths["side_by_side"]))
  assert recon.shape == (64, 64, 3)  # the fixture decoder's own size
  assert side.shape == (68, 134, 3)
  shown = side[2:66, 2:66].astype(int)
  # A grayscale file becomes an RGB image with three equal channels.
  assert np.array_equal(shown[..., 0], shown[..., 1]) and np.array_equal(shown[..., 0],
                                                                          shown[..., 2])
  assert np.load(paths["wplus"]).shape == (10, 32)


def test_cli_refuses_other_model_kinds(tmp_path, images):
  """Runs the real entry point (``python -m difai_jax.invert``, absl flag parsing included)."""
  other = tmp_path / "sg2"
  other.mkdir()
  (other / "config.json").write_text(json.dumps({"kind": "stylegan2", "size": 64}))
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""),
             JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, "-m", "difai_jax.invert", f"--checkpoint={other}",
       f"--image={images['gray']}", f"--out={tmp_path / 'out'}"],
      capture_output=True, text=True, env=env, cwd=root, timeout=120, check=False)
  assert proc.returncode == 1, proc.stderr
  assert "'stylegan2' model, not a pSp encoder" in proc.stderr
  assert not (tmp_path / "out").exists()


def test_refine_lowers_the_pixel_error_and_the_cli_writes_the_refined_codes(checkpoint_dir,
                                                                           images, tmp_path,
                                                                           capsys):
  module, variables = invert.load_psp(checkpoint_dir)
  x = image_io.load_image(images["rgba"], size=256)
  recon, codes = invert.invert(module, variables, x)
  # No steps: the encoder's codes come back unchanged.
  _, same = invert.refine(module, variables, x[None], codes[None], steps=0)
  np.testing.assert_array_equal(same[0], codes)

  paths = invert.run(checkpoint_dir, images["rgba"], str(tmp_path / "out"), refine_steps=30,
                     refine_lr=0.05)
  printed = capsys.readouterr().out
  assert "refining W+ for 30 steps" in printed and "refine step 30/30" in printed
  refined = np.load(paths["wplus"])
  assert refined.shape == codes.shape and not np.allclose(refined, codes)
  # Adam on the codes lowered the error against the input that the encoder saw.
  saved = np.asarray(Image.open(paths["reconstruction"]))
  before = float(psnr_lib.psnr(recon[None], x[None], data_range=2.0)[0])
  after = float(psnr_lib.psnr(image_io.uint8_to_float(saved)[None], x[None], data_range=2.0)[0])
  assert after > before + 0.5, (before, after)
  # The saved image is the decoder's image of the saved codes.
  want = jax.jit(lambda v, w: module.apply(v, w, method="decode", resize=True,
                                           return_latents=False))(variables, refined[None])
  assert np.abs(saved.astype(int) - image_io.to_uint8(np.asarray(want[0])).astype(int)).max() <= 1
  with pytest.raises(ValueError, match="refine_steps must be >= 0"):
    invert.run(checkpoint_dir, images["rgba"], str(tmp_path / "out2"), refine_steps=-1)
