"""Masks for training and evaluation: generators, an external mask set, fixed evaluation buckets.

Convention (DiFAI eq. 1; the one place it is spelled out for the data package): a mask is
float32 (H, W, 1) or (N, H, W, 1) with **1 on known pixels and 0 in the hole**;
`hole = 1 - mask` is the paper's M_r and `I_masked = image * mask`. Mask files written here
use the same convention (white = known). Public mask sets with white = hole (PIC, EXE-GAN, the
Quickdraw irregular mask set) are read only through an explicit `convention="hole_is_white"`.

Training masks (Sec. 4 of the paper: free-form strokes combined with 85x85 squares):
  * "strokes": Quickdraw-style irregular masks, random brush strokes whose width and curvature
    vary, drawn on the fly from a seeded generator;
  * "square": one square of side 85 px at 256 px (scaled with the image size) at a random place;
  * "strokes_square": both at once;
  * "external": a file from a mask folder, randomly flipped and rotated by multiples of 90 deg.

Evaluation buckets: fixed, seeded sets per hole ratio 10-20 / 20-30 / 30-40 / 40-50 % and a
"quickdraw" bucket (free-form strokes, hole ratio 1-60 %, or samples of an external mask set),
written to disk once (`ensure_buckets`) and read back by every evaluation. Two more families,
unlike the training masks, test generalisation: "squares" (1-3 squares, 15-30 % hole) and
"thick_strokes" (3-5 strokes of a fixed width).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from typing import Mapping, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

from difai_jax.data import image_io

BUCKET_RANGES = {
    "10-20": (0.10, 0.20),
    "20-30": (0.20, 0.30),
    "30-40": (0.30, 0.40),
    "40-50": (0.40, 0.50),
    "quickdraw": (0.01, 0.60),
}
BUCKET_NAMES = tuple(BUCKET_RANGES)  # the Table 1 buckets, written together by ensure_buckets
# Mask families for held-out evaluation, unlike the training masks: "squares" are 1-3 axis-aligned
# squares at random places covering 15-30 % of the image; "thick_strokes" are 3-5 straight-ish
# strokes of one fixed width (8 % of the side: 5 px at 64, 20 px at 256).
FAMILY_RANGES = {
    "squares": (0.15, 0.30),
    "thick_strokes": (0.05, 0.60),
}
EVAL_BUCKET_RANGES = {**BUCKET_RANGES, **FAMILY_RANGES}
EVAL_BUCKET_NAMES = tuple(EVAL_BUCKET_RANGES)
THICK_STROKE_WIDTH_FRAC = 0.08
MASK_KINDS = ("strokes", "square", "strokes_square", "external")
# Bumped whenever the bucket generator changes, so stale bucket folders are detected.
BUCKET_FORMAT_VERSION = 1
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


# -- checks ----------------------------------------------------------------------------------------
def validate_mask(mask, *, name: str = "mask", allow_all_hole: bool = False,
                  allow_no_hole: bool = True) -> None:
  """Checks a mask (numpy or jax array, outside jit) and says what is wrong.

  Args:
    mask: (N, H, W, 1) or (H, W, 1); 1 = known pixel, 0 = hole.
    name: what to call it in messages (e.g. "--mask file x.png").
    allow_all_hole: accept samples with no known pixel at all.
    allow_no_hole: accept samples with no hole.

  Raises:
    ValueError: wrong shape, values other than 0 and 1, or a forbidden all-hole / no-hole sample.
  """
  arr = np.asarray(mask)
  if arr.ndim not in (3, 4) or arr.shape[-1] != 1:
    raise ValueError(f"{name} must have shape (N, H, W, 1) or (H, W, 1) with 1 = known, 0 = hole; "
                     f"got shape {arr.shape}")
  if arr.dtype == np.bool_:
    arr = arr.astype(np.float32)
  binary = (arr == 0) | (arr == 1)
  if not binary.all():
    where = tuple(int(i) for i in np.argwhere(~binary)[0])
    raise ValueError(f"{name} has values other than 0 and 1 (found {arr[where]:g} at {where}); "
                     "pass a binary mask or threshold it")
  batch = arr if arr.ndim == 4 else arr[None]
  known = batch.reshape(batch.shape[0], -1).sum(axis=1)
  total = batch[0].size
  if not allow_all_hole and np.any(known == 0):
    i = int(np.argmax(known == 0))
    where = f" (sample {i})" if arr.ndim == 4 else ""
    raise ValueError(f"{name} is all hole{where}: no known pixel to inpaint from (mask is 1 on "
                     "known pixels, 0 in the hole; is the convention inverted?)")
  if not allow_no_hole and np.any(known == total):
    i = int(np.argmax(known == total))
    where = f" (sample {i})" if arr.ndim == 4 else ""
    raise ValueError(f"{name} has no hole{where}: nothing to inpaint (mask is 1 on known pixels, "
                     "0 in the hole; is the convention inverted?)")


def hole_ratio(mask) -> np.ndarray:
  """Fraction of hole pixels (mask == 0): a float for (H, W, 1), shape (N,) for (N, H, W, 1)."""
  arr = np.asarray(mask, dtype=np.float32)
  if arr.ndim == 4:
    return 1.0 - arr.reshape(arr.shape[0], -1).mean(axis=1)
  return float(1.0 - arr.mean())


# -- generators ------------------------------------------------------------------------------------
def square_side(size: int, side_at_256: int = 85) -> int:
  """The paper's 85x85 square at 256 px, scaled to `size`."""
  return max(1, int(round(side_at_256 * size / 256)))


def _draw_strokes(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int,
                  num_strokes: int, max_width_frac: float = 0.09,
                  min_width_frac: float = 0.025) -> None:
  """Draws `num_strokes` brush strokes (fill 255 = hole) with varying width and curvature."""
  for _ in range(num_strokes):
    x, y = rng.uniform(0.1, 0.9, 2) * size
    heading = rng.uniform(0, 2 * np.pi)
    turn = rng.normal(0, 0.5)                     # angular velocity (curvature)
    width = rng.uniform(min_width_frac, max_width_frac) * size
    n = int(rng.integers(4, 14))
    step = rng.uniform(0.04, 0.10) * size
    for _ in range(n):
      turn = 0.7 * turn + rng.normal(0, 0.45)
      heading += turn
      w = max(1.0, width * rng.uniform(0.75, 1.25))
      nx = float(np.clip(x + step * math.cos(heading), 0, size - 1))
      ny = float(np.clip(y + step * math.sin(heading), 0, size - 1))
      draw.line([(x, y), (nx, ny)], fill=255, width=int(round(w)))
      r = w / 2
      draw.ellipse([nx - r, ny - r, nx + r, ny + r], fill=255)
      x, y = nx, ny


def _hole_canvas(size: int):
  img = Image.new("L", (size, size), 0)
  return img, ImageDraw.Draw(img)


def _to_mask(hole_img: Image.Image) -> np.ndarray:
  return (np.asarray(hole_img) < 128).astype(np.float32)[..., None]


def stroke_mask(rng: np.random.Generator, size: int, max_strokes: int = 6) -> np.ndarray:
  """A Quickdraw-style free-form mask: 1..max_strokes brush strokes. Returns (size, size, 1)."""
  img, draw = _hole_canvas(size)
  _draw_strokes(draw, rng, size, int(rng.integers(1, max_strokes + 1)))
  return _to_mask(img)


def square_mask(rng: np.random.Generator, size: int, side_at_256: int = 85) -> np.ndarray:
  """One square hole (85 px at 256 px, scaled) at a uniform position inside the image."""
  side = square_side(size, side_at_256)
  y, x = rng.integers(0, size - side + 1, 2)
  mask = np.ones((size, size, 1), np.float32)
  mask[y:y + side, x:x + side] = 0.0
  return mask



# A mask folder is untrusted: its walk stops past these counts (the Quickdraw irregular mask set
# holds 50,000 files), before any file is opened.
MAX_MASK_FILES = 500_000
MAX_MASK_FOLDERS = 10_000


def list_mask_files(root: str) -> list[str]:
  """The mask images (``IMAGE_EXTENSIONS``) under ``root``, sorted; a folder holding more than
  :data:`MAX_MASK_FILES` of them or :data:`MAX_MASK_FOLDERS` folders is refused."""
  files, folders = [], 0
  for dirpath, _, names in os.walk(root):
    folders += 1
    files += [os.path.join(dirpath, n) for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
    if len(files) > MAX_MASK_FILES or folders > MAX_MASK_FOLDERS:
      raise ValueError(f"mask folder {root!r} holds more than {MAX_MASK_FILES:,} mask images or "
                       f"{MAX_MASK_FOLDERS:,} folders: refused (point it at the mask set itself)")
  return sorted(files)


class ExternalMaskSet:
  """A folder of mask images (e.g. the public Quickdraw irregular mask set), read lazily.

  Args:
    root: folder, searched recursively for png / jpg / webp / bmp files.
    convention: "known_is_white" (ours) or "hole_is_white" (PIC / EXE-GAN / Quickdraw set).
    threshold: binarisation threshold for non-binary files (None: 0.5 with a warning).
    strict: refuse non-binary files.
  """

  def __init__(self, root: str, convention: str = "known_is_white",
               threshold: Optional[float] = None, strict: bool = False):
    if convention not in image_io.MASK_CONVENTIONS:
      raise ValueError(f"unknown mask convention {convention!r}; expected one of "
                       f"{image_io.MASK_CONVENTIONS}")
    if not os.path.isdir(root):
      raise ValueError(f"mask folder not found: {root!r}")
    files = list_mask_files(root)
    if not files:
      raise ValueError(f"mask folder {root!r} holds no mask images ({', '.join(IMAGE_EXTENSIONS)})")
    self.files = sorted(files)
    self.root = root
    self.convention = convention
    self.threshold = threshold
    self.strict = strict

  def __len__(self) -> int:
    return len(self.files)

  def load(self, index: int, size: int) -> np.ndarray:
    """Mask file `index` resized (nearest) to (size, size, 1), 1 = known."""
    return image_io.load_mask(self.files[index], size=size, convention=self.convention,
                              threshold=self.threshold, strict=self.strict)

  def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
    """A random file, randomly rotated by k * 90 degrees and flipped. Returns (size, size, 1)."""
    mask = self.load(int(rng.integers(len(self.files))), size)
    mask = np.rot90(mask, k=int(rng.integers(4)), axes=(0, 1))
    if rng.uniform() < 0.5:
      mask = mask[:, ::-1]
    if rng.uniform() < 0.5:
      mask = mask[::-1]
    return np.ascontiguousarray(mask)


class MaskSampler:
  """Draws training masks of the configured kinds; picklable (grain workers spawn).

  Args:
    size: image side in pixels.
    probs: {kind: probability} over MASK_KINDS (normalised; zero entries are never drawn).
    square_side_at_256: the paper's square side at 256 px.
    max_strokes: upper bound on strokes per mask.
    max_hole_ratio: masks with more hole than this are redrawn (at most 20 times).
    external: an ExternalMaskSet, required when probs["external"] > 0.
  """

  def __init__(self, size: int, probs: Mapping[str, float], square_side_at_256: int = 85,
               max_strokes: int = 6, max_hole_ratio: float = 0.6,
               external: Optional[ExternalMaskSet] = None):
    unknown = set(probs) - set(MASK_KINDS)
    if unknown:
      raise ValueError(f"unknown mask kinds {sorted(unknown)}; expected some of {MASK_KINDS}")
    p = np.array([float(probs.get(k, 0.0)) for k in MASK_KINDS])
    if np.any(p < 0) or p.sum() <= 0:
      raise ValueError(f"mask kind probabilities must be >= 0 with a positive sum; got {probs}")
    if p[MASK_KINDS.index("external")] > 0 and external is None:
      raise ValueError("mask kind 'external' has probability > 0 but no mask folder was given "
                       "(set data.masks.external_dir)")
    self.size = int(size)
    self.p = p / p.sum()
    self.square_side_at_256 = square_side_at_256
    self.max_strokes = max_strokes
    self.max_hole_ratio = max_hole_ratio
    self.external = external

  def _draw(self, kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "strokes":
      return stroke_mask(rng, self.size, self.max_strokes)
    if kind == "square":
      return square_mask(rng, self.size, self.square_side_at_256)
    if kind == "strokes_square":
      return stroke_mask(rng, self.size, self.max_strokes) * square_mask(
          rng, self.size, self.square_side_at_256)
    return self.external.sample(rng, self.size)

  def __call__(self, rng: np.random.Generator) -> np.ndarray:
    """One mask (size, size, 1) float32, 1 = known; never all hole, never without hole."""
    kind = MASK_KINDS[int(rng.choice(len(MASK_KINDS), p=self.p))]
    for _ in range(20):
      mask = self._draw(kind, rng)
      ratio = hole_ratio(mask)
      if 0.0 < ratio <= self.max_hole_ratio:
        return mask
    return square_mask(rng, self.size, self.square_side_at_256)


def random_squares_mask(rng: np.random.Generator, size: int, lo: float = 0.15,
                        hi: float = 0.30, max_tries: int = 200) -> np.ndarray:
  """1-3 squares at uniform positions whose union covers a ratio in [lo, hi) of the image."""
  for _ in range(max_tries):
    target = rng.uniform(lo, hi)
    n = int(rng.integers(1, 4))
    mask = np.ones((size, size, 1), np.float32)
    side = max(2, int(round(size * math.sqrt(target / n))))
    for _ in range(n):
      y, x = rng.integers(0, size - side + 1, 2)
      mask[y:y + side, x:x + side] = 0.0
    if lo <= hole_ratio(mask) < hi:
      return mask
  raise RuntimeError(f"could not draw squares covering {lo:.0%}-{hi:.0%} at {size} px")


def thick_strokes_mask(rng: np.random.Generator, size: int,
                       width_frac: float = THICK_STROKE_WIDTH_FRAC) -> np.ndarray:
  """3-5 gently curving strokes of one fixed width (`width_frac` of the side), round caps."""
  img, draw = _hole_canvas(size)
  width = max(1, int(round(width_frac * size)))
  for _ in range(int(rng.integers(3, 6))):
    x, y = rng.uniform(0.1, 0.9, 2) * size
    heading = rng.uniform(0, 2 * np.pi)
    for _ in range(int(rng.integers(3, 7))):
      heading += rng.normal(0, 0.3)
      nx = float(np.clip(x + 0.08 * size * math.cos(heading), 0, size - 1))
      ny = float(np.clip(y + 0.08 * size * math.sin(heading), 0, size - 1))
      draw.line([(x, y), (nx, ny)], fill=255, width=width)
      r = width / 2
      draw.ellipse([nx - r, ny - r, nx + r, ny + r], fill=255)
      x, y = nx, ny
  return _to_mask(img)


# -- evaluation buckets ----------------------------------------------------------------------------
def bucket_mask(rng: np.random.Generator, size: int, bucket: str,
                external: Optional[ExternalMaskSet] = None, max_tries: int = 500) -> np.ndarray:
  """One mask whose hole ratio lies in EVAL_BUCKET_RANGES[bucket] (lower bound inclusive).

  Ratio buckets pick a target ratio uniformly in the bucket and grow free-form strokes (on top of
  an 85 px-at-256 square half of the time) until the hole ratio reaches it, keeping the mask if it
  has not left the bucket; "quickdraw" is one stroke mask
  (or an external-set sample) in its 1-60 % range; the FAMILY_RANGES buckets use
  `random_squares_mask` and `thick_strokes_mask`.
  """
  lo, hi = EVAL_BUCKET_RANGES[bucket]
  if bucket == "squares":
    return random_squares_mask(rng, size, lo, hi)
  for _ in range(max_tries):
    if bucket == "thick_strokes":
      mask = thick_strokes_mask(rng, size)
      if lo <= hole_ratio(mask) < hi:
        return mask
      continue
    if bucket == "quickdraw":
      mask = (external.sample(rng, size) if external is not None
              else stroke_mask(rng, size, max_strokes=8))
      if lo <= hole_ratio(mask) < hi:
        return mask
      continue
    target = rng.uniform(lo, hi)  # spread ratios over the bucket, not at its lower edge
    img, draw = _hole_canvas(size)
    if rng.uniform() < 0.5 and hole_ratio(square_mask(rng, size)) < target:
      side = square_side(size)
      y, x = rng.integers(0, size - side + 1, 2)
      draw.rectangle([x, y, x + side - 1, y + side - 1], fill=255)
    for _ in range(60):
      mask = _to_mask(img)
      ratio = hole_ratio(mask)
      if ratio >= target:
        break
      _draw_strokes(draw, rng, size, 1, max_width_frac=0.07, min_width_frac=0.02)
    if lo <= ratio < hi:
      return mask
  raise RuntimeError(f"could not draw a mask in bucket {bucket!r} at {size} px in {max_tries} "
                     "tries")


def _bucket_root(bucket_dir: str, size: int, family: Optional[str] = None) -> str:
  return os.path.join(bucket_dir, f"{int(size)}px" + (f"_{family}" if family else ""))


def _manifest(size, num_per_bucket, seed, external_dir, names=BUCKET_NAMES):
  return {"format_version": BUCKET_FORMAT_VERSION, "size": int(size),
          "num_per_bucket": int(num_per_bucket), "seed": int(seed),
          "external_dir": os.path.abspath(external_dir) if external_dir else None,
          "convention": "known_is_white",
          "buckets": {k: list(EVAL_BUCKET_RANGES[k]) for k in names}}


def ensure_buckets(bucket_dir: str, size: int, num_per_bucket: int = 2000, seed: int = 0,
                   external: Optional[ExternalMaskSet] = None, verbose: bool = True,
                   family: Optional[str] = None) -> str:
  """Writes the fixed evaluation masks once, or checks the ones already there.

  Layout: `bucket_dir/<size>px/manifest.json` and `bucket_dir/<size>px/<bucket>/<i:05d>.png`
  (white = known) for the Table 1 buckets (BUCKET_NAMES); a mask family of FAMILY_RANGES
  (`family="squares"`) has a folder of its own, `bucket_dir/<size>px_<family>/<family>/`.
  Mask i of every bucket comes from `default_rng([seed, bucket_id, i])`, bucket_id its index in
  EVAL_BUCKET_NAMES.
  Written to a temporary folder and renamed into place, so concurrent writers (several hosts on
  one file system) are safe.

  Returns:
    The `<size>px` folder.

  Raises:
    ValueError: the folder exists but was written with other settings.
  """
  if family is not None and family not in FAMILY_RANGES:
    raise ValueError(f"unknown mask family {family!r}; expected one of {tuple(FAMILY_RANGES)}")
  names = (family,) if family else BUCKET_NAMES
  root = _bucket_root(bucket_dir, size, family)
  want = _manifest(size, num_per_bucket, seed, external.root if external else None, names)
  manifest_path = os.path.join(root, "manifest.json")
  if os.path.exists(manifest_path):
    with open(manifest_path, encoding="utf-8") as f:
      have = json.load(f)
    if have != want:
      diff = {k: (have.get(k), want[k]) for k in want if have.get(k) != want[k]}
      raise ValueError(f"evaluation masks in {root!r} were written with other settings "
                       f"(have, want): {diff}; use another bucket_dir or delete that folder")
    return root
  if os.path.exists(root):
    raise ValueError(f"{root!r} exists but has no manifest.json; delete it or use another "
                     "bucket_dir")
  os.makedirs(bucket_dir, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".tmp_{int(size)}px_", dir=bucket_dir)
  try:
    for name in names:
      os.makedirs(os.path.join(tmp, name))
      b = EVAL_BUCKET_NAMES.index(name)
      for i in range(num_per_bucket):
        rng = np.random.default_rng([int(seed), b, i])
        mask = bucket_mask(rng, size, name, external if name == "quickdraw" else None)
        image_io.save_mask(os.path.join(tmp, name, f"{i:05d}.png"), mask)
    with open(os.path.join(tmp, "manifest.json"), "w", encoding="utf-8") as f:
      json.dump(want, f, indent=1)
    try:
      os.rename(tmp, root)
    except OSError:
      if not os.path.exists(manifest_path):  # not a lost race: a real error
        raise
  finally:
    if os.path.exists(tmp):
      shutil.rmtree(tmp, ignore_errors=True)
  if verbose:
    print(f"wrote {num_per_bucket} evaluation masks per bucket {list(names)} to {root}")
  return root


def ensure_bucket(bucket_dir: str, size: int, bucket: str, num_per_bucket: int = 2000,
                  seed: int = 0, external: Optional[ExternalMaskSet] = None,
                  verbose: bool = True) -> str:
  """`ensure_buckets` for the group that holds `bucket`; returns the root to read it from."""
  if bucket not in EVAL_BUCKET_RANGES:
    raise ValueError(f"unknown mask bucket {bucket!r}; expected one of {EVAL_BUCKET_NAMES}")
  return ensure_buckets(bucket_dir, size, num_per_bucket, seed, external, verbose,
                        family=bucket if bucket in FAMILY_RANGES else None)


class BucketMasks:
  """The fixed masks of one bucket, read lazily (random-access, picklable).

  Args:
    root: the `<size>px` folder returned by `ensure_buckets`.
    bucket: one of BUCKET_NAMES.
  """

  def __init__(self, root: str, bucket: str):
    if bucket not in EVAL_BUCKET_RANGES:
      raise ValueError(f"unknown mask bucket {bucket!r}; expected one of {EVAL_BUCKET_NAMES}")
    folder = os.path.join(root, bucket)
    if not os.path.isdir(folder):
      raise ValueError(f"mask bucket folder not found: {folder!r} (run ensure_buckets first)")
    self.files = sorted(os.path.join(folder, n) for n in os.listdir(folder)
                        if n.endswith(".png"))
    if not self.files:
      raise ValueError(f"mask bucket folder {folder!r} is empty")
    self.bucket = bucket

  def __len__(self) -> int:
    return len(self.files)

  def __getitem__(self, index: int) -> np.ndarray:
    return image_io.load_mask(self.files[int(index)], strict=True)


def load_bucket(root: str, bucket: str, indices: Optional[Sequence[int]] = None) -> np.ndarray:
  """All (or the given) masks of a bucket as (N, H, W, 1) float32."""
  masks = BucketMasks(root, bucket)
  idx = range(len(masks)) if indices is None else indices
  return np.stack([masks[i] for i in idx])
