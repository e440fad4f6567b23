"""Tests for difai_jax.data.image_io: round trips, conversions, conventions and error messages."""

import warnings

import numpy as np
import pytest
from PIL import Image

from difai_jax.data import image_io


def _ramp(h=6, w=8):
  y, x = np.mgrid[:h, :w]
  return np.stack([x * 30, y * 40, (x + y) * 10], -1).astype(np.uint8)


def test_png_round_trip_float_and_uint8(tmp_path):
  rgb = _ramp()
  image_io.save_png(tmp_path / "u8.png", rgb)
  back = image_io.load_image(tmp_path / "u8.png")
  assert back.dtype == np.float32 and back.shape == (6, 8, 3)
  np.testing.assert_allclose(back, rgb / 127.5 - 1, atol=1e-6)
  np.testing.assert_array_equal(image_io.to_uint8(back), rgb)
  # Float input in [-1, 1] writes the same bytes.
  image_io.save_png(tmp_path / "sub" / "f.png", back)
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "sub" / "f.png")), rgb)


def test_to_uint8_clips_and_rounds():
  out = image_io.to_uint8(np.array([-2.0, -1.0, 0.0, 1.0, 3.0, 0.004]))
  np.testing.assert_array_equal(out, [0, 0, 128, 255, 255, 128])


def test_grayscale_and_rgba_become_rgb(tmp_path):
  gray = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
  Image.fromarray(gray, "L").save(tmp_path / "g.png")
  img = image_io.load_image(tmp_path / "g.png")
  assert img.shape == (6, 8, 3)
  np.testing.assert_allclose(img[..., 0], gray / 127.5 - 1, atol=1e-6)
  np.testing.assert_array_equal(img[..., 0], img[..., 2])
  rgba = np.zeros((4, 4, 4), np.uint8)
  rgba[..., 0] = 200
  rgba[:2, ..., 3] = 255  # top half opaque red, bottom half transparent -> white
  Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
  u8 = image_io.to_uint8(image_io.load_image(tmp_path / "a.png"))
  np.testing.assert_array_equal(u8[0, 0], [200, 0, 0])
  np.testing.assert_array_equal(u8[3, 3], [255, 255, 255])


def test_load_image_resize(tmp_path):
  image_io.save_png(tmp_path / "x.png", _ramp(12, 16))
  assert image_io.load_image(tmp_path / "x.png", size=4).shape == (4, 4, 3)
  assert image_io.load_image(tmp_path / "x.png", size=(3, 5)).shape == (3, 5, 3)


def test_unreadable_files_name_the_file(tmp_path):
  bad = tmp_path / "broken.png"
  bad.write_bytes(b"not a png at all")
  with pytest.raises(ValueError, match="broken.png"):
    image_io.load_image(bad)
  with pytest.raises(ValueError, match="not found.*missing.png"):
    image_io.load_image(tmp_path / "missing.png")
  with pytest.raises(ValueError, match="broken.png"):
    image_io.load_mask(bad)


def test_make_grid_layout_and_white_padding():
  imgs = np.stack([np.full((3, 4, 3), v, np.float32) for v in (-1.0, 0.0, 0.5)])
  grid = image_io.make_grid(imgs, ncol=2, pad=2)
  assert grid.shape == (2 * 5 + 2, 2 * 6 + 2, 3)
  assert np.all(grid[:2] == 1.0) and np.all(grid[:, :2] == 1.0)
  np.testing.assert_array_equal(grid[2:5, 2:6], -1.0)
  np.testing.assert_array_equal(grid[2:5, 8:12], 0.0)
  np.testing.assert_array_equal(grid[7:10, 2:6], 0.5)
  np.testing.assert_array_equal(grid[7:10, 8:12], 1.0)  # empty cell stays white
  g8 = image_io.make_grid(np.zeros((2, 3, 3, 1), np.uint8), ncol=2, pad=1)
  assert g8.dtype == np.uint8 and g8.shape == (5, 9, 3) and g8[0, 0, 0] == 255


def test_mask_conventions_and_threshold(tmp_path):
  white = np.zeros((4, 4), np.uint8)
  white[:, :2] = 255
  Image.fromarray(white).save(tmp_path / "m.png")
  ours = image_io.load_mask(tmp_path / "m.png")
  assert ours.shape == (4, 4, 1) and ours.dtype == np.float32
  np.testing.assert_array_equal(ours[..., 0], white / 255)
  pic = image_io.load_mask(tmp_path / "m.png", convention="hole_is_white")
  np.testing.assert_array_equal(pic, 1 - ours)
  with pytest.raises(ValueError, match="unknown mask convention"):
    image_io.load_mask(tmp_path / "m.png", convention="white")
  # Save/load round trip in both conventions.
  image_io.save_mask(tmp_path / "s.png", ours, convention="hole_is_white")
  np.testing.assert_array_equal(
      image_io.load_mask(tmp_path / "s.png", convention="hole_is_white"), ours)

  soft = white.copy()
  soft[0, 0] = 100  # 0.39 -> 0 with the default threshold
  soft[3, 3] = 140  # 0.55 -> 1
  Image.fromarray(soft).save(tmp_path / "soft.png")
  with pytest.warns(UserWarning, match="not binary.*thresholding at 0.5"):
    m = image_io.load_mask(tmp_path / "soft.png")
  assert m[0, 0, 0] == 0 and m[3, 3, 0] == 1 and set(np.unique(m)) <= {0.0, 1.0}
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    m2 = image_io.load_mask(tmp_path / "soft.png", threshold=0.3)
  assert m2[0, 0, 0] == 1
  with pytest.raises(ValueError, match=r"values other than 0 and 1 \(found 0.39\d* at \(0, 0\)\)"):
    image_io.load_mask(tmp_path / "soft.png", strict=True)


def test_load_mask_resize_nearest_stays_binary(tmp_path):
  m = np.zeros((8, 8), np.uint8)
  m[2:6, 2:6] = 255
  Image.fromarray(m).save(tmp_path / "m.png")
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    out = image_io.load_mask(tmp_path / "m.png", size=4)
  np.testing.assert_array_equal(out[..., 0], [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0],
                                              [0, 0, 0, 0]])


def test_animated_gif(tmp_path):
  frames = [np.full((5, 6, 3), v, np.float32) for v in (-1.0, 0.0, 1.0)]
  image_io.save_animated_gif(tmp_path / "a.gif", frames, duration_ms=120)
  with Image.open(tmp_path / "a.gif") as gif:
    assert gif.n_frames == 3 and gif.size == (6, 5)
    assert gif.info["duration"] == 120
    gif.seek(2)
    assert np.asarray(gif.convert("RGB"))[0, 0].tolist() == [255, 255, 255]
  with pytest.raises(ValueError, match="one shape"):
    image_io.save_animated_gif(tmp_path / "b.gif", [frames[0], np.zeros((2, 2, 3))])


def test_rgba_masks_are_read_from_alpha_or_refused(tmp_path):
  """A shape drawn on a transparent layer is a mask in its alpha channel, not "all hole"."""
  shape = np.zeros((6, 8), bool)
  shape[1:4, 2:7] = True                      # the opaque region
  # Black everywhere, alpha = the shape: read by luminance alone it would be all black.
  black_rgba = np.zeros((6, 8, 4), np.uint8)
  black_rgba[..., 3] = shape * 255
  Image.fromarray(black_rgba, "RGBA").save(tmp_path / "alpha.png")
  with pytest.warns(UserWarning, match=r"alpha\.png' is RGBA with a uniform colour: read from "
                    r"its alpha channel \(opaque = white, transparent = black\)"):
    mask = image_io.load_mask(tmp_path / "alpha.png")
  np.testing.assert_array_equal(mask[..., 0], shape.astype(np.float32))
  # White on transparent black: colour and alpha agree.
  agree = black_rgba.copy()
  agree[shape, :3] = 255
  Image.fromarray(agree, "RGBA").save(tmp_path / "agree.png")
  with pytest.warns(UserWarning, match="read from its alpha channel"):
    np.testing.assert_array_equal(image_io.load_mask(tmp_path / "agree.png")[..., 0], shape)
  # Fully opaque: the colour, as for any RGB file; no note.
  opaque = np.full((6, 8, 4), 255, np.uint8)
  opaque[shape, :3] = 0
  Image.fromarray(opaque, "RGBA").save(tmp_path / "opaque.png")
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    np.testing.assert_array_equal(image_io.load_mask(tmp_path / "opaque.png")[..., 0], ~shape)
  # Red strokes on transparent black: colour (dark red) and alpha (opaque) disagree.
  red = black_rgba.copy()
  red[shape, 0] = 255
  Image.fromarray(red, "RGBA").save(tmp_path / "red.png")
  with pytest.raises(ValueError, match=r"red\.png' is RGBA and its colour and its transparency "
                     r"disagree \(read by colour it is 100% black, by alpha 69% transparent\): "
                     r"cannot tell which marks the hole; save it as a grayscale \(L\) PNG"):
    image_io.load_mask(tmp_path / "red.png")
  # LA (grey + alpha) behaves the same.
  Image.fromarray(black_rgba[..., [0, 3]], "LA").save(tmp_path / "la.png")
  with pytest.warns(UserWarning, match="is LA with a uniform colour"):
    np.testing.assert_array_equal(image_io.load_mask(tmp_path / "la.png")[..., 0], shape)


def test_16_bit_files_are_scaled_by_their_bit_depth(tmp_path):
  """A dark 16-bit image stays dark: 65535 is white, whatever the file's largest value."""
  dark = np.array([[0, 200], [32768, 40000]], np.uint16)
  Image.fromarray(dark).save(tmp_path / "dark16.png")
  assert Image.open(tmp_path / "dark16.png").mode == "I;16"
  u8 = image_io.load_image_uint8(tmp_path / "dark16.png")
  np.testing.assert_array_equal(u8[..., 0], [[0, 1], [128, 156]])
  very_dark = np.array([[0, 200], [100, 255]], np.uint16)       # max <= 255: still 16-bit
  Image.fromarray(very_dark).save(tmp_path / "very_dark16.png")
  assert image_io.load_image_uint8(tmp_path / "very_dark16.png").max() == 1
  mask16 = np.where(np.arange(16).reshape(4, 4) % 2 == 0, 65535, 0).astype(np.uint16)
  Image.fromarray(mask16).save(tmp_path / "mask16.png")
  np.testing.assert_array_equal(image_io.load_mask(tmp_path / "mask16.png")[..., 0],
                                mask16 / 65535)
  # A 32-bit integer image (e.g. a TIFF) has no bit depth to scale by: refused, not guessed.
  Image.fromarray(np.full((2, 2), 7, np.int32)).save(tmp_path / "int32.tif")
  with pytest.raises(ValueError, match=r"int32\.tif' is a 32-bit integer image \(mode I\), "
                     "whose white level is unknown; save it as an 8- or 16-bit PNG"):
    image_io.load_image(tmp_path / "int32.tif")
  with pytest.raises(ValueError, match="32-bit integer image"):
    image_io.load_mask(tmp_path / "int32.tif")


def test_strict_mask_message_carries_the_callers_hint(tmp_path):
  soft = np.full((2, 2), 255, np.uint8)
  soft[0, 0] = 100
  Image.fromarray(soft).save(tmp_path / "soft.png")
  with pytest.raises(ValueError, match=r"at \(0, 0\)\); drop --strict_mask$"):
    image_io.load_mask(tmp_path / "soft.png", strict=True, strict_hint="drop --strict_mask")
