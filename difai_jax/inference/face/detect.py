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
                   face: int | None = None, detector: Any = None) -> tuple[Any, list[str]]:
  """(the face's ``align.Alignment`` or None, notes): where the model's crop of ``image`` lies.

  ``mode``: ``off`` never aligns; ``auto`` aligns unless the image is already a square of the
  model's ``size``, and uses the image as it is when no face is found; ``on`` requires a face.
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
  notes = [f"note: {image_path}: face {index} ({faces[index].describe()}) -> "
           f"{align.describe(alignment)}"]
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
