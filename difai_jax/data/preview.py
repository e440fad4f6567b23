"""Writes a PNG sheet of toy faces under the masks of every evaluation bucket, for a person to see.

  python -m difai_jax.data.preview --out sheet.png [--size 64] [--num 8] [--seed 0]

Row 0 shows the faces; each following row shows the same faces masked by one bucket (10-20,
20-30, 30-40, 40-50 % hole, quickdraw), then training masks (strokes + 85 px squares). Holes are
drawn in mid grey. Masks are generated in memory (the same generator as the bucket folders).
"""

from __future__ import annotations

import numpy as np
from absl import app, flags

from difai_jax import cli
from difai_jax.data import image_io
from difai_jax.data import masks as masks_lib
from difai_jax.data.toy_faces import render_face

MIN_SIZE, MAX_SIZE = 32, 256   # the sizes toy faces are drawn at
MAX_NUM = 64

_OUT = flags.DEFINE_string("out", "sheet.png", "PNG file to write.")
_SIZE = flags.DEFINE_integer("size", 64, f"Image side in pixels ({MIN_SIZE}..{MAX_SIZE}).")
_NUM = flags.DEFINE_integer("num", 8, f"Faces per row (1..{MAX_NUM}).")
_SEED = flags.DEFINE_integer("seed", 0, "Toy-face and mask seed.")


def check_args(size: int, num: int) -> None:
  """Raises cli.CliError for a size or count the sheet cannot be drawn with."""
  if not MIN_SIZE <= size <= MAX_SIZE:
    raise cli.CliError(f"--size {size}: toy faces are drawn at {MIN_SIZE}..{MAX_SIZE} px")
  if not 1 <= num <= MAX_NUM:
    raise cli.CliError(f"--num {num}: the sheet shows 1..{MAX_NUM} faces per row")


def make_sheet(size: int = 64, num: int = 8, seed: int = 0) -> np.ndarray:
  """Returns the preview sheet as float32 HWC in [-1, 1] (rows: faces, buckets, train masks)."""
  check_args(size, num)
  # The training pipeline (grain) is imported here: --help and flag errors stay instant.
  from difai_jax.data.config import default_data_config  # pylint: disable=import-outside-toplevel
  from difai_jax.data.loader import make_mask_sampler  # pylint: disable=import-outside-toplevel
  faces = image_io.uint8_to_float(np.stack([render_face(seed, i, size) for i in range(num)]))
  rows = [faces]
  for b, name in enumerate(masks_lib.BUCKET_NAMES):
    m = np.stack([masks_lib.bucket_mask(np.random.default_rng([seed, b, i]), size, name)
                  for i in range(num)])
    rows.append(faces * m)  # hole -> 0 = mid grey
  sampler = make_mask_sampler(default_data_config(), size)
  m = np.stack([sampler(np.random.default_rng([seed, 99, i])) for i in range(num)])
  rows.append(faces * m)
  return image_io.make_grid(np.concatenate(rows), ncol=num)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  check_args(_SIZE.value, _NUM.value)
  cli.check_output_file(_OUT.value, "--out")
  sheet = make_sheet(_SIZE.value, _NUM.value, _SEED.value)
  image_io.save_png(_OUT.value, sheet)
  print(f"wrote {_OUT.value}: rows = faces, buckets {list(masks_lib.BUCKET_NAMES)}, train masks")


if __name__ == "__main__":
  cli.run(main)
