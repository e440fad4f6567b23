"""Input-pipeline throughput: images/s at 256 px with 0, 1, 2 grain workers, folder and toy sources.

  python -m benchmarks.data_pipeline [--seconds 3] [--batch 8] [--write_results]

The folder source reads 1024 px JPEG files (CelebA-HQ's resolution; here toy faces upscaled and
written to a temporary folder), decodes, centre-crops and resizes them to 256 px. The toy source
renders faces at 256 px. Each cell builds a fresh iterator, discards the first batch (worker
start-up), then counts images over `--seconds`. With --write_results the table replaces the
"Data pipeline" section of benchmarks/RESULTS.md, with the machine and date.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import tempfile
import time

from absl import app, flags
from PIL import Image

from difai_jax.data import default_data_config
from difai_jax.data.loader import make_train_iterator
from difai_jax.data.toy_faces import render_face

_SECONDS = flags.DEFINE_float("seconds", 3.0, "Measured time per cell.")
_BATCH = flags.DEFINE_integer("batch", 8, "Batch size.")
_SIZE = flags.DEFINE_integer("size", 256, "Image size.")
_NUM_FILES = flags.DEFINE_integer("num_files", 48, "JPEG files written for the folder source.")
_WORKERS = flags.DEFINE_list("workers", ["0", "1", "2"], "Worker counts to measure.")
_WRITE = flags.DEFINE_bool("write_results", False, "Write the table into benchmarks/RESULTS.md.")

SECTION = "## Data pipeline"


def machine() -> str:
  cpu = platform.processor() or "unknown CPU"
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  return f"{cpu}, {os.cpu_count()} cores visible, Python {platform.python_version()}"


def measure(config, workers: int, size: int, batch: int, seconds: float) -> float:
  it = make_train_iterator(config, image_size=size, global_batch_size=batch, seed=0,
                           process_index=0, process_count=1, num_workers=workers, verbose=False)
  next(it)  # start-up (workers spawn, first reads)
  n, t0 = 0, time.perf_counter()
  while time.perf_counter() - t0 < seconds:
    n += next(it)["image"].shape[0]
  rate = n / (time.perf_counter() - t0)
  del it
  return rate


def write_results(table: str, path: str) -> None:
  text = open(path, encoding="utf-8").read() if os.path.exists(path) else "# Benchmarks\n"
  body = f"{SECTION}\n\n{table}\n"
  pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
  if pattern.search(text):
    text = pattern.sub(body + "\n", text).rstrip() + "\n"
  else:
    text = text.rstrip() + "\n\n" + body
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)


def main(argv):
  del argv
  size, batch, seconds = _SIZE.value, _BATCH.value, _SECONDS.value
  workers = [int(w) for w in _WORKERS.value]
  rows = []
  with tempfile.TemporaryDirectory() as folder:
    for i in range(_NUM_FILES.value):
      face = Image.fromarray(render_face(7, i, 256)).resize((1024, 1024), Image.BICUBIC)
      face.save(os.path.join(folder, f"{i}.jpg"), quality=95)
    for name in ("folder", "toy"):
      cfg = default_data_config()
      cfg.source = name
      cfg.path = folder
      cfg.num_train, cfg.num_test = (_NUM_FILES.value - 8, 8) if name == "folder" else (28000, 2000)
      for w in workers:
        rate = measure(cfg, w, size, batch, seconds)
        rows.append((name, w, rate))
        print(f"{name:6s} workers={w}: {rate:7.1f} images/s")
  lines = [
      f"Measured {datetime.date.today().isoformat()} on {machine()} with "
      f"`python -m benchmarks.data_pipeline --write_results` ({size} px, batch {batch}, "
      f"{seconds:g} s per cell after one warm-up batch; folder = 1024 px JPEGs decoded, "
      "centre-cropped and resized; toy = faces rendered at the size; training masks included). "
      "With 0 workers the main process already reads with `data.read_threads` (2) threads, so "
      "workers add throughput only where cores are free.",
      "",
      "| source | workers | images/s |",
      "|---|---:|---:|",
  ] + [f"| {n} | {w} | {r:.1f} |" for n, w, r in rows]
  table = "\n".join(lines)
  print(table)
  if _WRITE.value:
    write_results(table, os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md"))


if __name__ == "__main__":
  app.run(main)
