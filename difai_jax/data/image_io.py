"""Image and mask file I/O: the one place where pixels meet files.

Conventions (README "Conventions"): images are float32 in [-1, 1], HWC / NHWC, RGB; masks are
float32
(H, W, 1) with 1 on known pixels and 0 in the hole (DiFAI eq. 1, `hole = 1 - mask`).

Mask files come in two conventions:
  * ``"known_is_white"`` (ours): white (255) = known pixel, black (0) = hole;
  * ``"hole_is_white"`` (PIC, EXE-GAN, the public Quickdraw / NVIDIA irregular mask sets):
    white = hole. It is read only when asked for explicitly.

Files are untrusted: an image or mask above ``MAX_PIXELS`` is refused from its header, before
any pixel is decoded (a PNG of a few kilobytes can claim 65535 x 65535 pixels: 12 GB as RGB).

Only numpy and Pillow are used, so data workers can import this module cheaply.
"""

from __future__ import annotations

import os
import warnings
from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageOps

PathLike = Union[str, os.PathLike]

MASK_CONVENTIONS = ("known_is_white", "hole_is_white")
# 8192 x 8192: about 200 MB as 8-bit RGB; below Pillow's own warning level (~89 M pixels).
MAX_PIXELS = 8192 * 8192
_16_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


def _from_16_bit(img: Image.Image, path: PathLike, what: str) -> Image.Image:
  """A 16-bit grayscale image as 8-bit "L", scaled by its bit depth (65535 = white).

  32-bit integer and float images have no bit depth to scale by: refused, not guessed.
  """
  if img.mode in _16_BIT_MODES:
    arr = np.asarray(img, dtype=np.float64)
    return Image.fromarray(np.clip(np.round(arr * (255.0 / 65535.0)), 0, 255).astype(np.uint8))
  if img.mode in ("I", "F"):
    kind = "32-bit integer" if img.mode == "I" else "floating-point"
    raise ValueError(f"{what} {os.fspath(path)!r} is a {kind} image (mode {img.mode}), whose "
                     "white level is unknown; save it as an 8- or 16-bit PNG")
  return img


def _as_size(size) -> Optional[tuple]:
  """Returns `size` as (height, width), or None. An int means a square."""
  if size is None:
    return None
  if isinstance(size, (int, np.integer)):
    return int(size), int(size)
  height, width = size
  return int(height), int(width)


def center_crop_square(img: Image.Image) -> Image.Image:
  """Centre-crops a PIL image to a square of side min(width, height)."""
  width, height = img.size
  side = min(width, height)
  if width == height:
    return img
  left = (width - side) // 2
  top = (height - side) // 2
  return img.crop((left, top, left + side, top + side))


def _open_decoded(path: PathLike, what: str) -> Image.Image:
  """Opens and decodes an image file (EXIF orientation not applied yet).

  Raises:
    ValueError: naming the file when it is missing, unreadable, not an image, or larger than
      ``MAX_PIXELS`` (checked from the header, before decoding: decompression bombs).
  """
  too_big = ""
  try:
    with Image.open(path) as img:
      width, height = img.size
      if width * height > MAX_PIXELS:
        too_big = f"{width} x {height} = {width * height:,} pixels"
      else:
        img.load()
  except FileNotFoundError:
    raise ValueError(f"{what} not found: {os.fspath(path)!r}") from None
  except Image.DecompressionBombError:   # Pillow's own check, at 2 x its MAX_IMAGE_PIXELS
    too_big = f"more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels"
  except Exception as e:  # PIL raises several types for broken files.
    raise ValueError(f"cannot read {what} {os.fspath(path)!r}: {type(e).__name__}: {e}") from e
  if too_big:
    raise ValueError(
        f"{what} {os.fspath(path)!r} has {too_big}, above the ceiling of {MAX_PIXELS:,} pixels "
        "this tool decodes (a guard against decompression bombs); downscale it first")
  return img


def open_rgb(path: PathLike) -> Image.Image:
  """Opens an image file as an RGB PIL image.

  EXIF orientation is applied; grayscale, palette and 16-bit images are converted to RGB; RGBA /
  LA images are composited on white (transparent pixels become white, not black); a 16-bit
  file is scaled by its bit depth (65535 = white), whatever its largest value.

  Raises:
    ValueError: naming the file when it is missing, unreadable, not an image or above
      ``MAX_PIXELS``.
  """
  img = _open_decoded(path, "image file")
  try:
    img = ImageOps.exif_transpose(img)
  except Exception as e:  # a broken EXIF block
    raise ValueError(f"cannot read image file {os.fspath(path)!r}: {type(e).__name__}: {e}") from e
  if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
    img = img.convert("RGBA")
    background = Image.new("RGBA", img.size, (255, 255, 255, 255))
    img = Image.alpha_composite(background, img)
  img = _from_16_bit(img, path, "image file")
  return img.convert("RGB")


def load_image_uint8(path: PathLike, size=None, crop_square: bool = False) -> np.ndarray:
  """Loads an image file as uint8 RGB (H, W, 3).

  Args:
    path: image file (any format Pillow reads: png, jpg, webp, ...).
    size: None (keep), an int (square) or (height, width); resized with Lanczos (antialiased).
    crop_square: centre-crop non-square images to a square before resizing.
  """
  img = open_rgb(path)
  if crop_square:
    img = center_crop_square(img)
  hw = _as_size(size)
  if hw is not None and (img.size[1], img.size[0]) != hw:
    img = img.resize((hw[1], hw[0]), Image.LANCZOS)
  return np.asarray(img, dtype=np.uint8)


def uint8_to_float(images) -> np.ndarray:
  """uint8 [0, 255] -> float32 [-1, 1] (any shape)."""
  return np.asarray(images, dtype=np.float32) / 127.5 - 1.0


def load_image(path: PathLike, size=None) -> np.ndarray:
  """Loads an image file as float32 (H, W, 3) RGB in [-1, 1].

  Grayscale and RGBA files are converted to RGB (alpha composited on white). `size` is None,
  an int (square) or (height, width); the image is resized (not cropped) to it.

  Raises:
    ValueError: naming the file when it is missing or unreadable.
  """
  return uint8_to_float(load_image_uint8(path, size))


def to_uint8(images) -> np.ndarray:
  """Maps images in [-1, 1] (any shape, numpy or jax) to uint8 [0, 255], clipping, rounding."""
  arr = np.asarray(images, dtype=np.float32)
  return np.clip(np.round((arr + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _to_uint8_hwc(image) -> np.ndarray:
  """Accepts HWC (C = 1 or 3) or HW, float in [-1, 1] or uint8; returns uint8 HWC / HW."""
  arr = np.asarray(image)
  if arr.dtype != np.uint8:
    arr = to_uint8(arr)
  if arr.ndim == 3 and arr.shape[-1] == 1:
    arr = arr[..., 0]
  if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
    raise ValueError(f"expected an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); "
                     f"got {tuple(np.shape(image))}")
  return arr


def save_png(path: PathLike, image) -> None:
  """Writes one image to a PNG file, creating parent folders.

  Args:
    path: destination file.
    image: (H, W, 3) / (H, W, 1) / (H, W) as float in [-1, 1] or uint8 in [0, 255].
  """
  arr = _to_uint8_hwc(image)
  parent = os.path.dirname(os.fspath(path))
  if parent:
    os.makedirs(parent, exist_ok=True)
  Image.fromarray(arr).save(path, format="PNG")


def make_grid(images, ncol: int, pad: int = 2) -> np.ndarray:
  """Tiles an NHWC batch into one HWC image, row-major, `pad` white pixels between and around.

  Args:
    images: (N, H, W, C), float in [-1, 1] or uint8; C = 1 is broadcast to RGB.
    ncol: images per row.
    pad: border width in pixels.

  Returns:
    The grid in the input's value convention (float32 [-1, 1], white = 1; or uint8, white = 255),
    shape (rows * (H + pad) + pad, ncol * (W + pad) + pad, C) with C = 3 if input C was 1.
  """
  arr = np.asarray(images)
  if arr.ndim != 4:
    raise ValueError(f"make_grid expects an NHWC batch; got shape {arr.shape}")
  if ncol < 1:
    raise ValueError(f"ncol must be >= 1; got {ncol}")
  if arr.shape[-1] == 1:
    arr = np.repeat(arr, 3, axis=-1)
  is_uint8 = arr.dtype == np.uint8
  if not is_uint8:
    arr = arr.astype(np.float32)
  n, h, w, c = arr.shape
  rows = max(1, -(-n // ncol))
  white = 255 if is_uint8 else 1.0
  grid = np.full((rows * (h + pad) + pad, ncol * (w + pad) + pad, c), white, dtype=arr.dtype)
  for i in range(n):
    r, col = divmod(i, ncol)
    y = pad + r * (h + pad)
    x = pad + col * (w + pad)
    grid[y:y + h, x:x + w] = arr[i]
  return grid


def binarize_mask(values: np.ndarray, threshold: Optional[float] = None, *, strict: bool = False,
                  name: str = "mask", strict_hint: str = "pass a binary mask or a threshold"
                  ) -> np.ndarray:
  """Maps mask values in [0, 1] to {0, 1} float32.

  Already-binary input passes through. Other input is thresholded (`>= threshold`, default 0.5)
  with a warning, unless `threshold` was given explicitly (then silently); `strict=True` refuses
  non-binary input instead, with `strict_hint` (what the caller's user can do) in the message.
  """
  values = np.asarray(values, dtype=np.float32)
  binary = np.isin(values, (0.0, 1.0))
  if binary.all():
    return values
  if strict:
    where = tuple(int(i) for i in np.argwhere(~binary)[0])
    raise ValueError(
        f"{name} has values other than 0 and 1 (found {values[where]:g} at {where}); "
        f"{strict_hint}")
  if threshold is None:
    frac = float(np.mean(~binary))
    warnings.warn(f"{name} is not binary ({frac:.1%} of pixels strictly between 0 and 1); "
                  "thresholding at 0.5", stacklevel=3)
    threshold = 0.5
  return (values >= threshold).astype(np.float32)


def _mask_white(img: Image.Image, path: PathLike) -> np.ndarray:
  """The white level in [0, 1] (H, W) of a mask file, and how it was read.

  Grayscale files are read as they are, 16-bit ones scaled by 65535 and colour ones by
  luminance. A file with transparency (RGBA, LA, palette with transparency) is read from its
  alpha channel (opaque = white) when its colour is uniform (a shape drawn on a transparent
  layer), from its colour when its alpha is uniform, and refused when the two disagree.
  """
  name = f"mask file {os.fspath(path)!r}"
  if img.mode == "P" and "transparency" in img.info:
    img = img.convert("RGBA")
  if img.mode in ("RGBA", "LA", "PA"):
    rgba = img.convert("RGBA")
    alpha = np.asarray(rgba, dtype=np.float32)[..., 3] / 255.0
    luminance = np.asarray(rgba.convert("L"), dtype=np.float32) / 255.0
    if alpha.min() == alpha.max():
      return luminance
    if luminance.min() == luminance.max() or np.array_equal(luminance >= 0.5, alpha >= 0.5):
      warnings.warn(f"{name} is {img.mode} with a uniform colour: read from its alpha channel "
                    "(opaque = white, transparent = black)", stacklevel=3)
      return alpha
    raise ValueError(
        f"{name} is {img.mode} and its colour and its transparency disagree (read by colour it "
        f"is {np.mean(luminance < 0.5):.0%} black, by alpha {np.mean(alpha < 0.5):.0%} "
        "transparent): cannot tell which marks the hole; save it as a grayscale (L) PNG")
  img = _from_16_bit(img, path, "mask file")
  if img.mode != "L":
    img = img.convert("L")
  return np.asarray(img, dtype=np.float32) / 255.0


def load_mask(path: PathLike, size=None, convention: str = "known_is_white",
              threshold: Optional[float] = None, strict: bool = False,
              strict_hint: str = "pass a binary mask or a threshold") -> np.ndarray:
  """Loads a mask file as float32 (H, W, 1): 1 = known pixel, 0 = hole (eq. 1).

  Args:
    path: image file; colour files are reduced to luminance, 16-bit ones scaled by their bit
      depth; a transparent one is read from its alpha channel (opaque = white) when its colour
      is uniform, and refused when colour and alpha disagree.
    size: None, an int or (height, width); resized with nearest neighbour (stays binary).
    convention: how the file encodes the hole: "known_is_white" (ours) or "hole_is_white"
      (PIC / EXE-GAN / public irregular-mask sets); the latter is inverted on load.
    threshold: in [0, 1] on the white-is-1 scale; values >= threshold count as white. When None,
      non-binary files (e.g. anti-aliased or JPEG) are thresholded at 0.5 with a warning.
    strict: refuse non-binary files instead of thresholding them.
    strict_hint: what the message of a refused non-binary file tells the user to do.

  Raises:
    ValueError: unreadable file, a file above ``MAX_PIXELS``, unknown convention, colour and
      alpha that disagree, or non-binary values with `strict=True`.
  """
  if convention not in MASK_CONVENTIONS:
    raise ValueError(f"unknown mask convention {convention!r}; expected one of {MASK_CONVENTIONS}")
  img = _open_decoded(path, "mask file")
  white = _mask_white(img, path)
  hw = _as_size(size)
  if hw is not None and white.shape != hw:
    # Nearest neighbour on the exact levels (float "F" image: no rounding to 8 bits).
    white = np.asarray(Image.fromarray(white.astype(np.float32)).resize((hw[1], hw[0]),
                                                                       Image.NEAREST))
  white = binarize_mask(white, threshold, strict=strict, name=f"mask file {os.fspath(path)!r}",
                        strict_hint=strict_hint)
  mask = white if convention == "known_is_white" else 1.0 - white
  return mask[..., None].astype(np.float32)


def save_mask(path: PathLike, mask, convention: str = "known_is_white") -> None:
  """Writes a (H, W, 1) or (H, W) mask (1 = known) as a binary 8-bit PNG in `convention`."""
  if convention not in MASK_CONVENTIONS:
    raise ValueError(f"unknown mask convention {convention!r}; expected one of {MASK_CONVENTIONS}")
  arr = np.asarray(mask, dtype=np.float32)
  if arr.ndim == 3 and arr.shape[-1] == 1:
    arr = arr[..., 0]
  if arr.ndim != 2:
    raise ValueError(f"expected a mask of shape (H, W, 1) or (H, W); got {np.shape(mask)}")
  white = arr if convention == "known_is_white" else 1.0 - arr
  save_png(path, (np.clip(white, 0, 1) * 255).round().astype(np.uint8))


def save_animated_gif(path: PathLike, frames: Sequence, duration_ms: int = 200,
                      loop: int = 0) -> None:
  """Writes frames (each HWC in [-1, 1] or uint8) as an animated GIF.

  Args:
    path: destination file.
    frames: a sequence (or an NHWC array) of images of one size.
    duration_ms: display time of each frame.
    loop: number of loops; 0 = forever.
  """
  arrays = [_to_uint8_hwc(f) for f in frames]
  if not arrays:
    raise ValueError("save_animated_gif needs at least one frame")
  shapes = {a.shape for a in arrays}
  if len(shapes) != 1:
    raise ValueError(f"all GIF frames must have one shape; got {sorted(shapes)}")
  pil = [Image.fromarray(a).convert("RGB") for a in arrays]
  parent = os.path.dirname(os.fspath(path))
  if parent:
    os.makedirs(parent, exist_ok=True)
  pil[0].save(path, format="GIF", save_all=True, append_images=pil[1:], duration=int(duration_ms),
              loop=int(loop), disposal=2)
