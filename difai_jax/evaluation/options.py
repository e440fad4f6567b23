"""What an evaluation measures (:class:`EvalOptions`), the checks made before any model loads,
and the paper's numbers each report is printed beside (Yoon et al., Tables 1-3).

Imports nothing heavy: ``python -m difai_jax.evaluate`` answers a bad flag before JAX loads.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from difai_jax import runtime
from difai_jax.data import masks as masks_lib
from difai_jax.evaluation import report as eval_report

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
  extra_metrics: tuple[str, ...] = ()    # eval_report.EXTRA_METRICS beside the paper's
  fid_resize: str = "pytorch-fid"        # "pytorch-fid" | "clean" (clean-fid's bicubic resize)
  write_completions: str | None = None   # write DIR/<bucket>/<image_id>_<k>.png, scored as 8-bit
  masks_dir: str | None = None           # bucket masks from a folder (evaluation.mask_exchange)
  mask_convention: str = "known1"        # of --masks_dir: known1 (white = known) | hole1
  # SeFa strength: every edit moves by exactly this |degree| (random sign) instead of the run's
  # [min_degree, max_degree]; None: the run's range. --sefa_degrees sweeps it (frontier.py).
  sefa_degree: float | None = None
  # Not the paper: Adam steps fitting pSp's codes to each image's known pixels before the edits
  # (pipeline.fit_codes_to_known); 0: none, as the paper.
  refine_steps: int = 0
  refine_lr: float = runtime.REFINE_LR


# ----------------------------------------------------------------------------------------------
# Checks before any work (no model loaded yet)
# ----------------------------------------------------------------------------------------------

def check_degrees(degrees: Sequence[float]) -> None:
  """Raises a ValueError unless ``degrees`` are one or more distinct positive numbers (each SeFa
  edit moves by exactly its degree, with a random sign)."""
  if not degrees or any(not d > 0 for d in degrees) or len(set(degrees)) != len(degrees):
    raise ValueError(f"SeFa degrees must be distinct positive numbers (a random sign is drawn "
                     f"per edit), e.g. 1,2,4,8; got {','.join(f'{d:g}' for d in degrees)}")


def check_options(opts: EvalOptions, out_dir: str, flag: str = "--eval_dir",
                  frechet_probes: int = 0) -> None:
  """Raises ``runtime.CliError`` (one line for the user) for options that cannot work, before any
  model is loaded; creates nothing."""
  unknown = [b for b in opts.buckets if b not in masks_lib.EVAL_BUCKET_RANGES]
  if unknown or not opts.buckets:
    raise runtime.CliError(f"unknown mask bucket(s) {unknown}; choose from "
                           f"{masks_lib.EVAL_BUCKET_NAMES}")
  if opts.table1_completions not in eval_report.TABLE1_READINGS:
    raise runtime.CliError("--table1_completions must be first or all, best or mean, not "
                           f"{opts.table1_completions}")
  unknown = sorted(set(opts.extra_metrics) - set(eval_report.EXTRA_METRICS))
  if unknown:
    raise runtime.CliError(f"unknown --extra_metrics {unknown}; choose from "
                           f"{', '.join(eval_report.EXTRA_METRICS)}")
  if opts.fid_resize not in eval_report.FID_RESIZES:
    raise runtime.CliError(f"--fid_resize must be one of {', '.join(eval_report.FID_RESIZES)}, "
                           f"not {opts.fid_resize}")
  if opts.completions not in COMPLETION_SOURCES:
    raise runtime.CliError(f"--completions must be one of {list(COMPLETION_SOURCES)}, not "
                       f"{opts.completions}")
  problem = runtime.refine_problem(opts.refine_steps, opts.refine_lr)
  if problem:
    raise runtime.CliError(problem)
  if opts.refine_steps and opts.completions != "difai":
    raise runtime.CliError("--refine_steps fits the codes of DiFAI's style images; "
                           f"--completions {opts.completions} has none")
  if opts.diversity_pairs not in ("paper", "all"):
    raise runtime.CliError(f"--diversity_pairs must be paper or all, not {opts.diversity_pairs}")
  if opts.sefa_degree is not None:
    try:
      check_degrees([opts.sefa_degree])
    except ValueError as e:
      raise runtime.CliError(str(e)) from None
  for name in ("batch_size", "diversity_images", "max_images"):
    if getattr(opts, name) is not None and getattr(opts, name) < 1:
      raise runtime.CliError(f"--{name} must be at least 1, got {getattr(opts, name)}")
  fid = opts.inception_dir or opts.random_metric_weights or frechet_probes
  if fid and opts.max_images == 1:
    raise runtime.CliError("--max_images 1: FID needs at least 2 images (a covariance of their "
                       "features); pass --max_images 2 or more, or leave out --inception / "
                       "--random_metric_weights for SSIM / LPIPS alone")
  runtime.check_output_dir(out_dir, flag)


def weights_description(config, step: int) -> str:
  """Which generator weights a run's checkpoint gives evaluation (checkpoints.load_stage_params
  takes the EMA when the run kept one, i.e. when train.ema_decay > 0)."""
  decay = float(config.train.get("ema_decay", 0.0) or 0.0)
  kind = (f"EMA generator params (train.ema_decay = {decay:g})" if decay
          else "raw generator params (train.ema_decay = 0: no EMA kept)")
  return f"{kind}, checkpoint step {step}"
