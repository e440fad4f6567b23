"""Finding the face of a photo for inference: the shipped MTCNN's detections turned into the
FFHQ crop (:mod:`difai_jax.inference.face.align`) the model sees, or a one-line refusal."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from difai_jax import pretrained
from difai_jax.inference.face import align
from difai_jax.inference.face import mtcnn
from difai_jax.inference.inputs import ALIGN_MODES
from difai_jax.inference.inputs import InputError
from difai_jax.inference.inputs import SMALL_INPUT_FACTOR


def find_alignment(image_path: str, image: np.ndarray, size: int, *, mode: str = "auto",
                   face: int | None = None, detector: Any = None,
                   known: np.ndarray | None = None) -> tuple[Any, list[str]]:
  """(the face's ``align.Alignment`` or None, notes): where the model's crop of ``image`` lies.

  ``mode``: ``off`` never aligns; ``on`` requires a face and crops it (a hole outside the crop
  is then refused); ``auto`` aligns unless the image is already a square of the model's
  ``size``, uses the image as it is when no face is found or when it already is the face's
  crop (``align.already_aligned``: a CelebA-HQ / FFHQ face), and grows the crop about its
  centre when the hole (``known``, (H, W[, 1]), 1 = known) reaches outside it.
  ``detector``: an ``mtcnn.Detector`` (default: the shipped weights).

  Raises:
    InputError: no face (``on``), several faces without ``face``, ``face`` out of range.
  """
  if mode not in ALIGN_MODES:
    raise ValueError(f"--align must be one of {', '.join(ALIGN_MODES)}; got {mode!r}")
  h, w = image.shape[:2]
  if mode == "off" or (mode == "auto" and (h, w) == (size, size)):
    return None, []
  detector = detector or load_detector()
  faces = detector.detect(image)
  if not faces and mode == "auto":
    return None, [f"note: no face found in {image_path}; it is used as it is (a face crop), "
                  f"resized to {size}x{size} (--align off skips the search)"]
  try:
    index = align.select_face(faces, face, image_path)
  except ValueError as e:
    hint = ("; pass --align off to use the image as it is (a face crop)" if not faces else "")
    raise InputError(f"{e}{hint}") from None
  alignment = align.from_landmarks(faces[index].landmarks, size)
  if mode == "auto" and align.already_aligned((h, w), alignment):
    return None, [f"note: {image_path} is already a face crop (face {index}'s FFHQ crop spans "
                  f"{alignment.scale * size:.0f} of its {min(h, w)} px, rolled "
                  f"{alignment.angle:+.1f} deg): used as it is, resized to {size}x{size} "
                  "(--align on crops it anyway)"]
  notes = []
  if mode == "auto" and known is not None:
    alignment, factor = align.grown_to_hold(known, alignment)
    if factor > 1.0:
      notes.append(f"note: the hole in {image_path} reaches outside face {index}'s crop: the "
                   f"crop is grown {factor:.2f}x about its centre to hold it (--align on "
                   "refuses instead)")
  notes.insert(0, f"note: {image_path}: face {index} ({faces[index].describe()}) -> "
                  f"{align.describe(alignment)}")
  if alignment.scale * SMALL_INPUT_FACTOR < 1:
    notes.append(f"note: the face in {image_path} is small: the model's {size} px crop "
                 f"enlarges it {1 / alignment.scale:.1f}x, so expect a blurry completion")
  return alignment, notes


@functools.lru_cache(maxsize=4)
def load_detector(directory: str = mtcnn.SHORT_NAME) -> mtcnn.Detector:
  """A :class:`mtcnn.Detector` with converted weights (default: the shipped ones), loaded once."""
  config = pretrained.read_config(directory)
  if config["kind"] != "mtcnn":
    raise ValueError(f"{directory} holds a {config['kind']!r} model, not MTCNN weights")
  module, variables = pretrained.load(directory)
  return mtcnn.Detector(module, variables)
