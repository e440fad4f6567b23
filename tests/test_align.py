"""The FFHQ crop (difai_jax/inference/face/align.py) and inpainting whole photos (inpaint --align).

The geometry is checked against hand-computed quads and by round trips (crop then paste back
returns the photo: within interpolation error in the hole, bit-exact elsewhere); the CLI path
runs the shipped toy DiFAI (64 px, K = 2) once, on two photos in one batch: a toy face pasted
rotated and off-centre into a 320 x 256 picture (tests/fixtures/mtcnn_io.npz) and skimage's
astronaut, each with a hole given in photo coordinates.
"""

import os

import numpy as np
from PIL import Image
import pytest

from difai_jax import inpaint
from difai_jax.data import toy_faces
from difai_jax.inference import inputs as inputs_lib
from difai_jax.inference.face import detect
from difai_jax.inference.face import align
from difai_jax.inference.face import mtcnn
from tests.conftest import fixture_path


def _landmarks(cx, cy, d, degrees=0.0):
  """Five landmarks of an upright face (eye distance d) rolled ``degrees`` counter-clockwise
  as seen, around (cx, cy)."""
  upright = np.array([[-0.5, -0.2], [0.5, -0.2], [0.0, 0.1], [-0.4, 0.6], [0.4, 0.6]]) * d
  t = np.radians(degrees)
  rot = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
  return upright @ rot.T + [cx, cy]


def _smooth_photo(h=120, w=160):
  yy, xx = np.mgrid[0:h, 0:w]
  rgb = np.stack([128 + 100 * np.sin(xx / 13 + yy / 29), 128 + 100 * np.cos(yy / 17),
                  128 + 60 * np.sin((xx - yy) / 23)], -1)
  return np.round(rgb).astype(np.uint8)


def test_ffhq_quad_of_an_upright_face():
  # eye_to_eye (20, 0), eye_to_mouth (0, 20): x = (20, 0) - (-20, 0) -> unit (1, 0) * max(40, 36)
  lm = np.array([[40, 50], [60, 50], [50, 60], [42, 70], [58, 70]], np.float64)
  quad = align.ffhq_quad(lm)
  c = np.array([50, 52]) + 0.5        # eye_avg + 0.1 eye_to_mouth, + 0.5 to continuous
  np.testing.assert_allclose(quad, c + np.array([[-40, -40], [-40, 40], [40, 40], [40, -40]]))
  a = align.from_landmarks(lm, 64)
  assert a.scale == pytest.approx(80 / 64) and a.angle == pytest.approx(0.0)
  np.testing.assert_allclose(a.to_photo([[0, 0], [64, 64], [32, 32]]),
                             [quad[0], quad[2], c])
  np.testing.assert_allclose(a.to_crop(a.to_photo([[3.5, 17.25]])), [[3.5, 17.25]])
  with pytest.raises(ValueError, match="five finite"):
    align.ffhq_quad(lm[:4])


def test_crop_turns_and_grows_with_the_face():
  base = align.from_landmarks(_landmarks(80, 60, 20), 32)
  rolled = align.from_landmarks(_landmarks(80, 60, 30, degrees=25), 32)
  assert rolled.angle == pytest.approx(25.0)
  assert rolled.scale == pytest.approx(base.scale * 1.5)
  # the same face points land on the same crop points
  np.testing.assert_allclose(rolled.to_crop(_landmarks(80, 60, 30, 25) + 0.5),
                             base.to_crop(_landmarks(80, 60, 20) + 0.5), atol=1e-9)


@pytest.mark.parametrize("size, max_error", [(128, 1), (48, 2), (12, 12)])
def test_crop_then_paste_back_returns_the_photo(size, max_error):
  """Enlarging (0.75 photo px per crop px), shrinking (2) and pre-shrunk (8: the photo is
  box-reduced by an integer factor first) crops; measured max errors 0, 1 and 8 levels."""
  photo = _smooth_photo()
  a = align.from_landmarks(_landmarks(85, 58, 24, degrees=20), size)
  assert a.scale == pytest.approx(96 / size)
  crop = align.warp_image(photo, a)
  assert crop.shape == (size, size, 3)
  hole = np.zeros(photo.shape[:2], bool)
  hole[45:70, 70:100] = True
  back = align.paste(photo, hole, crop, a)
  np.testing.assert_array_equal(back[~hole], photo[~hole])      # bit-exact outside the hole
  error = np.abs(back.astype(int) - photo)[hole]
  assert error.max() <= max_error and error.mean() < max_error / 3, (error.max(), error.mean())


@pytest.mark.parametrize("size", [128, 48, 12])
def test_no_hole_pixel_reaches_a_known_crop_pixel(size):
  rng = np.random.default_rng(size)
  photo = _smooth_photo()
  known = rng.uniform(size=photo.shape[:2]) > 0.02           # scattered hole pixels
  known[50:60, 80:95] = False
  a = align.from_landmarks(_landmarks(85, 58, 24, degrees=-35), size)
  dark, bright = photo.copy(), photo.copy()
  dark[~known], bright[~known] = 0, 255
  hole = align.warp_hole(known, a)
  changed = np.any(align.warp_image(dark, a) != align.warp_image(bright, a), axis=-1)
  assert changed.any() and not (changed & ~hole).any()
  # and crop_inputs' mask is that hole; the hole's content never shows
  image, mask = align.crop_inputs(dark, known, a)
  np.testing.assert_array_equal(mask[..., 0] == 0, hole)
  np.testing.assert_array_equal(image, align.crop_inputs(bright, known, a)[0])


def test_hole_outside_the_crop_and_inside():
  a = align.from_landmarks(_landmarks(85, 58, 12), 32)        # a 48 px square around (85, 60)
  known = np.ones((120, 160), bool)
  known[58:62, 84:88] = False
  assert align.hole_outside(known, a) == 0
  known[0, 0] = False
  assert align.hole_outside(known, a) == 1
  inside = align.inside((120, 160), a)
  assert inside[60, 85] and not inside[0, 0] and 40 * 40 < inside.sum() < 50 * 50


class _FakeDetector:
  def __init__(self, faces):
    self.faces = faces

  def detect(self, image):
    assert image.ndim == 3
    return self.faces


def _face(x, y, d, score):
  return mtcnn.Face(np.array([x - d, y - d, x + d, y + 1.2 * d], np.float32), score,
                    _landmarks(x, y, d))


def test_face_choice_and_auto_mode():
  image = np.zeros((100, 150, 3), np.uint8)
  two = _FakeDetector([_face(50, 40, 20, 0.99), _face(110, 50, 10, 0.9)])
  with pytest.raises(inputs_lib.InputError, match=r"2 faces found in p\.png \(face 0: box \(30, "
                     r"20, 70, 64\), 40x44 px, score 0\.990; face 1: box \(100, 40, 120, 62\).*"
                     r"score 0\.900\); pick one with --face N"):
    detect.find_alignment("p.png", image, 64, detector=two)
  a, notes = detect.find_alignment("p.png", image, 64, face=1, detector=two)
  np.testing.assert_allclose(a.quad, align.ffhq_quad(_landmarks(110, 50, 10)))
  assert "face 1 (box (100, 40, 120, 62)" in notes[0]
  with pytest.raises(inputs_lib.InputError, match=r"--face 2 but p\.png has 2 faces"):
    detect.find_alignment("p.png", image, 64, face=2, detector=two)
  none = _FakeDetector([])
  with pytest.raises(inputs_lib.InputError, match=r"no face found in p\.png; pass --align off"):
    detect.find_alignment("p.png", image, 64, mode="on", detector=none)
  a, notes = detect.find_alignment("p.png", image, 64, mode="auto", detector=none)
  assert a is None and "no face found in p.png; it is used as it is" in notes[0]
  # auto leaves a model-sized square alone, without looking for faces
  assert detect.find_alignment("q.png", np.zeros((64, 64, 3), np.uint8), 64,
                                detector=None) == (None, [])
  assert detect.find_alignment("p.png", image, 64, mode="off") == (None, [])
  with pytest.raises(ValueError, match="picking a face needs --align on or auto"):
    inpaint.run("toy-difai", "p.png", "m.png", "out", align="off", face=0)


def test_a_hole_off_the_face_is_refused_before_the_models():
  photo = _smooth_photo()
  known = np.ones((120, 160, 1), np.float32)
  known[2:6, 150:155] = 0
  a = align.from_landmarks(_landmarks(60, 60, 12), 64)
  with pytest.raises(inputs_lib.InputError, match=r"20 hole pixels of p\.png lie outside the "
                     r"face crop the model sees \(FFHQ crop 64x64 px.*--align off"):
    inputs_lib.make_example("p.png", "m.png", photo, known, 64, alignment=a)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  import skimage.data  # pylint: disable=import-outside-toplevel
  d = tmp_path_factory.mktemp("photos")
  (d / "images").mkdir()
  (d / "masks").mkdir()
  toy = np.load(fixture_path("mtcnn_io.npz"))["toy_photo"]
  astronaut = skimage.data.astronaut()
  holes = {"toy": (slice(108, 132), slice(236, 270)),        # the toy face's mouth
           "astronaut": (slice(125, 155), slice(200, 250))}  # the astronaut's mouth
  out = {}
  for name, image in (("toy", toy), ("astronaut", astronaut)):
    known = np.ones(image.shape[:2], np.uint8)
    known[holes[name]] = 0
    Image.fromarray(image).save(d / "images" / f"{name}.png")
    Image.fromarray(known * 255).save(d / "masks" / f"{name}.png")
    out[name] = image, known
  return d, out


def test_inpaints_whole_photos_changing_only_their_holes(photos, tmp_path, capsys):
  folder, inputs = photos
  written = inpaint.run("toy-difai", str(folder / "images"), str(folder / "masks"),
                        str(tmp_path / "out"), num_completions=2, align="on", batch_size=2)
  stdout = capsys.readouterr().out
  assert len(written) == 2
  for name, (image, known) in inputs.items():
    assert f"{name}.png: face 0 (box (" in stdout, stdout
    target = tmp_path / "out" / name
    assert sorted(os.listdir(target)) == ["aligned.png", "completion_00.png",
                                          "completion_01.png", "grid.png"]
    keep = known == 1
    completions = [np.asarray(Image.open(target / f"completion_{j:02d}.png")) for j in (0, 1)]
    for c in completions:
      assert c.shape == image.shape
      np.testing.assert_array_equal(c[keep], image[keep])     # the whole photo, bit-exact
      assert np.mean(c[~keep] != image[~keep]) > 0.5           # the hole is filled anew
    assert np.any(completions[0][~keep] != completions[1][~keep])
    aligned = np.asarray(Image.open(target / "aligned.png"))
    assert aligned.shape == (64 + 4, 6 * (64 + 2) + 2, 3)
    grid = np.asarray(Image.open(target / "grid.png"))
    h, w = image.shape[:2]
    assert grid.shape == (h + 4, 6 * (w + 2) + 2, 3)
    np.testing.assert_array_equal(grid[2:2 + h, 2 + 4 * (w + 2):2 + 4 * (w + 2) + w],
                                  completions[0])


def test_already_aligned_faces_are_recognised_by_their_crop_geometry():
  # The case of the issue: a 256 px FFHQ-aligned face whose detected crop has corners
  # [[11, 17], [19, 249], [250, 242], [243, 10]] (~232 px, rolled 1.8 deg).
  quad = np.array([[11, 17], [19, 249], [250, 242], [243, 10]], np.float64)
  ffhq = align.Alignment(quad, 64)
  assert 231 < ffhq.scale * 64 < 233 and 1.5 < ffhq.angle < 2.0
  assert align.already_aligned((256, 256), ffhq)
  assert not align.already_aligned((256, 320), ffhq)                # not square
  centre = quad.mean(axis=0)
  small = align.Alignment(centre + 0.7 * (quad - centre), 64)       # spans ~162 of 256 px
  assert not align.already_aligned((256, 256), small)
  assert not align.already_aligned((256, 256), align.Alignment(quad + [30, 0], 64))  # off centre
  t = np.radians(8)
  rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
  assert not align.already_aligned((256, 256),
                                   align.Alignment((quad - centre) @ rot.T + centre, 64))
  # In auto mode such an image is used as it is; --align on crops it anyway.
  lm = _landmarks(128, 134, 58)
  detector = _FakeDetector([mtcnn.Face(np.array([60, 50, 196, 210], np.float32), 0.99, lm)])
  crop = align.from_landmarks(lm, 64)
  assert align.already_aligned((256, 256), crop)
  a, notes = detect.find_alignment("f.png", np.zeros((256, 256, 3), np.uint8), 64,
                                   detector=detector)
  assert a is None and "f.png is already a face crop" in notes[0] and "--align on" in notes[0]
  a, _ = detect.find_alignment("f.png", np.zeros((256, 256, 3), np.uint8), 64, mode="on",
                               detector=detector)
  np.testing.assert_allclose(a.quad, crop.quad)


def test_auto_grows_the_crop_to_hold_a_hole_at_the_edge_of_a_toy_face():
  image = toy_faces.render_face(0, 28001, 256)                      # a test-split face
  known = np.ones((256, 256, 1), np.float32)
  known[0:24, 96:160] = 0                                           # a hole at its top edge
  strict, _ = detect.find_alignment("t.png", image, 64, mode="on")
  assert align.hole_outside(known, strict) > 0                      # outside MTCNN's crop ...
  with pytest.raises(inputs_lib.InputError, match="lie outside the face crop"):
    inputs_lib.make_example("t.png", "m.png", image, known, 64, alignment=strict)
  a, notes = detect.find_alignment("t.png", image, 64, known=known)  # ... auto grows it
  assert align.hole_outside(known, a) == 0
  assert any("crop is grown" in n and "--align on refuses" in n for n in notes)
  grown = a.scale / strict.scale
  assert 1.0 < grown < 2.0
  np.testing.assert_allclose(a.quad.mean(axis=0), strict.quad.mean(axis=0), atol=1e-9)
  assert abs(a.angle - strict.angle) < 1e-9
  example = inputs_lib.make_example("t.png", "m.png", image, known, 64, alignment=a)
  assert example.model_mask.min() == 0.0 and example.model_mask.max() == 1.0
  # A hole inside the crop leaves it as MTCNN found it.
  inner = np.ones((256, 256, 1), np.float32)
  inner[120:140, 120:140] = 0
  same, _ = detect.find_alignment("t.png", image, 64, known=inner)
  np.testing.assert_array_equal(same.quad, strict.quad)
