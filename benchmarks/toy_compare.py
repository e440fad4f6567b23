"""README "Comparing methods", shown on the toy domain: two baselines that exist here scored as
another method's completions folder, beside the toy DiFAI, in one table and one frontier chart.

    python -m benchmarks.toy_compare --difai toy-difai --max_images 200 --out runs/toy_compare \\
        --figure benchmarks/figures/toy_frontier.png

What a researcher does with a published method, done with two that run here:

1. ``evaluate --export_masks``: the fixed bucket masks of the first ``--max_images`` toy test
   faces (and the faces), white = known;
2. each baseline reads those files, as another project's code would, and writes its
   completions as ``<out>/<method>/<bucket>/<image_id>.png`` (K = 1): **Telea** (OpenCV
   ``cv2.inpaint``, radius 5; no learning) and the **coarse net** alone (the DiFAI run's MLGN,
   composited);
3. ``evaluate --completions_dir`` scores each folder with DiFAI's protocol and metrics;
4. the DiFAI run is scored on the same mask files under the paper's protocol (completion 0), and
   swept over SeFa degrees (``--sefa_degrees``) into the fidelity-diversity frontier, the two
   baselines as single points;
5. ``difai_jax.compare`` puts DiFAI, Telea and the coarse net side by side.

Metric networks as in ``benchmarks/toy_tables.py``: the toy recognizer's features for the toy
FID (and its P-IDS / PRDC if asked), a *random* AlexNet LPIPS (no ImageNet weights exist here).
Folders already written under ``--out`` are reused (delete one to redo it). Needs
opencv-python-headless (the ``bench`` extra).
"""

# pylint: disable=import-outside-toplevel
from __future__ import annotations

import argparse
import json
import os
import shutil

import numpy as np

DEFAULT_BUCKETS = ("quickdraw", "20-30", "40-50", "squares", "thick_strokes")


def export(inference, out: str, buckets, max_images: int) -> str:
  """Step 1: the bucket masks and test faces as files; returns the folder."""
  from difai_jax.data import sources
  from difai_jax.evaluation import mask_exchange
  masks_dir = os.path.join(out, "masks")
  if os.path.isfile(os.path.join(masks_dir, mask_exchange.MANIFEST)):
    print(f"reusing {masks_dir}", flush=True)
    return masks_dir
  size = int(inference.config.image_size)
  data = mask_exchange.placed_data(inference.config.data, out)
  source = sources.make_source(data, "test", size, verbose=False)
  mask_exchange.export_masks(data, size, list(buckets), min(max_images, len(source)), masks_dir,
                             "known1", source=source)
  return masks_dir


def _read(path: str) -> np.ndarray:
  from PIL import Image
  with Image.open(path) as img:
    return np.asarray(img.convert("RGB"))


def write_baseline(name: str, fill, masks_dir: str, out: str) -> str:
  """Step 2: ``fill(images uint8 (N,H,W,3), known bool (N,H,W)) -> uint8 completions`` over
  every bucket of the exported files, written as a K = 1 completions folder."""
  from difai_jax.evaluation import mask_exchange
  folder = os.path.join(out, name)
  if os.path.isdir(folder):
    print(f"reusing {folder}", flush=True)
    return folder
  with open(os.path.join(masks_dir, mask_exchange.MANIFEST), encoding="utf-8") as f:
    manifest = json.load(f)
  tmp = folder + ".partial"
  shutil.rmtree(tmp, ignore_errors=True)
  for bucket, entries in manifest["buckets"].items():
    os.makedirs(os.path.join(tmp, bucket))
    images = np.stack([_read(os.path.join(masks_dir, manifest["images"], f"{e['image_id']}.png"))
                       for e in entries])
    known = np.stack([_read(os.path.join(masks_dir, e["mask"]))[..., 0] > 127 for e in entries])
    for e, completion in zip(entries, fill(images, known)):
      _save(os.path.join(tmp, bucket, f"{e['image_id']}.png"), completion)
  os.rename(tmp, folder)
  print(f"wrote {folder} ({name}, K = 1)", flush=True)
  return folder


def _save(path: str, pixels: np.ndarray) -> None:
  from PIL import Image
  Image.fromarray(pixels).save(path)


def telea_fill(images: np.ndarray, known: np.ndarray) -> np.ndarray:
  """OpenCV Telea (2004), radius 5, on the masked image: known pixels stay exact."""
  from benchmarks import toy_inpainting
  from difai_jax.data import image_io
  return image_io.to_uint8(toy_inpainting.telea(image_io.uint8_to_float(images),
                                                known[..., None].astype(np.float32)))


def coarse_fill(inference):
  """The DiFAI run's coarse net alone, composited with the known pixels."""
  import jax
  import jax.numpy as jnp
  from difai_jax import pipeline
  from difai_jax.data import image_io

  @jax.jit
  def complete(image, mask):
    i_masked = pipeline.masked_image(image, mask)
    full = pipeline.coarse_completion(inference.models.coarse, inference.variables["coarse"],
                                      i_masked, mask)
    return pipeline.composite(i_masked, full, mask)

  def fill(images, known):
    out = []
    for start in range(0, len(images), 32):
      image = jnp.asarray(np.stack([image_io.uint8_to_float(x) for x in images[start:start + 32]]))
      mask = jnp.asarray(known[start:start + 32, ..., None].astype(np.float32))
      out.append(image_io.to_uint8(np.asarray(complete(image, mask))))
    return np.concatenate(out)
  return fill


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--difai", default="toy-difai", help="DiFAI run or short name")
  parser.add_argument("--out", default="runs/toy_compare")
  parser.add_argument("--max_images", type=int, default=200)
  parser.add_argument("--buckets", default=",".join(DEFAULT_BUCKETS))
  parser.add_argument("--degrees", default="1,2,4,8", help="SeFa degrees of the frontier")
  parser.add_argument("--figure", default=None, help="copy frontier.png here")
  args = parser.parse_args()
  buckets = tuple(b for b in args.buckets.split(",") if b)
  degrees = [float(d) for d in args.degrees.split(",")]

  from benchmarks import toy_tables
  from difai_jax.evaluation import comparison
  from difai_jax import pretrained
  from difai_jax.evaluation import frontier
  from difai_jax.evaluation import loop as eval_loop
  from difai_jax.evaluation import options as eval_options
  from difai_jax.evaluation import score_folder
  from difai_jax.evaluation.metrics import toy_probes
  from difai_jax.training import checkpoints

  os.makedirs(args.out, exist_ok=True)
  run = pretrained.resolve(args.difai)
  inference = checkpoints.load_difai(run)
  size = int(inference.config.image_size)
  masks_dir = export(inference, args.out, buckets, args.max_images)
  folders = {"Telea": write_baseline("telea", telea_fill, masks_dir, args.out),
             "coarse net": write_baseline("coarse", coarse_fill(inference), masks_dir, args.out)}

  probes = toy_probes.probes(size)
  opts = eval_options.EvalOptions(buckets=buckets, max_images=args.max_images,
                                  diversity_images=args.max_images,
                                  lpips_dir=toy_tables.random_lpips(args.out),
                                  masks_dir=masks_dir, mask_convention="known1")
  eval_dirs = {}
  for name, folder in folders.items():
    eval_dirs[name] = os.path.join(folder, "eval")
    if not os.path.isfile(os.path.join(eval_dirs[name], "results.json")):
      score_folder.score_folder(folder, opts, data_config=inference.config.data,
                                image_size=size, eval_dir=eval_dirs[name], probes=probes,
                                masks_dir=masks_dir, method=name,
                                ms_ssim_config=tuple(inference.config.loss.ms_ssim_weights))
  eval_dirs = {"DiFAI": os.path.join(args.out, "difai"), **eval_dirs}
  if not os.path.isfile(os.path.join(eval_dirs["DiFAI"], "results.json")):
    eval_loop.evaluate(run, opts, eval_dir=eval_dirs["DiFAI"], probes=probes)
  sweep_dir = os.path.join(args.out, "frontier")
  if not os.path.isfile(os.path.join(sweep_dir, "frontier.json")):
    frontier.sweep(run, opts, degrees, eval_dir=sweep_dir, probes=probes,
                   points=[eval_dirs["Telea"], eval_dirs["coarse net"]])
  comparison.run(list(eval_dirs.values()), list(eval_dirs), out_dir=os.path.join(args.out,
                                                                              "compare"))
  with open(os.path.join(sweep_dir, "frontier.md"), encoding="utf-8") as f:
    print(f.read(), end="")
  if args.figure:
    shutil.copyfile(os.path.join(sweep_dir, "frontier.png"), args.figure)
    print(f"copied the frontier chart to {args.figure}")


if __name__ == "__main__":
  main()
