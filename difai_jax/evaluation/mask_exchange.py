"""Masks out, masks in: the fixed evaluation masks as files another method reads, and mask folders
made elsewhere used as evaluation buckets.

**Out** (:func:`export_masks`, ``evaluate --export_masks DIR``): for each bucket, the mask every
test image gets in an evaluation (the same pairing as ``data.loader.make_eval_dataset``: test
image i with bucket mask i mod M), one PNG per test image, and the test images themselves::

    DIR/manifest.json   {"convention", "image_size", "num_images", "buckets": {bucket: [{
                        "image_id", "mask", "hole_ratio"}, ...]}, ...}
    DIR/manifest.csv    bucket, image_id, mask, image, hole_ratio   (one row per mask)
    DIR/images/<image_id>.png          the test images as evaluated (the eval size)
    DIR/<bucket>/<image_id>.png        the mask of that image in that bucket

``image_id`` is the test image's index, zero-padded (:func:`image_id`). Each method reads masks
in its own convention (``--mask_convention``, :data:`CONVENTIONS`); the public code says:

* ``known1`` (white = 1 = known pixel, black = hole): this package (DiFAI eq. 1); MAT
  (fenglinglwb/MAT README: "0 and 1 values in a mask refer to masked and remained pixels";
  ``generate_image.py`` reads ``mask / 255``); CoModGAN (zsyzzsoft/co-mod-gan
  ``training/co_mod_gan.py``: ``images_in * masks_in``, output ``y * (1 - masks_in) + images_in
  * masks_in``);
* ``hole1`` (white = hole): LaMa (advimman/lama ``trainers/default.py``: ``img * (1 - mask)``,
  files ``<image>_mask001.png``), and the public irregular / Quickdraw mask sets.

**In** (:func:`read_mask_folder`, ``evaluate --masks_dir DIR --mask_convention ...``): a folder
exported above (its manifest's convention must agree with the flag), or any folder of mask
images: files under a subfolder named as a bucket (``10-20``, ``quickdraw``, ...) form that
bucket; other files are bucketed by their hole ratio at the evaluation size into the ratio
buckets of ``data.masks.BUCKET_RANGES`` (10-20 ... 40-50 %, lower bound inclusive), files outside
them are left out (counted). In a bucket, files are sorted by name and test image i gets file
i mod M, as with the generated buckets. Non-binary files (anti-aliased, JPEG) are thresholded at
0.5 of white.
"""

from __future__ import annotations

import csv
import json
import os

import ml_collections
import numpy as np

from difai_jax.data import image_io
from difai_jax.data import loader as data_loader
from difai_jax.data import masks as masks_lib

CONVENTIONS = {"known1": "known_is_white", "hole1": "hole_is_white"}
METHOD_CONVENTIONS = {"DiFAI": "known1", "MAT": "known1", "CoModGAN": "known1", "LaMa": "hole1"}
THRESHOLD = 0.5
MANIFEST = "manifest.json"


def placed_data(data_config, out_dir: str):
  """The data config with a relative ``bucket_dir`` placed under ``out_dir`` (as an evaluation
  places it beside its results)."""
  data = ml_collections.ConfigDict(data_config.to_dict())
  if not os.path.isabs(data.bucket_dir):
    data.bucket_dir = os.path.join(out_dir, data.bucket_dir)
  return data


def image_id(index: int) -> str:
  """The file stem of test image ``index`` in exported masks and completions folders."""
  return f"{int(index):05d}"


def file_convention(convention: str) -> str:
  """``known1`` / ``hole1`` -> ``image_io``'s name (``known_is_white`` / ``hole_is_white``)."""
  if convention not in CONVENTIONS:
    raise ValueError(f"unknown mask convention {convention!r}; expected known1 (white = known, "
                     "MAT, CoModGAN, this package) or hole1 (white = hole, LaMa)")
  return CONVENTIONS[convention]


# ----------------------------------------------------------------------------------------------
# Out
# ----------------------------------------------------------------------------------------------

def export_masks(data, image_size: int, buckets, num_images: int, out_dir: str,
                 convention: str = "known1", source=None, verbose: bool = True) -> dict:
  """Writes each bucket's mask of each of the first ``num_images`` test images, the test images
  and the manifest (module docstring) to ``out_dir``; returns the manifest."""
  file_conv = file_convention(convention)
  manifest = {"convention": convention, "white": "known" if convention == "known1" else "hole",
              "image_size": int(image_size), "num_images": int(num_images),
              "images": "images", "buckets": {}}
  rows = []
  for bucket in buckets:
    ds = data_loader.make_eval_dataset(data, bucket=bucket, image_size=image_size, batch_size=1,
                                       process_index=0, process_count=1, num_images=num_images,
                                       source=source, verbose=False)
    entries = []
    for b in range(len(ds)):
      element = ds[b]
      index, mask, image = int(element["index"][0]), element["mask"][0], element["image"][0]
      name = image_id(index)
      image_io.save_mask(os.path.join(out_dir, bucket, f"{name}.png"), mask, file_conv)
      if bucket == buckets[0]:
        image_io.save_png(os.path.join(out_dir, "images", f"{name}.png"), image)
      ratio = float(masks_lib.hole_ratio(mask))
      entries.append({"image_id": name, "mask": f"{bucket}/{name}.png", "hole_ratio": ratio})
      rows.append([bucket, name, f"{bucket}/{name}.png", f"images/{name}.png", f"{ratio:.6f}"])
    manifest["buckets"][bucket] = entries
  with open(os.path.join(out_dir, MANIFEST), "w", encoding="utf-8") as f:
    json.dump(manifest, f, indent=1)
  with open(os.path.join(out_dir, "manifest.csv"), "w", encoding="utf-8", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["bucket", "image_id", "mask", "image", "hole_ratio"])
    writer.writerows(rows)
  if verbose:
    print(f"wrote {len(buckets)} buckets x {num_images} masks ({convention}: white = "
          f"{manifest['white']}), the test images and manifest.json / manifest.csv to {out_dir}")
  return manifest


# ----------------------------------------------------------------------------------------------
# In
# ----------------------------------------------------------------------------------------------

class FolderBucketMasks:
  """One bucket of mask files (sorted), read lazily at the evaluation size, 1 = known."""

  def __init__(self, files, convention: str, image_size: int):
    self.files = sorted(files)
    self.convention = file_convention(convention)
    self.image_size = int(image_size)

  def __len__(self) -> int:
    return len(self.files)

  def __getitem__(self, index: int) -> np.ndarray:
    return image_io.load_mask(self.files[int(index)], size=self.image_size,
                              convention=self.convention, threshold=THRESHOLD)


def _check_manifest(folder: str, convention: str) -> None:
  path = os.path.join(folder, MANIFEST)
  if not os.path.isfile(path):
    return
  with open(path, encoding="utf-8") as f:
    have = json.load(f).get("convention")
  if have is not None and have != convention:
    raise ValueError(f"mask folder {folder} was exported with --mask_convention {have} "
                     f"(its {MANIFEST}), not {convention}; pass --mask_convention {have}")


def read_mask_folder(folder: str, convention: str, image_size: int) -> tuple[dict, dict]:
  """``({bucket: FolderBucketMasks}, {"left_out": n files outside every ratio bucket})`` of a
  mask folder (module docstring: bucket subfolders as they are, other files by hole ratio)."""
  if not os.path.isdir(folder):
    raise ValueError(f"mask folder not found: {folder}")
  _check_manifest(folder, convention)
  files = [f for f in masks_lib.list_mask_files(folder)
           if os.path.relpath(f, folder).split(os.sep)[0] != "images"]
  if not files:
    raise ValueError(f"mask folder {folder} holds no mask images "
                     f"({', '.join(masks_lib.IMAGE_EXTENSIONS)})")
  named: dict[str, list[str]] = {}
  loose = []
  for f in files:
    parent = os.path.relpath(f, folder).split(os.sep)
    if len(parent) == 2 and parent[0] in masks_lib.EVAL_BUCKET_RANGES:
      named.setdefault(parent[0], []).append(f)
    else:
      loose.append(f)
  left_out = 0
  file_conv = file_convention(convention)
  for f in loose:
    ratio = masks_lib.hole_ratio(image_io.load_mask(f, size=image_size, convention=file_conv,
                                                    threshold=THRESHOLD))
    bucket = next((b for b, (lo, hi) in masks_lib.BUCKET_RANGES.items()
                   if b != "quickdraw" and lo <= ratio < hi), None)
    if bucket is None:
      left_out += 1
    else:
      named.setdefault(bucket, []).append(f)
  buckets = {b: FolderBucketMasks(named[b], convention, image_size)
             for b in masks_lib.EVAL_BUCKET_NAMES if b in named}
  return buckets, {"left_out": left_out, "files": len(files)}


def bucket_masks_from(masks_dir: str | None, convention: str, buckets, image_size: int):
  """(``{bucket: FolderBucketMasks}`` read from ``masks_dir``, notes); (None, []) without a
  folder (the generated buckets). Every bucket asked for must be in the folder."""
  if masks_dir is None:
    return None, []
  found, info = read_mask_folder(masks_dir, convention, image_size)
  missing = [b for b in buckets if b not in found]
  if missing:
    raise ValueError(f"mask folder {masks_dir} has no masks for bucket(s) {missing} (it has "
                     f"{sorted(found)}); pass --buckets {','.join(found) or '...'}")
  note = f"masks from {masks_dir} ({convention})"
  if info["left_out"]:
    note += f"; {info['left_out']} of {info['files']} files outside every bucket left out"
  return {b: found[b] for b in buckets}, [note]
