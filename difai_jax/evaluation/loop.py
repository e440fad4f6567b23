"""The evaluation loop behind ``python -m difai_jax.evaluate``: set-up, the jitted step, one pass
per bucket, the report.

:func:`setup` loads the trained run and the metric networks, draws K and the SeFa edits as
training does, and jits :func:`eval_batch` (pipeline + ``eval_metrics.score_completions``) over
a mesh of all local devices (axis ``data``, batch sharded, variables replicated);
:func:`run_bucket` feeds it a bucket's test batches (the last one padded) and returns the
bucket's row. :func:`evaluate` runs it all and writes
the report.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import ml_collections
import numpy as np

from difai_jax import mesh as mesh_lib
from difai_jax import pipeline
from difai_jax import runtime
from difai_jax.data import image_io
from difai_jax.data import loader as data_pipeline
from difai_jax.data import masks as masks_lib
from difai_jax.data import sources
from difai_jax.evaluation import mask_exchange
from difai_jax.evaluation import options as eval_options
from difai_jax.evaluation import report as eval_report
from difai_jax.evaluation import scoring as eval_metrics
from difai_jax.evaluation.metrics import fid as fid_lib
from difai_jax.evaluation.metrics import ssim as ssim_lib
from difai_jax.training import checkpoints


class Progress:
  """The progress line: the bucket being scored, images done of all buckets, then img/s and ETA
  measured after the first batch (whose time is mostly compilation); until a rate exists it
  says how long the first batch took."""

  def __init__(self, total: int, log: Callable[[str], None], every_s: float = 10.0):
    self.total, self.log, self.every_s = total, log, every_s
    self.start = time.time()
    self.first = None                   # (time, images done) after the first batch
    self.last_print = 0.0

  def line(self, bucket: str, done: int, now: float) -> str:
    if self.first is None or done <= self.first[1] or now <= self.first[0]:
      return (f"[{bucket}] {done}/{self.total} images of all buckets | first batch "
              f"(compiling) took {now - self.start:.0f} s")
    rate = (done - self.first[1]) / (now - self.first[0])
    return (f"[{bucket}] {done}/{self.total} images of all buckets | {rate:.2f} img/s | ETA "
            f"{runtime.format_eta((self.total - done) / rate)}")

  def update(self, bucket: str, done: int, last: bool) -> None:
    now = time.time()
    if now - self.last_print > self.every_s or last:
      self.last_print = now
      self.log(self.line(bucket, done, now))
    if self.first is None:
      self.first = (now, done)


# ----------------------------------------------------------------------------------------------
# The jitted per-batch function
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EvalSpec:
  """How the completions of a batch are made (static settings of the per-batch function)."""
  num_completions: int                      # K = 1 + alpha
  sampling: pipeline.SefaSampling           # how the alpha edits are drawn
  n_directions: int
  seed: int
  completions: str = "difai"                # "difai" | "coarse" (evaluate.COMPLETION_SOURCES)
  quantize: bool = False                    # score (and return) them as 8-bit files hold them
  refine: tuple[int, float] = (0, runtime.REFINE_LR)   # (steps, lr): fit_codes_to_known


def edits_for(index: jax.Array, spec: EvalSpec) -> tuple[jax.Array, jax.Array]:
  """Per-image SeFa edits (components (N, alpha) int32, degrees (N, alpha)), seeded by the test
  image's index: the same image gets the same edits whatever the batch size or device count."""
  alpha = spec.num_completions - 1
  if alpha == 0:
    n = index.shape[0]
    return jnp.zeros((n, 0), jnp.int32), jnp.zeros((n, 0), jnp.float32)
  sampling = dataclasses.replace(spec.sampling, num_edits=alpha)
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(spec.seed), i))(
      jnp.maximum(index, 0).astype(jnp.uint32))
  comps, degs = jax.vmap(
      lambda k: pipeline.sample_sefa_edits(k, 1, sampling, spec.n_directions))(keys)
  return comps[:, 0], degs[:, 0]


def eval_batch(variables, metric_variables, image, mask, index, *, models: pipeline.Models,
               spec: EvalSpec, scorer: eval_metrics.Scorer) -> dict[str, jax.Array]:
  """The K completions of one batch, scored (``eval_metrics.score_completions``' outputs).

  image: (N, H, W, 3) ground truth in [-1, 1]; mask (N, H, W, 1), 1 = known; index (N,) int32.
  """
  components, degrees = edits_for(index, spec)
  if spec.completions == "coarse":
    i_masked = pipeline.masked_image(image, mask)
    i_coarse = pipeline.coarse_completion(models.coarse, variables["coarse"], i_masked, mask)
    coarse = pipeline.composite(i_masked, i_coarse, mask)
    completions = jnp.broadcast_to(coarse[None], (spec.num_completions,) + coarse.shape)
  else:
    completions = pipeline.inpaint(models, variables, image, mask, components, degrees,
                                   spec.sampling.layers, valid=index >= 0,
                                   refine_steps=spec.refine[0],
                                   refine_lr=spec.refine[1])["completions"]
  if spec.quantize:
    completions = eval_metrics.quantize_8bit(completions)
  out = eval_metrics.score_completions(completions, image, index, metric_variables, scorer,
                                       mask=mask)
  if spec.quantize:
    out["completions"] = jnp.swapaxes(completions, 0, 1)                # (N, K, H, W, 3)
  return out


# ----------------------------------------------------------------------------------------------
# Set-up
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Evaluation:
  """Everything the bucket loop (and the report) needs, built once by :func:`setup`."""
  config: ml_collections.ConfigDict   # the run's
  step_count: int                     # the checkpoint's training step
  step: Callable                      # jitted (variables, metric variables, image, mask, index)
  variables: Any
  metric_variables: Any
  sharding: NamedSharding             # batch axis over the local devices
  data: ml_collections.ConfigDict
  source: Any
  batch: int
  n_images: int
  spec: EvalSpec
  scorer: eval_metrics.Scorer
  notes: list[str]
  random_metric_weights: bool
  diversity_images: np.ndarray | None     # bool (n_images,), the diversity sample
  real_paths: dict[str, str]              # probe name -> cached real statistics file
  real: dict[str, fid_lib.FIDStatistics]  # real statistics known so far
  write_dir: str | None = None            # --write_completions
  bucket_masks: dict | None = None        # bucket -> masks of --masks_dir (None: generated)

  @property
  def devices(self) -> str:
    return f"{self.sharding.mesh.size} x {jax.local_devices()[0].device_kind}"


def completion_spec(inference: checkpoints.Inference, opts) -> EvalSpec:
  """K and the SeFa edits of the completions (as training draws them)."""
  sc = inference.config.sefa
  n_directions = int(inference.variables["sefa"].shape[0])
  top_k = min(int(sc.top_k), n_directions)
  k = int(opts.num_completions) if opts.num_completions else 1 + min(top_k, 7)
  if not 1 <= k <= top_k + 1:
    raise ValueError(f"num_completions must be in [1, {top_k + 1}] (1 + the config's "
                     f"sefa.top_k distinct directions); got {k}")
  degree = getattr(opts, "sefa_degree", None)
  low, high = (float(sc.min_degree), float(sc.max_degree)) if degree is None else (
      float(degree), float(degree))
  sampling = pipeline.SefaSampling(num_edits=k - 1, top_k=top_k, min_degree=low, max_degree=high,
                                   layers=tuple(sc.layers) if sc.layers else None)
  return EvalSpec(num_completions=k, sampling=sampling, n_directions=n_directions,
                  seed=opts.seed, completions=opts.completions,
                  quantize=bool(getattr(opts, "write_completions", None)),
                  refine=(int(getattr(opts, "refine_steps", 0)),
                          float(getattr(opts, "refine_lr", runtime.REFINE_LR))))


def make_scorer(opts, nets: eval_metrics.MetricNets, k: int, size: int,
                weights) -> tuple[eval_metrics.Scorer, list[str]]:
  """(Scorer, notes on what is skipped or approximated)."""
  notes = list(nets.notes)
  if weights is None:
    notes.append(f"MS-SSIM skipped: {size} px is too small for even one 11-pixel-window scale")
  elif len(weights) < len(ssim_lib.MS_SSIM_WEIGHTS):
    notes.append(f"MS-SSIM with {len(weights)} scales (weights {list(weights)}): {size} px "
                 "is too small for the standard 5 (they need > 160 px)")
  diversity = opts.diversity_pairs
  if nets.lpips is not None and k < (3 if diversity == "paper" else 2):
    diversity = "off"
    notes.append(f"diversity skipped: K = {k} completions; the paper's pairs are drawn among "
                 "the perturbed ones (K >= 3; --diversity_pairs=all needs K >= 2)")
  elif diversity == "paper" and nets.lpips is not None and (k - 1) * (k - 2) // 2 < 4:
    notes.append(f"diversity: K - 1 = {k - 1} perturbed completions give fewer than 4 distinct "
                 "pairs; the 4 pairs per image are drawn with replacement")
  extra = tuple(getattr(opts, "extra_metrics", ()))
  if "lpips_hole" in extra and nets.lpips is None:
    notes.append("LPIPS (hole) skipped: no LPIPS network (--lpips)")
  frechet = [p.name for p, _ in nets.probes if p.frechet]
  for metric in ("ids", "prdc"):
    if metric in extra and not frechet:
      notes.append(f"{metric.upper()} skipped: no feature network (--inception, or a Frechet "
                   "probe such as the toy recognizer's)")
  scorer = eval_metrics.Scorer(table1=opts.table1_completions, diversity=diversity,
                               seed=opts.seed, ms_ssim_weights=weights, lpips=nets.lpips,
                               probes=tuple(p for p, _ in nets.probes), extra=extra)
  return scorer, notes


def real_statistics_name(data: ml_collections.ConfigDict, size: int, n_images: int,
                         tag: str, name: str = "fid") -> str:
  """File name of a probe's cached real-image statistics: one per test set, size, image count
  and network (``tag``: e.g. a random Inception is marked, so it never passes for the real one)."""
  key = {k: data.get(k) for k in ("source", "path", "tfds_name", "split_file", "num_train",
                                  "num_test", "toy_seed")}
  digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
  return f"{name}_stats_real_{size}px_n{n_images}_{digest}{tag}.npz"


def diversity_sample(n_images: int, opts) -> np.ndarray | None:
  """The paper's seeded sample of (up to) 1,000 test images for diversity; None: every image."""
  if opts.diversity_pairs != "paper" or opts.diversity_images >= n_images:
    return None
  chosen = np.random.default_rng(opts.seed).choice(n_images, opts.diversity_images, replace=False)
  selected = np.zeros(n_images, bool)
  selected[chosen] = True
  return selected


def eval_data_config(config: ml_collections.ConfigDict, out_dir: str) -> ml_collections.ConfigDict:
  """The data config with a relative ``bucket_dir`` placed beside the results."""
  data = ml_collections.ConfigDict(config.data.to_dict())
  if not os.path.isabs(data.bucket_dir):
    data.bucket_dir = os.path.join(out_dir, data.bucket_dir)
  return data


def masks_line(data: ml_collections.ConfigDict, size: int) -> str:
  masks = os.path.join(data.bucket_dir, f"{size}px")
  return (f"bucket masks in {masks}" if os.path.isdir(masks) else
          f"writing the fixed bucket masks once ({data.masks_per_bucket} per bucket) to {masks}")


def setup(workdir: str, opts, out_dir: str, data_config: ml_collections.ConfigDict | None,
          probes: Sequence[tuple[eval_metrics.FeatureProbe, Any]], log, verbose: bool,
          shared_dir: str | None = None):
  """Loads the run and the metric networks; the jitted step (compiled on its first batch).
  The bucket masks and real-image statistics live in ``shared_dir`` (default ``out_dir``)."""
  shared_dir = shared_dir or out_dir
  inference = checkpoints.load_difai(workdir)
  log(f"scoring {workdir}: "
      f"{eval_options.weights_description(inference.config, inference.step)}")
  spec = completion_spec(inference, opts)
  size = int(inference.config.image_size)
  nets = eval_metrics.load_metric_nets(opts.lpips_dir, opts.inception_dir,
                                       opts.random_metric_weights, size, opts.seed,
                                       opts.fid_resize)
  nets.probes += list(probes)
  weights = eval_metrics.ms_ssim_weights(size, tuple(inference.config.loss.ms_ssim_weights))
  scorer, notes = make_scorer(opts, nets, spec.num_completions, size, weights)
  for note in notes:
    log(f"note: {note}")
  data = eval_data_config(inference.config if data_config is None else
                          ml_collections.ConfigDict({"data": data_config}), shared_dir)
  mesh = mesh_lib.local_mesh()
  replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  step = jax.jit(functools.partial(eval_batch, models=inference.models, spec=spec, scorer=scorer),
                 in_shardings=(replicated, replicated, sharded, sharded, sharded),
                 out_shardings=sharded)
  source, n_images = open_test_split(data, size, opts.max_images, bool(scorer.probes), verbose)
  real_paths = {p.name: os.path.join(shared_dir, real_statistics_name(data, size, n_images,
                                                                   p.cache_tag, p.name))
                for p in scorer.probes if p.frechet and p.cache_tag is not None}
  real = {name: fid_lib.load_statistics(path) for name, path in real_paths.items()
          if os.path.isfile(path)}
  bucket_masks, mask_notes = mask_exchange.bucket_masks_from(
      getattr(opts, "masks_dir", None), getattr(opts, "mask_convention", "known1"),
      opts.buckets, size)
  notes += mask_notes
  ev = Evaluation(inference.config, inference.step, step,
                  jax.device_put(inference.variables, replicated),
                  jax.device_put(nets.variables(), replicated), sharded, data, source,
                  mesh_lib.round_up(opts.batch_size, mesh.size), n_images, spec, scorer,
                  notes, nets.random, diversity_sample(n_images, opts), real_paths, real,
                  getattr(opts, "write_completions", None), bucket_masks)
  log(f"evaluating on {n_images} test images x {len(opts.buckets)} buckets, K = "
      f"{spec.num_completions} completions, batch {ev.batch} over {ev.devices}; "
      f"{masks_line(data, size)}")
  return ev


def open_test_split(data, size: int, max_images: int | None, frechet: bool, verbose: bool):
  """(the test split's source, how many of its images are evaluated)."""
  source = sources.make_source(data, "test", size, verbose=verbose)
  n_images = len(source) if max_images is None else min(int(max_images), len(source))
  if n_images < 2 and frechet:
    raise ValueError(f"FID needs at least 2 test images; the test set has {len(source)}")
  return source, n_images


# ----------------------------------------------------------------------------------------------
# One bucket
# ----------------------------------------------------------------------------------------------


def keep_real_statistics(scores, real: dict, real_paths: dict) -> None:
  """Keeps the real images' FID statistics that ``scores`` gathered in ``real`` (for the next
  bucket) and writes those with a path in ``real_paths`` (for the next evaluation)."""
  for name, stats in scores.real_statistics().items():
    real[name] = stats
    if name in real_paths:
      fid_lib.save_statistics(real_paths[name], stats.mu, stats.sigma, stats.n)


def run_bucket(ev: Evaluation, bucket: str, progress: Progress, done: int, exact: bool,
               out_dir: str) -> dict:
  """One bucket's pass over the test images: its row of the tables (``done``: images of the
  buckets before it, for the progress line)."""
  ds = data_pipeline.make_eval_dataset(ev.data, bucket=bucket,
                                       image_size=int(ev.config.image_size), batch_size=ev.batch,
                                       process_index=0, process_count=1,
                                       num_images=ev.n_images, source=ev.source, verbose=False,
                                       bucket_masks=None if ev.bucket_masks is None else
                                       ev.bucket_masks[bucket])
  needed = [p.name for p in ev.scorer.probes if p.frechet and p.name not in ev.real]
  scores = eval_metrics.BucketScores(ev.scorer, needed, ev.diversity_images)
  for b in range(len(ds)):
    element = ds[b]
    out = ev.step(ev.variables, ev.metric_variables,
                  *(jax.device_put(element[key], ev.sharding) for key in ("image", "mask",
                                                                          "index")))
    valid = np.asarray(element["valid"])
    out = jax.device_get(out)
    if "completions" in out:
      write_completions(ev.write_dir, bucket, out.pop("completions"), element["index"], valid)
    scores.add(out, valid, element["index"], masks_lib.hole_ratio(np.asarray(element["mask"])))
    done += int(valid.sum())
    progress.update(bucket, done, last=b == len(ds) - 1)
  keep_real_statistics(scores, ev.real, ev.real_paths)
  for name, arrays in scores.completion_outputs().items():
    np.savez(os.path.join(out_dir, f"{name}_{bucket}.npz"), **arrays)
  save_per_image(out_dir, bucket, scores)
  return scores.row(ev.real, exact)


def save_per_image(out_dir: str, bucket: str, scores) -> None:
  """``out_dir/per_image_<bucket>.npz``: the bucket's per-image values
  (``BucketScores.per_image_values``), for paired comparisons of methods on the same masks."""
  os.makedirs(out_dir, exist_ok=True)
  np.savez(os.path.join(out_dir, f"per_image_{bucket}.npz"), **scores.per_image_values())


def write_completions(out_dir: str, bucket: str, completions: np.ndarray, index, valid) -> None:
  """A batch's (B, K, H, W, 3) completions as ``out_dir/<bucket>/<image_id>_<k>.png`` (the
  layout ``evaluate --completions_dir`` scores; ``evaluation.completions_folder``)."""
  for row in np.flatnonzero(valid):
    for k, completion in enumerate(completions[row]):
      image_io.save_png(os.path.join(out_dir, bucket, f"{int(index[row]):05d}_{k}.png"),
                        completion)


def evaluate(workdir: str, options: eval_options.EvalOptions | None = None, *, data_config=None,
             eval_dir: str | None = None, probes: Sequence[tuple[Any, Any]] = (),
             verbose: bool = True, shared_dir: str | None = None, **overrides) -> dict:
  """Evaluates a trained DiFAI workdir; writes and returns the report (see module docstring).

  ``options`` (or keyword ``overrides`` of its fields) say what is measured; ``data_config``
  replaces the run's data section; ``probes`` plug in more feature networks,
  ``(eval_metrics.FeatureProbe, variables)`` pairs, beside the FID Inception; ``shared_dir``
  (default the output directory) keeps the bucket masks and real-image FID statistics that
  several evaluations share (a SeFa sweep's, ``evaluation.frontier``).
  """
  opts = dataclasses.replace(options or eval_options.EvalOptions(), **overrides)
  log = (lambda *a: print(*a, flush=True)) if verbose else (lambda *a: None)
  out_dir = eval_dir or os.path.join(workdir, "eval")
  eval_options.check_options(opts, out_dir,
                             "--eval_dir" if eval_dir else "--eval_dir (default WORKDIR/eval)",
                             sum(p.frechet for p, _ in probes))
  t_start = time.time()
  ev = setup(workdir, opts, out_dir, data_config, probes, log, verbose, shared_dir)
  os.makedirs(out_dir, exist_ok=True)
  progress = Progress(ev.n_images * len(opts.buckets), log)
  metrics = eval_metrics.reported_metrics(ev.scorer)
  results = {}
  for i, bucket in enumerate(opts.buckets):
    results[bucket] = run_bucket(ev, bucket, progress, i * ev.n_images,
                                           opts.fid_exact, out_dir)
    log(eval_report.result_line(bucket, results[bucket], metrics))
  report = make_report(workdir, opts, ev, results, metrics, time.time() - t_start)
  eval_report.write_reports(report, out_dir)
  log(f"wrote {out_dir}/results.md, results.csv, results.json, chart.png, per_image_*.npz "
      f"({report['seconds']:.0f} s)")
  return report


def make_report(workdir: str, opts: eval_options.EvalOptions, ev, results: dict, metrics: list[str],
                seconds: float) -> dict:
  """The JSON-able report ``eval_report`` writes (and ``difai_jax.compare`` reads)."""
  norm = str(ev.config.generator.get("norm", "sparn"))
  paper_label, paper, citations = eval_options.paper_column(norm, opts.completions)
  n_div = int(ev.diversity_images.sum()) if ev.diversity_images is not None else ev.n_images
  random = ev.random_metric_weights
  return {
      "title": eval_report.title(workdir, ev.step_count, random)
               + ("" if opts.completions == "difai" else " - coarse net alone"),
      "workdir": os.path.abspath(workdir), "step": ev.step_count,
      "weights": eval_options.weights_description(ev.config, ev.step_count), "generator_norm": norm,
      "image_size": int(ev.config.image_size), "num_images": ev.n_images,
      "num_completions": ev.spec.num_completions, "batch_size": ev.batch, "devices": ev.devices,
      "random_metric_weights": random,
      "lpips": opts.lpips_dir or ("random" if random else None),
      "inception": opts.inception_dir or ("random" if random else None),
      "ms_ssim_weights": list(ev.scorer.ms_ssim_weights) if ev.scorer.ms_ssim_weights else None,
      "protocol": {"table1_completions": opts.table1_completions,
                   "diversity_pairs": opts.diversity_pairs,
                   "pairs_per_image": ev.scorer.pairs_per_image, "diversity_images": n_div},
      "fid": {"real_statistics": ev.real_paths.get("fid"),
              "distance": "pytorch-fid sqrtm" if opts.fid_exact else "eigenvalues",
              "resize": opts.fid_resize},
      "extra_metrics": list(opts.extra_metrics),
      "completions": opts.completions, "scored": eval_options.COMPLETION_SOURCES[opts.completions]
                + (f", quantised to 8 bits as written to {opts.write_completions}"
                   if opts.write_completions else "")
                + (f", pSp's codes fitted to the known pixels ({ev.spec.refine[0]} Adam steps at "
                   f"lr {ev.spec.refine[1]:g}; not the paper)" if ev.spec.refine[0] else ""),
      "refine_steps": ev.spec.refine[0],
      "sefa_edits": dataclasses.asdict(ev.spec.sampling), "seed": opts.seed,
      "seconds": round(seconds, 1), "notes": ev.notes, "metrics": metrics,
      "results": results, "paper_label": paper_label, "paper_citations": citations,
      "paper": {b: paper.get(b, {}) for b in opts.buckets},
  }
