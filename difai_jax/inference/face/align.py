"""The FFHQ crop of a face in a photo, and the way back: completions pasted into the photo's hole.

Not a paper component. DiFAI's networks (and any public FFHQ / CelebA-HQ StyleGAN2) see faces
aligned as FFHQ was built (Karras et al. 2019, ``recreate_aligned_images`` of NVlabs'
ffhq-dataset): from the eye centres and mouth corners, the crop is the square

    c = eye_avg + 0.1 * eye_to_mouth            (its centre)
    x = unit(eye_to_eye - rot90(eye_to_mouth)) * max(2 |eye_to_eye|, 1.8 |eye_to_mouth|)
    y = rot90(x)                                (x rotated by 90 degrees, pointing down)
    corners c - x - y (top left), c - x + y (bottom left), c + x + y, c + x - y

so that the eyes sit level at a fixed place of a crop of side 2 |x|. FFHQ takes the eyes as the
means of dlib's six eye-contour points; here they are MTCNN's eye points (``mtcnn.Face``).

Coordinates: landmarks are pixel indices (the centre of pixel (row i, column j) is (x, y) =
(j, i)), as MTCNN and dlib give them; the crop square (``Alignment.quad``) and the maps are in
continuous coordinates where that pixel spans [j, j + 1) x [i, i + 1) (FFHQ's ``quad + 0.5``).

The crop map is a similarity (rotation, scale, shift); :func:`warp_image` samples the photo
bilinearly at k x k points per crop pixel (box-averaged: an area filter when the photo is
larger than the crop; photos over 4x larger are first box-reduced by an integer factor, as
FFHQ "shrinks"), mirroring the photo at its borders (FFHQ pads by reflection too).
:func:`warp_hole` marks a crop pixel as hole when any photo hole pixel contributes to it, so no
hole content ever reaches the model's known pixels. :func:`paste` is the inverse: it samples a
crop at each photo pixel to be replaced and changes no other pixel, so the photo's known pixels
stay bit-exact.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

# MTCNN's landmark order (difai_jax.inference.face.mtcnn.Face.landmarks).
LEFT_EYE, RIGHT_EYE, NOSE, MOUTH_LEFT, MOUTH_RIGHT = range(5)
MAX_SAMPLES = 4          # k: at most k x k samples per output pixel
SAMPLES_PER_CHUNK = 1 << 21   # points sampled at once (bounds memory for large crops)


def _rot90(v: np.ndarray) -> np.ndarray:
  """(x, y) -> (-y, x): the 90 degree turn taking the crop's x axis to its (downward) y axis."""
  return np.array([-v[1], v[0]])


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
  """(4, 2) corners (top left, bottom left, bottom right, top right) of the FFHQ crop square,
  in continuous coordinates, from five (x, y) landmarks in MTCNN's order (pixel indices)."""
  lm = np.asarray(landmarks, np.float64)
  if lm.shape != (5, 2) or not np.all(np.isfinite(lm)):
    raise ValueError(f"alignment needs five finite (x, y) landmarks; got shape {lm.shape}")
  eye_left, eye_right = lm[LEFT_EYE], lm[RIGHT_EYE]
  eye_avg = (eye_left + eye_right) / 2
  eye_to_eye = eye_right - eye_left
  mouth_avg = (lm[MOUTH_LEFT] + lm[MOUTH_RIGHT]) / 2
  eye_to_mouth = mouth_avg - eye_avg
  x = eye_to_eye - _rot90(eye_to_mouth)
  if np.hypot(*x) < 1e-6:
    raise ValueError(f"landmarks {lm.tolist()} give no face orientation (eyes and mouth "
                     "collapse to one point)")
  x = x / np.hypot(*x) * max(2.0 * np.hypot(*eye_to_eye), 1.8 * np.hypot(*eye_to_mouth))
  y = _rot90(x)
  c = eye_avg + 0.1 * eye_to_mouth + 0.5             # + 0.5: pixel index -> continuous
  return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


@dataclasses.dataclass(frozen=True)
class Alignment:
  """The crop square ``quad`` of a photo (corners in continuous photo coordinates: top left,
  bottom left, bottom right, top right) seen as a ``size`` x ``size`` image."""
  quad: np.ndarray
  size: int

  @property
  def matrix(self) -> np.ndarray:
    """(2, 3) affine map: crop (u, v, 1) -> photo (x, y), continuous coordinates."""
    q = np.asarray(self.quad, np.float64)
    return np.stack([(q[3] - q[0]) / self.size, (q[1] - q[0]) / self.size, q[0]], axis=1)

  @property
  def inverse(self) -> np.ndarray:
    """(2, 3) affine map: photo (x, y, 1) -> crop (u, v)."""
    m = self.matrix
    a = np.linalg.inv(m[:, :2])
    return np.concatenate([a, -a @ m[:, 2:]], axis=1)

  @property
  def scale(self) -> float:
    """Photo pixels per crop pixel (> 1: the crop shrinks the photo)."""
    return float(np.hypot(*(self.quad[3] - self.quad[0]))) / self.size

  @property
  def angle(self) -> float:
    """Roll of the face in degrees: the crop's x axis against the photo's, counter-clockwise
    as seen in the photo."""
    dx, dy = self.quad[3] - self.quad[0]
    return float(-math.degrees(math.atan2(dy, dx)))

  def to_photo(self, uv: np.ndarray) -> np.ndarray:
    return _apply(self.matrix, uv)

  def to_crop(self, xy: np.ndarray) -> np.ndarray:
    return _apply(self.inverse, xy)


def from_landmarks(landmarks: np.ndarray, size: int) -> Alignment:
  """The FFHQ :class:`Alignment` of a face given its five landmarks, for a ``size`` px model."""
  if int(size) < 1:
    raise ValueError(f"the crop size must be positive; got {size}")
  return Alignment(ffhq_quad(landmarks), int(size))


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
  points = np.asarray(points, np.float64)
  return points @ matrix[:, :2].T + matrix[:, 2]


# ----------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------

def _mirror(t: np.ndarray, n: int) -> np.ndarray:
  """Continuous coordinate t mirrored into [0, n] at the image's borders (0 and n)."""
  t = np.mod(t, 2 * n)
  return np.where(t > n, 2 * n - t, t)


def bilinear(image: np.ndarray, xy: np.ndarray, border: str) -> np.ndarray:
  """``image`` (H, W, C) at continuous points ``xy`` (..., 2) -> (..., C) float64.

  Pixel centres are at (j + 0.5, i + 0.5); ``border`` is ``"mirror"`` (the image reflected at
  its edges, repeating forever) or ``"clamp"`` (the edge pixels extended).
  """
  h, w = image.shape[:2]
  x, y = xy[..., 0], xy[..., 1]
  if border == "mirror":
    x, y = _mirror(x, w), _mirror(y, h)
  elif border != "clamp":
    raise ValueError(f"border must be 'mirror' or 'clamp'; got {border!r}")
  x = np.clip(x - 0.5, 0, w - 1)
  y = np.clip(y - 0.5, 0, h - 1)
  x0 = np.minimum(np.floor(x).astype(np.int64), w - 2 if w > 1 else 0)
  y0 = np.minimum(np.floor(y).astype(np.int64), h - 2 if h > 1 else 0)
  x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
  fx, fy = (x - x0)[..., None], (y - y0)[..., None]
  img = image.astype(np.float64)
  top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
  bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
  return top * (1 - fy) + bottom * fy


def _subpixels(k: int) -> np.ndarray:
  """(k * k, 2) offsets of k x k sample points inside a unit pixel."""
  t = (np.arange(k) + 0.5) / k
  return np.stack(np.meshgrid(t, t, indexing="xy"), axis=-1).reshape(-1, 2)


def _area_sample(source: np.ndarray, matrix: np.ndarray, corners: np.ndarray, k: int,
                 border: str, reduce: str = "mean") -> np.ndarray:
  """Each target pixel (top-left corner ``corners`` (N, 2)) as the mean (or max) of ``source``
  at its k x k sample points mapped by ``matrix`` (target -> source): (N, C) float64."""
  offsets = _subpixels(k)
  out = np.empty((len(corners), source.shape[-1]), np.float64)
  step = max(1, SAMPLES_PER_CHUNK // len(offsets))
  for start in range(0, len(corners), step):
    pts = corners[start:start + step, None, :] + offsets[None]        # (n, k*k, 2)
    values = bilinear(source, _apply(matrix, pts), border)            # (n, k*k, C)
    out[start:start + step] = values.mean(axis=1) if reduce == "mean" else values.max(axis=1)
  return out


def _box_reduce(image: np.ndarray, factor: int, reduce: str = "mean") -> np.ndarray:
  """(H, W, C) -> (ceil(H / f), ceil(W / f), C): mean (or max) of f x f blocks (the last,
  partial blocks padded with their edge pixels)."""
  h, w, c = image.shape
  hh, ww = -(-h // factor), -(-w // factor)
  padded = np.pad(image.astype(np.float64), ((0, hh * factor - h), (0, ww * factor - w), (0, 0)),
                  mode="edge").reshape(hh, factor, ww, factor, c)
  return padded.mean(axis=(1, 3)) if reduce == "mean" else padded.max(axis=(1, 3))


def _crop_plan(alignment: Alignment) -> tuple[int, np.ndarray, int]:
  """(shrink, crop -> shrunk photo matrix, k): FFHQ's integer pre-shrink for a crop more than
  4x smaller than the photo, then k x k samples per crop pixel (spacing <= 1 photo pixel)."""
  scale = alignment.scale
  shrink = int(scale // 2) if scale > MAX_SAMPLES else 1
  matrix = alignment.matrix / shrink
  k = int(min(MAX_SAMPLES, max(1, math.ceil(scale / shrink - 1e-9))))
  return shrink, matrix, k


def _pixel_corners(h: int, w: int) -> np.ndarray:
  yy, xx = np.mgrid[0:h, 0:w]
  return np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float64)


# ----------------------------------------------------------------------------------------------
# Photo -> crop
# ----------------------------------------------------------------------------------------------

def warp_image(image: np.ndarray, alignment: Alignment) -> np.ndarray:
  """(H, W, C) photo -> (size, size, C) float32 crop in the photo's value range."""
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[..., None]
  shrink, matrix, k = _crop_plan(alignment)
  source = _box_reduce(image, shrink) if shrink > 1 else image
  s = alignment.size
  out = _area_sample(source, matrix, _pixel_corners(s, s), k, "mirror")
  return out.reshape(s, s, -1).astype(np.float32)


def warp_hole(known: np.ndarray, alignment: Alignment) -> np.ndarray:
  """(H, W) or (H, W, 1) photo mask (1 / True = known) -> (size, size) bool crop hole: True
  wherever a hole pixel of the photo has any weight in the crop pixel's samples."""
  hole = (np.asarray(known).reshape(known.shape[0], known.shape[1]) < 0.5).astype(np.float64)
  shrink, matrix, k = _crop_plan(alignment)
  source = _box_reduce(hole[..., None], shrink, "max") if shrink > 1 else hole[..., None]
  s = alignment.size
  out = _area_sample(source, matrix, _pixel_corners(s, s), k, "mirror", reduce="max")
  return out.reshape(s, s) > 1e-9


def _hole_in_crop(known: np.ndarray, alignment: Alignment) -> np.ndarray:
  """(n, 2) crop coordinates of the centres of the photo's hole pixels."""
  known = np.asarray(known).reshape(known.shape[0], known.shape[1])
  ys, xs = np.nonzero(known < 0.5)
  return alignment.to_crop(np.stack([xs + 0.5, ys + 0.5], axis=1))


def hole_outside(known: np.ndarray, alignment: Alignment) -> int:
  """How many hole pixels of the photo have their centre outside the crop square."""
  uv = _hole_in_crop(known, alignment)
  s = alignment.size
  return int(np.count_nonzero(np.any((uv < 0) | (uv > s), axis=1)))


# An image counts as already aligned when its face's FFHQ crop nearly is the image: the crop's
# side spans at least ALIGNED_MIN_SPAN of the image's shorter side, its centre lies within
# ALIGNED_MAX_OFFSET of that side from the image's centre, it is rolled at most ALIGNED_MAX_ROLL
# degrees, and the image is square within ALIGNED_MAX_ASPECT. (A 256 px FFHQ / CelebA-HQ face:
# its detected crop spans ~232 px, ~3 px off centre, rolled ~1.8 deg.)
ALIGNED_MIN_SPAN = 0.85
ALIGNED_MAX_OFFSET = 0.06
ALIGNED_MAX_ROLL = 3.0
ALIGNED_MAX_ASPECT = 1.05


def already_aligned(shape: tuple[int, int], alignment: Alignment) -> bool:
  """Whether an image of ``shape`` (H, W) is already the face crop ``alignment`` would cut (the
  thresholds above): re-cropping it would only cut its edges off."""
  h, w = int(shape[0]), int(shape[1])
  side = min(h, w)
  if max(h, w) > ALIGNED_MAX_ASPECT * side:
    return False
  span = alignment.scale * alignment.size
  centre = np.asarray(alignment.quad, np.float64).mean(axis=0)
  offset = float(np.hypot(centre[0] - w / 2.0, centre[1] - h / 2.0))
  return (span >= ALIGNED_MIN_SPAN * side and offset <= ALIGNED_MAX_OFFSET * side
          and abs(alignment.angle) <= ALIGNED_MAX_ROLL)


def grown_to_hold(known: np.ndarray, alignment: Alignment, margin: float = 1.02):
  """``(alignment, factor)``: the crop scaled about its centre by the smallest ``factor`` >= 1
  (times ``margin``) that puts every hole pixel's centre inside it; ``factor`` 1 and the same
  alignment when none is outside."""
  uv = _hole_in_crop(known, alignment)
  if not len(uv):
    return alignment, 1.0
  half = alignment.size / 2.0
  reach = float(np.max(np.abs(uv - half))) / half
  if reach <= 1.0:
    return alignment, 1.0
  factor = reach * margin
  quad = np.asarray(alignment.quad, np.float64)
  centre = quad.mean(axis=0)
  return Alignment(centre + factor * (quad - centre), alignment.size), factor


def inside(shape: tuple[int, int], alignment: Alignment) -> np.ndarray:
  """(H, W) bool: photo pixels whose centre lies inside the crop square."""
  uv = alignment.to_crop(_pixel_corners(*shape) + 0.5)
  s = alignment.size
  return np.all((uv >= 0) & (uv <= s), axis=1).reshape(shape)


# ----------------------------------------------------------------------------------------------
# Crop -> photo
# ----------------------------------------------------------------------------------------------

def paste(photo: np.ndarray, replace: np.ndarray, crop: np.ndarray,
          alignment: Alignment) -> np.ndarray:
  """``photo`` (H, W, C) uint8 with the pixels where ``replace`` (H, W) is True taken from
  ``crop`` ((size, size, C) floats in [0, 255]); every other pixel is returned unchanged.

  Each replaced pixel is the mean of the crop, bilinearly sampled (edges extended), at k x k
  points of the pixel's square (k = 1 when the crop is not smaller than the photo's face).
  """
  photo = np.asarray(photo)
  replace = np.asarray(replace, bool).reshape(photo.shape[:2])
  out = photo.copy()
  ys, xs = np.nonzero(replace)
  if not len(ys):
    return out
  k = int(min(MAX_SAMPLES, max(1, math.ceil(1.0 / alignment.scale - 1e-9))))
  corners = np.stack([xs, ys], axis=1).astype(np.float64)
  crop = np.asarray(crop, np.float64)
  if crop.ndim == 2:
    crop = crop[..., None]
  values = _area_sample(crop, alignment.inverse, corners, k, "clamp")
  out[ys, xs] = np.clip(np.round(values), 0, 255).astype(photo.dtype).reshape(
      out[ys, xs].shape)
  return out


# ----------------------------------------------------------------------------------------------
# A photo for the model
# ----------------------------------------------------------------------------------------------

def select_face(faces: list, index: int | None, name: str = "the image") -> int:
  """Index of the face to align among detections (largest first): the only one, or ``index``.

  Raises:
    ValueError: no face; several faces and no ``index`` (the message lists them with box and
      score); an ``index`` out of range.
  """
  listing = "; ".join(f"face {i}: {f.describe()}" for i, f in enumerate(faces))
  if not faces:
    raise ValueError(f"no face found in {name}")
  if index is None:
    if len(faces) > 1:
      raise ValueError(f"{len(faces)} faces found in {name} ({listing}); pick one with "
                       f"--face N (0 = the largest)")
    return 0
  if not 0 <= index < len(faces):
    raise ValueError(f"--face {index} but {name} has {len(faces)} face"
                     f"{'s' * (len(faces) != 1)} ({listing})")
  return index


def crop_inputs(image: np.ndarray, known: np.ndarray,
                alignment: Alignment) -> tuple[np.ndarray, np.ndarray]:
  """The model's inputs from a photo: (size, size, 3) float32 image in [-1, 1] and
  (size, size, 1) float32 mask (1 = known).

  The photo's hole pixels are first set to the mean known colour, and every crop pixel they
  reach is hole (:func:`warp_hole`): nothing of the hole's content reaches the model.
  """
  known = np.asarray(known).reshape(image.shape[:2]) > 0.5
  filled = np.array(image, copy=True)
  filled[~known] = np.round(image[known].mean(axis=0)).astype(image.dtype)
  crop = warp_image(filled, alignment)
  hole = warp_hole(known, alignment)
  model_image = np.clip(crop / 127.5 - 1.0, -1.0, 1.0).astype(np.float32)
  return model_image, (~hole).astype(np.float32)[..., None]


def describe(alignment: Alignment) -> str:
  """A short account of the crop: its size, roll and photo pixels per crop pixel."""
  return (f"FFHQ crop {alignment.size}x{alignment.size} px, rolled {alignment.angle:+.1f} deg, "
          f"{alignment.scale:.2f} photo px per model px")
