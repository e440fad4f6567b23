"""The metric side of evaluation: what is measured on the K completions of each test image.

:func:`score_completions` runs inside the jitted evaluation step on one batch of completions
(K, N, H, W, 3) and returns per-image numbers and features; :class:`BucketScores` accumulates
them on the host over a bucket's batches and turns them into the bucket's row. The protocol of
Yoon et al., section 3.3 is the default (:class:`Scorer`):

* Table 1 (SSIM, MS-SSIM, LPIPS, FID) reads completion 0 only, the completion of the unperturbed
  code w (``table1="first"``); the other readings (:data:`TABLE1_READINGS`): ``"all"``, every
  per-image metric averaged over the K completions and the feature metrics over all of them
  pooled; ``"best"``, each per-image metric's best of the K (highest SSIM / MS-SSIM / PSNR, lowest
  LPIPS: the "best of K" of pluralistic methods' papers) with the feature metrics pooled as
  ``"all"``; ``"mean"``, every metric computed on completion k alone (FID over the n completions
  number k) and averaged over k;
* Table 2 (diversity) reads the w_delta completions only: per test image, 4 pairs drawn with a
  key seeded by the image's index among completions 1..K-1, on a seeded sample of 1,000 test
  images ("4K pairs synthesized from a sampling of 1K images"; ``diversity="all"``: every pair of
  the K completions, completion 0 included, over every image).

Feature networks are plugged in as :class:`FeatureProbe` s: the FID Inception is one (named
"fid"); another (e.g. a toy-domain recognizer's ``features(images) -> (N, D)``) adds a Frechet
distance of its own to the tables, and a probe with ``per_completion=True`` (e.g. attribute
predictions) has its outputs for every completion saved beside the results.

More metrics the field reports are opt-in (``Scorer.extra``, :data:`EXTRA_METRICS`): ``psnr``;
``lpips_hole``, LPIPS restricted to the hole; ``ids``, P-IDS / U-IDS (Zhao et al. 2021) and
``prdc``, precision / recall / density / coverage (Naeem et al. 2020), both in each Frechet
probe's feature space (Inception's for ``fid``; the toy recognizer's for ``toy_fid``, named
``toy_p_ids`` ...).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from difai_jax import pretrained
from difai_jax.evaluation import report as eval_report
from difai_jax.evaluation.metrics import diversity as diversity_lib
from difai_jax.evaluation.metrics import clean_resize
from difai_jax.evaluation.metrics import fid as fid_lib
from difai_jax.evaluation.metrics import ids as ids_lib
from difai_jax.evaluation.metrics import lpips as lpips_lib
from difai_jax.evaluation.metrics import prdc as prdc_lib
from difai_jax.evaluation.metrics import psnr as psnr_lib
from difai_jax.evaluation.metrics import ssim as ssim_lib

PER_IMAGE = ("ssim", "ms_ssim", "psnr", "lpips", "lpips_hole", "diversity")
TABLE1_READINGS = eval_report.TABLE1_READINGS
EXTRA_METRICS = eval_report.EXTRA_METRICS
FEATURE_METRICS = {"ids": ("p_ids", "u_ids"),
                   "prdc": ("precision", "recall", "density", "coverage")}
FID_RESIZES = eval_report.FID_RESIZES
PAIRS_STREAM = 1   # fold_in(image key, PAIRS_STREAM): the diversity pairs' key, not the edits'

LPIPS_HINT = ("python -m weights_conversion.lpips --net alex --backbone alexnet-owt-7be5be79.pth "
              "weights/lpips_alex   (torchvision AlexNet + the lpips package's v0.1 linear "
              "layers), then --lpips weights/lpips_alex")
INCEPTION_HINT = ("python -m weights_conversion.inception pt_inception-2015-12-05-6726825d.pth "
                  "weights/inception   (pytorch-fid's FID Inception), then --inception "
                  "weights/inception")


@dataclasses.dataclass(frozen=True)
class FeatureProbe:
  """A named network run on images inside the evaluation step.

  Attributes:
    name: the metric's name in the tables (the FID Inception is "fid").
    apply: ``(variables, images (N, H, W, 3) in [-1, 1]) -> (N, D)``, jittable.
    frechet: report the Frechet distance between the features of the scored completions and
      those of the real test images (an FID in this probe's feature space).
    per_completion: save the outputs for every completion, ``<name>_<bucket>.npz`` with
      ``index`` (n,) and ``values`` (n, K, D), beside the results (e.g. attribute predictions).
    cache_tag: real-image statistics are cached on disk under this tag (None: recomputed each
      evaluation); it must change whenever the network's weights do.
  """
  name: str
  apply: Callable[[Any, jax.Array], jax.Array]
  frechet: bool = True
  per_completion: bool = False
  cache_tag: str | None = None


@dataclasses.dataclass(frozen=True)
class Scorer:
  """What the evaluation step measures (settings only; closed over by the jitted function)."""
  table1_all: bool = False              # alias of table1="all" (kept in step with it)
  diversity: str = "paper"              # "paper" | "all" | "off" (see the module docstring)
  pairs_per_image: int = diversity_lib.PAPER_PAIRS_PER_IMAGE
  seed: int = 0                         # the diversity pairs' seed (with each image's index)
  ms_ssim_weights: tuple[float, ...] | None = None
  lpips: Any = None                     # LPIPS module; None: no LPIPS and no diversity
  probes: tuple[FeatureProbe, ...] = ()
  table1: str = "first"                 # TABLE1_READINGS; "first": completion 0 (the paper)
  extra: tuple[str, ...] = ()           # EXTRA_METRICS measured besides the paper's

  def __post_init__(self):
    if self.table1_all:
      object.__setattr__(self, "table1", "all")
    object.__setattr__(self, "table1_all", self.table1 == "all")
    if self.table1 not in TABLE1_READINGS:
      raise ValueError(f"table1 must be one of {TABLE1_READINGS}, not {self.table1!r}")
    unknown = sorted(set(self.extra) - set(EXTRA_METRICS))
    if unknown:
      raise ValueError(f"unknown extra metrics {unknown}; choose from {EXTRA_METRICS}")


def quantize_8bit(images: jax.Array) -> jax.Array:
  """Images in [-1, 1] as an 8-bit file holds them (``image_io.to_uint8`` then
  ``uint8_to_float``: round half to even, clip to [0, 255]), still in [-1, 1]."""
  levels = jnp.clip(jnp.round((images + 1.0) * 127.5), 0.0, 255.0)
  return levels / 127.5 - 1.0


def feature_metric_name(probe: str, metric: str) -> str:
  """``p_ids`` ... in the FID Inception's space (probe ``fid``), ``toy_p_ids`` in ``toy_fid``'s."""
  return metric if probe == "fid" else f"{probe.removesuffix('_fid')}_{metric}"


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
  """LPIPS (or None), the feature probes with their variables, and notes on what is missing."""
  lpips: Any = None
  lpips_variables: Any = None
  probes: list[tuple[FeatureProbe, Any]] = dataclasses.field(default_factory=list)
  random: bool = False
  notes: list[str] = dataclasses.field(default_factory=list)

  def variables(self) -> dict:
    return {"lpips": self.lpips_variables, "probes": {p.name: v for p, v in self.probes}}


def fid_probe(module, variables, cache_tag: str, fid_resize: str = "pytorch-fid"):
  """The FID Inception as the ``fid`` probe: pytorch-fid's bilinear resize inside the network,
  or (``fid_resize="clean"``) clean-fid's: 8-bit quantisation and Pillow's bicubic first."""
  if fid_resize not in FID_RESIZES:
    raise ValueError(f"fid_resize must be one of {FID_RESIZES}, not {fid_resize!r}")
  if fid_resize == "clean":
    apply = lambda v, images: module.apply(v, clean_resize.clean_fid_input(images))
    return FeatureProbe("fid", apply, cache_tag=cache_tag + "_clean"), variables
  return FeatureProbe("fid", module.apply, cache_tag=cache_tag), variables


def load_metric_nets(lpips_dir: str | None, inception_dir: str | None, random: bool,
                     image_size: int, seed: int = 0, fid_resize: str = "pytorch-fid"
                     ) -> MetricNets:
  """Converted LPIPS (kind 'lpips', AlexNet) / FID Inception, random ones, or none (notes)."""
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
    nets.probes.append(fid_probe(module, variables, "", fid_resize))
  elif random:
    module = fid_lib.FIDInceptionV3()
    nets.probes.append(fid_probe(module, random_variables(module, x, seed=seed + 1),
                                 f"_random{seed + 1}", fid_resize))
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
# Inside the jitted step
# ----------------------------------------------------------------------------------------------

def diversity_pairs(index: jax.Array, k: int, scorer: Scorer):
  """The pairs each image's diversity reads: (N, P, 2) seeded by the image's index (paper), a
  list of all pairs ("all"), or None when there is nothing to compare."""
  if scorer.diversity == "all" and k >= 2:
    return diversity_lib.all_pairs(k)
  if scorer.diversity == "paper" and k >= 3:
    image_key = lambda i: jax.random.fold_in(jax.random.key(scorer.seed), i)
    keys = jax.vmap(lambda i: jax.random.fold_in(image_key(i), PAIRS_STREAM))(
        jnp.maximum(index, 0).astype(jnp.uint32))
    return diversity_lib.paper_pairs(keys, k, scorer.pairs_per_image)
  return None


HIGHER_IS_BETTER_PER_IMAGE = {"ssim": True, "ms_ssim": True, "psnr": True, "lpips": False,
                              "lpips_hole": False}


def _per_image_table1(flat, truth, hole, k1: int, metric_variables, scorer: Scorer) -> dict:
  """Table 1's per-image metrics of the (k1 N, H, W, 3) scored completions, reduced over the k1
  completions of each image: mean, or the best of them (``table1="best"``); each (N,)."""
  def reduce(name, values):
    values = values.reshape(k1, -1)
    if scorer.table1 != "best":
      return jnp.mean(values, axis=0)
    return (jnp.max if HIGHER_IS_BETTER_PER_IMAGE[name] else jnp.min)(values, axis=0)

  unit = lambda x: (x + 1) / 2
  result = {"ssim": reduce("ssim", ssim_lib.ssim(unit(flat), unit(truth), data_range=1.0))}
  if scorer.ms_ssim_weights:
    result["ms_ssim"] = reduce("ms_ssim", ssim_lib.ms_ssim(
        unit(flat), unit(truth), data_range=1.0, weights=scorer.ms_ssim_weights))
  if "psnr" in scorer.extra:
    result["psnr"] = reduce("psnr", psnr_lib.psnr(unit(flat), unit(truth), data_range=1.0))
  if scorer.lpips is not None:
    lpips_fn = functools.partial(scorer.lpips.apply, metric_variables["lpips"])
    result["lpips"] = reduce("lpips", lpips_fn(flat, truth))
    if "lpips_hole" in scorer.extra and hole is not None:
      result["lpips_hole"] = reduce("lpips_hole", lpips_fn(flat, truth, hole))
  return result


def score_completions(completions: jax.Array, image: jax.Array, index: jax.Array,
                      metric_variables: Mapping[str, Any], scorer: Scorer,
                      mask: jax.Array | None = None) -> dict:
  """Per-image metrics and features of one batch (every output leads with the batch axis).

  Args:
    completions: (K, N, H, W, 3) composites in [-1, 1]; completion 0 follows the unperturbed w.
    image: (N, H, W, 3) ground truth in [-1, 1]; index: (N,) test-image indices (-1: padding).
    metric_variables: ``MetricNets.variables()``.
    scorer: what is measured.
    mask: (N, H, W, 1), 1 = known: the hole of ``lpips_hole`` (None: not measured).

  Returns:
    ``ssim``, ``ms_ssim``, ``psnr``, ``lpips``, ``lpips_hole``: (N,) over the Table 1
    completions (their mean, or best); ``diversity`` (N,); per probe ``real/<name>`` (N, D) and
    ``fake/<name>`` (N, k1, D) for the k1 Table 1 completions, ``completions/<name>``
    (N, K, D) for a per-completion probe.
  """
  k, n = completions.shape[:2]
  scored = completions if scorer.table1 != "first" else completions[:1]  # (k1, N, H, W, 3)
  k1 = scored.shape[0]
  flat = scored.reshape((k1 * n,) + scored.shape[2:])
  truth = jnp.tile(image, (k1, 1, 1, 1))
  hole = None if mask is None else jnp.tile(1.0 - mask, (k1, 1, 1, 1))
  result = _per_image_table1(flat, truth, hole, k1, metric_variables, scorer)
  if scorer.lpips is not None:
    lpips_fn = functools.partial(scorer.lpips.apply, metric_variables["lpips"])
    pairs = diversity_pairs(index, k, scorer)
    if pairs is not None:
      result["diversity"] = diversity_lib.diversity_lpips(lpips_fn, completions, pairs,
                                                          per_input=True)
  for probe in scorer.probes:
    apply = functools.partial(probe.apply, metric_variables["probes"][probe.name])
    if probe.frechet:
      feats = apply(jnp.concatenate([image, flat], axis=0))            # ((1 + k1) N, D)
      result[f"real/{probe.name}"] = feats[:n]
      result[f"fake/{probe.name}"] = jnp.swapaxes(feats[n:].reshape(k1, n, -1), 0, 1)
    if probe.per_completion:
      out = apply(completions.reshape((k * n,) + completions.shape[2:]))
      result[f"completions/{probe.name}"] = jnp.swapaxes(out.reshape(k, n, -1), 0, 1)
  return result


# ----------------------------------------------------------------------------------------------
# On the host, over a bucket's batches
# ----------------------------------------------------------------------------------------------

class BucketScores:
  """One bucket's per-image metrics, feature statistics and per-completion outputs.

  Args:
    scorer: the step's settings (which probes exist, the Table 1 reading, the extra metrics).
    real_needed: names of the Frechet probes whose real-image statistics are still unknown
      (accumulated here from the real features; see :meth:`real_statistics`).
    diversity_images: bool (n_images,): the test images that enter the diversity score (the
      paper's sample of 1K); None: all.
  """

  def __init__(self, scorer: Scorer, real_needed: Sequence[str] = (),
               diversity_images: np.ndarray | None = None):
    self.scorer = scorer
    self.per_image: dict[str, list[np.ndarray]] = {}
    self.hole: list[np.ndarray] = []
    self.diversity_images = diversity_images
    frechet = [p.name for p in scorer.probes if p.frechet]
    # Per probe, one Frechet accumulator per column: the pooled completions, or (reading
    # "mean") each completion number k; with the first rows, for a low-rank fake covariance.
    self.fake: dict[str, list] = {name: [] for name in frechet}
    self.fake_rows: dict[str, list] = {name: [] for name in frechet}
    self.real = {name: None for name in frechet if name in real_needed}
    keep = any(m in scorer.extra for m in FEATURE_METRICS)
    self.features = {name: ([], []) for name in frechet} if keep else {}   # (real, fake) rows
    self.per_completion: dict[str, list[np.ndarray]] = {
        p.name: [] for p in scorer.probes if p.per_completion}
    self.index: list[np.ndarray] = []

  @staticmethod
  def _accumulate(acc, features):
    acc = acc or fid_lib.StatisticsAccumulator(features.shape[-1])
    acc.update(features)
    return acc

  def _add_fake(self, name: str, fake: np.ndarray) -> None:
    """fake (n, k1, D): into one pooled accumulator, or one per completion number (mean)."""
    columns = ([fake[:, j] for j in range(fake.shape[1])] if self.scorer.table1 == "mean"
               else [fake.reshape(-1, fake.shape[-1])])
    if not self.fake[name]:
      self.fake[name] = [None] * len(columns)
      self.fake_rows[name] = [[] for _ in columns]
    for j, rows in enumerate(columns):
      self.fake[name][j] = self._accumulate(self.fake[name][j], rows)
      kept = self.fake_rows[name][j]
      if kept is not None:
        kept.append(rows)
        if sum(len(r) for r in kept) > rows.shape[-1]:
          self.fake_rows[name][j] = None     # enough samples for a full-rank covariance

  def add(self, out: Mapping[str, np.ndarray], valid: np.ndarray, index: np.ndarray,
          hole_ratio: np.ndarray) -> None:
    """One batch: the step's outputs, its valid rows (bool (B,)), the test indices and hole
    ratios of all its rows (B,)."""
    index = np.asarray(index)[valid]
    self.index.append(index)
    self.hole.append(np.asarray(hole_ratio)[valid])
    for name in PER_IMAGE:
      if name not in out:
        continue
      value = np.asarray(out[name])[valid]
      if name == "diversity" and self.diversity_images is not None:
        value = value[self.diversity_images[index]]
      self.per_image.setdefault(name, []).append(value)
    for name in self.fake:
      fake = np.asarray(out[f"fake/{name}"])[valid]                    # (n, k1, D)
      self._add_fake(name, fake)
      real = np.asarray(out[f"real/{name}"])[valid]
      if name in self.real:
        self.real[name] = self._accumulate(self.real[name], real)
      if name in self.features:
        self.features[name][0].append(real)
        self.features[name][1].append(fake)
    for name, chunks in self.per_completion.items():
      chunks.append(np.asarray(out[f"completions/{name}"])[valid])

  def real_statistics(self) -> dict[str, fid_lib.FIDStatistics]:
    """The real-image statistics accumulated here (for the probes named in ``real_needed``)."""
    return {name: acc.result() for name, acc in self.real.items() if acc is not None}

  def row(self, real: Mapping[str, fid_lib.FIDStatistics], exact: bool = False) -> dict:
    """The bucket's numbers: per-image means, Frechet distances (``<name>`` and
    ``<name>_samples``), the extra feature metrics, ``n_images``, ``hole_ratio`` and, for
    diversity, ``diversity_images``."""
    row = {name: float(np.mean(np.concatenate(v))) for name, v in self.per_image.items()
           if sum(len(c) for c in v)}
    row["n_images"] = int(sum(len(i) for i in self.index))
    row["hole_ratio"] = float(np.mean(np.concatenate(self.hole)))
    if "diversity" in row:
      row["diversity_images"] = int(sum(len(c) for c in self.per_image["diversity"]))
    for name, accs in self.fake.items():
      distances = [frechet(real[name], acc.result(), rows, exact)
                   for acc, rows in zip(accs, self.fake_rows[name])]
      row[name] = float(np.mean(distances))
      row[f"{name}_samples"] = int(sum(acc.n for acc in accs))
    for name, (reals, fakes) in self.features.items():
      row.update(feature_metrics(name, np.concatenate(reals), np.concatenate(fakes),
                                 self.scorer))
    return row

  def per_image_values(self) -> dict[str, np.ndarray]:
    """The values behind the row's means, image by image (for paired tests and bootstraps
    between methods scored on the same masks): ``index`` (n,) test indices, ``hole_ratio``
    (n,), each per-image metric (n,) in the same order, and ``diversity`` (m,) with
    ``diversity_index`` (m,) for the images in the diversity sample."""
    index = np.concatenate(self.index)
    values = {"index": index, "hole_ratio": np.concatenate(self.hole)}
    for name, chunks in self.per_image.items():
      values[name] = np.concatenate(chunks)
    if "diversity" in values:
      values["diversity_index"] = (index if self.diversity_images is None
                                   else index[self.diversity_images[index]])
    return values

  def completion_outputs(self) -> dict[str, dict[str, np.ndarray]]:
    """``{probe: {"index": (n,), "values": (n, K, D)}}`` for the per-completion probes."""
    index = np.concatenate(self.index)
    return {name: {"index": index, "values": np.concatenate(chunks)}
            for name, chunks in self.per_completion.items()}


def feature_metrics(probe: str, real: np.ndarray, fake: np.ndarray, scorer: Scorer) -> dict:
  """P-IDS / U-IDS and PRDC (those in ``scorer.extra``) of real (n, D) and fake (n, k1, D)
  features: on each completion number k, averaged (reading "mean"), or on the n k1 completions
  pooled, each paired with its image's real features for P-IDS (PRDC's real set: the n)."""
  n, k1, _ = fake.shape
  if scorer.table1 == "mean":
    sets = [(real, fake[:, j]) for j in range(k1)]
  else:
    sets = [(real, fake.reshape(n * k1, -1))]
  values: dict[str, list[float]] = {}
  for real_set, fake_set in sets:
    found = {}
    if "ids" in scorer.extra:
      found.update(ids_lib.discriminative_scores(np.repeat(real_set, len(fake_set) //
                                                           len(real_set), axis=0), fake_set))
    if "prdc" in scorer.extra:
      few = min(len(real_set), len(fake_set)) <= prdc_lib.NEAREST_K     # no k-th neighbour
      found.update(dict.fromkeys(FEATURE_METRICS["prdc"], float("nan")) if few else
                   prdc_lib.prdc(real_set, fake_set))
    for metric, value in found.items():
      values.setdefault(metric, []).append(value)
  mean = lambda v: None if np.isnan(v).any() else float(np.mean(v))   # n/a: too few samples
  return {feature_metric_name(probe, m): mean(v) for m, v in values.items()}


def frechet(real: fid_lib.FIDStatistics, fake: fid_lib.FIDStatistics, fake_rows=None,
            exact: bool = False) -> float:
  """Frechet distance; eigenvalue route (exact with the rows of a low-rank fake covariance)
  unless ``exact`` asks for pytorch-fid's ``sqrtm`` routine."""
  if exact:
    return fid_lib.frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma)
  rows = None if fake_rows is None else np.concatenate(fake_rows)
  return fid_lib.frechet_distance_eig(real.mu, real.sigma, fake.mu, fake.sigma, rows)


def reported_metrics(scorer: Scorer, diversity_na: bool = False) -> list[str]:
  """The metrics the tables show, in order (plugged-in Frechet probes after the paper's, then
  the extra metrics). ``diversity_na``: list diversity even when it is not measured (K < 3:
  shown as n/a)."""
  present = {"ssim"} | ({"ms_ssim"} if scorer.ms_ssim_weights else set())
  present |= {"psnr"} & set(scorer.extra)
  if scorer.lpips is not None:
    present |= {"lpips"} | ({"lpips_hole"} & set(scorer.extra))
    present |= {"diversity"} if scorer.diversity != "off" or diversity_na else set()
  frechet = [p.name for p in scorer.probes if p.frechet]
  metrics = [m for m in eval_report.METRICS if m in present or m in frechet]
  metrics += [m for m in frechet if m not in eval_report.METRICS]
  metrics += [m for m in ("psnr", "lpips_hole") if m in present]
  for name in frechet:
    metrics += [feature_metric_name(name, m) for extra in ("ids", "prdc")
                if extra in scorer.extra for m in FEATURE_METRICS[extra]]
  return metrics
