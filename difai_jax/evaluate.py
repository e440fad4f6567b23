"""Evaluation: ``python -m difai_jax.evaluate --workdir RUN [--config CONFIG] ...``.

Re-expresses the paper's quantitative protocol (Yoon et al., section 3.3, Tables 1 and 2) on the
test split: for each fixed mask bucket (``quickdraw``, ``10-20``, ``20-30``, ``30-40``, ``40-50``
% hole) every test image gets that bucket's mask and the trained DiFAI produces K completions
(``I_masked + hole * I_out_j``, known pixels exact; j = 0 from the unperturbed code w, j >= 1 from
SeFa-perturbed codes w_delta drawn as in training, seeded per image). Then, by default as the
paper (``difai_jax.evaluation.scoring`` measures, ``--table1_completions`` / ``--diversity_pairs``
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
read): ``results.{md,csv,json}`` and ``chart.png`` (``difai_jax.evaluation.report``; each cell
beside
the paper's number, ``PAPER_NUMBERS``), the fixed bucket masks (``eval_masks/``) and the cached
real-image FID statistics (``fid_stats_real_<size>px_n<N>_<data hash>[_random<seed>].npz``).
``python -m difai_jax.compare`` puts several evaluations side by side (Table 3's ablations).

Other methods (README "Comparing methods"): ``--export_masks DIR [--mask_convention hole1]``
writes every test image's bucket masks as files another method reads (and stops);
``--masks_dir DIR`` evaluates on a mask folder (exported, or published: bucketed by hole ratio);
``--completions_dir DIR [--config CONFIG]`` scores another method's completions,
``DIR/<bucket>/<image_id>_<k>.png``, with this protocol and these metrics
(``difai_jax.evaluation.score_folder``); ``--write_completions DIR`` writes a DiFAI run's in that
layout. ``--extra_metrics psnr,lpips_hole,ids,prdc`` adds the metrics other papers report and
``--fid_resize clean`` clean-fid's resize. ``--sefa_degrees 1,2,4,8 [--frontier_with
DIR,...]`` scores the run at several SeFa strengths and draws the fidelity-diversity frontier
(``difai_jax.evaluation.frontier``), other methods as single points. ``--refine_steps 50``
(not the paper) fits pSp's codes to each image's known pixels before the edits
(``pipeline.fit_codes_to_known``); the report says so.

The Frechet distance is computed from eigenvalues (``metrics.fid.frechet_distance_eig``: equal
to pytorch-fid's ``sqrtm`` route, which takes ~1 min per 2048-d call on a CPU, up to float
rounding and its ``eps`` fallback for singular products); ``--fid_exact`` uses pytorch-fid's
routine (``difai_jax.evaluation.metrics.fid.frechet_distance``).
"""

from __future__ import annotations

import importlib
import os

from difai_jax import cli
from difai_jax import runtime
from difai_jax.evaluation import options as eval_options


def _define_flags():
  """The CLI's flags, defined only when run as a program (other entry points share names)."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  from ml_collections import config_flags  # pylint: disable=import-outside-toplevel
  config_flags.DEFINE_config_file(
      "config", None, "optional config file whose data section (test set, bucket masks) "
      "replaces the run's; the model always comes from the workdir's checkpoint",
      lock_config=False)
  flags.DEFINE_string("workdir", None, "trained DiFAI run (its top directory or difai stage)")
  flags.DEFINE_list("buckets", list(eval_options.TABLE1_BUCKETS), "mask buckets to evaluate")
  flags.DEFINE_integer("max_images", None, "evaluate only the first N test images (quick runs; "
                       "FID needs N >= 2)")
  flags.DEFINE_integer("batch_size", 8, "images per batch (rounded up to the device count)")
  flags.DEFINE_integer("num_completions", None, "K completions per input (default 1 + "
                       "min(sefa.top_k, 7))")
  flags.DEFINE_string("lpips", None, "converted LPIPS directory (kind 'lpips', alex)")
  flags.DEFINE_string("inception", None, "converted FID Inception directory")
  flags.DEFINE_boolean("random_metric_weights", False, "random LPIPS / Inception weights for "
                       "tests and demos (tables say RANDOM METRIC WEIGHTS - not comparable)")
  flags.DEFINE_enum("table1_completions", "first", ["first", "all", "best", "mean"], "which "
                    "completions Table 1 (SSIM, MS-SSIM, LPIPS, FID, ...) reads: first = "
                    "completion 0, the unperturbed code w (the paper, section 3.3); all = all K "
                    "per input (FID pooled over them); best = each per-image metric's best of "
                    "the K (FID pooled as all); mean = each completion number k scored alone "
                    "(FID per k), averaged over k")
  flags.DEFINE_enum("diversity_pairs", "paper", ["paper", "all"], "Table 2's pairs: paper = 4 "
                    "seeded pairs per image among the perturbed completions 1..K-1, on "
                    "--diversity_images images; all = every pair of the K completions "
                    "(completion 0 included) of every image")
  flags.DEFINE_integer("diversity_images", eval_options.DIVERSITY_IMAGES, "seeded sample of "
                       "test images for the paper's diversity pairs (the paper: 1K images, 4K "
                       "pairs)")
  flags.DEFINE_boolean("fid_exact", False, "Frechet distance by pytorch-fid's scipy sqrtm "
                       "(slow on CPU) instead of eigenvalues")
  flags.DEFINE_integer("seed", 0, "seed of the per-image SeFa edits and diversity pairs")
  flags.DEFINE_enum("completions", "difai", list(eval_options.COMPLETION_SOURCES), "what is "
                    "scored: difai = the K DiFAI completions; coarse = the run's coarse net "
                    "alone, composited "
                    "(a baseline; K identical copies, so diversity 0)")
  flags.DEFINE_integer("refine_steps", 0, "not the paper: Adam steps fitting pSp's W+ codes to "
                       "each image's known pixels before the edits (README: 'Fitting the codes "
                       "to the known pixels')")
  flags.DEFINE_float("refine_lr", runtime.REFINE_LR, "Adam's learning rate for --refine_steps")
  flags.DEFINE_string("eval_dir", None, "output directory, also for the bucket masks and the "
                      "real-image FID statistics (default WORKDIR/eval)")
  _define_comparison_flags(flags)
  flags.DEFINE_string("feature_probes", None, "module:function returning more feature probes, "
                      "[(eval_metrics.FeatureProbe, variables)], given the image size")
  cli.define_cache_flag()


def _define_comparison_flags(flags):
  """Other methods beside DiFAI: mask files out and in, completions folders, more metrics."""
  flags.DEFINE_list("extra_metrics", [], "more metrics beside the paper's: psnr, lpips_hole "
                    "(LPIPS restricted to the hole), ids (P-IDS / U-IDS), prdc (precision / "
                    "recall / density / coverage); ids and prdc in each Frechet probe's feature "
                    "space (Inception's; the toy recognizer's on the toy domain)")
  flags.DEFINE_enum("fid_resize", "pytorch-fid", ["pytorch-fid", "clean"], "FID's resize to "
                    "299 px: pytorch-fid's bilinear, or clean-fid's (8-bit, Pillow bicubic)")
  flags.DEFINE_string("write_completions", None, "also write every completion as "
                      "DIR/<bucket>/<image_id>_<k>.png (the --completions_dir layout); they are "
                      "then scored as 8-bit files hold them")
  flags.DEFINE_string("export_masks", None, "write the bucket masks of every test image (and "
                      "the test images, manifest.json / .csv) to DIR in --mask_convention, then "
                      "stop; needs --workdir or --config")
  flags.DEFINE_enum("mask_convention", "known1", ["known1", "hole1"], "mask files of "
                    "--export_masks / --masks_dir: known1 = white is known (this package, MAT, "
                    "CoModGAN), hole1 = white is the hole (LaMa)")
  flags.DEFINE_string("masks_dir", None, "evaluation buckets from a mask folder: exported ones "
                      "or a published set (bucket subfolders, else bucketed by hole ratio)")
  flags.DEFINE_string("completions_dir", None, "score another method's completions, "
                      "DIR/<bucket>/<image_id>_<k>.png, instead of a DiFAI run; ground truth "
                      "and masks from --config's test split (or the --workdir run's)")
  flags.DEFINE_string("method", None, "the method's name in the report and in compare "
                      "(default: the --completions_dir folder's name)")
  flags.DEFINE_list("sefa_degrees", [], "the fidelity-diversity frontier: evaluate the run once "
                    "per SeFa degree (each edit moved by exactly that much, random sign) into "
                    "EVAL_DIR/degree_<d>/ and draw EVAL_DIR/frontier.png (e.g. 1,2,4,8); Table 1 "
                    "then reads all K completions unless --table1_completions is best or mean")
  flags.DEFINE_list("frontier_with", [], "evaluation directories (results.json) of other "
                    "methods drawn as single points on the frontier (Telea, the coarse net, "
                    "a --completions_dir score)")
  flags.DEFINE_float("known_tolerance", None, "allowed mean |difference| (8-bit levels) on the "
                     "known pixels of a completion file (default 0 for PNG, 4 for JPEG / WebP)")


def _run_config(FLAGS, of_run: bool = False):  # pylint: disable=invalid-name
  """(image size, data section, ms-ssim weights) of --config, else (or ``of_run``) of the
  --workdir run."""
  if FLAGS.config is not None and not of_run:
    weights = FLAGS.config.get("loss", {}).get("ms_ssim_weights")
    return int(FLAGS.config.image_size), FLAGS.config.data, weights
  from difai_jax.training import checkpoints  # pylint: disable=import-outside-toplevel
  import ml_collections  # pylint: disable=import-outside-toplevel
  saved = ml_collections.ConfigDict(
      checkpoints.latest_meta(checkpoints.find_stage_dir(FLAGS.workdir, "difai"))["config"])
  return int(saved.image_size), saved.data, saved.get("loss", {}).get("ms_ssim_weights")


def _run_inputs(FLAGS, size_of_run):  # pylint: disable=invalid-name
  """(feature probes of --feature_probes, the data section of --config) for the trained run."""
  if not FLAGS.feature_probes and FLAGS.config is None:
    return [], None
  size = size_of_run()
  probes = []
  if FLAGS.feature_probes:
    module, _, function = FLAGS.feature_probes.partition(":")
    probes = list(getattr(importlib.import_module(module), function)(size))
  if FLAGS.config is not None and FLAGS.workdir and int(FLAGS.config.image_size) != size:
    raise ValueError(f"--config has image_size {FLAGS.config.image_size} but the run in "
                     f"{FLAGS.workdir} was trained at {size} px")
  return probes, None if FLAGS.config is None else FLAGS.config.data


def _options(FLAGS):  # pylint: disable=invalid-name
  return eval_options.EvalOptions(
      buckets=tuple(FLAGS.buckets), max_images=FLAGS.max_images, batch_size=FLAGS.batch_size,
      num_completions=FLAGS.num_completions, lpips_dir=FLAGS.lpips,
      inception_dir=FLAGS.inception, random_metric_weights=FLAGS.random_metric_weights,
      table1_completions=FLAGS.table1_completions, diversity_pairs=FLAGS.diversity_pairs,
      diversity_images=FLAGS.diversity_images, fid_exact=FLAGS.fid_exact, seed=FLAGS.seed,
      completions=FLAGS.completions, extra_metrics=tuple(FLAGS.extra_metrics),
      fid_resize=FLAGS.fid_resize, write_completions=FLAGS.write_completions,
      masks_dir=FLAGS.masks_dir, mask_convention=FLAGS.mask_convention,
      refine_steps=FLAGS.refine_steps, refine_lr=FLAGS.refine_lr)


def _export_masks(FLAGS, opts) -> int:  # pylint: disable=invalid-name
  """--export_masks: the bucket masks (and test images) as files; nothing is scored."""
  cli.check_output_dir(FLAGS.export_masks, "--export_masks")
  size, data, _ = _run_config(FLAGS)
  from difai_jax.data import sources  # pylint: disable=import-outside-toplevel
  from difai_jax.evaluation import mask_exchange  # pylint: disable=import-outside-toplevel
  data = mask_exchange.placed_data(data, FLAGS.export_masks)
  source = sources.make_source(data, "test", size, verbose=False)
  n = len(source) if opts.max_images is None else min(opts.max_images, len(source))
  mask_exchange.export_masks(data, size, list(opts.buckets), n, FLAGS.export_masks,
                             FLAGS.mask_convention, source=source)
  return 0


def _score_folder(FLAGS, opts) -> int:  # pylint: disable=invalid-name
  """--completions_dir: another method's completions, scored as a DiFAI run."""
  eval_dir = FLAGS.eval_dir or os.path.join(FLAGS.completions_dir, "eval")
  eval_options.check_options(opts, eval_dir, "--eval_dir" if FLAGS.eval_dir else
                             "--eval_dir (default COMPLETIONS_DIR/eval)")
  size, data, weights = _run_config(FLAGS)
  probes, _ = _run_inputs(FLAGS, lambda: size)
  cli.enable_compilation_cache(FLAGS.compilation_cache)
  from difai_jax.evaluation import score_folder  # pylint: disable=import-outside-toplevel
  score_folder.score_folder(FLAGS.completions_dir, opts, data_config=data, image_size=size,
                            eval_dir=eval_dir, probes=probes, masks_dir=opts.masks_dir,
                            mask_convention=opts.mask_convention,
                            known_tolerance=FLAGS.known_tolerance, method=FLAGS.method,
                            ms_ssim_config=tuple(weights) if weights else None)
  return 0


def _sefa_degrees(FLAGS) -> list[float]:  # pylint: disable=invalid-name
  """--sefa_degrees as numbers, checked before anything loads."""
  try:
    degrees = [float(d) for d in FLAGS.sefa_degrees]
  except ValueError:
    raise cli.CliError(f"--sefa_degrees must be numbers, e.g. 1,2,4,8; got "
                       f"{','.join(FLAGS.sefa_degrees)}") from None
  if degrees:
    try:
      eval_options.check_degrees(degrees)
    except ValueError as e:
      raise cli.CliError(f"--sefa_degrees: {e}") from None
  if FLAGS.frontier_with and not degrees:
    raise cli.CliError("--frontier_with adds points to the frontier of --sefa_degrees; pass "
                       "--sefa_degrees too")
  for d in FLAGS.frontier_with:
    if not os.path.isfile(os.path.join(d, "results.json")):
      raise cli.CliError(f"--frontier_with {d}: no results.json there (an evaluate --eval_dir "
                         "or --completions_dir output)")
  return degrees


def main(argv):
  from absl import flags  # pylint: disable=import-outside-toplevel
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  if len(argv) > 1:
    raise cli.CliError(f"unexpected arguments {argv[1:]}")
  opts = _options(FLAGS)
  degrees = _sefa_degrees(FLAGS)
  if degrees and (FLAGS.export_masks or FLAGS.completions_dir or
                  FLAGS.completions != "difai"):
    raise cli.CliError("--sefa_degrees sweeps a DiFAI run's SeFa edits; it does not apply to "
                       "--export_masks, --completions_dir or --completions coarse")
  if FLAGS.export_masks or FLAGS.completions_dir:
    if not FLAGS.workdir and FLAGS.config is None:
      raise cli.CliError("--export_masks / --completions_dir need the test split: pass --config "
                         "(its data section and image_size) or --workdir (a trained run's)")
    return _export_masks(FLAGS, opts) if FLAGS.export_masks else _score_folder(FLAGS, opts)
  if not FLAGS.workdir:
    raise cli.CliError("--workdir is required (a trained DiFAI run), or --completions_dir "
                       "(another method's completions); see --help")
  eval_options.check_options(opts, FLAGS.eval_dir or os.path.join(FLAGS.workdir, "eval"),
                "--eval_dir" if FLAGS.eval_dir else "--eval_dir (default WORKDIR/eval)")
  probes, data_config = _run_inputs(FLAGS, lambda: _run_config(FLAGS, of_run=True)[0])
  cli.enable_compilation_cache(FLAGS.compilation_cache)
  # JAX loads here, after the checks.
  if degrees:
    from difai_jax.evaluation import frontier  # pylint: disable=import-outside-toplevel
    frontier.sweep(FLAGS.workdir, opts, degrees, data_config=data_config,
                   eval_dir=FLAGS.eval_dir, probes=probes, points=FLAGS.frontier_with)
    return 0
  from difai_jax.evaluation import loop as eval_loop  # pylint: disable=import-outside-toplevel
  eval_loop.evaluate(FLAGS.workdir, opts, data_config=data_config, eval_dir=FLAGS.eval_dir,
           probes=probes)
  return 0


if __name__ == "__main__":
  _define_flags()
  cli.run(main, user_errors=(ValueError, FileNotFoundError))
