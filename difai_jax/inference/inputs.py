"""The inputs of inference: image and mask files read and checked, the model-resolution view of
an image (any size in, the model's square out), folder pairing, and the SeFa edits a request
asks for. Numpy and PIL only: a command checks its inputs before JAX loads.

Masks: 1 (white) = known, 0 (black) = hole by default (``hole_is_white`` reads PIC / EXE-GAN /
Quickdraw-style files). Aligned photos (``align`` != "off") give the model their face's FFHQ crop
with the mask warped along (:mod:`difai_jax.inference.face.align`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings
from typing import Any, Sequence

import numpy as np
from PIL import Image

from difai_jax.data import image_io
from difai_jax.data import masks as masks_lib
from difai_jax.inference.face import align

IMAGE_EXTENSIONS = masks_lib.IMAGE_EXTENSIONS

SMALL_INPUT_FACTOR = 2   # a note when the model upscales an input more than this

ALIGN_MODES = ("auto", "on", "off")


class InputError(ValueError):
  """An input file (image or mask) cannot be used; the message names the file and the problem."""


@dataclasses.dataclass
class Example:
  """One input: the original pixels and mask, and their model-resolution versions."""
  name: str                 # output stem
  image_path: str
  mask_path: str
  image_uint8: np.ndarray   # (H, W, 3) uint8, the file's pixels
  mask: np.ndarray          # (H, W, 1) float32 {0, 1}, 1 = known
  model_image: np.ndarray   # (S, S, 3) float32 in [-1, 1]
  model_mask: np.ndarray    # (S, S, 1) float32 {0, 1}
  notes: list[str] = dataclasses.field(default_factory=list)   # size notes for the user
  alignment: Any = None     # face.align.Alignment: the model sees this crop of the photo


def load_mask_file(path: str, image_size: tuple[int, int], *, convention: str,
                   resize: bool, strict: bool) -> np.ndarray:
  """A mask file as (H, W, 1) float32 {0, 1} (1 = known) matching an image of ``image_size``.

  Raises:
    InputError: unreadable file, size mismatch (without ``resize``), non-binary values with
      ``strict``, all-hole or no-hole mask.
  """
  h, w = image_size
  strict_hint = "pass a binary mask, or drop --strict_mask to threshold it at 0.5"
  try:
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      mask = image_io.load_mask(path, convention=convention, strict=strict,
                                strict_hint=strict_hint)
  except ValueError as e:
    raise InputError(str(e)) from None
  for warning in caught:
    extra = " (--strict_mask refuses such files)" if "not binary" in str(warning.message) else ""
    print(f"warning: {warning.message}{extra}", file=sys.stderr)
  if mask.shape[:2] != (h, w):
    if not resize:
      raise InputError(
          f"mask file {path!r} is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image is "
          f"{w}x{h}; supply a mask of the image's size or pass --resize_mask (nearest neighbour)")
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")   # reported above
      mask = image_io.load_mask(path, size=(h, w), convention=convention, strict=strict,
                                strict_hint=strict_hint)
  try:
    masks_lib.validate_mask(mask, name=f"mask file {path!r} ({convention})",
                            allow_all_hole=False, allow_no_hole=False)
  except ValueError as e:
    raise InputError(str(e)) from None
  return mask


def coverage_matrix(in_size: int, out_size: int) -> np.ndarray:
  """(out_size, in_size) overlap lengths of output pixel i, spanning [i s, (i + 1) s) with
  s = in_size / out_size, and input pixel k, spanning [k, k + 1)."""
  scale = in_size / out_size
  lo = np.arange(out_size)[:, None] * scale
  k = np.arange(in_size)[None, :]
  return np.clip(np.minimum(lo + scale, k + 1) - np.maximum(lo, k), 0.0, None)


def to_model_resolution(image_uint8: np.ndarray, mask: np.ndarray, size: int,
                        name: str = "mask") -> tuple[np.ndarray, np.ndarray]:
  """(S, S, 3) float image in [-1, 1] and (S, S, 1) mask for the model.

  Every model pixel whose area overlaps a hole pixel of the input is hole (exact area coverage,
  so no model pixel mixes known and missing content, also when upsampling). The image is resized
  with Lanczos (a non-square one is stretched) after its hole pixels are set to the mean known
  colour, so that nothing of the input's hole content reaches the model.
  """
  h, w = image_uint8.shape[:2]
  known = mask[..., 0] > 0.5
  hole_area = coverage_matrix(h, size) @ (~known).astype(np.float64) @ coverage_matrix(w, size).T
  model_mask = (hole_area <= 1e-9).astype(np.float32)[..., None]
  if model_mask.min() == 1.0:
    raise InputError(f"{name}: no hole left at the model's {size} px resolution")
  if model_mask.max() == 0.0:
    raise InputError(f"{name}: no known pixel left at the model's {size} px resolution (every "
                     f"{size} px pixel touches the hole); use a mask with larger known areas")
  filled = image_uint8.copy()
  filled[~known] = np.round(image_uint8[known].mean(axis=0)).astype(np.uint8)
  if (h, w) != (size, size):
    filled = np.asarray(Image.fromarray(filled).resize((size, size), Image.LANCZOS))
  return image_io.uint8_to_float(filled), model_mask


def size_notes(path: str, hw: tuple[int, int], size: int, prefix: str = "note: ") -> list[str]:
  """Notes on an input the model sees distorted: far smaller than the model, or not square.
  ``path`` names the input in the sentence; each note starts with ``prefix``."""
  h, w = hw
  notes = []
  if min(h, w) * SMALL_INPUT_FACTOR < size:
    notes.append(f"{prefix}{path} is {w}x{h}, far smaller than the model's {size} px: it is "
                 f"upscaled {size / min(h, w):.1f}x, so expect a blurry completion")
  if h != w:
    notes.append(f"{prefix}{path} is {w}x{h}, not square: the model sees it stretched to "
                 f"{size}x{size} (the outputs keep {w}x{h}); crop it to the face for best results")
  return notes


def read_input(image_path: str, mask_path: str, *, convention: str, resize_mask: bool,
               strict_mask: bool) -> tuple[np.ndarray, np.ndarray]:
  """The checks that need no model: (image (H, W, 3) uint8, mask (H, W, 1) {0, 1})."""
  try:
    image = image_io.load_image_uint8(image_path)
  except ValueError as e:
    raise InputError(str(e)) from None
  mask = load_mask_file(mask_path, image.shape[:2], convention=convention, resize=resize_mask,
                        strict=strict_mask)
  return image, mask


def make_example(image_path: str, mask_path: str, image: np.ndarray, mask: np.ndarray,
                 size: int, name: str | None = None, alignment: Any = None,
                 notes: Sequence[str] = ()) -> Example:
  """An input read by :func:`read_input`, brought to the model's ``size``: resized, or the
  face crop of ``alignment`` (see :func:`find_alignment`)."""
  stem = name or os.path.splitext(os.path.basename(image_path))[0]
  if alignment is None:
    model_image, model_mask = to_model_resolution(image, mask, size,
                                                  name=f"mask file {mask_path!r}")
    notes = list(notes) + size_notes(image_path, image.shape[:2], size)
  else:
    model_image, model_mask = aligned_model_inputs(image_path, mask_path, image, mask, alignment)
  return Example(stem, image_path, mask_path, image, mask, model_image, model_mask, list(notes),
                 alignment)


def load_example(image_path: str, mask_path: str, size: int, *, convention: str,
                 resize_mask: bool, strict_mask: bool, name: str | None = None) -> Example:
  image, mask = read_input(image_path, mask_path, convention=convention, resize_mask=resize_mask,
                           strict_mask=strict_mask)
  return make_example(image_path, mask_path, image, mask, size, name)


def aligned_model_inputs(image_path: str, mask_path: str, image: np.ndarray, mask: np.ndarray,
                         alignment: Any) -> tuple[np.ndarray, np.ndarray]:
  """The model's (S, S, 3) image and (S, S, 1) mask from the face crop ``alignment``.

  Raises:
    InputError: the hole reaches outside the crop (no completion covers it), or no hole /
      no known pixel is left in the crop.
  """
  outside = align.hole_outside(mask, alignment)
  if outside:
    raise InputError(
        f"mask file {mask_path!r}: {outside} hole pixel{'s' * (outside != 1)} of {image_path} "
        f"lie outside the face crop the model sees ({align.describe(alignment)}, corners "
        f"{np.round(alignment.quad).astype(int).tolist()}); keep the hole on the face, or pass "
        "--align off")
  model_image, model_mask = align.crop_inputs(image, mask, alignment)
  size = alignment.size
  if model_mask.min() == 1.0:
    raise InputError(f"mask file {mask_path!r}: no hole left in the {size} px face crop")
  if model_mask.max() == 0.0:
    raise InputError(f"mask file {mask_path!r}: the hole covers the whole {size} px face crop; "
                     "use a mask with larger known areas")
  return model_image, model_mask


def _list_images(folder: str) -> list[str]:
  return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith("."))


def pair_inputs(image: str, mask: str) -> list[tuple[str, str]]:
  """(image file, mask file) pairs: a file and a file, a folder and a mask file (the same mask
  for every image), or two folders matched by file stem."""
  if not os.path.exists(image):
    raise InputError(f"--image {image!r} does not exist")
  if not os.path.exists(mask):
    raise InputError(f"--mask {mask!r} does not exist")
  if not os.path.isdir(image):
    if os.path.isdir(mask):
      raise InputError(f"--image {image!r} is a file but --mask {mask!r} is a folder; give a "
                       "mask file, or an image folder with the mask folder")
    return [(image, mask)]
  images = _list_images(image)
  if not images:
    raise InputError(f"--image folder {image!r} holds no image files "
                     f"({', '.join(IMAGE_EXTENSIONS)})")
  if not os.path.isdir(mask):
    return [(path, mask) for path in images]
  by_stem: dict[str, list[str]] = {}
  for path in _list_images(mask):
    by_stem.setdefault(os.path.splitext(os.path.basename(path))[0], []).append(path)
  pairs, missing, ambiguous = [], [], []
  for path in images:
    stem = os.path.splitext(os.path.basename(path))[0]
    found = by_stem.get(stem, [])
    if not found:
      missing.append(os.path.basename(path))
    elif len(found) > 1:
      ambiguous.append(f"{stem}: {[os.path.basename(f) for f in found]}")
    else:
      pairs.append((path, found[0]))
  problems = []
  if missing:
    problems.append(f"no mask named like these images in {mask!r}: {missing[:10]}"
                    + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
  if ambiguous:
    problems.append(f"several masks share a name in {mask!r}: {ambiguous[:10]}")
  if problems:
    raise InputError("; ".join(problems) + " (masks are paired with images by file name "
                     "without extension)")
  return pairs


def edits(num: int, components: Sequence[int] | None, degrees: Sequence[float] | None,
          degree: float, n_directions: int | None = None,
          flag: str = "--num_completions") -> tuple[list[int], list[float]]:
  """The alpha = K - 1 SeFa edits: directions 0..K-2 with degrees +d, -d, +d, ... by default.

  The counts are checked at once; the directions' range only with ``n_directions`` (known from
  the run, see :func:`difai_jax.inference.model.read_run_info`); ``flag`` names K in messages.
  """
  defaulted = components is None
  if components is None:
    components = list(range(num - 1))
  components = [int(c) for c in components]
  if degrees is None:
    degrees = [degree * (1 if i % 2 == 0 else -1) for i in range(len(components))]
  degrees = [float(d) for d in degrees]
  if len(degrees) != len(components):
    n = len(components)
    raise ValueError(f"--degrees has {len(degrees)} value{'s' * (len(degrees) != 1)} but there "
                     f"{'are' if n != 1 else 'is'} {n} SeFa edit{'s' * (n != 1)} (K - 1 for K = "
                     f"{n + 1} completions); give one degree per edit")
  if n_directions is not None:
    if defaulted and len(components) > n_directions:
      raise ValueError(f"{flag} {num} asks for {num - 1} SeFa edits, one per direction, but the "
                       f"generator has {n_directions} directions; use {flag} <= "
                       f"{n_directions + 1} or name directions with --components")
    bad = [c for c in components if not 0 <= c < n_directions]
    if bad:
      raise ValueError(f"SeFa components {bad} out of range: the generator has {n_directions} "
                       f"directions (0..{n_directions - 1})")
  return components, degrees


def check_layers(layers: Sequence[int] | None, n_latent: int,
                 source: str = "--layers") -> tuple[int, ...] | None:
  """``layers`` as a tuple after checking each is a W+ layer in [0, n_latent)."""
  if layers is None or len(layers) == 0:
    return None
  layers = tuple(int(l) for l in layers)
  bad = [l for l in layers if not 0 <= l < n_latent]
  if bad:
    raise ValueError(f"{source} {','.join(map(str, layers))}: layers {bad} out of range; W+ has "
                     f"{n_latent} layers (0..{n_latent - 1})")
  return layers
