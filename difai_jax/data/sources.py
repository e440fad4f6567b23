"""Image sources: random-access collections of uint8 RGB (size, size, 3) face images.

The paper trains on CelebA-HQ with a 28,000 / 2,000 train / test split (Sec. 4). Three sources
stand behind one interface (`len(source)`, `source[i] -> uint8 (size, size, 3)`, picklable, so
grain workers can hold them):
  * `FolderSource`: an image folder as users have CelebA-HQ (recursive; jpg / png / webp);
  * `TfdsSource`: tensorflow-datasets `celeb_a_hq/<res>` prepared by the user (optional extra);
  * `ToyFaces` (toy_faces.py): procedural faces, no files.
Every image is converted to RGB (grayscale, palette, RGBA composited on white), centre-cropped
to a square when it is not one, and resized with a Lanczos filter to the configured size.

A source that cannot be used (missing or empty folder, bad split file, tfds not prepared)
raises :class:`DataError`, whose message is complete on its own: entry points print it without
a traceback.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from typing import Dict, List

import numpy as np
from PIL import Image

from difai_jax.data import image_io
from difai_jax.data.toy_faces import ToyFaces

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
SPLITS = ("train", "test")


class DataError(ValueError):
  """A data source cannot be used; the one-line message says which and what to do."""


_SPLIT_LABELS = {"train": "train", "test": "test", "val": "val", "valid": "val",
                 "validation": "val", "0": "train", "1": "val", "2": "test"}


def natural_key(path: str):
  """Sort key that orders embedded numbers numerically ("2.jpg" < "10.jpg")."""
  return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path)]


def list_image_files(root: str) -> List[str]:
  """Relative paths of the images under `root` (recursive), in natural order."""
  if not root:
    raise DataError("image folder source needs a path: set --config.data.path=DIR")
  if not os.path.isdir(root):
    what = "is a file, not a folder" if os.path.exists(root) else "does not exist"
    raise DataError(f"image folder not found: {root!r} {what} (config.data.path)")
  files = []
  for dirpath, dirnames, names in os.walk(root):
    dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    for n in names:
      if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith("."):
        files.append(os.path.relpath(os.path.join(dirpath, n), root))
  if not files:
    raise DataError(f"image folder {root!r} holds no images ({', '.join(IMAGE_EXTENSIONS)}), "
                    "searched recursively (config.data.path)")
  return sorted(files, key=natural_key)


def num_test_for(total: int, num_train: int = 28000, num_test: int = 2000) -> int:
  """The default split rule: the last min(num_test, round(total * test share)) images are test.

  With CelebA-HQ's 30,000 images and the paper's 28,000 / 2,000 this is the last 2,000.
  At least one image goes to each split (total >= 2 required).
  """
  if total < 2:
    raise DataError(f"need at least 2 images to split into train and test; got {total}")
  share = num_test / float(num_train + num_test)
  return int(min(num_test, max(1, round(total * share)), total - 1))


def read_split_file(path: str) -> Dict[str, str]:
  """Reads a split file into {name: "train" | "test" | "val"}.

  Formats: JSON {"train": [names], "test": [names], ...}; or text, one "<name> <label>" per line
  (label train / test / val, or CelebA's 0 / 1 / 2 = train / val / test; '#' starts a comment).
  """
  if not os.path.isfile(path):
    raise DataError(f"split file not found: {path!r} (config.data.split_file)")
  with open(path, encoding="utf-8") as f:
    text = f.read()
  out = {}
  if text.lstrip().startswith("{"):
    data = json.loads(text)
    for label, names in data.items():
      if label not in _SPLIT_LABELS:
        raise DataError(f"split file {path!r}: unknown split {label!r}")
      for n in names:
        out[str(n)] = _SPLIT_LABELS[label]
    return out
  for lineno, line in enumerate(text.splitlines(), 1):
    line = line.split("#", 1)[0].strip()
    if not line:
      continue
    parts = line.rsplit(None, 1)
    if len(parts) != 2 or parts[1].lower() not in _SPLIT_LABELS:
      raise DataError(f"split file {path!r} line {lineno}: expected "
                      f"'<name> <train|test|val|0|1|2>', got {line!r}")
    out[parts[0]] = _SPLIT_LABELS[parts[1].lower()]
  return out


def _readable(root: str, files: List[str], on_corrupt: str) -> tuple[List[str], List[str]]:
  """``(readable, unreadable)`` relative paths, each file's header opened; ``on_corrupt`` =
  "raise" stops at the first unreadable one."""
  good, skipped = [], []
  for rel in files:
    try:
      with Image.open(os.path.join(root, rel)) as img:
        width, height = img.size
        if width * height > image_io.MAX_PIXELS:     # from the header: nothing decoded
          raise ValueError(f"{width} x {height} pixels, above the ceiling of "
                           f"{image_io.MAX_PIXELS:,} pixels this tool decodes")
        img.verify()
      good.append(rel)
    except Exception as e:  # pylint: disable=broad-except
      if on_corrupt == "raise":
        raise DataError(f"cannot read image file {os.path.join(root, rel)!r}: {e} "
                        "(config.data.on_corrupt='skip' skips such files)") from e
      skipped.append(rel)
  return good, skipped


def _split_file_members(root: str, files: List[str], split_file: str, split: str,
                        skipped: set) -> List[str]:
  """The files a split file assigns to ``split`` (unreadable ones left out, already counted).

  Names match a relative path, or a base name when only one file has it."""
  labels = read_split_file(split_file)
  by_name = {os.path.normpath(rel): rel for rel in files}
  bases: Dict[str, List[str]] = {}
  for rel in files:
    bases.setdefault(os.path.basename(rel), []).append(rel)
  by_name.update({b: r[0] for b, r in bases.items() if len(r) == 1 and b not in by_name})
  chosen, missing = [], []
  for name, label in labels.items():
    if label != split:
      continue
    rel = by_name.get(os.path.normpath(name))
    if rel is None:
      missing.append(name)
    elif rel not in skipped:
      chosen.append(rel)
  if missing:
    raise DataError(f"split file {split_file!r} names {len(missing)} {split} images not found "
                    f"under {root!r}, e.g. {missing[:3]}")
  return sorted(set(chosen), key=natural_key)


class FolderSource:
  """Images from a folder, one split of it.

  Args:
    root: folder searched recursively for jpg / jpeg / png / webp files.
    size: output side in pixels.
    split: "train" or "test".
    split_file: optional split file (see `read_split_file`); names match relative paths or, when
      unique, base names. Without it the rule of `num_test_for` applies.
    num_train, num_test: the paper's split sizes, used by the default rule.
    verify: open every file's header up front; unreadable files are skipped and reported.
    on_corrupt: "skip" (count, warn, use the next image) or "raise" (stop at the first).
    verbose: print the split summary.
  """

  def __init__(self, root: str, size: int, split: str = "train", split_file: str = "",
               num_train: int = 28000, num_test: int = 2000, verify: bool = True,
               on_corrupt: str = "skip", verbose: bool = True):
    if split not in SPLITS:
      raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
    if on_corrupt not in ("skip", "raise"):
      raise DataError(f"config.data.on_corrupt must be 'skip' or 'raise'; got {on_corrupt!r}")
    self.root = root
    self.size = int(size)
    self.split = split
    self.on_corrupt = on_corrupt
    files = list_image_files(root)
    good, self.skipped = (_readable(root, files, on_corrupt) if verify else (files, []))
    if split_file:
      self.files = _split_file_members(root, files, split_file, split, set(self.skipped))
      rule = f"split file {split_file}"
    else:
      n_test = num_test_for(len(good), num_train, num_test)
      self.files = good[:-n_test] if split == "train" else good[-n_test:]
      rule = (f"default rule: natural order of relative paths, last {n_test} of {len(good)} = "
              "test, the rest = train")
    if not self.files:
      raise DataError(f"image folder {root!r} has no {split} images ({rule})")
    examples = f" {self.skipped[:3]}" if self.skipped else ""
    self.summary = (f"folder source {root}: {len(files)} image files, {len(self.skipped)} "
                    f"unreadable skipped{examples}; {rule}; {split} = {len(self.files)} images")
    if verbose:
      print(self.summary)
    # Files found unreadable at load time, by index: counted and reported once per process
    # (each grain worker holds its own copy), then skipped without being read again.
    self.unreadable: set[int] = set()

  @property
  def load_failures(self) -> int:
    """How many files this process found unreadable at load time."""
    return len(self.unreadable)

  def __len__(self) -> int:
    return len(self.files)

  def load(self, index: int) -> np.ndarray:
    """Image `index` as uint8 (size, size, 3); raises ValueError naming an unreadable file."""
    return image_io.load_image_uint8(os.path.join(self.root, self.files[index]), self.size,
                                     crop_square=True)

  def __getitem__(self, index: int) -> np.ndarray:
    index = int(index)
    if self.on_corrupt == "raise":
      return self.load(index)
    for k in range(min(len(self.files), 16)):
      i = (index + k) % len(self.files)
      if i in self.unreadable:
        continue
      try:
        return self.load(i)
      except ValueError as e:
        self.unreadable.add(i)
        warnings.warn(f"skipping unreadable image ({len(self.unreadable)} found so far in this "
                      f"process, each reported once; using the next image instead): {e}")
    raise DataError(f"16 consecutive unreadable images in {self.root!r} from index {index}")

  def __repr__(self) -> str:
    return f"FolderSource({self.root!r}, size={self.size}, split={self.split!r}, n={len(self)})"


class TfdsSource:
  """CelebA-HQ from tensorflow-datasets (`tfds.data_source`, array_record format).

  `celeb_a_hq` has one split of 30,000 images; the paper's split is applied by index (the last
  `num_test_for(30000)` = 2,000 are test). The dataset needs a manual download: the user places
  the CelebA-HQ files in the manual folder and runs
  `tfds build celeb_a_hq/256 --file_format=array_record --manual_dir=DIR [--data_dir=...]`.
  The tfds data source is opened lazily in each process (picklable for grain workers).
  """

  def __init__(self, name: str, size: int, split: str = "train", data_dir: str = "",
               num_train: int = 28000, num_test: int = 2000, verbose: bool = True):
    if split not in SPLITS:
      raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
    self.name = name
    self.size = int(size)
    self.split = split
    self.data_dir = data_dir or None
    self._ds = None
    total = len(self._source())
    n_test = num_test_for(total, num_train, num_test)
    self.start, self.stop = (0, total - n_test) if split == "train" else (total - n_test, total)
    if verbose:
      print(f"tfds source {name}: {total} images; last {n_test} = test, the rest = train; "
            f"{split} = {self.stop - self.start} images")

  def _source(self):
    if self._ds is None:
      try:
        import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
      except ImportError as e:
        raise DataError("data.source='tfds' needs tensorflow-datasets: "
                        "pip install 'difai-jax[tfds]'") from e
      manual = (" CelebA-HQ needs a manual download: put its files in the manual folder "
                "(~/tensorflow_datasets/downloads/manual, or --manual_dir) and run `tfds build "
                f"{self.name} --file_format=array_record"
                f"{' --data_dir=' + self.data_dir if self.data_dir else ''}` "
                "(tfds.data_source reads only array_record).")
      where = self.data_dir or "~/tensorflow_datasets"
      try:
        self._ds = tfds.data_source(self.name, split="train", data_dir=self.data_dir,
                                    download=False)
      except Exception as e:  # tfds raises several types for missing / unusable data
        try:
          prepared = tfds.builder(self.name, data_dir=self.data_dir).is_prepared()
        except Exception:  # pylint: disable=broad-except
          prepared = False
        if not prepared:
          raise DataError(f"tensorflow-datasets {self.name!r} is not prepared in {where}."
                          + manual) from e
        raise DataError(f"cannot open tensorflow-datasets {self.name!r} in {where} as a data "
                        f"source ({type(e).__name__}: {e})." + manual) from e
    return self._ds

  def __getstate__(self):
    state = dict(self.__dict__)
    state["_ds"] = None
    return state

  def __len__(self) -> int:
    return self.stop - self.start

  def __getitem__(self, index: int) -> np.ndarray:
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(f"index {index} out of range [0, {len(self)})")
    record = self._source()[self.start + index]
    img = Image.fromarray(np.asarray(record["image"], np.uint8))
    if img.mode != "RGB":
      img = img.convert("RGB")
    img = image_io.center_crop_square(img)
    if img.size != (self.size, self.size):
      img = img.resize((self.size, self.size), Image.LANCZOS)
    return np.asarray(img, np.uint8)


def make_source(config, split: str, image_size: int, verbose: bool = True):
  """The image source named by `config.source` (see config.default_data_config) for `split`."""
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
  if config.source == "toy":
    n_train, n_test = int(config.num_train), int(config.num_test)
    if split == "train":
      src = ToyFaces(image_size, n_train, seed=config.toy_seed, offset=0)
    else:
      src = ToyFaces(image_size, n_test, seed=config.toy_seed, offset=n_train)
    if verbose:
      print(f"toy face source (seed {config.toy_seed}): indices [0, {n_train}) = train, "
            f"[{n_train}, {n_train + n_test}) = test; {split} = {len(src)} images")
    return src
  if config.source == "folder":
    return FolderSource(config.path, image_size, split, split_file=config.split_file,
                        num_train=config.num_train, num_test=config.num_test,
                        verify=config.verify_files, on_corrupt=config.on_corrupt, verbose=verbose)
  if config.source == "tfds":
    return TfdsSource(config.tfds_name, image_size, split, data_dir=config.path,
                      num_train=config.num_train, num_test=config.num_test, verbose=verbose)
  raise DataError(f"unknown data source {config.source!r} (config.data.source); expected 'toy', "
                  "'folder' or 'tfds'")


__all__ = ["DataError", "FolderSource", "TfdsSource", "ToyFaces", "make_source", "list_image_files",
           "num_test_for", "read_split_file", "natural_key"]
