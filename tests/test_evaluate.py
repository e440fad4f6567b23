"""Evaluation: the section 3.3 protocol, reports with the paper's numbers, compare, bad inputs.

The protocol is pinned on the metric side alone (``eval_metrics.score_completions`` on made-up
completions, with a mean-|x - y| "LPIPS" and pixel-pooling feature probes): Table 1 reads
completion 0 only, diversity reads 4 seeded pairs of perturbed completions per image. The CLI
runs as a subprocess (``python -m difai_jax.evaluate``), as users run it: once on a tiny trained
run (tests/tiny_config.py, 2 + 2 steps, trained once per test session), and on bad inputs, which
must fail before any model is loaded (the workdir given there does not even exist).
"""

# pylint: disable=import-outside-toplevel
import contextlib
import csv
import fcntl
import json
import os
import re
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image
import pytest

from difai_jax import cli
from difai_jax.evaluation import comparison
from difai_jax.evaluation import loop as eval_loop
from difai_jax.evaluation import mask_exchange
from difai_jax.evaluation import scoring as eval_metrics
from difai_jax.evaluation import report as eval_report
from difai_jax.evaluation import options as eval_options
from difai_jax.evaluation.metrics import diversity
from tests import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_TRAIN_ARGS = ["--config", "tests/tiny_config.py", "--config.train.num_steps.coarse=2",
                   "--config.train.num_steps.difai=2"]
# Few bucket masks: writing the default 2,000 per bucket takes over a minute on 2 cores.
TINY_EVAL_ARGS = ["--config", "tests/tiny_config.py", "--config.data.masks_per_bucket=4"]


def run_module(module: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=timeout, check=False)


@contextlib.contextmanager
def _locked(path: str):
  with open(path, "w", encoding="utf-8") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def _trained_run(tmp_path_factory, name: str, train_args) -> str:
  base = tmp_path_factory.getbasetemp()
  # Under xdist every worker has its own basetemp inside the session's directory.
  root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
  workdir = os.path.join(root, name)
  with _locked(os.path.join(root, f"{name}.lock")):
    done = os.path.join(workdir, "TRAINED")
    if not os.path.exists(done):
      proc = run_module("difai_jax.train", "--workdir", workdir, *train_args)
      assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
      open(done, "w", encoding="utf-8").close()
  return workdir


def trained_tiny_run(tmp_path_factory) -> str:
  """A tiny run (tests/tiny_config.py, 32 px) trained for 2 + 2 steps, once per test session."""
  return _trained_run(tmp_path_factory, "tiny_run_2steps", TINY_TRAIN_ARGS)


# ---- the protocol, on the metric side ----

class MeanAbs:
  """Stands in for the LPIPS module: ``apply(variables, x, y) -> (N,)`` mean |x - y|."""

  @staticmethod
  def apply(variables, x, y):
    del variables
    return jnp.mean(jnp.abs(x - y), axis=(1, 2, 3))


def pooled_pixels(variables, images):
  """(N, H, W, 3) -> (N, D): 8 x 8 mean-pooled pixels through a fixed projection."""
  n, h, w, _ = images.shape
  pooled = images.reshape(n, 8, h // 8, 8, w // 8, 3).mean(axis=(2, 4)).reshape(n, -1)
  return pooled @ variables["projection"]


def mean_colour(variables, images):
  del variables
  return images.mean(axis=(1, 2))                                   # (N, 3)


def toy_probes(image_size: int):
  """``--feature_probes`` factory: a Frechet probe and a per-completion one (a recognizer's
  features and attribute predictions would plug in the same way)."""
  del image_size
  projection = np.random.default_rng(0).normal(size=(8 * 8 * 3, 6)).astype(np.float32)
  return [(eval_metrics.FeatureProbe("toy_fid", pooled_pixels), {"projection": projection}),
          (eval_metrics.FeatureProbe("toy_attributes", mean_colour, frechet=False,
                                     per_completion=True), {})]


K, N, SIZE = 5, 3, 32


@pytest.fixture(scope="module")
def scored():
  """One jitted ``score_completions`` per reading, shared by the protocol tests."""
  probes = tuple(p for p, _ in toy_probes(SIZE))
  variables = {"lpips": None, "probes": {p.name: v for p, v in toy_probes(SIZE)}}
  fns = {}
  for table1_all in (False, True):
    for mode in ("paper", "all"):
      scorer = eval_metrics.Scorer(table1_all=table1_all, diversity=mode, seed=0,
                                   ms_ssim_weights=(0.1356, 0.8644), lpips=MeanAbs(),
                                   probes=probes)
      fns[table1_all, mode] = jax.jit(
          lambda c, i, x, s=scorer: eval_metrics.score_completions(c, i, x, variables, s))
  return fns


def _completions(seed=0):
  rng = np.random.default_rng(seed)
  image = rng.uniform(-1, 1, (N, SIZE, SIZE, 3)).astype(np.float32)
  completions = np.clip(image + rng.normal(0, 0.2, (K, N, SIZE, SIZE, 3)), -1, 1)
  return completions.astype(np.float32), image, np.arange(10, 10 + N, dtype=np.int32)


def test_table1_reads_completion_0_only(scored):
  completions, image, index = _completions()
  base = scored[False, "paper"](completions, image, index)
  corrupted = completions.copy()
  corrupted[1:] = np.random.default_rng(1).uniform(-1, 1, corrupted[1:].shape)
  other = scored[False, "paper"](corrupted, image, index)
  for name in ("ssim", "ms_ssim", "lpips", "real/toy_fid", "fake/toy_fid"):
    np.testing.assert_array_equal(np.asarray(other[name]), np.asarray(base[name]), name)
  assert base["fake/toy_fid"].shape == (N, 1, 6)                  # one completion per image
  assert not np.allclose(other["diversity"], base["diversity"])   # diversity reads them
  np.testing.assert_allclose(base["lpips"], np.abs(completions[0] - image).mean(axis=(1, 2, 3)),
                             rtol=1e-6)
  # Per-completion probe outputs: every completion, (N, K, D).
  np.testing.assert_allclose(base["completions/toy_attributes"],
                             completions.mean(axis=(2, 3)).swapaxes(0, 1), rtol=1e-5, atol=1e-6)
  # --table1_completions=all: the mean over all K completions, FID pooled over them.
  pooled = scored[True, "paper"](completions, image, index)
  assert pooled["fake/toy_fid"].shape == (N, K, 6)
  np.testing.assert_allclose(pooled["lpips"],
                             np.abs(completions - image).mean(axis=(2, 3, 4)).mean(axis=0),
                             rtol=1e-5)


def test_diversity_reads_4_seeded_pairs_of_perturbed_completions(scored):
  completions, image, index = _completions()
  base = scored[False, "paper"](completions, image, index)
  corrupted = completions.copy()
  corrupted[0] = -completions[0]                                  # completion 0 only
  np.testing.assert_array_equal(scored[False, "paper"](corrupted, image, index)["diversity"],
                                base["diversity"])
  # The earlier reading (--diversity_pairs=all) includes completion 0: it moves.
  old = scored[False, "all"](completions, image, index)["diversity"]
  assert not np.allclose(scored[False, "all"](corrupted, image, index)["diversity"], old)

  scorer = eval_metrics.Scorer(seed=0)
  pairs = np.asarray(eval_metrics.diversity_pairs(jnp.asarray(index), K, scorer))
  assert pairs.shape == (N, 4, 2)
  assert pairs.min() >= 1 and pairs.max() < K and np.all(pairs[..., 0] < pairs[..., 1])
  assert all(len({tuple(p) for p in image_pairs}) == 4 for image_pairs in pairs)   # distinct
  # The diversity value is the mean |a - b| over exactly those 4 pairs.
  expected = [np.mean([np.abs(completions[i, n] - completions[j, n]).mean()
                       for i, j in pairs[n]]) for n in range(N)]
  np.testing.assert_allclose(base["diversity"], expected, rtol=1e-5)
  # Seeded by the image's index: the same image gets the same pairs in any batch position.
  shuffled = np.asarray(eval_metrics.diversity_pairs(jnp.asarray(index[::-1]), K, scorer))
  np.testing.assert_array_equal(shuffled, pairs[::-1])
  reseeded = eval_metrics.diversity_pairs(jnp.asarray(index), K, eval_metrics.Scorer(seed=1))
  assert not np.array_equal(np.asarray(reseeded), pairs)
  # K = 3: a single perturbed pair, drawn 4 times; K = 2: no perturbed pair at all.
  three = np.asarray(diversity.paper_pairs(jax.random.split(jax.random.key(0), 2), 3))
  assert three.tolist() == [[[1, 2]] * 4] * 2
  with pytest.raises(ValueError, match="K >= 3"):
    diversity.paper_pairs(jax.random.split(jax.random.key(0), 2), 2)


def test_diversity_sample_is_seeded_and_1k_by_default():
  opts = eval_options.EvalOptions()
  sample = eval_loop.diversity_sample(2000, opts)
  assert sample.shape == (2000,) and sample.sum() == 1000
  np.testing.assert_array_equal(sample, eval_loop.diversity_sample(2000, opts))
  other = eval_loop.diversity_sample(2000, eval_options.EvalOptions(seed=1))
  assert not np.array_equal(sample, other)
  assert eval_loop.diversity_sample(1000, opts) is None          # every image when <= 1K
  assert eval_loop.diversity_sample(2000, eval_options.EvalOptions(diversity_pairs="all")) is None


def test_bucket_scores_accumulate_the_protocol(scored):
  completions, image, index = _completions()
  probes = tuple(p for p, _ in toy_probes(SIZE))
  scorer = eval_metrics.Scorer(lpips=MeanAbs(), probes=probes)
  out = jax.device_get(scored[False, "paper"](completions, image, index))
  selected = np.zeros(20, bool)
  selected[[10, 12]] = True                                     # the diversity sample
  scores = eval_metrics.BucketScores(scorer, ["toy_fid"], selected)
  valid = np.array([True, True, False])                         # a padded last row
  hole = np.array([0.2, 0.3, 0.9])
  scores.add(out, valid, index, hole)
  scores.add(out, np.ones(3, bool), index, hole)
  real = scores.real_statistics()
  assert set(real) == {"toy_fid"} and real["toy_fid"].n == 5
  row = scores.row(real)
  assert row["n_images"] == 5 and row["hole_ratio"] == pytest.approx(np.mean([.2, .3, .2, .3,
                                                                              .9]))
  assert row["toy_fid_samples"] == 5                            # completion 0 of each image
  assert row["ssim"] == pytest.approx(np.mean(np.r_[out["ssim"][:2], out["ssim"]]), rel=1e-6)
  d = out["diversity"]
  assert row["diversity"] == pytest.approx(np.mean([d[0], d[0], d[2]]), rel=1e-6)
  assert row["diversity_images"] == 3
  feats = np.concatenate([out["fake/toy_fid"][:2, 0], out["fake/toy_fid"][:, 0]])
  reals = np.concatenate([out["real/toy_fid"][:2], out["real/toy_fid"]])
  assert row["toy_fid"] == pytest.approx(
      eval_metrics.fid_lib.fid_from_features(reals, feats), rel=1e-6, abs=1e-9)
  saved = scores.completion_outputs()["toy_attributes"]
  assert saved["index"].tolist() == [10, 11, 10, 11, 12] and saved["values"].shape == (5, K, 3)


def test_readings_and_their_notes_follow_the_flags():
  nets = eval_metrics.MetricNets(lpips=MeanAbs())
  paper = eval_options.EvalOptions()
  scorer, notes = eval_loop.make_scorer(paper, nets, 5, 32, (0.1356, 0.8644))
  assert not scorer.table1_all and scorer.diversity == "paper" and scorer.pairs_per_image == 4
  assert notes == ["MS-SSIM with 2 scales (weights [0.1356, 0.8644]): 32 px is too small for "
                   "the standard 5 (they need > 160 px)"]
  old = eval_options.EvalOptions(table1_completions="all", diversity_pairs="all")
  scorer, _ = eval_loop.make_scorer(old, nets, 2, 256, eval_metrics.ssim_lib.MS_SSIM_WEIGHTS)
  assert scorer.table1_all and scorer.diversity == "all"
  scorer, notes = eval_loop.make_scorer(paper, nets, 2, 256, None)
  assert scorer.diversity == "off" and any("diversity skipped: K = 2" in n for n in notes)
  assert eval_metrics.reported_metrics(scorer) == ["ssim", "lpips"]
  _, notes = eval_loop.make_scorer(paper, nets, 3, 256, None)
  assert any("drawn with replacement" in n for n in notes)


def test_metric_nets_without_weights_name_the_conversions():
  nets = eval_metrics.load_metric_nets(None, None, False, 32)
  assert nets.lpips is None and nets.probes == []
  assert any("python -m weights_conversion.lpips" in n for n in nets.notes)
  assert any("python -m weights_conversion.inception" in n for n in nets.notes)
  random = eval_metrics.load_metric_nets(None, None, True, 32)
  (probe, variables), = random.probes
  assert probe.name == "fid" and probe.frechet and probe.cache_tag == "_random1"
  assert variables["params"]["Conv2d_1a_3x3"]["conv"]["kernel"].shape == (3, 3, 3, 32)


def test_ms_ssim_scales_follow_the_image_size():
  assert eval_metrics.ms_ssim_weights(256) == eval_metrics.ssim_lib.MS_SSIM_WEIGHTS
  assert eval_metrics.ms_ssim_weights(64, (0.2, 0.3, 0.5)) == (0.2, 0.3, 0.5)
  w = eval_metrics.ms_ssim_weights(100)             # 4 scales fit (> 80 px), renormalised
  assert len(w) == 4 and sum(w) == pytest.approx(1.0)
  assert w[0] / w[1] == pytest.approx(0.0448 / 0.2856)
  assert eval_metrics.ms_ssim_weights(10) is None


def test_progress_line_never_says_nan():
  lines = []
  progress = eval_loop.Progress(total=8, log=lines.append, every_s=0.0)
  progress.update("10-20", 4, last=False)          # the first batch: no rate yet
  progress.update("10-20", 4, last=True)           # nothing new since: still no rate
  progress.first = (progress.first[0] - 2.0, 4)    # 2 s later, 4 more images
  progress.update("40-50", 8, last=True)
  assert "first batch (compiling) took" in lines[0] and "nan" not in " ".join(lines)
  assert lines[-1] == "[40-50] 8/8 images of all buckets | 2.00 img/s | ETA 0h00m00s"


def test_weights_description_says_ema_or_raw():
  config = ml_collections.ConfigDict({"train": {"ema_decay": 0.999}})
  assert eval_options.weights_description(config, 7) == \
      "EMA generator params (train.ema_decay = 0.999), checkpoint step 7"
  config.train.ema_decay = 0.0
  assert eval_options.weights_description(config, 7).startswith("raw generator params")


# ---- reports and compare ----

def _report(norm: str, ssim: float, **protocol) -> dict:
  label, paper, cites = eval_options.paper_column(norm)
  buckets = ("quickdraw", "20-30")
  return {
      "title": eval_report.title(f"runs/{norm}", 10, False), "workdir": f"runs/{norm}",
      "step": 10, "weights": "EMA generator params", "generator_norm": norm, "image_size": 32,
      "num_images": 8, "num_completions": 5, "random_metric_weights": False, "seed": 0,
      "protocol": {"table1_completions": "first", "diversity_pairs": "paper",
                   "pairs_per_image": 4, "diversity_images": 8, **protocol},
      "notes": [], "metrics": ["ssim", "lpips", "fid", "diversity"],
      "results": {b: {"ssim": ssim, "lpips": 0.1, "fid": 30.0, "diversity": 0.09,
                      "n_images": 8, "hole_ratio": 0.25} for b in buckets},
      "paper_label": label, "paper_citations": cites,
      "paper": {b: paper.get(b, {}) for b in buckets}}


def test_paper_numbers_are_the_printed_tables():
  assert eval_options.PAPER_NUMBERS["quickdraw"] == {"ssim": 0.833, "lpips": 0.049, "fid": 25.95}
  assert eval_options.PAPER_NUMBERS["30-40"]["diversity"] == 0.1313
  assert eval_options.PAPER_NUMBERS["40-50"]["fid"] == 64.86
  label, numbers, cites = eval_options.paper_column("spade")
  assert label == "SPADE decoder" and numbers == {"quickdraw": {"ssim": 0.816, "lpips": 0.056,
                                                                "fid": 27.96}}
  assert set(cites.values()) == {"Yoon et al., Table 3"}
  assert eval_options.paper_column("sparn")[2]["diversity"] == "Yoon et al., Table 2"
  # The coarse net alone is put beside MLGN's column of Table 1.
  label, numbers, _ = eval_options.paper_column("sparn", "coarse")
  assert label == "MLGN" and numbers["30-40"] == {"ssim": 0.706, "lpips": 0.148, "fid": 52.54}


def test_reports_put_the_paper_beside_ours(tmp_path):
  eval_report.write_reports(_report("sparn", 0.5), str(tmp_path))
  md = (tmp_path / "results.md").read_text(encoding="utf-8")
  assert "| 20-30 | 0.5000 | 0.777 | 0.1000 | 0.084 | 30.0000 | 34.55 | 0.0900 | 0.0849 |" in md
  assert "Yoon et al., Table 1; Yoon et al., Table 2" in md
  assert "4 seeded pairs of perturbed completions" in md and "completion 0" in md
  lines = (tmp_path / "results.csv").read_text(encoding="utf-8").splitlines()
  rows = {(r["bucket"], r["metric"]): r for r in csv.DictReader(lines[1:])}
  assert rows["20-30", "diversity"]["paper"] == "0.0849"
  assert rows["20-30", "diversity"]["paper_source"] == "Yoon et al., Table 2"
  assert rows["quickdraw", "diversity"]["paper"] == ""          # Table 2 has no Quickdraw
  with open(tmp_path / "results.json", encoding="utf-8") as f:
    assert json.load(f)["paper"]["quickdraw"]["fid"] == 25.95
  assert Image.open(tmp_path / "chart.png").size[1] > 4 * 200   # a panel per metric


def test_compare_puts_two_runs_side_by_side(tmp_path, capsys):
  eval_report.write_reports(_report("sparn", 0.5), str(tmp_path / "a"))
  eval_report.write_reports(_report("spade", 0.4, diversity_images=4), str(tmp_path / "b"))
  table = comparison.run([str(tmp_path / "a"), str(tmp_path / "b")], buckets=["quickdraw"],
                      out_dir=str(tmp_path / "cmp"))
  printed = capsys.readouterr().out
  assert table["names"] == ["sparn", "spade"]
  fid = [r for r in table["rows"] if r["metric"] == "fid"][0]
  assert fid == {"bucket": "quickdraw", "metric": "fid", "sparn": 30.0, "sparn (paper)": 25.95,
                 "spade": 30.0, "spade (paper)": 27.96}
  assert "| quickdraw | SSIM ↑ | 0.5000 | 0.833 | 0.4000 | 0.816 |" in printed
  assert "Yoon et al., Table 1" in printed and "Yoon et al., Table 3" in printed
  assert any(n.startswith("protocol differs") for n in table["notes"])
  assert (tmp_path / "cmp" / "compare.csv").read_text(encoding="utf-8").startswith(
      "bucket,metric,sparn,sparn (paper),spade,spade (paper)")
  # The CLI (loads no network): names given, and a missing directory in one line.
  proc = run_module("difai_jax.compare", "--eval_dirs", f"{tmp_path}/a,{tmp_path}/b",
                    "--names", "DiFAI,SPADE")
  assert proc.returncode == 0 and "| DiFAI | DiFAI (paper) | SPADE |" in proc.stdout, proc.stderr
  proc = run_module("difai_jax.compare", "--eval_dirs", f"{tmp_path}/a,{tmp_path}/nothing")
  assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0
  assert "nothing has no results.json" in proc.stderr


# ---- the CLI on bad inputs: one line, before any model is loaded ----

@pytest.mark.parametrize("case", ["file_parent", "read_only", "max_images_1"])
def test_bad_inputs_fail_at_once_in_one_line(case, tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("x")
  args = {"file_parent": ["--eval_dir", f"{blocker}/eval"],
          "read_only": ["--eval_dir", "/proc/difai_eval"],      # not writable, even for root
          "max_images_1": ["--eval_dir", str(tmp_path / "out"), "--max_images", "1",
                           "--random_metric_weights"]}[case]
  start = time.time()
  proc = run_module("difai_jax.evaluate", "--workdir", str(tmp_path / "no_such_run"), *args)
  elapsed = time.time() - start
  message = {"file_parent": f"--eval_dir {blocker}/eval cannot be created: {blocker} is a file, "
                            "not a folder",
             "read_only": "--eval_dir /proc/difai_eval cannot be written (in /proc, where it "
                          "would be created)",
             "max_images_1": "--max_images 1: FID needs at least 2 images"}[case]
  assert proc.returncode == 1, proc.stdout + proc.stderr
  assert proc.stderr.startswith(f"error: {message}"), proc.stderr
  assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
  assert sorted(os.listdir(tmp_path)) == ["a_file"] and elapsed < 60   # nothing written


def test_options_are_checked_before_any_work(tmp_path):
  with pytest.raises(cli.CliError, match=r"^--eval_dir \(default WORKDIR/eval\) /proc/run/eval "
                     r"cannot be written \(in /proc, where it would be created\)"):
    eval_loop.evaluate("/proc/run")                  # a read-only workdir, default eval_dir
  for bad, message in (({"buckets": ("10-20", "5-10")}, "unknown mask bucket"),
                       ({"table1_completions": "some"}, "first or all"),
                       ({"diversity_images": 0}, "at least 1"),
                       ({"max_images": 1, "inception_dir": "x"}, "FID needs at least 2"),
                       ({"refine_steps": -1}, "refine_steps must be >= 0"),
                       ({"refine_steps": 3, "refine_lr": 0.0}, "refine_lr > 0; got 3 and 0.0"),
                       ({"refine_steps": 3, "completions": "coarse"}, "coarse has none")):
    with pytest.raises(cli.CliError, match=message):
      eval_options.check_options(eval_options.EvalOptions(**bad), str(tmp_path))
  eval_options.check_options(eval_options.EvalOptions(max_images=1), str(tmp_path / "new" / "dir"))
  assert os.listdir(tmp_path) == []                 # checking created nothing


def test_help_exits_0_and_names_the_readings():
  proc = run_module("difai_jax.evaluate", "--help")
  assert proc.returncode == 0, proc.stderr
  for flag in ("--table1_completions", "--diversity_pairs", "--diversity_images",
               "--feature_probes", "--eval_dir"):
    assert flag in proc.stdout


# ---- the CLI on a trained run ----

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  return trained_tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def lpips_dir(tmp_path_factory):
  """Random LPIPS weights saved as a converted directory (no Inception: its compile is slow)."""
  from difai_jax import pretrained
  from difai_jax.evaluation.metrics import lpips as lpips_lib
  x = jax.ShapeDtypeStruct((1, SIZE, SIZE, 3), jnp.float32)
  variables = eval_metrics.random_variables(lpips_lib.LPIPS(net="alex"), x, x, seed=0)
  path = str(tmp_path_factory.mktemp("lpips") / "lpips_alex")
  pretrained.save(path, "lpips", {"net": "alex"}, variables)
  return path


def test_a_run_records_its_frozen_psp_and_refuses_another_decoder(tiny_run):
  """A DiFAI run keeps the fingerprints of the pSp it trained against; loading it with a pSp of
  another decoder is refused, with another encoder it warns, with its own it is silent."""
  import warnings
  from difai_jax.nn import fingerprint
  from difai_jax.training import checkpoints
  meta = checkpoints.latest_meta(checkpoints.find_stage_dir(tiny_run, "difai"))
  recorded = meta["provenance"]
  assert recorded["psp"] == f"random (seed {meta['config']['seed']})"
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    variables = checkpoints.load_difai(tiny_run).variables["psp"]
  assert recorded["psp_fingerprint"] == fingerprint(variables)
  params = variables["params"]
  encoder = {**variables, "params": {**params, "encoder": jax.tree.map(
      lambda a: a * 0.5, params["encoder"])}}
  with pytest.warns(UserWarning, match="same decoder, another encoder"):
    checkpoints.check_psp(meta, encoder, "run")
  decoder = {**variables, "params": {**params, "decoder": jax.tree.map(
      lambda a: a * 0.5, params["decoder"])}}
  with pytest.raises(ValueError, match="StyleGAN2 decoder is not the one"):
    checkpoints.check_psp(meta, decoder, "run")
  checkpoints.check_psp({**meta, "provenance": None}, decoder, "run")   # an older run: as is


def test_coarse_baseline_scores_k_copies_of_the_coarse_composite(tiny_run, monkeypatch):
  from difai_jax.training import checkpoints
  from difai_jax import pipeline
  inference = checkpoints.load_difai(tiny_run)
  spec = eval_loop.completion_spec(
      inference, eval_options.EvalOptions(num_completions=3, completions="coarse"))
  seen = {}

  def keep(completions, image, index, variables, scorer, mask=None):
    del image, index, variables, scorer, mask
    seen["completions"] = completions
    return {}

  rng = np.random.default_rng(0)
  image = rng.uniform(-1, 1, (2, SIZE, SIZE, 3)).astype(np.float32)
  mask = np.ones((2, SIZE, SIZE, 1), np.float32)
  mask[:, 8:20, 10:24] = 0
  monkeypatch.setattr(eval_metrics, "score_completions", keep)
  eval_loop.eval_batch(inference.variables, None, image, mask, np.arange(2, dtype=np.int32),
                       models=inference.models, spec=spec, scorer=None)
  got = np.asarray(seen["completions"])
  i_masked = pipeline.masked_image(image, mask)
  coarse = pipeline.coarse_completion(inference.models.coarse, inference.variables["coarse"],
                                      i_masked, mask)
  assert got.shape == (3, 2, SIZE, SIZE, 3)
  np.testing.assert_array_equal(got[0], got[2])                 # K identical copies
  np.testing.assert_allclose(got[0], pipeline.composite(i_masked, coarse, mask), atol=1e-6)
  np.testing.assert_array_equal(got[1][mask[..., 0] > 0], image[mask[..., 0] > 0])


def test_refine_steps_reach_the_pipeline(tiny_run, monkeypatch):
  """--refine_steps: eval_batch makes its completions with pipeline.inpaint's fitting of the
  codes to the known pixels (what that fitting does: tests/test_pipeline.py)."""
  from difai_jax.training import checkpoints
  inference = checkpoints.load_difai(tiny_run)
  spec = eval_loop.completion_spec(inference, eval_options.EvalOptions(
      num_completions=2, refine_steps=3, refine_lr=0.05))
  assert spec.refine == (3, 0.05)
  assert eval_loop.completion_spec(inference, eval_options.EvalOptions()).refine[0] == 0
  calls = []

  def inpaint(*args, **kwargs):
    calls.append(kwargs)
    return {"completions": np.zeros((2, 2, SIZE, SIZE, 3), np.float32)}

  monkeypatch.setattr(eval_loop.pipeline, "inpaint", inpaint)
  monkeypatch.setattr(eval_metrics, "score_completions", lambda *a, **k: {})
  image = np.zeros((2, SIZE, SIZE, 3), np.float32)
  mask = np.ones((2, SIZE, SIZE, 1), np.float32)
  eval_loop.eval_batch(inference.variables, None, image, mask, np.arange(2, dtype=np.int32),
                       models=inference.models, spec=spec, scorer=None)
  assert calls and calls[0]["refine_steps"] == 3 and calls[0]["refine_lr"] == 0.05


def _tree(path):
  return sorted((os.path.relpath(os.path.join(d, f), path), os.stat(os.path.join(d, f)).st_mtime)
                for d, _, files in os.walk(path) for f in files)


def test_cli_scores_a_trained_run_under_the_paper_protocol(tiny_run, lpips_dir, tmp_path):
  before = _tree(tiny_run)
  read_only = os.geteuid() != 0          # root writes through any mode; then compare trees
  if read_only:
    subprocess.run(["chmod", "-R", "a-w", tiny_run], check=True)
  try:
    proc = run_module("difai_jax.evaluate", "--workdir", tiny_run, *TINY_EVAL_ARGS,
                      "--buckets", "quickdraw,20-30", "--max_images=3", "--batch_size=4",
                      "--lpips", lpips_dir, "--feature_probes", "tests.test_evaluate:toy_probes",
                      "--eval_dir", str(tmp_path / "eval"), "--compilation_cache=none")
  finally:
    if read_only:
      subprocess.run(["chmod", "-R", "u+w", tiny_run], check=True)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert _tree(tiny_run) == before                    # the workdir is only read
  out = tmp_path / "eval"
  assert (out / "eval_masks" / "32px" / "manifest.json").is_file()
  assert re.search(r"scoring .*: (EMA|raw) generator params \(train.ema_decay = [0-9.]+.*\), "
                   r"checkpoint step 2\n", proc.stdout), proc.stdout
  assert "first batch (compiling) took" in proc.stdout and "nan" not in proc.stdout
  with open(out / "results.json", encoding="utf-8") as f:
    report = json.load(f)
  assert report["num_completions"] == 5 and report["num_images"] == 3
  assert report["protocol"] == {"table1_completions": "first", "diversity_pairs": "paper",
                                "pairs_per_image": 4, "diversity_images": 3}
  assert report["metrics"] == ["ssim", "ms_ssim", "lpips", "diversity", "toy_fid"]
  for bucket, row in report["results"].items():
    assert row["n_images"] == 3 and row["toy_fid_samples"] == 3, row   # completion 0 only
    assert row["diversity_images"] == 3 and row["diversity"] > 0, row
    assert 0 < row["ssim"] <= 1 and row["lpips"] > 0 and row["toy_fid"] > 0, row
    attributes = np.load(out / f"toy_attributes_{bucket}.npz")
    assert attributes["values"].shape == (3, 5, 3)
    assert attributes["index"].tolist() == [0, 1, 2]
    # The values behind the table's means, image by image.
    per_image = np.load(out / f"per_image_{bucket}.npz")
    assert per_image["index"].tolist() == per_image["diversity_index"].tolist() == [0, 1, 2]
    for name in ("ssim", "ms_ssim", "lpips", "diversity", "hole_ratio"):
      assert per_image[name].shape == (3,)
      np.testing.assert_allclose(per_image[name].mean(), row[name], rtol=1e-6)
  assert report["paper"]["20-30"] == {"ssim": 0.777, "lpips": 0.084, "fid": 34.55,
                                      "diversity": 0.0849}
  md = (out / "results.md").read_text(encoding="utf-8")
  assert "| 20-30 |" in md and "0.777" in md and "Yoon et al., Table 2" in md
  assert os.path.isfile(out / "chart.png") and os.path.isfile(out / "results.csv")
  # Real-image statistics of the probe are not cached (no cache_tag): nothing else written.
  assert sorted(p.name for p in out.iterdir()) == sorted(
      ["chart.png", "eval_masks", "results.csv", "results.json", "results.md",
       "per_image_20-30.npz", "per_image_quickdraw.npz",
       "toy_attributes_20-30.npz", "toy_attributes_quickdraw.npz"])

  # The same run through the flags of a research comparison: the buckets read back from exported
  # mask files (white = hole, LaMa's convention), Table 1 on each metric's best completion, the
  # extra metrics and clean-fid's resize, each stated in the report.
  data = ml_collections.ConfigDict(tiny_config.get_config().data.to_dict())
  data.masks_per_bucket = 4
  mask_exchange.export_masks(mask_exchange.placed_data(data, str(tmp_path / "export_work")),
                             SIZE, ["quickdraw", "20-30"], 3, str(tmp_path / "masks"), "hole1",
                             verbose=False)
  proc = run_module("difai_jax.evaluate", "--workdir", tiny_run, *TINY_EVAL_ARGS,
                    "--masks_dir", str(tmp_path / "masks"), "--mask_convention", "hole1",
                    "--buckets", "quickdraw,20-30", "--max_images=3", "--batch_size=4",
                    "--lpips", lpips_dir,
                    "--table1_completions", "best", "--extra_metrics", "psnr,lpips_hole",
                    "--fid_resize", "clean", "--eval_dir", str(tmp_path / "eval_best"),
                    "--compilation_cache=none")
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  with open(tmp_path / "eval_best" / "results.json", encoding="utf-8") as f:
    best = json.load(f)
  assert best["protocol"]["table1_completions"] == "best" and best["fid"]["resize"] == "clean"
  assert best["extra_metrics"] == ["psnr", "lpips_hole"]
  assert sorted(best["results"]) == sorted(report["results"])
  for bucket, first in report["results"].items():
    row = best["results"][bucket]
    # The same masks and seeded pairs: the same diversity; the best completion scores at
    # least as well as completion 0.
    assert row["diversity"] == pytest.approx(first["diversity"], rel=1e-5), bucket
    assert row["ssim"] >= first["ssim"] - 1e-6 and row["lpips"] <= first["lpips"] + 1e-6, bucket
    assert row["psnr"] > 0 and 0 < row["lpips_hole"], bucket
  assert "the best of the K = 5 completions" in (tmp_path / "eval_best" / "results.md").read_text(
      encoding="utf-8")
