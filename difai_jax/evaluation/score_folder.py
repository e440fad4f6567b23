"""Scoring another method's completions (``evaluate --completions_dir DIR``) with the code and the
protocol of a DiFAI evaluation (``evaluation.loop``): the same test split and bucket masks (the
data config's, or a mask folder: ``mask_exchange``), the same metric networks and jitted
``scoring.score_completions``, the same Table 1 readings, diversity pairs and report.

The files (layout in ``completions_folder``) are read as 8-bit images. Known pixels are checked
per completion; if any file alters them beyond its tolerance, the report names them and every
number is given twice: ``results`` on the composites (ground truth on the known pixels, the
method's output in the hole, as DiFAI's completions are scored) and ``results_raw`` on the files
as they are. K = 1 methods (and K = 2 under the paper's pairs, which read completions 1..K-1)
report diversity as n/a.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any, Sequence

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import ml_collections
import numpy as np

from difai_jax import mesh as mesh_lib
from difai_jax.data import image_io
from difai_jax.data import loader as data_loader
from difai_jax.data import masks as masks_lib
from difai_jax.evaluation import completions_folder as folder_lib
from difai_jax.evaluation import loop as eval_loop
from difai_jax.evaluation import mask_exchange
from difai_jax.evaluation import options as eval_options
from difai_jax.evaluation import report as eval_report
from difai_jax.evaluation import scoring as eval_metrics
from difai_jax.evaluation.metrics import fid as fid_lib


@dataclasses.dataclass
class FolderRun:
  """What the bucket passes need, built once by :func:`setup`."""
  folder: folder_lib.CompletionsFolder
  data: ml_collections.ConfigDict
  source: Any
  n_images: int
  image_size: int
  bucket_masks: dict | None           # bucket -> masks from --masks_dir (None: generated)
  step: Any                           # jitted (metric variables, completions, image, mask, index)
  metric_variables: Any
  sharding: NamedSharding
  batch: int
  scorer: eval_metrics.Scorer
  notes: list[str]
  random_metric_weights: bool
  diversity_images: np.ndarray | None
  real_paths: dict[str, str]
  real: dict[str, fid_lib.FIDStatistics]
  altered: list[tuple[str, float, float]] = dataclasses.field(default_factory=list)


def _score_batch(metric_variables, completions, image, mask, index, *, scorer):
  return eval_metrics.score_completions(completions, image, index, metric_variables, scorer,
                                        mask=mask)


def setup(completions_dir: str, opts, data_config, image_size: int, out_dir: str, probes,
          masks_dir, mask_convention: str, known_tolerance, ms_ssim_config, verbose: bool):
  data = mask_exchange.placed_data(data_config, out_dir)
  bucket_masks, notes = mask_exchange.bucket_masks_from(masks_dir, mask_convention,
                                                      opts.buckets, image_size)
  nets = eval_metrics.load_metric_nets(opts.lpips_dir, opts.inception_dir,
                                       opts.random_metric_weights, image_size, opts.seed,
                                       opts.fid_resize)
  nets.probes += list(probes)
  source, n_images = eval_loop.open_test_split(data, image_size, opts.max_images,
                                               any(p.frechet for p, _ in nets.probes), verbose)
  folder = folder_lib.CompletionsFolder(completions_dir, opts.buckets, n_images, image_size,
                                        known_tolerance)
  weights = eval_metrics.ms_ssim_weights(image_size, ms_ssim_config)
  scorer, scorer_notes = eval_loop.make_scorer(opts, nets, folder.num_completions, image_size,
                                               weights)
  mesh = mesh_lib.local_mesh()
  replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  step = jax.jit(functools.partial(_score_batch, scorer=scorer),
                 in_shardings=(replicated, NamedSharding(mesh, P(None, "data")), sharded,
                               sharded, sharded), out_shardings=sharded)
  real_paths = {p.name: os.path.join(out_dir, eval_loop.real_statistics_name(
      data, image_size, n_images, p.cache_tag, p.name))
                for p in scorer.probes if p.frechet and p.cache_tag is not None}
  real = {name: fid_lib.load_statistics(path) for name, path in real_paths.items()
          if os.path.isfile(path)}
  return FolderRun(folder, data, source, n_images, image_size, bucket_masks, step,
                   jax.device_put(nets.variables(), replicated), sharded,
                   mesh_lib.round_up(opts.batch_size, mesh.size), scorer, notes + scorer_notes,
                   nets.random, eval_loop.diversity_sample(n_images, opts), real_paths, real)


def load_batch(run: FolderRun, bucket: str, element) -> tuple[np.ndarray, bool]:
  """The batch's completions, float (K, B, H, W, 3) in [-1, 1] as the files hold them (padding
  rows: the ground truth), and whether one of them alters known pixels (recorded in
  ``run.altered``)."""
  images = image_io.to_uint8(element["image"])                         # (B, H, W, 3)
  k = run.folder.num_completions
  batch = np.repeat(images[None], k, axis=0)                           # (K, B, H, W, 3)
  altered = False
  for row, (index, valid) in enumerate(zip(element["index"], element["valid"])):
    if not valid:
      continue
    batch[:, row] = run.folder.load(bucket, int(index))
    mean, peak = folder_lib.known_pixel_change(batch[:, row], images[row], element["mask"][row])
    for j, path in enumerate(run.folder.files[bucket][int(index)]):
      if mean[j] > run.folder.tolerance(path):
        run.altered.append((path, float(mean[j]), float(peak[j])))
        altered = True
  return image_io.uint8_to_float(batch), altered


def run_bucket(run: FolderRun, bucket: str, progress, done: int, exact: bool,
               eval_dir: str) -> tuple[dict, dict]:
  """(composited row, raw row) of one bucket; writes the composited per-image values."""
  ds = data_loader.make_eval_dataset(
      run.data, bucket=bucket, image_size=run.image_size, batch_size=run.batch,
      process_index=0, process_count=1, num_images=run.n_images, source=run.source,
      verbose=False, bucket_masks=None if run.bucket_masks is None else run.bucket_masks[bucket])
  needed = [p.name for p in run.scorer.probes if p.frechet and p.name not in run.real]
  scores = eval_metrics.BucketScores(run.scorer, needed, run.diversity_images)
  raw_scores = eval_metrics.BucketScores(run.scorer, (), run.diversity_images)
  put = lambda x, sharding=run.sharding: jax.device_put(x, sharding)
  spread = NamedSharding(run.sharding.mesh, P(None, "data"))
  for b in range(len(ds)):
    element = ds[b]
    raw, altered = load_batch(run, bucket, element)
    mask = element["mask"]
    composited = element["image"][None] * mask[None] + raw * (1.0 - mask[None])
    args = [put(element["image"]), put(mask), put(element["index"])]
    out = jax.device_get(run.step(run.metric_variables, put(composited, spread), *args))
    out_raw = (jax.device_get(run.step(run.metric_variables, put(raw, spread), *args))
               if altered else out)
    valid, ratio = np.asarray(element["valid"]), masks_lib.hole_ratio(np.asarray(mask))
    scores.add(out, valid, element["index"], ratio)
    raw_scores.add(out_raw, valid, element["index"], ratio)
    done += int(valid.sum())
    progress.update(bucket, done, last=b == len(ds) - 1)
  eval_loop.keep_real_statistics(scores, run.real, run.real_paths)
  eval_loop.save_per_image(eval_dir, bucket, scores)
  return scores.row(run.real, exact), raw_scores.row(run.real, exact)


def altered_note(run: FolderRun) -> str | None:
  """One line naming the files that alter known pixels (None: none does)."""
  if not run.altered:
    return None
  path, mean, peak = run.altered[0]
  return (f"{len(run.altered)} completion file(s) alter the known pixels beyond their tolerance "
          f"(mean |difference| over the known pixels; 0 levels for PNG, "
          f"{folder_lib.LOSSY_TOLERANCE:g} for JPEG / WebP), e.g. {path} (mean {mean:.2f}, max "
          f"{peak:.0f} levels): scored composited (results) and raw (results_raw)")


def score_folder(completions_dir: str, options: eval_options.EvalOptions | None = None, *,
                 data_config: ml_collections.ConfigDict, image_size: int, eval_dir: str,
                 probes: Sequence[tuple[Any, Any]] = (), masks_dir: str | None = None,
                 mask_convention: str = "known1", known_tolerance: float | None = None,
                 method: str | None = None, ms_ssim_config=None, verbose: bool = True,
                 **overrides) -> dict:
  """Scores a folder of another method's completions (module docstring); writes the report to
  ``eval_dir`` (``results.{md,csv,json}``, ``chart.png``) and returns it."""
  opts = dataclasses.replace(options or eval_options.EvalOptions(), **overrides)
  log = (lambda *a: print(*a, flush=True)) if verbose else (lambda *a: None)
  eval_options.check_options(opts, eval_dir, "--eval_dir", sum(p.frechet for p, _ in probes))
  t_start = time.time()
  run = setup(completions_dir, opts, data_config, image_size, eval_dir, probes, masks_dir,
              mask_convention, known_tolerance, ms_ssim_config, verbose)
  k = run.folder.num_completions
  diversity_na = run.scorer.lpips is not None and run.scorer.diversity == "off"
  metrics = eval_metrics.reported_metrics(run.scorer, diversity_na=diversity_na)
  log(f"scoring {completions_dir}: K = {k} completions per image, {run.n_images} test images x "
      f"{len(opts.buckets)} buckets")
  for note in run.notes:
    log(f"note: {note}")
  progress = eval_loop.Progress(run.n_images * len(opts.buckets), log)
  results, raw = {}, {}
  for i, bucket in enumerate(opts.buckets):
    results[bucket], raw[bucket] = run_bucket(run, bucket, progress, i * run.n_images,
                                              opts.fid_exact, eval_dir)
    if diversity_na:
      results[bucket]["diversity"] = raw[bucket]["diversity"] = None
    log(eval_report.result_line(bucket, results[bucket], metrics))
  note = altered_note(run)
  if note:
    run.notes.append(note)
    log(f"note: {note}")
  report = folder_report(completions_dir, method, opts, run, results, raw if note else None,
                         metrics, time.time() - t_start)
  if diversity_na:
    report["diversity_na"] = f"K = {k}: the paper's pairs need completions 1 and 2"
  eval_report.write_reports(report, eval_dir)
  log(f"wrote {eval_dir}/results.md, results.csv, results.json, chart.png, per_image_*.npz")
  return report


def folder_report(completions_dir: str, method: str | None, opts, run: FolderRun, results: dict,
                  raw: dict | None, metrics: list[str], seconds: float) -> dict:
  """The report (``eval_report``'s fields, no paper column: the paper has none for others)."""
  method = method or os.path.basename(os.path.normpath(completions_dir))
  random = run.random_metric_weights
  title = f"{method}: completions from {completions_dir}" + (
      f" - {eval_report.RANDOM_TITLE}" if random else "")
  return {
      "title": title, "method": method, "workdir": os.path.abspath(completions_dir),
      "step": None, "weights": f"completions read from {completions_dir} (8-bit files)",
      "generator_norm": None, "image_size": run.image_size, "num_images": run.n_images,
      "num_completions": run.folder.num_completions, "batch_size": run.batch,
      "devices": f"{run.sharding.mesh.size} x {jax.local_devices()[0].device_kind}",
      "random_metric_weights": random,
      "lpips": opts.lpips_dir or ("random" if random else None),
      "inception": opts.inception_dir or ("random" if random else None),
      "ms_ssim_weights": (list(run.scorer.ms_ssim_weights) if run.scorer.ms_ssim_weights
                          else None),
      "protocol": {"table1_completions": opts.table1_completions,
                   "diversity_pairs": opts.diversity_pairs,
                   "pairs_per_image": run.scorer.pairs_per_image,
                   "diversity_images": (int(run.diversity_images.sum())
                                        if run.diversity_images is not None else run.n_images)},
      "fid": {"real_statistics": run.real_paths.get("fid"),
              "distance": "pytorch-fid sqrtm" if opts.fid_exact else "eigenvalues",
              "resize": opts.fid_resize},
      "extra_metrics": list(opts.extra_metrics), "completions": "folder",
      "scored": f"completions folder {completions_dir}", "seed": opts.seed,
      "seconds": round(seconds, 1), "notes": run.notes, "metrics": metrics,
      "results": results, "results_raw": raw,
      "known_pixels": {"altered_files": [p for p, _, _ in run.altered],
                       "tolerance_levels": run.folder.known_tolerance},
      "paper_label": f"no paper numbers for {method}", "paper_citations": {}, "paper": {},
  }
