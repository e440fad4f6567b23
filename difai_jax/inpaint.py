"""Diverse completions of your own faces: ``python -m difai_jax.inpaint``.

    python -m difai_jax.inpaint --checkpoint RUN --image face.png --mask mask.png --num 8 \
        --out OUTDIR [--walk]

``RUN`` is a trained DiFAI workdir (a multi-stage run's top directory or its ``difai`` stage):
the latest checkpoint, the coarse net of its run and the pSp / StyleGAN2 its config names are
loaded by :func:`difai_jax.checkpoints.load_difai`. Then, as in the paper (Sec. 3, Fig. 1 and
Fig. 4): I_masked -> coarse -> pSp W+ -> K style images (j = 0 unperturbed, j >= 1 moved along
SeFa directions, eq. 3) -> one completion per style image (eq. 5).

Any input size: the model sees the image resized to its resolution (a non-square image is
stretched; the input's hole pixels never reach it) with every model pixel that overlaps the
hole counted as hole;
each completion is resized back to the input's size and composited there in uint8 with the
ORIGINAL known pixels (``where(mask == 1, input, completion)``), so known pixels stay bit-exact.

Photos (``--align``, :mod:`difai_jax.face`): the shipped MTCNN finds the face and its five
landmarks, the model sees the face's FFHQ crop (eyes level, as FFHQ / CelebA-HQ faces are
framed) with the photo-space mask warped along (a crop pixel that any hole pixel reaches is
hole), and each completion is warped back into the photo's hole pixels only; every other pixel
of the photo is bit-exact. ``--align auto`` (the default) aligns every image that is not
already a square of the model's size, and falls back to the plain resize, with a note, when no
face is found; ``on`` requires a face; ``off`` never aligns. Several faces stop with a list of
them (box, score); ``--face N`` picks one (0 = the largest). The hole must lie inside the crop.
The detector looks at the photo as given, hole pixels included (the face is where it is); the
model never sees them.

Writes, per image (OUTDIR itself, or OUTDIR/<stem>/ in folder mode):
  * ``completion_00.png`` ... ``completion_{K-1}.png`` (00 = the unperturbed style image's);
  * ``grid.png``: masked input | mask | coarse | I_style | the K completions (one row);
  * for an aligned photo, ``aligned.png``: the same row at the model's resolution, in the crop;
  * with ``--walk``: ``walk.png`` (a strip) and ``walk.gif``: SeFa direction ``--walk_component``
    walked from ``-walk_max_degree`` to ``+walk_max_degree`` in ``--walk_steps`` (Fig. 4).

Masks: 1 (white) = known, 0 (black) = hole by default; ``--mask_convention hole_is_white`` reads
PIC / EXE-GAN / Quickdraw-style files. A mask must match its image's size (or pass
``--resize_mask``); non-binary masks are thresholded at 0.5 with a warning (``--strict_mask``
refuses them); all-hole and no-hole masks are refused; an RGBA mask is read from its alpha
channel when its colour is uniform. ``--image DIR --mask DIR`` pairs files by name (stem) and
runs them in batches; ``--mask FILE`` with ``--image DIR`` uses one mask for all; with
``--skip_bad`` unusable pairs are reported and skipped instead of stopping the run.

Everything that can be checked without the models is checked first, in this order: the output
folder (in the first second, before JAX is imported), the flags and every input file, then the
run's metadata (model size, SeFa directions, W+ layers) and the faces (``--align``); only then
are the models loaded. The compiled pipeline (and MTCNN) is kept in JAX's persistent
compilation cache (``--compilation_cache``, default ``~/.cache/difai_jax/jax_cache``), so a
second call of the same shapes skips compiling.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import warnings
from typing import Any, Sequence

import numpy as np
from PIL import Image

# JAX and the models are imported where they are used, so that the CLI checks its flags, output
# folder and input files in a second or two, before paying for those imports.
from difai_jax import cli
from difai_jax import image_io
from difai_jax.data import masks as masks_lib

IMAGE_EXTENSIONS = masks_lib.IMAGE_EXTENSIONS
HOLE_GREY = 128   # how the masked input shows its hole in grid.png
SMALL_INPUT_FACTOR = 2   # a note when the model upscales an input more than this


class InputError(ValueError):
  """An input file (image or mask) cannot be used; the message names the file and the problem."""


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------

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


def size_notes(path: str, hw: tuple[int, int], size: int) -> list[str]:
  """Notes on an input the model sees distorted: far smaller than the model, or not square."""
  h, w = hw
  notes = []
  if min(h, w) * SMALL_INPUT_FACTOR < size:
    notes.append(f"note: {path} is {w}x{h}, far smaller than the model's {size} px: it is "
                 f"upscaled {size / min(h, w):.1f}x, so expect a blurry completion")
  if h != w:
    notes.append(f"note: {path} is {w}x{h}, not square: the model sees it stretched to "
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


# ----------------------------------------------------------------------------------------------
# Photos: the face's FFHQ crop (--align)
# ----------------------------------------------------------------------------------------------

ALIGN_MODES = ("auto", "on", "off")


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
  from difai_jax.face import align  # pylint: disable=import-outside-toplevel
  from difai_jax.face import mtcnn  # pylint: disable=import-outside-toplevel
  detector = detector or mtcnn.load_detector()
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


def aligned_model_inputs(image_path: str, mask_path: str, image: np.ndarray, mask: np.ndarray,
                         alignment: Any) -> tuple[np.ndarray, np.ndarray]:
  """The model's (S, S, 3) image and (S, S, 1) mask from the face crop ``alignment``.

  Raises:
    InputError: the hole reaches outside the crop (no completion covers it), or no hole /
      no known pixel is left in the crop.
  """
  from difai_jax.face import align  # pylint: disable=import-outside-toplevel
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


# ----------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------

def edits(num: int, components: Sequence[int] | None, degrees: Sequence[float] | None,
          degree: float, n_directions: int | None = None) -> tuple[list[int], list[float]]:
  """The alpha = K - 1 SeFa edits: directions 0..K-2 with degrees +d, -d, +d, ... by default.

  The counts are checked at once; the directions' range only with ``n_directions`` (known from
  the run, see :func:`read_run_info`).
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
      raise ValueError(f"--num {num} asks for {num - 1} SeFa edits, one per direction, but the "
                       f"generator has {n_directions} directions; use --num <= "
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


@dataclasses.dataclass
class RunInfo:
  """What inference needs to know of a run before loading it (from its JSON metadata)."""
  difai_dir: str
  step: int
  image_size: int
  n_directions: int              # SeFa directions (rows of sefa.npz, else the style dim)
  n_latent: int                  # W+ layers of the pSp decoder
  config_layers: tuple[int, ...]  # config.sefa.layers (empty: all)


def read_run_info(checkpoint: str) -> RunInfo:
  """The model size, SeFa directions and W+ layers of a trained run, without its weights."""
  from difai_jax import checkpoints  # pylint: disable=import-outside-toplevel
  from difai_jax import pretrained  # pylint: disable=import-outside-toplevel
  checkpoint = pretrained.resolve(checkpoint)      # short names: toy-difai
  if not os.path.isdir(checkpoint):
    raise FileNotFoundError(f"--checkpoint {checkpoint!r} is not a folder (a trained DiFAI run) "
                            f"nor a shipped one ({', '.join(pretrained.SHORT_NAMES)})")
  difai_dir = checkpoints.find_stage_dir(checkpoint, "difai")
  meta = checkpoints.latest_meta(difai_dir)
  config = meta["config"]
  pre = config["pretrained"]
  if pre.get("psp"):
    decoder = pretrained.read_config(pre["psp"])["decoder"]
    decoder_size, style_dim = int(decoder["size"]), int(decoder["style_dim"])
  else:
    decoder_size = int(pre["random_psp"]["decoder_size"])
    style_dim = int(pre["random_psp"]["style_dim"])
  n_directions = style_dim
  sefa_file = os.path.join(difai_dir, "sefa.npz")
  if os.path.exists(sefa_file):
    with np.load(sefa_file) as cached:
      n_directions = int(cached["directions"].shape[0])
  n_latent = 2 * int(np.log2(decoder_size)) - 2
  return RunInfo(difai_dir, int(meta["step"]), int(config["image_size"]), n_directions,
                 n_latent, tuple(int(l) for l in config["sefa"].get("layers") or ()))


def make_inpaint_fn(models, mesh, layers: tuple[int, ...] | None):
  """A jitted ``(variables, image, mask, components, degrees, valid) -> outputs`` over ``mesh``.

  image (N, S, S, 3), mask (N, S, S, 1), components / degrees (N, alpha), valid (N,) bool
  (False: a padding row, kept out of the generator's batch statistics); N a multiple of the
  device count (batch sharded, variables replicated). Returns ``i_coarse`` (N, S, S, 3),
  ``i_style`` (N, S, S, 3) (j = 0) and ``completions`` (K, N, S, S, 3), all in [-1, 1].
  """
  import jax  # pylint: disable=import-outside-toplevel
  from jax.sharding import NamedSharding  # pylint: disable=import-outside-toplevel
  from jax.sharding import PartitionSpec as P  # pylint: disable=import-outside-toplevel
  from difai_jax import pipeline  # pylint: disable=import-outside-toplevel
  replicated = NamedSharding(mesh, P())
  sharded = NamedSharding(mesh, P("data"))

  def fn(variables, image, mask, components, degrees, valid):
    out = pipeline.inpaint(models, variables, image, mask, components, degrees, layers,
                           valid=valid)
    return {"i_coarse": out["i_coarse"], "i_style": out["i_style"][0],
            "completions": out["completions"]}

  return jax.jit(fn, in_shardings=(replicated, sharded, sharded, sharded, sharded, sharded))


def resize_back(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
  """(S, S, 3) float in [-1, 1] -> (H, W, 3) uint8, Lanczos."""
  u8 = image_io.to_uint8(image)
  if u8.shape[:2] == tuple(hw):
    return u8
  return np.asarray(Image.fromarray(u8).resize((hw[1], hw[0]), Image.LANCZOS))


def composite_uint8(image_uint8: np.ndarray, mask: np.ndarray, filled: np.ndarray) -> np.ndarray:
  """Known pixels from the original file (bit-exact), hole pixels from ``filled`` (all uint8)."""
  return np.where(mask > 0.5, image_uint8, filled).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------

def _batched(examples: list[Example], batch: int):
  for start in range(0, len(examples), batch):
    chunk = examples[start:start + batch]
    pad = chunk + [chunk[-1]] * (batch - len(chunk))
    valid = np.arange(batch) < len(chunk)     # padding rows stay out of batch statistics
    yield chunk, (np.stack([e.model_image for e in pad]), np.stack([e.model_mask for e in pad]),
                  valid)


def _report(problems: list[str], total: int) -> str:
  """One problem of a single input as it is; several as a list under a count."""
  if total == 1:
    return problems[0]
  return f"{len(problems)} of {total} input(s) cannot be used:\n  " + "\n  ".join(problems)


def run(checkpoint: str, image: str, mask: str, out_dir: str, *, num: int = 8,
        components: Sequence[int] | None = None, degrees: Sequence[float] | None = None,
        degree: float = 5.0, layers: Sequence[int] | None = None, walk: bool = False,
        walk_component: int = 0, walk_steps: int = 9, walk_max_degree: float = 10.0,
        gif_ms: int = 150, mask_convention: str = "known_is_white", resize_mask: bool = False,
        strict_mask: bool = False, batch_size: int = 8, skip_bad: bool = False,
        align: str = "auto", face: int | None = None,
        compilation_cache: str | None = "off", verbose: bool = True) -> list[dict]:
  """Inpaints every (image, mask) pair; returns, per input, the paths written.

  Every check that needs no weights runs before the models are loaded (see the module
  docstring), the face search of ``align`` (:func:`find_alignment`) included; with ``skip_bad``
  unusable inputs are reported on stderr and left out.
  ``compilation_cache`` is a folder for :func:`cli.enable_compilation_cache` (None: the user
  cache folder; "off": none, the default of this function; the CLI turns it on).
  """
  log = (lambda *a: print(*a, flush=True)) if verbose else (lambda *a: None)
  if mask_convention not in image_io.MASK_CONVENTIONS:
    raise ValueError(f"--mask_convention must be one of {image_io.MASK_CONVENTIONS}")
  if align not in ALIGN_MODES:
    raise ValueError(f"--align must be one of {', '.join(ALIGN_MODES)}; got {align!r}")
  if face is not None and (align == "off" or face < 0):
    raise ValueError(f"--face {face}: " + ("faces are numbered from 0" if face < 0 else
                                           "picking a face needs --align on or auto"))
  cli.check_output_dir(out_dir, "--out")
  edits(num, components, degrees, degree)   # the counts now; the ranges need the run
  pairs = pair_inputs(image, mask)
  folder_mode = os.path.isdir(image)

  # 1. Every input file, read and checked; all problems reported at once.
  inputs, problems = [], []
  for image_path, mask_path in pairs:
    try:
      inputs.append((image_path, mask_path,
                     *read_input(image_path, mask_path, convention=mask_convention,
                                 resize_mask=resize_mask, strict_mask=strict_mask)))
    except InputError as e:
      problems.append(str(e))
  if problems and not skip_bad:
    raise InputError(_report(problems, len(pairs)))

  # 2. What the run's metadata says: model size, SeFa directions, W+ layers (no weights yet).
  info = read_run_info(checkpoint)
  comps, degs = edits(num, components, degrees, degree, info.n_directions)
  if walk and not 0 <= walk_component < info.n_directions:
    raise ValueError(f"--walk_component {walk_component} out of range: the generator has "
                     f"{info.n_directions} directions (0..{info.n_directions - 1})")
  if layers is not None:
    layers = check_layers(layers, info.n_latent)
  else:
    layers = check_layers(info.config_layers, info.n_latent, source="config.sefa.layers")
  cache = cli.enable_compilation_cache(compilation_cache)   # MTCNN's shapes are kept too
  examples = []
  for image_path, mask_path, image_uint8, known in inputs:
    try:
      alignment, notes = find_alignment(image_path, image_uint8, info.image_size, mode=align,
                                        face=face)
      examples.append(make_example(image_path, mask_path, image_uint8, known, info.image_size,
                                   alignment=alignment, notes=notes))
    except InputError as e:
      problems.append(str(e))
  if problems:
    if not skip_bad or not examples:
      raise InputError(_report(problems, len(pairs)))
    for problem in problems:
      print(f"skipped: {problem}", file=sys.stderr)
    print(f"--skip_bad: {len(problems)} of {len(pairs)} input(s) skipped, {len(examples)} left",
          file=sys.stderr)
  for ex in examples:
    for note in ex.notes:
      log(note)

  # 3. The models.
  import jax  # pylint: disable=import-outside-toplevel
  from jax.sharding import NamedSharding  # pylint: disable=import-outside-toplevel
  from jax.sharding import PartitionSpec as P  # pylint: disable=import-outside-toplevel
  from difai_jax import checkpoints  # pylint: disable=import-outside-toplevel
  from difai_jax.evaluate import local_mesh, round_up  # pylint: disable=import-outside-toplevel
  inference = checkpoints.load_difai(checkpoint)
  size = int(inference.config.image_size)
  log(f"DiFAI step {inference.step} from {checkpoint}: {size} px, {len(examples)} input(s), "
      f"K = {len(comps) + 1} completions (SeFa components {comps}, degrees {degs})")

  mesh = local_mesh()
  batch = round_up(min(max(batch_size, 1), len(examples)), mesh.size)
  fn = make_inpaint_fn(inference.models, mesh, layers)
  log("compiling the pipeline for these shapes" + (f" (or reading it from the cache {cache})"
                                                   if cache else "") + " ...")
  variables = jax.device_put(inference.variables, NamedSharding(mesh, P()))

  def edit_arrays(c, d):
    return (np.broadcast_to(np.asarray(c, np.int32), (batch, len(c))).copy(),
            np.broadcast_to(np.asarray(d, np.float32), (batch, len(d))).copy())

  main_edits = edit_arrays(comps, degs)
  walk_degrees = np.linspace(-walk_max_degree, walk_max_degree, walk_steps)
  walk_edits = edit_arrays([walk_component] * walk_steps, walk_degrees)
  written = []
  t0 = time.time()
  for chunk, (images, masks, valid) in _batched(examples, batch):
    result = jax.device_get(fn(variables, images, masks, *main_edits, valid))
    walk_result = (jax.device_get(fn(variables, images, masks, *walk_edits, valid)) if walk
                   else None)
    for i, ex in enumerate(chunk):
      target = os.path.join(out_dir, ex.name) if folder_mode else out_dir
      mine = {"i_coarse": result["i_coarse"][i], "i_style": result["i_style"][i],
              "completions": result["completions"][:, i]}
      walk_frames = None if walk_result is None else walk_result["completions"][1:, i]
      written.append(write_outputs(ex, target, mine, walk_frames, gif_ms))
    log(f"{len(written)}/{len(examples)} done ({time.time() - t0:.1f} s)")
  return written


def to_photo(ex: Example, image: np.ndarray, replace: np.ndarray | None = None) -> np.ndarray:
  """A model-resolution (S, S, 3) image in [-1, 1] brought back to ``ex``'s photo as uint8.

  ``replace``: (H, W) bool, the photo pixels it may change (default: the hole); all others are
  the photo's own, bit-exact. Aligned inputs are pasted back through their face crop,
  others resized to the photo's size.
  """
  if replace is None:
    replace = ex.mask[..., 0] < 0.5
  if ex.alignment is not None:
    from difai_jax.face import align  # pylint: disable=import-outside-toplevel
    return align.paste(ex.image_uint8, replace, (image + 1.0) * 127.5, ex.alignment)
  filled = resize_back(image, ex.image_uint8.shape[:2])
  return np.where(replace[..., None], filled, ex.image_uint8).astype(np.uint8)


def write_outputs(ex: Example, target: str, out: dict, walk_frames, gif_ms: int) -> dict:
  """Writes one input's completions, grid and (optionally) walk; returns the paths.

  For an aligned photo also ``aligned.png``: what the model saw and made, at its resolution
  (the masked crop | mask | coarse | I_style | completions).
  """
  os.makedirs(target, exist_ok=True)
  hw = ex.image_uint8.shape[:2]
  paths: dict[str, Any] = {"completions": []}
  finals = []
  for j, completion in enumerate(out["completions"]):
    final = to_photo(ex, completion)
    path = os.path.join(target, f"completion_{j:02d}.png")
    image_io.save_png(path, final)
    paths["completions"].append(path)
    finals.append(final)
  masked = composite_uint8(ex.image_uint8, ex.mask, np.full_like(ex.image_uint8, HOLE_GREY))
  mask_tile = np.repeat((ex.mask * 255).astype(np.uint8), 3, axis=-1)
  coarse = to_photo(ex, out["i_coarse"])
  if ex.alignment is None:
    style = resize_back(out["i_style"], hw)
  else:   # the style image over the whole crop, in the photo
    from difai_jax.face import align  # pylint: disable=import-outside-toplevel
    style = to_photo(ex, out["i_style"], align.inside(hw, ex.alignment))
  tiles = np.stack([masked, mask_tile, coarse, style] + finals)
  paths["grid"] = os.path.join(target, "grid.png")
  image_io.save_png(paths["grid"], image_io.make_grid(tiles, ncol=len(tiles)))
  if ex.alignment is not None:
    model_masked = np.where(ex.model_mask > 0.5, ex.model_image, HOLE_GREY / 127.5 - 1.0)
    model_tiles = [model_masked, ex.model_mask * 2.0 - 1.0, out["i_coarse"], out["i_style"],
                   *out["completions"]]
    paths["aligned"] = os.path.join(target, "aligned.png")
    image_io.save_png(paths["aligned"], image_io.make_grid(
        image_io.to_uint8(np.stack([np.broadcast_to(t, ex.model_image.shape)
                                    for t in model_tiles])), ncol=len(model_tiles)))
  if walk_frames is not None:
    frames = np.stack([to_photo(ex, f) for f in walk_frames])
    paths["walk"] = os.path.join(target, "walk.png")
    paths["walk_gif"] = os.path.join(target, "walk.gif")
    image_io.save_png(paths["walk"], image_io.make_grid(frames, ncol=len(frames)))
    # Forth and back, so that the loop has no jump.
    image_io.save_animated_gif(paths["walk_gif"], list(frames) + list(frames[-2:0:-1]),
                               duration_ms=gif_ms)
  return paths


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------

def _define_flags():
  """The CLI's flags, defined only when run as a program (other entry points share names)."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  flags.DEFINE_string("checkpoint", None, "trained DiFAI workdir (run or its difai stage)")
  flags.DEFINE_string("image", None, "face image file, or a folder of them")
  flags.DEFINE_string("mask", None, "mask file, or a folder of masks named like the images")
  flags.DEFINE_string("out", None, "output folder")
  flags.DEFINE_integer("num", 8, "K completions per input (1 + the number of SeFa edits)",
                       lower_bound=1)
  flags.DEFINE_list("components", None, "SeFa directions of completions 1..K-1 (default "
                    "0..K-2)")
  flags.DEFINE_list("degrees", None, "their degrees (default +d, -d, +d, ... with d = --degree)")
  flags.DEFINE_float("degree", 5.0, "default degree magnitude")
  flags.DEFINE_list("layers", None, "W+ layers the edits move (default: the run's "
                    "config.sefa.layers, else all)")
  flags.DEFINE_boolean("walk", False, "also write walk.png / walk.gif: a continuous SeFa walk")
  flags.DEFINE_integer("walk_component", 0, "SeFa direction of the walk")
  flags.DEFINE_integer("walk_steps", 9, "frames of the walk", lower_bound=2)
  flags.DEFINE_float("walk_max_degree", 10.0, "the walk spans [-max, +max]")
  flags.DEFINE_integer("gif_ms", 150, "GIF frame duration in ms")
  flags.DEFINE_enum("mask_convention", "known_is_white", list(image_io.MASK_CONVENTIONS),
                    "how mask files encode the hole (white = known is ours)")
  flags.DEFINE_boolean("resize_mask", False, "resize masks of another size to their image's "
                       "(nearest neighbour) instead of refusing them")
  flags.DEFINE_boolean("strict_mask", False, "refuse non-binary masks instead of thresholding "
                       "them at 0.5")
  flags.DEFINE_integer("batch_size", 8, "images per batch in folder mode")
  flags.DEFINE_boolean("skip_bad", False, "folder mode: report unusable images / masks and "
                       "go on with the rest instead of stopping")
  flags.DEFINE_enum("align", "auto", list(ALIGN_MODES), "find the face (MTCNN) and give the "
                    "model its FFHQ crop, pasting completions back into the photo: auto = for "
                    "images that are not a square of the model's size, falling back to a plain "
                    "resize when no face is found; on = a face is required; off = never")
  flags.DEFINE_integer("face", None, "with several faces in a photo: the one to inpaint (0 = "
                       "the largest; the message listing them gives the numbers)", lower_bound=0)
  cli.define_cache_flag()


def main(argv):
  from absl import app  # pylint: disable=import-outside-toplevel
  from absl import flags  # pylint: disable=import-outside-toplevel
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  for name in ("checkpoint", "image", "mask", "out"):
    if not FLAGS[name].value:
      raise app.UsageError(f"--{name} is required")
  cli.check_output_dir(FLAGS.out, "--out")   # first, before anything slow
  try:
    components = None if FLAGS.components is None else [int(c) for c in FLAGS.components]
    degrees = None if FLAGS.degrees is None else [float(d) for d in FLAGS.degrees]
    layers = None if FLAGS.layers is None else [int(l) for l in FLAGS.layers]
  except ValueError as e:
    raise cli.CliError("--components / --degrees / --layers must be comma-separated numbers "
                       f"({e})") from None
  num = FLAGS.num
  if components is not None:
    if FLAGS["num"].present and num != len(components) + 1:
      raise cli.CliError(f"--num {num} but --components names {len(components)} edits (K = "
                         f"{len(components) + 1}); drop --num or make them agree")
    num = len(components) + 1
  if FLAGS.skip_bad and not os.path.isdir(FLAGS.image):
    raise cli.CliError("--skip_bad is for folder mode (--image DIR); a single --image is "
                       "checked and refused on its own")
  written = run(FLAGS.checkpoint, FLAGS.image, FLAGS.mask, FLAGS.out, num=num,
                components=components, degrees=degrees, degree=FLAGS.degree, layers=layers,
                walk=FLAGS.walk, walk_component=FLAGS.walk_component,
                walk_steps=FLAGS.walk_steps, walk_max_degree=FLAGS.walk_max_degree,
                gif_ms=FLAGS.gif_ms, mask_convention=FLAGS.mask_convention,
                resize_mask=FLAGS.resize_mask, strict_mask=FLAGS.strict_mask,
                batch_size=FLAGS.batch_size, skip_bad=FLAGS.skip_bad, align=FLAGS.align,
                face=FLAGS.face, compilation_cache=FLAGS.compilation_cache)
  for paths in written:
    print(f"{os.path.dirname(paths['grid'])}: {len(paths['completions'])} completions, grid.png"
          + (", aligned.png" if "aligned" in paths else "")
          + (", walk.png, walk.gif" if "walk" in paths else ""))
  return 0


if __name__ == "__main__":
  _define_flags()
  cli.run(main, user_errors=(ValueError, FileNotFoundError))
