"""Evaluation: ``python -m difai_jax.evaluate --workdir RUN [--config CONFIG] ...``.

Re-expresses the paper's quantitative protocol (Yoon et al., section 3.3, Tables 1 and 2) on the
test split: for each fixed mask bucket (``quickdraw``, ``10-20``, ``20-30``, ``30-40``, ``40-50``
% hole) every test image gets that bucket's mask and the trained DiFAI produces K completions
(``I_masked + hole * I_out_j``, known pixels exact; j = 0 from the unperturbed code w, j >= 1 from
SeFa-perturbed codes w_delta drawn as in training, seeded per image). Then, by default as the
paper (``difai_jax.eval_metrics`` measures, ``--table1_completions`` / ``--diversity_pairs``
select the other readings):

* Table 1 from completion 0 only: **SSIM** / **MS-SSIM** (``[0, 1]`` images, ``data_range = 1``,
  pytorch-msssim's definitions), **LPIPS** (AlexNet, v0.1) against the ground truth and **FID**
  (pytorch-fid's Inception pool3 features) against the real test images;
* Table 2 **diversity** from the w_delta completions only: mean LPIPS over 4 pairs per image drawn
  among completions 1..K-1 (seeded by the image's index), on a seeded sample of 1,000 test images
  ("4K pairs synthesized from a sampling of 1K images").

The metric networks come from converted directories (``--lpips``, ``--inception``); without them
only SSIM / MS-SSIM are reported and the conversion commands are printed.
``--random_metric_weights`` builds randomly initialised metric networks (tests and demos only):
every table then says "RANDOM METRIC WEIGHTS - not comparable" in its title. Other feature
networks (a toy-domain FID, attribute predictions) plug in as ``eval_metrics.FeatureProbe`` s
(``probes=`` or ``--feature_probes module:function``).

The per-batch function (pipeline + metric networks) is one ``jax.jit`` over a mesh of all local
devices (axis ``data``, batch sharded, variables replicated); the last batch is padded.
Everything is written under ``--eval_dir`` (default ``<workdir>/eval``; the workdir itself is only
read): ``results.{md,csv,json}`` and ``chart.png`` (``difai_jax.eval_report``; each cell beside
the paper's number, ``PAPER_NUMBERS``), the fixed bucket masks (``eval_masks/``) and the cached
real-image FID statistics (``fid_stats_real_<size>px_n<N>_<data hash>[_random<seed>].npz``).
``python -m difai_jax.compare`` puts several evaluations side by side (Table 3's ablations).

The Frechet distance is computed from eigenvalues (``metrics.fid.frechet_distance_eig``: equal
to pytorch-fid's ``sqrtm`` route, which takes ~1 min per 2048-d call on a CPU, up to float
rounding and its ``eps`` fallback for singular products); ``--fid_exact`` uses pytorch-fid's
routine (``difai_jax.metrics.fid.frechet_distance``).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import time
from typing import Any, Sequence

from difai_jax import cli
from difai_jax import eval_report
from difai_jax.data import masks as masks_lib

# Nothing above imports JAX: the CLI answers a bad flag before JAX loads (``eval_loop`` does).
RANDOM_TITLE = eval_report.RANDOM_TITLE
METRICS = eval_report.METRICS
# Table 1 rows: the Quickdraw irregular masks and the four hole-ratio buckets.
TABLE1_BUCKETS = ("quickdraw", "10-20", "20-30", "30-40", "40-50")
# What is scored: the DiFAI completions, or the coarse net's composite alone (a baseline: its K
# "completions" are K copies of I_masked + hole * I_coarse, so its diversity is 0 by construction).
COMPLETION_SOURCES = {"difai": "DiFAI completions", "coarse": "coarse net alone (baseline)"}
# Table 2: "4K pairs synthesized from a sampling of 1K images" (Yoon et al., section 3.3).
DIVERSITY_IMAGES = 1000

# DiFAI's numbers as printed in the paper (../shared/PAPER_TABLES.md), {bucket: {metric: value}}:
# SSIM, LPIPS, FID from Yoon et al., Table 1; diversity from Yoon et al., Table 2.
PAPER_NUMBERS: dict[str, dict[str, float]] = {
    "quickdraw": {"ssim": 0.833, "lpips": 0.049, "fid": 25.95},
    "10-20": {"ssim": 0.837, "lpips": 0.052, "fid": 24.74},
    "20-30": {"ssim": 0.777, "lpips": 0.084, "fid": 34.55, "diversity": 0.0849},
    "30-40": {"ssim": 0.709, "lpips": 0.124, "fid": 46.87, "diversity": 0.1313},
    "40-50": {"ssim": 0.633, "lpips": 0.170, "fid": 64.86},
}
# MLGN's column of Yoon et al., Table 1: the paper's number for our coarse net (the public MLGN,
# which the paper customises) scored alone, ``--completions coarse``.
PAPER_MLGN: dict[str, dict[str, float]] = {
    "quickdraw": {"ssim": 0.832, "lpips": 0.063, "fid": 28.45},
    "10-20": {"ssim": 0.839, "lpips": 0.065, "fid": 26.73},
    "20-30": {"ssim": 0.777, "lpips": 0.103, "fid": 38.34},
    "30-40": {"ssim": 0.706, "lpips": 0.148, "fid": 52.54},
    "40-50": {"ssim": 0.624, "lpips": 0.201, "fid": 73.07},
}
PAPER_CITATIONS = {"ssim": "Yoon et al., Table 1", "lpips": "Yoon et al., Table 1",
                   "fid": "Yoon et al., Table 1", "diversity": "Yoon et al., Table 2"}
# Yoon et al., Table 3 (Quickdraw masks), by config.generator.norm: (the paper's name, numbers).
PAPER_ABLATIONS = {
    "sparn": ("DiFAI", {"ssim": 0.833, "lpips": 0.049, "fid": 25.95}),
    "spade": ("SPADE decoder", {"ssim": 0.816, "lpips": 0.056, "fid": 27.96}),
    "batch": ("w/o RN (batch norm)", {"ssim": 0.817, "lpips": 0.057, "fid": 28.45}),
}


def paper_column(norm: str, completions: str = "difai") -> tuple[str, dict, dict]:
  """(label, {bucket: {metric: value}}, {metric: citation}) of the paper's numbers for a run
  whose generator uses ``norm``: DiFAI's Tables 1-2, or its Table 3 row for an ablation; for
  the coarse net alone, MLGN's column of Table 1 (the paper's MLGN is not customised: a
  reference point, not the same network)."""
  if completions == "coarse":
    return ("MLGN", PAPER_MLGN, {m: "Yoon et al., Table 1 (MLGN)" for m in ("ssim", "lpips",
                                                                           "fid")})
  if norm == "sparn":
    return "DiFAI", PAPER_NUMBERS, PAPER_CITATIONS
  if norm in PAPER_ABLATIONS:
    name, numbers = PAPER_ABLATIONS[norm]
    return name, {"quickdraw": numbers}, {m: "Yoon et al., Table 3" for m in numbers}
  return f"no paper numbers for generator.norm={norm!r}", {}, {}


@dataclasses.dataclass(frozen=True)
class EvalOptions:
  """What an evaluation measures and how; the CLI's flags of the same names."""
  buckets: tuple[str, ...] = TABLE1_BUCKETS
  max_images: int | None = None          # the first N test images (quick runs)
  batch_size: int = 8
  num_completions: int | None = None     # K (default 1 + min(sefa.top_k, 7))
  lpips_dir: str | None = None
  inception_dir: str | None = None
  random_metric_weights: bool = False
  table1_completions: str = "first"      # "first": completion 0 (paper) | "all": all K
  diversity_pairs: str = "paper"         # "paper": 4 seeded w_delta pairs | "all": every pair
  diversity_images: int = DIVERSITY_IMAGES   # the paper's sample (paper pairs only)
  fid_exact: bool = False
  seed: int = 0                          # the per-image SeFa edits and diversity pairs
  completions: str = "difai"             # "difai" | "coarse": the coarse net alone (a baseline)


# ----------------------------------------------------------------------------------------------
# Checks before any work (no model loaded yet)
# ----------------------------------------------------------------------------------------------

def check_options(opts: EvalOptions, out_dir: str, flag: str = "--eval_dir",
                  frechet_probes: int = 0) -> None:
  """Raises ``cli.CliError`` (one line for the user) for options that cannot work, before any
  model is loaded; creates nothing."""
  unknown = [b for b in opts.buckets if b not in masks_lib.EVAL_BUCKET_RANGES]
  if unknown or not opts.buckets:
    raise cli.CliError(f"unknown mask bucket(s) {unknown}; choose from "
                       f"{masks_lib.EVAL_BUCKET_NAMES}")
  if opts.table1_completions not in ("first", "all"):
    raise cli.CliError("--table1_completions must be first or all, not "
                       f"{opts.table1_completions}")
  if opts.completions not in COMPLETION_SOURCES:
    raise cli.CliError(f"--completions must be one of {list(COMPLETION_SOURCES)}, not "
                       f"{opts.completions}")
  if opts.diversity_pairs not in ("paper", "all"):
    raise cli.CliError(f"--diversity_pairs must be paper or all, not {opts.diversity_pairs}")
  for name in ("batch_size", "diversity_images", "max_images"):
    if getattr(opts, name) is not None and getattr(opts, name) < 1:
      raise cli.CliError(f"--{name} must be at least 1, got {getattr(opts, name)}")
  fid = opts.inception_dir or opts.random_metric_weights or frechet_probes
  if fid and opts.max_images == 1:
    raise cli.CliError("--max_images 1: FID needs at least 2 images (a covariance of their "
                       "features); pass --max_images 2 or more, or leave out --inception / "
                       "--random_metric_weights for SSIM / LPIPS alone")
  cli.check_output_dir(out_dir, flag)


# ----------------------------------------------------------------------------------------------
# Devices and the run's weights
# ----------------------------------------------------------------------------------------------

def local_mesh():
  """A 1-d mesh, axis ``data``, over every local device (one host's evaluation / inference)."""
  import jax  # pylint: disable=import-outside-toplevel
  return jax.make_mesh((jax.local_device_count(),), ("data",), devices=jax.local_devices(),
                       axis_types=(jax.sharding.AxisType.Auto,))


def round_up(n: int, multiple: int) -> int:
  return -(-int(n) // int(multiple)) * int(multiple)


def format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def weights_description(config, step: int) -> str:
  """Which generator weights a run's checkpoint gives evaluation (checkpoints.load_stage_params
  takes the EMA when the run kept one, i.e. when train.ema_decay > 0)."""
  decay = float(config.train.get("ema_decay", 0.0) or 0.0)
  kind = (f"EMA generator params (train.ema_decay = {decay:g})" if decay
          else "raw generator params (train.ema_decay = 0: no EMA kept)")
  return f"{kind}, checkpoint step {step}"


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------

def evaluate(workdir: str, options: EvalOptions | None = None, *, data_config=None,
             eval_dir: str | None = None, probes: Sequence[tuple[Any, Any]] = (),
             verbose: bool = True, **overrides) -> dict:
  """Evaluates a trained DiFAI workdir; writes and returns the report (see module docstring).

  ``options`` (or keyword ``overrides`` of its fields) say what is measured; ``data_config``
  replaces the run's data section; ``probes`` plug in more feature networks,
  ``(eval_metrics.FeatureProbe, variables)`` pairs, beside the FID Inception.
  """
  opts = dataclasses.replace(options or EvalOptions(), **overrides)
  log = (lambda *a: print(*a, flush=True)) if verbose else (lambda *a: None)
  out_dir = eval_dir or os.path.join(workdir, "eval")
  check_options(opts, out_dir, "--eval_dir" if eval_dir else "--eval_dir (default WORKDIR/eval)",
                sum(p.frechet for p, _ in probes))
  # JAX loads here, after the checks.
  from difai_jax import eval_loop  # pylint: disable=import-outside-toplevel
  from difai_jax import eval_metrics  # pylint: disable=import-outside-toplevel
  t_start = time.time()
  ev = eval_loop.setup(workdir, opts, out_dir, data_config, probes, log, verbose)
  progress = eval_loop.Progress(ev.n_images * len(opts.buckets), log)
  metrics = eval_metrics.reported_metrics(ev.scorer)
  results = {}
  for i, bucket in enumerate(opts.buckets):
    results[bucket] = eval_loop.run_bucket(ev, bucket, progress, i * ev.n_images,
                                           opts.fid_exact, out_dir)
    log(eval_report.result_line(bucket, results[bucket], metrics))
  report = make_report(workdir, opts, ev, results, metrics, time.time() - t_start)
  eval_report.write_reports(report, out_dir)
  log(f"wrote {out_dir}/results.md, results.csv, results.json, chart.png "
      f"({report['seconds']:.0f} s)")
  return report


def make_report(workdir: str, opts: EvalOptions, ev, results: dict, metrics: list[str],
                seconds: float) -> dict:
  """The JSON-able report ``eval_report`` writes (and ``difai_jax.compare`` reads)."""
  norm = str(ev.config.generator.get("norm", "sparn"))
  paper_label, paper, citations = paper_column(norm, opts.completions)
  n_div = int(ev.diversity_images.sum()) if ev.diversity_images is not None else ev.n_images
  random = ev.random_metric_weights
  return {
      "title": eval_report.title(workdir, ev.step_count, random)
               + ("" if opts.completions == "difai" else " - coarse net alone"),
      "workdir": os.path.abspath(workdir), "step": ev.step_count,
      "weights": weights_description(ev.config, ev.step_count), "generator_norm": norm,
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
              "distance": "pytorch-fid sqrtm" if opts.fid_exact else "eigenvalues"},
      "completions": opts.completions, "scored": COMPLETION_SOURCES[opts.completions],
      "sefa_edits": dataclasses.asdict(ev.spec.sampling), "seed": opts.seed,
      "seconds": round(seconds, 1), "notes": ev.notes, "metrics": metrics,
      "results": results, "paper_label": paper_label, "paper_citations": citations,
      "paper": {b: paper.get(b, {}) for b in opts.buckets},
  }


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
  flags.DEFINE_integer("max_images", None, "evaluate only the first N test images (quick runs; "
                       "FID needs N >= 2)")
  flags.DEFINE_integer("batch_size", 8, "images per batch (rounded up to the device count)")
  flags.DEFINE_integer("num_completions", None, "K completions per input (default 1 + "
                       "min(sefa.top_k, 7))")
  flags.DEFINE_string("lpips", None, "converted LPIPS directory (kind 'lpips', alex)")
  flags.DEFINE_string("inception", None, "converted FID Inception directory")
  flags.DEFINE_boolean("random_metric_weights", False, "random LPIPS / Inception weights for "
                       "tests and demos (tables say RANDOM METRIC WEIGHTS - not comparable)")
  flags.DEFINE_enum("table1_completions", "first", ["first", "all"], "which completions Table 1 "
                    "(SSIM, MS-SSIM, LPIPS, FID) reads: first = completion 0, the unperturbed "
                    "code w (the paper, section 3.3); all = all K per input (FID pooled over "
                    "them, the reading before the paper's protocol was followed)")
  flags.DEFINE_enum("diversity_pairs", "paper", ["paper", "all"], "Table 2's pairs: paper = 4 "
                    "seeded pairs per image among the perturbed completions 1..K-1, on "
                    "--diversity_images images; all = every pair of the K completions "
                    "(completion 0 included) of every image, the earlier reading")
  flags.DEFINE_integer("diversity_images", DIVERSITY_IMAGES, "seeded sample of test "
                       "images for the paper's diversity pairs (the paper: 1K images, 4K pairs)")
  flags.DEFINE_boolean("fid_exact", False, "Frechet distance by pytorch-fid's scipy sqrtm "
                       "(slow on CPU) instead of eigenvalues")
  flags.DEFINE_integer("seed", 0, "seed of the per-image SeFa edits and diversity pairs")
  flags.DEFINE_enum("completions", "difai", list(COMPLETION_SOURCES), "what is scored: difai = "
                    "the K DiFAI completions; coarse = the run's coarse net alone, composited "
                    "(a baseline; K identical copies, so diversity 0)")
  flags.DEFINE_string("eval_dir", None, "output directory, also for the bucket masks and the "
                      "real-image FID statistics (default WORKDIR/eval)")
  flags.DEFINE_string("feature_probes", None, "module:function returning more feature probes, "
                      "[(eval_metrics.FeatureProbe, variables)], given the image size")
  cli.define_cache_flag()


def _run_inputs(FLAGS):  # pylint: disable=invalid-name
  """(feature probes of --feature_probes, the data section of --config) for the trained run."""
  if not FLAGS.feature_probes and FLAGS.config is None:
    return [], None
  from difai_jax import checkpoints  # pylint: disable=import-outside-toplevel
  saved = checkpoints.latest_meta(checkpoints.find_stage_dir(FLAGS.workdir, "difai"))["config"]
  size = int(saved["image_size"])
  probes = []
  if FLAGS.feature_probes:
    module, _, function = FLAGS.feature_probes.partition(":")
    probes = list(getattr(importlib.import_module(module), function)(size))
  if FLAGS.config is not None and int(FLAGS.config.image_size) != size:
    raise ValueError(f"--config has image_size {FLAGS.config.image_size} but the run in "
                     f"{FLAGS.workdir} was trained at {size} px")
  return probes, None if FLAGS.config is None else FLAGS.config.data


def main(argv):
  from absl import flags  # pylint: disable=import-outside-toplevel
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  if len(argv) > 1:
    raise cli.CliError(f"unexpected arguments {argv[1:]}")
  if not FLAGS.workdir:
    raise cli.CliError("--workdir is required (a trained DiFAI run); see --help")
  opts = EvalOptions(
      buckets=tuple(FLAGS.buckets), max_images=FLAGS.max_images, batch_size=FLAGS.batch_size,
      num_completions=FLAGS.num_completions, lpips_dir=FLAGS.lpips,
      inception_dir=FLAGS.inception, random_metric_weights=FLAGS.random_metric_weights,
      table1_completions=FLAGS.table1_completions, diversity_pairs=FLAGS.diversity_pairs,
      diversity_images=FLAGS.diversity_images, fid_exact=FLAGS.fid_exact, seed=FLAGS.seed,
      completions=FLAGS.completions)
  check_options(opts, FLAGS.eval_dir or os.path.join(FLAGS.workdir, "eval"),
                "--eval_dir" if FLAGS.eval_dir else "--eval_dir (default WORKDIR/eval)")
  probes, data_config = _run_inputs(FLAGS)
  cli.enable_compilation_cache(FLAGS.compilation_cache)
  evaluate(FLAGS.workdir, opts, data_config=data_config, eval_dir=FLAGS.eval_dir,
           probes=probes)
  return 0


if __name__ == "__main__":
  _define_flags()
  cli.run(main, user_errors=(ValueError, FileNotFoundError))
