"""Another method's completions as files: the layout ``evaluate --completions_dir`` scores.

Layout (one folder per bucket, K files per test image; ``image_id`` as in exported masks,
``mask_exchange.image_id``: the test image's index, zero-padded)::

    DIR/<bucket>/<image_id>_<k>.png     k = 0 .. K-1; completion 0 is the one Table 1 reads
    DIR/<bucket>/<image_id>.png         the same as <image_id>_0.png (methods with K = 1)

PNG, BMP (lossless) or JPEG / WebP files, at the evaluation size. K is read from image 00000 of
the first bucket; every image of every bucket must have K. Each completion's known pixels are
compared with the ground truth's (8-bit levels, over the mask's known pixels): a lossless file
must keep them exactly (tolerance 0), a lossy one within a mean absolute difference of
:data:`LOSSY_TOLERANCE` levels (``--known_tolerance`` overrides both); a method that alters them
is reported, and scored both as it is ("raw") and composited (ground truth on the known pixels,
its output in the hole, as DiFAI's completions are).
"""

from __future__ import annotations

import os
import re

import numpy as np
from PIL import Image

from difai_jax.data import image_io
from difai_jax.data import masks as masks_lib
from difai_jax.evaluation import mask_exchange

LOSSLESS = (".png", ".bmp")
# JPEG at quality 90-95 moves smooth faces' pixels by ~1-2 levels on average; 4 leaves room for
# quality ~75 while a method that repaints the known region (tens of levels) is still caught.
LOSSY_TOLERANCE = 4.0
_NAME = re.compile(r"^(\d+)(?:_(\d+))?$")
LAYOUT = "DIR/<bucket>/<image_id>_<k>.png (k = 0..K-1; <image_id>.png when K = 1)"


class CompletionsFolder:
  """The K completion files of the first ``num_images`` test images in each bucket.

  Raises ValueError naming the file or folder: a missing bucket folder, a missing completion,
  an image count K that differs between images, an unreadable file or one of the wrong size.
  """

  def __init__(self, root: str, buckets, num_images: int, image_size: int,
               known_tolerance: float | None = None):
    if not os.path.isdir(root):
      raise ValueError(f"--completions_dir {root} not found (layout: {LAYOUT})")
    self.root, self.image_size = root, int(image_size)
    self.known_tolerance = known_tolerance
    self.num_completions = None
    self.files = {b: self._scan(b, int(num_images)) for b in buckets}
    for paths in self.files.values():
      for per_image in paths:
        for path in per_image:
          self._check_size(path)

  def _scan(self, bucket: str, n: int) -> list[list[str]]:
    folder = os.path.join(self.root, bucket)
    if not os.path.isdir(folder):
      raise ValueError(f"completions folder {folder} not found: no completions for bucket "
                       f"{bucket} (layout: {LAYOUT})")
    table: dict[int, dict[int, str]] = {}
    for name in sorted(os.listdir(folder)):
      stem, ext = os.path.splitext(name)
      match = _NAME.match(stem)
      if ext.lower() in masks_lib.IMAGE_EXTENSIONS and match:
        table.setdefault(int(match.group(1)), {})[int(match.group(2) or 0)] = \
            os.path.join(folder, name)
    if self.num_completions is None:
      self.num_completions = len(table.get(0, {}))
      if not self.num_completions:
        raise ValueError(f"missing completion {os.path.join(folder, mask_exchange.image_id(0))}"
                         f"_0.png (layout: {LAYOUT})")
    k = self.num_completions
    for i in range(n):
      found = table.get(i, {})
      for j in range(k):
        if j not in found:
          raise ValueError(f"missing completion {folder}/{mask_exchange.image_id(i)}_{j}.png "
                           f"(K = {k} completions per image, as image "
                           f"{mask_exchange.image_id(0)} of the first bucket has)")
      if len(found) > k:
        raise ValueError(f"{folder} has {len(found)} completions of image "
                         f"{mask_exchange.image_id(i)}, more than K = {k} of image "
                         f"{mask_exchange.image_id(0)} of the first bucket")
    return [[table[i][j] for j in range(k)] for i in range(n)]

  def _check_size(self, path: str) -> None:
    try:
      with Image.open(path) as img:
        width, height = img.size
    except Exception as e:  # PIL raises several types for broken files.
      raise ValueError(f"cannot read completion {path}: {type(e).__name__}: {e}") from e
    if (height, width) != (self.image_size, self.image_size):
      raise ValueError(f"completion {path} is {width} x {height} px; the test images are "
                       f"{self.image_size} x {self.image_size} (write the method's outputs at "
                       "the evaluation size)")

  def load(self, bucket: str, index: int) -> np.ndarray:
    """uint8 (K, H, W, 3) completions of test image ``index`` in ``bucket``."""
    return np.stack([image_io.load_image_uint8(p) for p in self.files[bucket][index]])

  def tolerance(self, path: str) -> float:
    if self.known_tolerance is not None:
      return float(self.known_tolerance)
    return 0.0 if path.lower().endswith(LOSSLESS) else LOSSY_TOLERANCE


def known_pixel_change(completions: np.ndarray, image: np.ndarray, mask: np.ndarray):
  """(mean, max) absolute difference in 8-bit levels over the known pixels, each (K,).

  completions: uint8 (K, H, W, 3); image: uint8 (H, W, 3); mask: (H, W, 1), 1 = known.
  """
  known = np.broadcast_to(mask > 0.5, image.shape)
  if not known.any():
    return np.zeros(len(completions)), np.zeros(len(completions))
  diff = np.abs(completions.astype(np.int16) - image.astype(np.int16))[:, known]   # (K, P)
  return diff.mean(axis=1), diff.max(axis=1)
