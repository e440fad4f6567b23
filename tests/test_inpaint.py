"""The inpaint CLI on the shipped toy DiFAI (64 px model): files, known pixels, input checks.

(A trained run's workdir and an exported one load through the same ``checkpoints.load_difai``;
tests/test_evaluate.py runs workdirs, tests/test_shipped.py the export itself.)
"""

import os
import re

import numpy as np
from PIL import Image
import pytest

from difai_jax.data import image_io
from difai_jax import inpaint
from difai_jax.inference import inputs as inputs_lib
from difai_jax.inference import model as model_lib
from tests.test_cli import assert_one_line_error
from tests.test_cli import run_cli
from difai_jax import pretrained
from tests.test_evaluate import run_module


@pytest.fixture(scope="module")
def demo_run():
  return pretrained.resolve("toy-difai")


def _face(h, w, seed):
  """A smooth, face-sized test picture (uint8) plus a little noise: any pixel change shows."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w]
  base = np.stack([128 + 90 * np.sin(xx / 7.0), 128 + 90 * np.cos(yy / 5.0),
                   (xx * 3 + yy * 2) % 256], -1)
  return np.clip(base + rng.integers(-20, 21, (h, w, 3)), 0, 255).astype(np.uint8)


def _mask(h, w, box):
  """1 = known, 0 in the box (y0, y1, x0, x1)."""
  m = np.ones((h, w), np.float32)
  y0, y1, x0, x1 = box
  m[y0:y1, x0:x1] = 0
  return m


def _save_mask(path, known, convention="known_is_white"):
  white = known if convention == "known_is_white" else 1 - known
  Image.fromarray((white * 255).astype(np.uint8)).save(path)


def _grid_tiles(grid, n, h, w, pad=2):
  return [grid[pad:pad + h, pad + i * (w + pad):pad + i * (w + pad) + w] for i in range(n)]


@pytest.fixture(scope="module")
def single_run(demo_run, tmp_path_factory):
  """The CLI on a 50 x 70 (H x W) image with a 64 px model: K = 3 and a 3-frame walk."""
  d = tmp_path_factory.mktemp("single")
  image = _face(50, 70, seed=0)
  known = _mask(50, 70, (12, 33, 20, 47))
  known[40:44, 5:9] = 0                       # a second, small hole
  Image.fromarray(image).save(d / "face.png")
  _save_mask(d / "mask.png", known)
  out = d / "out"
  proc = run_module("difai_jax.inpaint", "--checkpoint", demo_run, "--image",
                    str(d / "face.png"), "--mask", str(d / "mask.png"), "--num", "3",
                    "--out", str(out), "--walk", "--walk_steps", "3",
                    "--compilation_cache", str(d / "jax_cache"))
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return image, known, out, proc


def test_notes_non_square_input_and_fills_the_compilation_cache(single_run):
  proc = single_run[3]
  assert "face.png is 70x50, not square: the model sees it stretched to 64x64" in proc.stdout
  cache = os.path.join(os.path.dirname(single_run[2]), "jax_cache")
  assert any(name.startswith("jit_fn") for name in os.listdir(cache)), os.listdir(cache)


def test_writes_every_promised_file(single_run):
  _, _, out, _ = single_run
  names = sorted(os.listdir(out))
  assert names == ["completion_00.png", "completion_01.png", "completion_02.png", "grid.png",
                   "walk.gif", "walk.png"]
  # grid: masked input | mask | coarse | I_style | 3 completions, at the input's size.
  grid = np.asarray(Image.open(out / "grid.png"))
  assert grid.shape == (50 + 4, 7 * (70 + 2) + 2, 3)
  strip = np.asarray(Image.open(out / "walk.png"))
  assert strip.shape == (50 + 4, 3 * (70 + 2) + 2, 3)
  gif = Image.open(out / "walk.gif")
  assert gif.size == (70, 50) and gif.n_frames == 4      # 3 frames forth, 1 back


def test_known_pixels_are_bit_exact_at_the_input_size(single_run):
  image, known, out, _ = single_run
  keep = known == 1
  completions = [np.asarray(Image.open(out / f"completion_{j:02d}.png")) for j in range(3)]
  for c in completions:
    assert c.shape == (50, 70, 3)
    np.testing.assert_array_equal(c[keep], image[keep])
  # the hole is filled, differently by the SeFa-perturbed style images
  assert any(np.any(c[~keep] != image[~keep]) for c in completions)
  assert np.any(completions[0][~keep] != completions[1][~keep])
  grid = np.asarray(Image.open(out / "grid.png"))
  tiles = _grid_tiles(grid, 7, 50, 70)
  for tile, c in zip(tiles[4:], completions):
    np.testing.assert_array_equal(tile, c)
  np.testing.assert_array_equal(tiles[1][..., 0], (known * 255).astype(np.uint8))
  for frame in _grid_tiles(np.asarray(Image.open(out / "walk.png")), 3, 50, 70):
    np.testing.assert_array_equal(frame[keep], image[keep])


def test_folder_mode_pairs_by_name_reads_inverted_masks_and_skips_bad(demo_run, tmp_path,
                                                                      capsys):
  images, masks = tmp_path / "images", tmp_path / "masks"
  images.mkdir()
  masks.mkdir()
  sizes = {"anna": (80, 64), "ben": (33, 41), "cleo": (64, 64)}
  originals, knowns = {}, {}
  for i, (stem, (h, w)) in enumerate(sizes.items()):
    originals[stem] = _face(h, w, seed=i + 1)
    knowns[stem] = _mask(h, w, (h // 4, h // 2, w // 3, w - 3))
    Image.fromarray(originals[stem]).save(images / f"{stem}.png")
    _save_mask(masks / f"{stem}.png", knowns[stem], convention="hole_is_white")
  # "dora" is "anna" with other content in the hole: only known pixels may matter.
  originals["dora"] = originals["anna"].copy()
  knowns["dora"] = knowns["anna"]
  originals["dora"][knowns["dora"] == 0] = 255 - originals["dora"][knowns["dora"] == 0]
  Image.fromarray(originals["dora"]).save(images / "dora.png")
  _save_mask(masks / "dora.png", knowns["dora"], convention="hole_is_white")
  sizes["dora"] = sizes["anna"]
  # Two unusable pairs: skipped with --skip_bad, reported on stderr.
  (images / "erin.png").write_bytes(b"not an image")
  _save_mask(masks / "erin.png", _mask(8, 8, (1, 3, 1, 3)), convention="hole_is_white")
  Image.fromarray(_face(20, 20, seed=9)).save(images / "fay.png")
  _save_mask(masks / "fay.png", _mask(10, 10, (1, 3, 1, 3)), convention="hole_is_white")
  written = inpaint.run(demo_run, str(images), str(masks), str(tmp_path / "out"),
                        num_completions=1, mask_convention="hole_is_white", batch_size=4,
                        skip_bad=True, verbose=False)
  assert len(written) == 4
  err = capsys.readouterr().err
  assert re.search(r"skipped: cannot read image file '.*erin\.png'", err), err
  assert re.search(r"skipped: mask file '.*fay\.png' is 10x10 \(WxH\) but its image is 20x20",
                   err), err
  assert "--skip_bad: 2 of 6 input(s) skipped, 4 left" in err
  assert sorted(os.listdir(tmp_path / "out")) == ["anna", "ben", "cleo", "dora"]
  for stem, (h, w) in sizes.items():
    folder = tmp_path / "out" / stem
    assert sorted(os.listdir(folder)) == ["completion_00.png", "grid.png"]
    c = np.asarray(Image.open(folder / "completion_00.png"))
    assert c.shape == (h, w, 3)
    keep = knowns[stem] == 1
    np.testing.assert_array_equal(c[keep], originals[stem][keep])
    assert np.any(c[~keep] != originals[stem][~keep])
  anna, dora = (np.asarray(Image.open(tmp_path / "out" / s / "completion_00.png"), np.int32)
                for s in ("anna", "dora"))
  assert np.abs(anna - dora).max() <= 1     # (float rounding at most)


# ---- input checks (no model needed) ----

def test_bad_inputs_are_named_with_their_problem(tmp_path):
  Image.fromarray(_face(40, 50, 0)).save(tmp_path / "img.png")
  (tmp_path / "broken.png").write_bytes(b"not an image")
  _save_mask(tmp_path / "small.png", _mask(20, 25, (2, 8, 2, 8)))
  _save_mask(tmp_path / "all_hole.png", np.zeros((40, 50), np.float32))
  _save_mask(tmp_path / "no_hole.png", np.ones((40, 50), np.float32))
  grey = _mask(40, 50, (5, 20, 5, 20)) * 255
  grey[30, 30] = 100
  Image.fromarray(grey.astype(np.uint8)).save(tmp_path / "grey.png")
  load = lambda image, mask, **kw: inputs_lib.load_example(
      str(tmp_path / image), str(tmp_path / mask), 64,
      **{"convention": "known_is_white", "resize_mask": False, "strict_mask": False, **kw})

  with pytest.raises(inputs_lib.InputError, match=r"broken\.png.*cannot read|cannot read.*broken"):
    load("broken.png", "grey.png")
  with pytest.raises(inputs_lib.InputError, match=r"small\.png.*25x20.*50x40.*--resize_mask"):
    load("img.png", "small.png")
  with pytest.raises(inputs_lib.InputError, match=r"all_hole\.png.*all hole"):
    load("img.png", "all_hole.png")
  with pytest.raises(inputs_lib.InputError, match=r"no_hole\.png.*no hole"):
    load("img.png", "no_hole.png")
  with pytest.raises(inputs_lib.InputError, match=r"grey\.png.*other than 0 and 1"):
    load("img.png", "grey.png", strict_mask=True)
  with pytest.raises(inputs_lib.InputError, match=r"broken\.png"):
    load("img.png", "broken.png")
  # without --strict_mask: thresholded at 0.5 (100/255 -> hole) with a warning naming the file
  example = load("img.png", "grey.png")
  assert example.mask[30, 30, 0] == 0 and example.mask[0, 0, 0] == 1
  # --resize_mask: nearest-neighbour to the image's size
  example = load("img.png", "small.png", resize_mask=True)
  assert example.mask.shape == (40, 50, 1)
  np.testing.assert_array_equal(example.mask[..., 0],
                                image_io.load_mask(tmp_path / "small.png", size=(40, 50))[..., 0])


def test_model_mask_covers_every_pixel_touching_the_hole():
  image = _face(50, 70, 0)
  known = _mask(50, 70, (20, 21, 30, 31))       # a single hole pixel
  model_image, model_mask = inputs_lib.to_model_resolution(image, known[..., None], 64)
  assert model_image.shape == (64, 64, 3) and model_mask.shape == (64, 64, 1)
  assert -1.0 <= model_image.min() and model_image.max() <= 1.0
  # the hole pixel (rows 20/50, cols 30/70) maps into model rows 25.6..26.9, cols 27.4..28.3
  hole = np.argwhere(model_mask[..., 0] == 0)
  assert {tuple(p) for p in hole} == {(25, 27), (25, 28), (26, 27), (26, 28)}
  with pytest.raises(inputs_lib.InputError, match="no known pixel left"):
    stripes = np.ones((50, 70, 1), np.float32)
    stripes[:, ::2] = 0                          # every model pixel touches a hole
    inputs_lib.to_model_resolution(image, stripes, 64)


def test_folder_pairing_reports_missing_masks(tmp_path):
  (tmp_path / "i").mkdir()
  (tmp_path / "m").mkdir()
  for stem in ("a", "b", "c"):
    Image.fromarray(_face(8, 8, 0)).save(tmp_path / "i" / f"{stem}.png")
  for stem in ("a", "c"):
    _save_mask(tmp_path / "m" / f"{stem}.png", _mask(8, 8, (1, 3, 1, 3)))
  with pytest.raises(inputs_lib.InputError, match=r"no mask named like these images.*'b\.png'"):
    inputs_lib.pair_inputs(str(tmp_path / "i"), str(tmp_path / "m"))
  _save_mask(tmp_path / "m" / "b.jpg", _mask(8, 8, (1, 3, 1, 3)))
  pairs = inputs_lib.pair_inputs(str(tmp_path / "i"), str(tmp_path / "m"))
  assert [(os.path.basename(i), os.path.basename(m)) for i, m in pairs] == [
      ("a.png", "a.png"), ("b.png", "b.jpg"), ("c.png", "c.png")]
  one = inputs_lib.pair_inputs(str(tmp_path / "i"), str(tmp_path / "m" / "a.png"))
  assert len(one) == 3 and all(m.endswith("a.png") for _, m in one)


def test_default_edits_alternate_sign():
  assert inputs_lib.edits(4, None, None, 5.0, 64) == ([0, 1, 2], [5.0, -5.0, 5.0])
  assert inputs_lib.edits(1, None, None, 5.0, 64) == ([], [])
  assert inputs_lib.edits(3, [7, 2], [1.5, -3], 5.0, 64) == ([7, 2], [1.5, -3.0])
  with pytest.raises(ValueError, match="out of range"):
    inputs_lib.edits(3, [70, 1], None, 5.0, 64)
  with pytest.raises(ValueError, match="one degree per edit"):
    inputs_lib.edits(3, [0, 1], [1.0], 5.0, 64)


# ---- checked before loading anything --------------------------------------------------------

def test_cli_refuses_bad_output_and_inputs_before_importing_jax(tmp_path):
  """One line each, no traceback, nothing written, and JAX never imported (so: fast)."""
  Image.fromarray(_face(40, 50, 0)).save(tmp_path / "img.png")
  _save_mask(tmp_path / "mask.png", _mask(40, 50, (5, 20, 5, 20)))
  _save_mask(tmp_path / "small.png", _mask(20, 25, (2, 8, 2, 8)))
  grey = _mask(40, 50, (5, 20, 5, 20)) * 255
  grey[30, 30] = 100
  Image.fromarray(grey.astype(np.uint8)).save(tmp_path / "grey.png")
  (tmp_path / "a_file").write_text("x")
  before = sorted(os.listdir(tmp_path))
  common = ["--checkpoint", str(tmp_path / "no_run"), "--image", str(tmp_path / "img.png")]
  out = ["--out", str(tmp_path / "out")]

  proc = run_cli("difai_jax.inpaint", *common, "--mask", str(tmp_path / "mask.png"),
                 "--out", str(tmp_path / "a_file" / "out"))
  assert_one_line_error(proc, f"--out {tmp_path}/a_file/out cannot be created: "
                        f"{tmp_path}/a_file is a file, not a folder")
  assert proc.jax_imported is False

  proc = run_cli("difai_jax.inpaint", *common, "--mask", str(tmp_path / "small.png"), *out)
  assert_one_line_error(proc, f"mask file '{tmp_path}/small.png' is 25x20 (WxH) but its image "
                        "is 50x40; supply a mask of the image's size or pass --resize_mask "
                        "(nearest neighbour)")
  assert proc.jax_imported is False

  proc = run_cli("difai_jax.inpaint", *common, "--mask", str(tmp_path / "mask.png"), *out,
                 "--num", "3", "--degrees", "1,2,3")
  assert_one_line_error(proc, "--degrees has 3 values but there are 2 SeFa edits (K - 1 for "
                        "K = 3 completions); give one degree per edit")
  assert proc.jax_imported is False

  proc = run_cli("difai_jax.inpaint", *common, "--mask", str(tmp_path / "mask.png"), *out,
                 "--refine_steps", "5", "--refine_lr", "0")
  assert_one_line_error(proc, "--refine_steps must be >= 0 and --refine_lr > 0; got 5 and 0.0")
  assert proc.jax_imported is False

  proc = run_cli("difai_jax.inpaint", *common, "--mask", str(tmp_path / "grey.png"), *out,
                 "--strict_mask")
  assert "has values other than 0 and 1 (found 0.392157 at (30, 30)); pass a binary mask, or " \
      "drop --strict_mask to threshold it at 0.5" in proc.stderr, proc.stderr
  assert proc.returncode == 1 and proc.jax_imported is False
  with open(inpaint.__file__, encoding="utf-8") as f:
    defined = set(re.findall(r'DEFINE_\w+\("(\w+)"', f.read())) | {"compilation_cache"}
  named = set(re.findall(r"--(\w+)", proc.stderr))
  assert named and named <= defined, named - defined     # every flag a message names exists
  assert sorted(os.listdir(tmp_path)) == before


@pytest.fixture
def no_model_loading(monkeypatch):
  """Fails the test if the models are loaded."""
  from difai_jax.training import checkpoints

  def refuse(*args, **kwargs):
    raise AssertionError("the models were loaded before the inputs were checked")
  monkeypatch.setattr(checkpoints, "load_difai", refuse)


def test_run_checks_needing_the_runs_metadata_before_loading_the_models(demo_run, tmp_path,
                                                                         no_model_loading):
  Image.fromarray(_face(40, 50, 0)).save(tmp_path / "img.png")
  _save_mask(tmp_path / "mask.png", _mask(40, 50, (5, 20, 5, 20)))
  info = model_lib.read_run_info(demo_run)
  assert (info.image_size, info.n_directions, info.n_latent) == (64, 128, 10)
  run = lambda **kw: inpaint.run(demo_run, str(tmp_path / "img.png"), str(tmp_path / "mask.png"),
                                 str(tmp_path / "out"), verbose=False, **kw)
  cases = [
      (dict(num_completions=130), "--num_completions 130 asks for 129 SeFa edits, one per "
       "direction, but the generator has 128 directions; use --num_completions <= 129 or name "
       "directions with --components"),
      (dict(layers=[99]), "--layers 99: layers [99] out of range; W+ has 10 layers (0..9)"),
      (dict(layers=[0, 99]), "--layers 0,99: layers [99] out of range; W+ has 10 layers (0..9)"),
      (dict(num_completions=2, components=[128]), "SeFa components [128] out of range: the "
       "generator has 128 directions (0..127)"),
      (dict(walk=True, walk_component=-1), "--walk_component -1 out of range: the generator has "
       "128 directions (0..127)"),
  ]
  for kwargs, message in cases:
    with pytest.raises(ValueError) as e:
      run(**kwargs)
    assert str(e.value) == message
  assert not (tmp_path / "out").exists()


def test_refine_flags_reach_the_inpainter(demo_run, tmp_path, monkeypatch):
  """--refine_steps / --refine_lr go to the Inpainter (what the fitting does:
  tests/test_pipeline.py); the models are never loaded here."""
  from difai_jax.inference import inpainter as inpainter_lib
  Image.fromarray(_face(40, 50, 0)).save(tmp_path / "img.png")
  _save_mask(tmp_path / "mask.png", _mask(40, 50, (5, 20, 5, 20)))
  seen = {}

  class Stop(Exception):
    pass

  def fake(checkpoint, **kwargs):
    seen.update(kwargs, checkpoint=checkpoint)
    raise Stop
  monkeypatch.setattr(inpainter_lib, "Inpainter", fake)
  with pytest.raises(Stop):
    inpaint.run(demo_run, str(tmp_path / "img.png"), str(tmp_path / "mask.png"),
                str(tmp_path / "out"), verbose=False, refine_steps=7, refine_lr=0.02)
  assert seen["refine_steps"] == 7 and seen["refine_lr"] == 0.02


def test_folder_problems_are_all_reported_before_loading(tmp_path, no_model_loading):
  images, masks = tmp_path / "images", tmp_path / "masks"
  images.mkdir()
  masks.mkdir()
  Image.fromarray(_face(30, 30, 0)).save(images / "good.png")
  _save_mask(masks / "good.png", _mask(30, 30, (5, 9, 5, 9)))
  (images / "broken.png").write_bytes(b"not an image")
  _save_mask(masks / "broken.png", _mask(30, 30, (5, 9, 5, 9)))
  Image.fromarray(_face(30, 30, 1)).save(images / "holeless.png")
  _save_mask(masks / "holeless.png", np.ones((30, 30), np.float32))
  with pytest.raises(inputs_lib.InputError) as e:
    inpaint.run(str(tmp_path / "no_run"), str(images), str(masks), str(tmp_path / "out"))
  lines = str(e.value).splitlines()
  assert lines[0] == "2 of 3 input(s) cannot be used:"
  assert "broken.png" in lines[1] and "cannot read image file" in lines[1]
  assert "holeless.png" in lines[2] and "has no hole" in lines[2]
  assert not (tmp_path / "out").exists()


def test_small_and_non_square_inputs_get_a_note(tmp_path):
  Image.fromarray(_face(10, 10, 0)).save(tmp_path / "tiny.png")
  _save_mask(tmp_path / "tiny_mask.png", _mask(10, 10, (3, 6, 3, 6)))
  example = inputs_lib.load_example(str(tmp_path / "tiny.png"), str(tmp_path / "tiny_mask.png"), 64,
                                 convention="known_is_white", resize_mask=False,
                                 strict_mask=False)
  assert example.notes == [f"note: {tmp_path}/tiny.png is 10x10, far smaller than the model's "
                           "64 px: it is upscaled 6.4x, so expect a blurry completion"]
  assert inputs_lib.size_notes("wide.png", (50, 70), 64) == [
      "note: wide.png is 70x50, not square: the model sees it stretched to 64x64 (the outputs "
      "keep 70x50); crop it to the face for best results"]
  assert inputs_lib.size_notes("ok.png", (64, 64), 64) == []
  assert inputs_lib.size_notes("half.png", (32, 32), 64) == []


def test_rgba_mask_uses_its_alpha_channel(tmp_path):
  Image.fromarray(_face(20, 20, 0)).save(tmp_path / "img.png")
  rgba = np.zeros((20, 20, 4), np.uint8)
  rgba[..., 3] = 255
  rgba[5:10, 5:10, 3] = 0                      # transparent square = black = hole (ours)
  Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
  example = inputs_lib.load_example(str(tmp_path / "img.png"), str(tmp_path / "rgba.png"), 64,
                                 convention="known_is_white", resize_mask=False,
                                 strict_mask=False)
  assert example.mask[..., 0].sum() == 400 - 25 and example.mask[7, 7, 0] == 0


def test_labelled_edits_flags_reach_the_inpainter_and_its_edits_are_logged(demo_run, tmp_path,
                                                                            monkeypatch, capsys):
  """--edits labelled: refused with SeFa's --components; otherwise the Inpainter is made with
  the labelled edits and its recognizer, completions 1..K-1 come from labelled_outputs and the
  log names each one's edit (a stand-in Inpainter: the real one is tests/test_inpainter.py's)."""
  from difai_jax.inference import inpainter as inpainter_lib
  Image.fromarray(_face(64, 64, 0)).save(tmp_path / "img.png")
  _save_mask(tmp_path / "mask.png", _mask(64, 64, (20, 40, 20, 40)))
  run = lambda out, **kw: inpaint.run(demo_run, str(tmp_path / "img.png"),
                                      str(tmp_path / "mask.png"), str(tmp_path / out), **kw)
  with pytest.raises(ValueError, match="--components / --degrees choose SeFa edits"):
    run("out", edits="labelled", components=[0, 1])
  with pytest.raises(ValueError, match="--edits must be sefa"):
    run("out", edits="random")
  seen = {}

  class FakeInpainter:
    step, image_size, devices = 1, 64, 1

    def __init__(self, checkpoint, **kwargs):
      seen.update(kwargs, checkpoint=checkpoint)

    def labelled_outputs(self, images, masks, valid, k):
      n = int(valid.sum())
      shades = np.linspace(-0.5, 0.5, k)[:, None, None, None, None]
      return {"i_coarse": images[:n], "i_style": images[:n],
              "completions": np.broadcast_to(shades, (k, n) + images.shape[1:]),
              "edits": [[f"beard -> goatee {j}" for j in range(1, k)]] * n}

  monkeypatch.setattr(inpainter_lib, "Inpainter", FakeInpainter)
  written = run("out", edits="labelled", edit_recognizer="my-recognizer", num_completions=3)
  assert seen["edits"] == "labelled" and seen["edit_recognizer"] == "my-recognizer"
  assert len(written[0]["completions"]) == 3
  log = capsys.readouterr().out
  assert "labelled edits: the least that my-recognizer reads" in log
  assert "img: 01 beard -> goatee 1; 02 beard -> goatee 2" in log
