"""The outputs of inference at the input's size: completions resized back (or pasted back into
an aligned photo) and composited in uint8 with the input's known pixels, which stay bit-exact;
the files one input gives (completions, grid, aligned view, SeFa walk)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image

from difai_jax.data import image_io
from difai_jax.inference.face import align
from difai_jax.inference.inputs import Example

HOLE_GREY = 128   # how the masked input shows its hole in grid.png


def resize_back(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
  """(S, S, 3) float in [-1, 1] -> (H, W, 3) uint8, Lanczos."""
  u8 = image_io.to_uint8(image)
  if u8.shape[:2] == tuple(hw):
    return u8
  return np.asarray(Image.fromarray(u8).resize((hw[1], hw[0]), Image.LANCZOS))


def composite_uint8(image_uint8: np.ndarray, mask: np.ndarray, filled: np.ndarray) -> np.ndarray:
  """Known pixels from the original file (bit-exact), hole pixels from ``filled`` (all uint8)."""
  return np.where(mask > 0.5, image_uint8, filled).astype(np.uint8)


def to_photo(ex: Example, image: np.ndarray, replace: np.ndarray | None = None) -> np.ndarray:
  """A model-resolution (S, S, 3) image in [-1, 1] brought back to ``ex``'s photo as uint8.

  ``replace``: (H, W) bool, the photo pixels it may change (default: the hole); all others are
  the photo's own, bit-exact. Aligned inputs are pasted back through their face crop,
  others resized to the photo's size.
  """
  if replace is None:
    replace = ex.mask[..., 0] < 0.5
  if ex.alignment is not None:
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
