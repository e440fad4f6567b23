"""Evaluation: ``python -m difai_jax.evaluate --workdir RUN [--config CONFIG] ...``.

Re-expresses the paper's quantitative protocol (Sec. 4, Table 1 and Table 2) on the test split:
for each fixed mask bucket (``quickdraw``, ``10-20``, ``20-30``, ``30-40``, ``40-50`` % hole)
every test image gets that bucket's mask, the trained DiFAI produces K completions
(``I_masked + hole * I_out_j``, known pixels exact; j = 0 from the unperturbed I_style, j >= 1
from SeFa-perturbed style images drawn as in training, seeded per image), and

* **SSIM** / **MS-SSIM** of completion 0 against the ground truth (Table 1 scores one completion
  per input), on ``[0, 1]`` images with ``data_range = 1`` (pytorch-msssim's definitions);
* **LPIPS** (AlexNet, v0.1) of completion 0 against the ground truth (Table 1);
* **FID** (pytorch-fid's Inception pool3 features) of the completions against the real test
  images (Table 1); the real statistics are computed once per image size, image count and
  network and cached as ``<workdir>/fid_stats_real_<size>px_n<N>_<data hash>[_random<seed>].npz``;
* **diversity**: mean pairwise LPIPS among the K completions of each input (PIC's protocol,
  ``difai_jax.metrics.diversity``; Table 2).

The metric networks come from converted directories (``--lpips``, ``--inception``); without them
only SSIM / MS-SSIM are reported and the conversion commands are printed.
``--random_metric_weights`` builds randomly initialised metric networks (tests and demos only):
every table then says "RANDOM METRIC WEIGHTS - not comparable" in its title.

The per-batch function (pipeline + metric networks) is one ``jax.jit`` over a mesh of all local
devices (axis ``data``, batch sharded, variables replicated); the last batch is padded.
Writes ``<eval_dir>/results.{md,csv,json}`` and ``<eval_dir>/chart.png`` (default
``<workdir>/eval``), each cell next to the paper's number for it where the paper gives one.

The Frechet distance is computed from eigenvalues (``metrics.fid.frechet_distance_eig``: equal to pytorch-fid's
``sqrtm`` route, which takes ~1 min per 2048-d call on a CPU, up to float rounding and its
``eps`` fallback for singular products); ``--fid_exact`` uses pytorch-fid's routine
(``difai_jax.metrics.fid.frechet_distance``).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import math
import os
import sys
import time
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import ml_collections
import numpy as np

from difai_jax import checkpoints
from difai_jax import pipeline
from difai_jax.data import masks as masks_lib
from difai_jax.metrics import ssim as ssim_lib

RANDOM_TITLE = "RANDOM METRIC WEIGHTS - not comparable"
METRICS = ("ssim", "ms_ssim", "lpips", "fid", "diversity")
METRIC_LABELS = {"ssim": "SSIM", "ms_ssim": "MS-SSIM", "lpips": "LPIPS", "fid": "FID",
                 "diversity": "diversity"}
HIGHER_IS_BETTER = {"ssim": True, "ms_ssim": True, "lpips": False, "fid": False,
                    "diversity": True}
# Table 1 rows: the Quickdraw irregular masks and the four hole-ratio buckets.
TABLE1_BUCKETS = ("quickdraw", "10-20", "20-30", "30-40", "40-50")

# The paper's DiFAI numbers, {bucket: {metric: value}} (Table 1: ssim, lpips, fid; Table 2:
# diversity). Left empty on purpose: the published tables could not be consulted when this file
# was written, and a number is entered here only when copied from the paper itself. Fill in e.g.
# PAPER_NUMBERS["10-20"] = {"ssim": ..., "lpips": ..., "fid": ...}; the Markdown / CSV / JSON
# tables and the chart then show it next to ours ("n/a" until then).
PAPER_NUMBERS: dict[str, dict[str, float]] = {}

LPIPS_HINT = ("python -m weights_conversion.lpips --net alex --backbone alexnet-owt-7be5be79.pth "
              "weights/lpips_alex   (torchvision AlexNet + the lpips package's v0.1 linear "
              "layers), then --lpips weights/lpips_alex")
INCEPTION_HINT = ("python -m weights_conversion.inception pt_inception-2015-12-05-6726825d.pth "
                  "weights/inception   (pytorch-fid's FID Inception), then --inception "
                  "weights/inception")


# ----------------------------------------------------------------------------------------------
# Devices
# ----------------------------------------------------------------------------------------------

def local_mesh() -> jax.sharding.Mesh:
  """A 1-d mesh, axis ``data``, over every local device (one host's evaluation / inference)."""
  return jax.make_mesh((jax.local_device_count(),), ("data",), devices=jax.local_devices(),
                       axis_types=(jax.sharding.AxisType.Auto,))


def round_up(n: int, multiple: int) -> int:
  return -(-int(n) // int(multiple)) * int(multiple)


def format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


# ----------------------------------------------------------------------------------------------
# Metric networks
# ----------------------------------------------------------------------------------------------

def random_variables(module, *example_inputs, seed: int = 0):
  """Random variables for a metric network without compiling its ``init`` (tests and demos).

  Shapes come from ``jax.eval_shape``; conv / dense kernels are He-normal (``sqrt(2 / fan_in)``,
  so that activations neither vanish nor explode through Inception's ~90 layers), BatchNorm
  scales and variances 1, biases and means 0, LPIPS' ``lin`` weights uniform in [0, 1).
  """
  shapes = jax.eval_shape(module.init, jax.random.key(0), *example_inputs)
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = str(getattr(path[-1], "key", path[-1]))
    shape = leaf.shape
    if name == "kernel":
      fan_in = int(np.prod(shape[:-1]))
      return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)
    if name in ("scale", "var"):
      return np.ones(shape, np.float32)
    if name.startswith("lin"):
      return rng.uniform(0.0, 1.0, shape).astype(np.float32)
    return np.zeros(shape, np.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


@dataclasses.dataclass
class MetricNets:
  """The metric networks (None where not available) and where they came from."""
  lpips: Any = None
  lpips_variables: Any = None
  inception: Any = None
  inception_variables: Any = None
  random: bool = False
  notes: list[str] = dataclasses.field(default_factory=list)


def load_metric_nets(lpips_dir: str | None, inception_dir: str | None, random: bool,
                     image_size: int, seed: int = 0) -> MetricNets:
  """Converted LPIPS (kind 'lpips', AlexNet) / FID Inception, random ones, or none (notes)."""
  from difai_jax import pretrained  # pylint: disable=import-outside-toplevel
  from difai_jax.metrics import fid as fid_lib  # pylint: disable=import-outside-toplevel
  from difai_jax.metrics import lpips as lpips_lib  # pylint: disable=import-outside-toplevel
  nets = MetricNets(random=random)
  x = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
  if lpips_dir:
    module, variables = pretrained.load(lpips_dir)
    if not isinstance(module, lpips_lib.LPIPS):
      raise ValueError(f"--lpips {lpips_dir} holds a {type(module).__name__}, not LPIPS; "
                       f"convert it with {LPIPS_HINT}")
    if module.net != "alex":
      nets.notes.append(f"LPIPS uses the {module.net!r} backbone (the paper's tables use alex)")
    nets.lpips, nets.lpips_variables = module, variables
  elif random:
    nets.lpips = lpips_lib.LPIPS(net="alex")
    nets.lpips_variables = random_variables(nets.lpips, x, x, seed=seed)
  else:
    nets.notes.append(f"LPIPS and diversity skipped (no --lpips): {LPIPS_HINT}")
  if inception_dir:
    module, variables = pretrained.load(inception_dir)
    if not isinstance(module, fid_lib.FIDInceptionV3):
      raise ValueError(f"--inception {inception_dir} holds a {type(module).__name__}, not the "
                       f"FID Inception; convert it with {INCEPTION_HINT}")
    nets.inception, nets.inception_variables = module, variables
  elif random:
    nets.inception = fid_lib.FIDInceptionV3()
    nets.inception_variables = random_variables(nets.inception, x, seed=seed + 1)
  else:
    nets.notes.append(f"FID skipped (no --inception): {INCEPTION_HINT}")
  return nets


def ms_ssim_weights(image_size: int, config_weights: Sequence[float] | None = None):
  """The MS-SSIM scale weights usable at ``image_size`` (None if not even one scale fits).

  5 scales (pytorch-msssim) need a side > 160 px. Smaller images use the config's
  ``loss.ms_ssim_weights`` when they fit (configs/demo.py: 3 scales at 64 px), else the
  leading weights of the 5-scale set that fit, renormalised to sum 1.
  """
  fits = lambda n: image_size > 10 * 2 ** (n - 1)
  if fits(len(ssim_lib.MS_SSIM_WEIGHTS)):
    return tuple(ssim_lib.MS_SSIM_WEIGHTS)
  if config_weights and fits(len(config_weights)):
    return tuple(float(w) for w in config_weights)
  n = len(ssim_lib.MS_SSIM_WEIGHTS)
  while n > 0 and not fits(n):
    n -= 1
  if n == 0:
    return None
  head = np.asarray(ssim_lib.MS_SSIM_WEIGHTS[:n], np.float64)
  return tuple(float(w) for w in head / head.sum())


# ----------------------------------------------------------------------------------------------
# FID
# ----------------------------------------------------------------------------------------------

# ----------------------------------------------------------------------------------------------
# The jitted per-batch function
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EvalSpec:
  """Static settings of the per-batch function (hashable: a jit static argument)."""
  num_completions: int                      # K = 1 + alpha
  sampling: pipeline.SefaSampling           # how the alpha edits are drawn
  n_directions: int
  seed: int
  ms_ssim_weights: tuple[float, ...] | None
  fid_all: bool                             # FID over all K completions (else completion 0)


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
               nets: tuple, spec: EvalSpec) -> dict[str, jax.Array]:
  """Completions of one batch and their per-image metrics (all outputs lead with the batch axis).

  Args:
    variables: the pipeline's variables; metric_variables: {"lpips", "inception"} (or None).
    image: (N, H, W, 3) ground truth in [-1, 1]; mask (N, H, W, 1), 1 = known; index (N,) int32.
    nets: (lpips module or None, inception module or None) (static).

  Returns:
    {"ssim", "ms_ssim", "lpips", "diversity"}: (N,) where available; "real_features" (N, 2048)
    and "fake_features" (N, K or 1, 2048) when the Inception is available.
  """
  lpips_net, inception = nets
  components, degrees = edits_for(index, spec)
  layers = spec.sampling.layers
  out = pipeline.inpaint(models, variables, image, mask, components, degrees, layers)
  completions = out["completions"]                       # (K, N, H, W, 3)
  first = completions[0]
  result = {"ssim": ssim_lib.ssim((first + 1) / 2, (image + 1) / 2, data_range=1.0)}
  if spec.ms_ssim_weights:
    result["ms_ssim"] = ssim_lib.ms_ssim((first + 1) / 2, (image + 1) / 2, data_range=1.0,
                                         weights=spec.ms_ssim_weights)
  if lpips_net is not None:
    lpips_fn = lambda x, y: lpips_net.apply(metric_variables["lpips"], x, y)
    result["lpips"] = lpips_fn(first, image)
    if spec.num_completions >= 2:
      from difai_jax.metrics import diversity  # pylint: disable=import-outside-toplevel
      result["diversity"] = diversity.diversity_lpips(lpips_fn, completions, per_input=True)
  if inception is not None:
    n = image.shape[0]
    fakes = completions if spec.fid_all else completions[:1]
    k = fakes.shape[0]
    both = jnp.concatenate([image, fakes.reshape((k * n,) + fakes.shape[2:])], axis=0)
    feats = inception.apply(metric_variables["inception"], both)    # ((1 + k) N, 2048)
    result["real_features"] = feats[:n]
    result["fake_features"] = jnp.swapaxes(feats[n:].reshape(k, n, -1), 0, 1)  # (N, k, 2048)
  return result


# ----------------------------------------------------------------------------------------------
# The evaluation loop
# ----------------------------------------------------------------------------------------------

def real_statistics_name(data: ml_collections.ConfigDict, size: int, n_images: int,
                         random_inception: bool, seed: int) -> str:
  """File name of the cached real-image FID statistics: one per test set, size, image count
  and Inception (a random one is marked, with its seed, so it never passes for the real one)."""
  import hashlib  # pylint: disable=import-outside-toplevel
  key = {k: data.get(k) for k in ("source", "path", "tfds_name", "split_file", "num_train",
                                  "num_test", "toy_seed")}
  digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
  suffix = f"_random{seed + 1}" if random_inception else ""
  return f"fid_stats_real_{size}px_n{n_images}_{digest}{suffix}.npz"


def eval_data_config(config: ml_collections.ConfigDict, workdir: str) -> ml_collections.ConfigDict:
  """The run's data config with a relative ``bucket_dir`` placed under the workdir."""
  data = ml_collections.ConfigDict(config.data.to_dict())
  if not os.path.isabs(data.bucket_dir):
    data.bucket_dir = os.path.join(workdir, data.bucket_dir)
  return data


def evaluate(workdir: str, *, data_config: ml_collections.ConfigDict | None = None,
             buckets: Sequence[str] = TABLE1_BUCKETS, max_images: int | None = None,
             batch_size: int = 8, num_completions: int | None = None,
             lpips_dir: str | None = None, inception_dir: str | None = None,
             random_metric_weights: bool = False, fid_all: bool = True,
             fid_exact: bool = False, seed: int = 0, eval_dir: str | None = None,
             verbose: bool = True) -> dict:
  """Evaluates a trained DiFAI workdir; writes and returns the results (see module docstring)."""
  log = (lambda *a: print(*a, flush=True)) if verbose else (lambda *a: None)
  inference = checkpoints.load_difai(workdir)
  config = inference.config
  size = int(config.image_size)
  data = eval_data_config(config if data_config is None else
                          ml_collections.ConfigDict({"data": data_config}), workdir)
  unknown = [b for b in buckets if b not in masks_lib.BUCKET_RANGES]
  if unknown or not buckets:
    raise ValueError(f"unknown mask bucket(s) {unknown}; choose from {masks_lib.BUCKET_NAMES}")

  mesh = local_mesh()
  n_dev = mesh.size
  batch = round_up(max(batch_size, 1), n_dev)
  if batch != batch_size:
    log(f"batch size {batch_size} -> {batch} (a multiple of the {n_dev} local devices)")
  sc = config.sefa
  top_k = min(int(sc.top_k), int(inference.variables["sefa"].shape[0]))
  k = int(num_completions) if num_completions else 1 + min(top_k, 7)
  if not 1 <= k <= top_k + 1:
    raise ValueError(f"num_completions must be in [1, {top_k + 1}] (1 + the config's "
                     f"sefa.top_k distinct directions); got {k}")
  sampling = pipeline.SefaSampling(num_edits=k - 1, top_k=top_k,
                                   min_degree=float(sc.min_degree),
                                   max_degree=float(sc.max_degree),
                                   layers=tuple(sc.layers) if sc.layers else None)
  weights = ms_ssim_weights(size, tuple(config.loss.ms_ssim_weights))
  nets = load_metric_nets(lpips_dir, inception_dir, random_metric_weights, size, seed)
  notes = list(nets.notes)
  if weights is None:
    notes.append(f"MS-SSIM skipped: {size} px is too small for even one 11-pixel-window scale")
  elif len(weights) < len(ssim_lib.MS_SSIM_WEIGHTS):
    notes.append(f"MS-SSIM with {len(weights)} scales (weights {list(weights)}): {size} px "
                 "is too small for the standard 5 (they need > 160 px)")
  if k < 2 and nets.lpips is not None:
    notes.append("diversity skipped: it needs at least 2 completions per input")
  for note in notes:
    log(f"note: {note}")
  spec = EvalSpec(num_completions=k, sampling=sampling,
                  n_directions=int(inference.variables["sefa"].shape[0]), seed=seed,
                  ms_ssim_weights=weights, fid_all=fid_all)

  replicated = NamedSharding(mesh, P())
  sharded = NamedSharding(mesh, P("data"))
  variables = jax.device_put(inference.variables, replicated)
  metric_variables = jax.device_put({"lpips": nets.lpips_variables,
                                     "inception": nets.inception_variables}, replicated)
  step = jax.jit(functools.partial(eval_batch, models=inference.models,
                                   nets=(nets.lpips, nets.inception), spec=spec),
                 in_shardings=(replicated, replicated, sharded, sharded, sharded),
                 out_shardings=sharded)

  from difai_jax.data import pipeline as data_pipeline  # pylint: disable=import-outside-toplevel
  from difai_jax.data import sources  # pylint: disable=import-outside-toplevel
  source = sources.make_source(data, "test", size, verbose=verbose)
  n_images = len(source) if max_images is None else min(int(max_images), len(source))
  log(f"evaluating {workdir} (step {inference.step}) on {n_images} test images x "
      f"{len(buckets)} buckets, K = {k} completions, batch {batch} over {n_dev} "
      f"{jax.local_devices()[0].platform} device(s)")
  if not os.path.isdir(os.path.join(data.bucket_dir, f"{size}px")):
    log(f"writing the fixed evaluation masks once ({data.masks_per_bucket} per bucket) to "
        f"{data.bucket_dir}")

  real_stats = None
  real_path = os.path.join(workdir, real_statistics_name(data, size, n_images, nets.random and
                                                          not inception_dir, seed))
  results: dict[str, dict] = {}
  total = n_images * len(buckets)
  done = 0
  t_start = time.time()
  t_first = None
  for bucket in buckets:
    ds = data_pipeline.make_eval_dataset(data, bucket=bucket, image_size=size, batch_size=batch,
                                         process_index=0, process_count=1,
                                         num_images=n_images, source=source, verbose=False)
    per_image: dict[str, list] = {}
    hole = []
    fake_acc = real_acc = None
    fake_rows: list[np.ndarray] | None = []
    need_real = nets.inception is not None and real_stats is None and not os.path.isfile(real_path)
    if nets.inception is not None:
      from difai_jax.metrics import fid as fid_lib  # pylint: disable=import-outside-toplevel
      fake_acc = fid_lib.StatisticsAccumulator()
      real_acc = fid_lib.StatisticsAccumulator() if need_real else None
    last_print = 0.0
    for b in range(len(ds)):
      element = ds[b]
      valid = np.asarray(element["valid"])
      out = step(variables, metric_variables,
                 jax.device_put(element["image"], sharded),
                 jax.device_put(element["mask"], sharded),
                 jax.device_put(element["index"], sharded))
      out = jax.device_get(out)
      for name, value in out.items():
        if name.endswith("_features"):
          continue
        per_image.setdefault(name, []).append(np.asarray(value)[valid])
      hole.append(masks_lib.hole_ratio(np.asarray(element["mask"])[valid]))
      if fake_acc is not None:
        fake = np.asarray(out["fake_features"])[valid].reshape(-1, out["fake_features"].shape[-1])
        fake_acc.update(fake)
        if fake_rows is not None:
          fake_rows.append(fake)
          if sum(len(r) for r in fake_rows) > fake.shape[-1]:
            fake_rows = None                      # enough samples for a full-rank covariance
        if real_acc is not None:
          real_acc.update(np.asarray(out["real_features"])[valid])
      done += int(valid.sum())
      now = time.time()
      if t_first is None:
        t_first, done_first = now, done           # rates exclude the first batch's compile
      if now - last_print > 10 or b == len(ds) - 1:
        last_print = now
        rate = (done - done_first) / (now - t_first) if now > t_first and done > done_first \
            else float("nan")
        eta = format_eta((total - done) / rate) if rate > 0 else "?"
        log(f"[{bucket}] {done}/{total} images | {rate:.2f} img/s | ETA {eta}")
    row = {name: float(np.mean(np.concatenate(v))) for name, v in per_image.items()}
    row["n_images"] = int(sum(len(h) for h in hole))
    row["hole_ratio"] = float(np.mean(np.concatenate(hole)))
    if fake_acc is not None:
      from difai_jax.metrics import fid as fid_lib  # pylint: disable=import-outside-toplevel
      if real_stats is None:
        real_stats = fid_lib.reference_statistics(real_path, real_acc.result) if need_real \
            else fid_lib.load_statistics(real_path)
      fake_stats = fake_acc.result()
      if fid_exact:
        row["fid"] = fid_lib.frechet_distance(real_stats.mu, real_stats.sigma, fake_stats.mu,
                                              fake_stats.sigma)
      else:
        rows = None if fake_rows is None else np.concatenate(fake_rows)
        row["fid"] = fid_lib.frechet_distance_eig(real_stats.mu, real_stats.sigma,
                                                  fake_stats.mu, fake_stats.sigma, rows)
      row["fid_samples"] = int(fake_stats.n)
    results[bucket] = row
    log(f"[{bucket}] " + " ".join(f"{METRIC_LABELS[m]}={row[m]:.4f}" for m in METRICS
                                  if m in row))
  elapsed = time.time() - t_start
  report = {
      "title": title(workdir, inference.step, nets.random),
      "workdir": os.path.abspath(workdir), "step": inference.step, "image_size": size,
      "num_images": n_images, "num_completions": k, "batch_size": batch,
      "devices": f"{n_dev} x {jax.local_devices()[0].device_kind}",
      "random_metric_weights": nets.random, "lpips": lpips_dir or ("random" if nets.random
                                                                     else None),
      "inception": inception_dir or ("random" if nets.random else None),
      "ms_ssim_weights": list(weights) if weights else None,
      "fid": {"completions": "all" if fid_all else "first", "real_statistics": real_path
              if nets.inception is not None else None,
              "distance": "pytorch-fid sqrtm" if fid_exact else "eigenvalues"},
      "sefa_edits": dataclasses.asdict(sampling), "seed": seed,
      "seconds": round(elapsed, 1), "notes": notes,
      "results": results, "paper": {b: PAPER_NUMBERS.get(b, {}) for b in buckets},
  }
  out_dir = eval_dir or os.path.join(workdir, "eval")
  write_reports(report, out_dir)
  log(f"wrote {out_dir}/results.md, results.csv, results.json, chart.png ({elapsed:.0f} s)")
  return report


# ----------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------

def title(workdir: str, step: int, random: bool) -> str:
  base = f"DiFAI evaluation of {os.path.basename(os.path.abspath(workdir))} (step {step})"
  return f"{base} - {RANDOM_TITLE}" if random else base


def _fmt(value) -> str:
  return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) \
      else f"{value:.4f}"


def reported_metrics(report: Mapping[str, Any]) -> list[str]:
  present = set()
  for row in report["results"].values():
    present.update(m for m in METRICS if m in row)
  return [m for m in METRICS if m in present]


def write_reports(report: Mapping[str, Any], out_dir: str) -> None:
  """``results.md`` / ``results.csv`` / ``results.json`` and ``chart.png`` in ``out_dir``."""
  os.makedirs(out_dir, exist_ok=True)
  metrics = reported_metrics(report)
  buckets = list(report["results"])
  paper = report["paper"]
  with open(os.path.join(out_dir, "results.json"), "w", encoding="utf-8") as f:
    json.dump(report, f, indent=1)

  header = ["bucket"]
  for m in metrics:
    arrow = "↑" if HIGHER_IS_BETTER[m] else "↓"
    header += [f"{METRIC_LABELS[m]} {arrow}", f"{METRIC_LABELS[m]} (paper)"]
  header += ["images", "mean hole"]
  lines = [f"# {report['title']}", "",
           f"{report['num_images']} test images per bucket, {report['image_size']} px, "
           f"K = {report['num_completions']} completions per input (SSIM / MS-SSIM / LPIPS on "
           f"completion 0; FID on {report['fid']['completions']} completions; diversity = mean "
           "pairwise LPIPS among the K). Paper: DiFAI's numbers (Table 1, Table 2) where given.",
           "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for b in buckets:
    row = report["results"][b]
    cells = [b]
    for m in metrics:
      cells += [_fmt(row.get(m)), _fmt(paper.get(b, {}).get(m))]
    cells += [str(row["n_images"]), f"{row['hole_ratio']:.1%}"]
    lines.append("| " + " | ".join(cells) + " |")
  if report["notes"]:
    lines += ["", "Notes:", ""] + [f"* {n}" for n in report["notes"]]
  with open(os.path.join(out_dir, "results.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")

  with open(os.path.join(out_dir, "results.csv"), "w", encoding="utf-8", newline="") as f:
    f.write(f"# {report['title']}\n")
    writer = csv.writer(f)
    writer.writerow(["bucket", "metric", "ours", "paper", "n_images", "metric_weights"])
    weights = "random (not comparable)" if report["random_metric_weights"] else "converted"
    for b in buckets:
      for m in metrics:
        value = report["results"][b].get(m)
        writer.writerow([b, m, "" if value is None else f"{value:.6g}",
                         paper.get(b, {}).get(m, ""), report["results"][b]["n_images"],
                         weights])
  draw_chart(report, metrics, os.path.join(out_dir, "chart.png"))


def draw_chart(report: Mapping[str, Any], metrics: Sequence[str], path: str) -> None:
  """One bar panel per metric: each bucket's value, ours (blue) beside the paper's (orange)."""
  from PIL import Image, ImageDraw, ImageFont  # pylint: disable=import-outside-toplevel
  font = ImageFont.load_default()
  buckets = list(report["results"])
  panel_w, panel_h, top = 760, 230, 50
  width, height = panel_w + 40, top + panel_h * max(len(metrics), 1) + 30
  img = Image.new("RGB", (width, height), "white")
  draw = ImageDraw.Draw(img)
  draw.text((20, 10), report["title"], fill="red" if report["random_metric_weights"] else "black",
            font=font)
  draw.text((20, 28), "blue: ours   orange: paper (n/a: no published number)", fill="gray",
            font=font)
  ours_colour, paper_colour = (52, 101, 164), (245, 121, 0)
  for p, m in enumerate(metrics):
    y0 = top + p * panel_h
    x0, plot_w, plot_h = 70, panel_w - 80, panel_h - 70
    arrow = "higher is better" if HIGHER_IS_BETTER[m] else "lower is better"
    draw.text((x0, y0 + 4), f"{METRIC_LABELS[m]} per mask bucket ({arrow})", fill="black",
              font=font)
    values = [report["results"][b].get(m) for b in buckets]
    papers = [report["paper"].get(b, {}).get(m) for b in buckets]
    finite = [v for v in values + papers if v is not None and math.isfinite(v)]
    vmax = max(finite + [1e-12]) * 1.15
    vmin = min(finite + [0.0])
    base_y = y0 + 24 + plot_h
    draw.line((x0, y0 + 24, x0, base_y), fill="black")
    draw.line((x0, base_y, x0 + plot_w, base_y), fill="black")
    scale = lambda v: base_y - (v - vmin) / (vmax - vmin) * plot_h
    for tick in np.linspace(vmin, vmax, 4):
      draw.text((5, scale(tick) - 5), f"{tick:.3g}", fill="gray", font=font)
    group = plot_w / max(len(buckets), 1)
    bar = group * 0.3
    for i, b in enumerate(buckets):
      gx = x0 + i * group + group * 0.15
      for j, (v, colour) in enumerate(((values[i], ours_colour), (papers[i], paper_colour))):
        bx = gx + j * (bar + 4)
        if v is None or not math.isfinite(v):
          draw.text((bx, base_y - 14), "n/a", fill=colour, font=font)
          continue
        draw.rectangle((bx, scale(v), bx + bar, base_y), fill=colour)
        draw.text((bx, scale(v) - 12), f"{v:.3g}", fill="black", font=font)
      draw.text((gx, base_y + 6), b, fill="black", font=font)
  img.save(path, format="PNG")


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------

def _define_flags():
  """The CLI's flags, defined only when run as a program (other entry points share names)."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  from ml_collections import config_flags  # pylint: disable=import-outside-toplevel
  config_flags.DEFINE_config_file(
      "config", None, "optional config file whose data section (test set, bucket masks) "
      "replaces the run's; the model always comes from the workdir's checkpoint",
      lock_config=False)
  flags.DEFINE_string("workdir", None, "trained DiFAI run (its top directory or difai stage)")
  flags.DEFINE_list("buckets", list(TABLE1_BUCKETS), "mask buckets to evaluate")
  flags.DEFINE_integer("max_images", None, "evaluate only the first N test images (quick runs)")
  flags.DEFINE_integer("batch_size", 8, "images per batch (rounded up to the device count)")
  flags.DEFINE_integer("num_completions", None, "K completions per input (default 1 + "
                       "min(sefa.top_k, 7))")
  flags.DEFINE_string("lpips", None, "converted LPIPS directory (kind 'lpips', alex)")
  flags.DEFINE_string("inception", None, "converted FID Inception directory")
  flags.DEFINE_boolean("random_metric_weights", False, "random LPIPS / Inception weights for "
                       "tests and demos (tables say RANDOM METRIC WEIGHTS - not comparable)")
  flags.DEFINE_enum("fid_completions", "all", ["all", "first"], "FID over all K completions "
                    "per input or only completion 0")
  flags.DEFINE_boolean("fid_exact", False, "Frechet distance by pytorch-fid's scipy sqrtm "
                       "(slow on CPU) instead of eigenvalues")
  flags.DEFINE_integer("seed", 0, "seed of the per-image SeFa edits")
  flags.DEFINE_string("eval_dir", None, "output directory (default WORKDIR/eval)")


def main(argv):
  from absl import app  # pylint: disable=import-outside-toplevel
  from absl import flags  # pylint: disable=import-outside-toplevel
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required (a trained DiFAI run)")
  from absl import logging  # pylint: disable=import-outside-toplevel
  logging.set_verbosity(logging.WARNING)
  data_config = None
  try:
    if FLAGS.config is not None:
      data_config = FLAGS.config.data
      saved = checkpoints.latest_meta(checkpoints.find_stage_dir(FLAGS.workdir, "difai"))
      if int(FLAGS.config.image_size) != int(saved["config"]["image_size"]):
        raise ValueError(f"--config has image_size {FLAGS.config.image_size} but the run in "
                         f"{FLAGS.workdir} was trained at {saved['config']['image_size']} px")
    evaluate(FLAGS.workdir, data_config=data_config, buckets=FLAGS.buckets,
             max_images=FLAGS.max_images, batch_size=FLAGS.batch_size,
             num_completions=FLAGS.num_completions, lpips_dir=FLAGS.lpips,
             inception_dir=FLAGS.inception, random_metric_weights=FLAGS.random_metric_weights,
             fid_all=FLAGS.fid_completions == "all", fid_exact=FLAGS.fid_exact,
             seed=FLAGS.seed, eval_dir=FLAGS.eval_dir)
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  from absl import app as _app  # pylint: disable=g-import-not-at-top
  _define_flags()
  _app.run(main)
