"""The evaluation CLI on a tiny trained demo run (configs/demo.py, 2 + 2 steps).

The CLI runs as a subprocess (``python -m difai_jax.evaluate``), as users run it. The demo run is
trained once per test session and shared with tests/test_inpaint.py (see ``trained_demo_run``).
"""

import contextlib
import csv
import fcntl
import json
import math
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from difai_jax import evaluate
from difai_jax.metrics import fid as fid_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_ARGS = ["--config", "configs/demo.py", "--config.train.num_steps.coarse=2",
              "--config.train.num_steps.difai=2", "--config.train.sample_every=0",
              "--config.train.checkpoint_every=2"]
# Few bucket masks: writing the default 2,000 per bucket takes over a minute on 2 cores.
EVAL_ARGS = ["--config", "configs/demo.py", "--config.data.masks_per_bucket=4"]


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


def trained_demo_run(tmp_path_factory) -> str:
  """A demo run trained for 2 + 2 steps, once per test session (also across xdist workers)."""
  base = tmp_path_factory.getbasetemp()
  # Under xdist every worker has its own basetemp inside the session's directory.
  root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
  workdir = os.path.join(root, "demo_run_2steps")
  with _locked(os.path.join(root, "demo_run_2steps.lock")):
    done = os.path.join(workdir, "TRAINED")
    if not os.path.exists(done):
      proc = run_module("difai_jax.train", "--workdir", workdir, *TRAIN_ARGS)
      assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
      open(done, "w", encoding="utf-8").close()
  return workdir


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
  return trained_demo_run(tmp_path_factory)


@pytest.fixture(scope="module")
def random_weights_eval(demo_run):
  proc = run_module("difai_jax.evaluate", "--workdir", demo_run, *EVAL_ARGS, "--max_images=4",
                    "--batch_size=4", "--num_completions=2", "--random_metric_weights")
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return os.path.join(demo_run, "eval"), proc.stdout


def test_random_weights_eval_writes_every_table_and_chart(random_weights_eval, demo_run):
  out_dir, stdout = random_weights_eval
  with open(os.path.join(out_dir, "results.json"), encoding="utf-8") as f:
    report = json.load(f)
  assert report["random_metric_weights"] is True
  assert evaluate.RANDOM_TITLE in report["title"]
  assert report["num_images"] == 4 and report["num_completions"] == 2
  assert list(report["results"]) == list(evaluate.TABLE1_BUCKETS)
  for bucket, row in report["results"].items():
    assert set(evaluate.METRICS) <= set(row), (bucket, row)
    assert row["n_images"] == 4
    assert 0.0 < row["ssim"] <= 1.0 and 0.0 < row["ms_ssim"] <= 1.0, row
    assert row["lpips"] > 0.0 and row["diversity"] > 0.0, row
    assert math.isfinite(row["fid"]) and row["fid"] > 0.0, row
    assert row["fid_samples"] == 4 * 2        # all K completions of the 4 images
    low, high = evaluate.masks_lib.BUCKET_RANGES[bucket]
    assert low <= row["hole_ratio"] <= high, (bucket, row["hole_ratio"])
  # Known pixels are exact, so a larger hole costs structural similarity.
  assert report["results"]["10-20"]["ssim"] > report["results"]["40-50"]["ssim"]
  # 64 px: the demo config's 3 MS-SSIM scales, said in a note.
  assert report["ms_ssim_weights"] == [0.0710, 0.4529, 0.4761]
  assert any("MS-SSIM with 3 scales" in n for n in report["notes"])
  # Cached real statistics: 4 real images, marked random.
  stats = [f for f in os.listdir(demo_run) if f.startswith("fid_stats_real_64px_n4_")]
  assert len(stats) == 1 and "_random" in stats[0]
  assert fid_lib.load_statistics(os.path.join(demo_run, stats[0])).n == 4

  with open(os.path.join(out_dir, "results.md"), encoding="utf-8") as f:
    md = f.read()
  assert md.splitlines()[0].startswith("# ") and evaluate.RANDOM_TITLE in md.splitlines()[0]
  assert "| 10-20 |" in md and "n/a" in md        # the paper column (no numbers entered)
  with open(os.path.join(out_dir, "results.csv"), encoding="utf-8") as f:
    lines = f.read().splitlines()
  assert evaluate.RANDOM_TITLE in lines[0]
  rows = list(csv.DictReader(lines[1:]))
  assert len(rows) == 5 * 5
  ssim_10_20 = [r for r in rows if r["bucket"] == "10-20" and r["metric"] == "ssim"][0]
  assert float(ssim_10_20["ours"]) == pytest.approx(report["results"]["10-20"]["ssim"], rel=1e-5)
  assert all(r["metric_weights"] == "random (not comparable)" for r in rows)
  chart = Image.open(os.path.join(out_dir, "chart.png"))
  assert chart.format == "PNG" and chart.size[1] > 5 * 200   # one panel per metric
  assert "ETA" in stdout and "img/s" in stdout


def test_without_metric_weights_reports_ssim_and_names_the_conversions(demo_run, tmp_path,
                                                                       capsys):
  # In process (the CLI itself is exercised above): evaluate() as the CLI calls it.
  from configs import demo  # pylint: disable=import-outside-toplevel
  data = demo.get_config().data
  data.masks_per_bucket = 4
  report = evaluate.evaluate(demo_run, data_config=data, buckets=["10-20"], max_images=2,
                             batch_size=2, num_completions=1, eval_dir=str(tmp_path))
  printed = capsys.readouterr().out
  assert "python -m weights_conversion.lpips" in printed
  assert "python -m weights_conversion.inception" in printed
  with open(tmp_path / "results.json", encoding="utf-8") as f:
    assert json.load(f)["results"] == report["results"]
  assert report["random_metric_weights"] is False
  assert evaluate.RANDOM_TITLE not in report["title"]
  row = report["results"]["10-20"]
  assert {m for m in evaluate.METRICS if m in row} == {"ssim", "ms_ssim"}
  assert 0.0 < row["ssim"] <= 1.0 and row["n_images"] == 2
  md = (tmp_path / "results.md").read_text(encoding="utf-8")
  assert "weights_conversion.lpips" in md and "weights_conversion.inception" in md
  table = [line for line in md.splitlines() if line.startswith("| bucket")][0]
  assert "LPIPS" not in table and "FID" not in table and "SSIM" in table
  assert os.path.isfile(tmp_path / "chart.png")


# ---- pieces, in process ----

@pytest.mark.parametrize("n_fake", [12, 200])
def test_frechet_distance_equals_pytorch_fid_routine(n_fake):
  rng = np.random.default_rng(n_fake)
  dim = 48
  real = rng.normal(size=(300, dim)) @ rng.normal(size=(dim, dim)) * 0.3
  fake = rng.normal(size=(n_fake, dim)) * 1.3 + 0.2
  mu1, s1 = fid_lib.compute_statistics(real)
  mu2, s2 = fid_lib.compute_statistics(fake)
  ours = fid_lib.frechet_distance_eig(mu1, s1, mu2, s2, fake)
  full_rank = fid_lib.frechet_distance_eig(mu1, s1, mu2, s2)
  if n_fake > dim:    # pytorch-fid's sqrtm is exact for a non-singular product
    reference = fid_lib.frechet_distance(mu1, s1, mu2, s2)
  else:               # singular: the eps fallback shifts it; compare with a direct eig route
    import scipy.linalg  # pylint: disable=import-outside-toplevel
    root = scipy.linalg.sqrtm(s1)
    eig = np.linalg.eigvalsh(root @ s2 @ root)
    reference = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2)
                      - 2 * np.sqrt(np.clip(eig, 0, None)).sum())
  assert ours == pytest.approx(reference, rel=1e-6)
  assert full_rank == pytest.approx(reference, rel=1e-6)


def test_ms_ssim_scales_follow_the_image_size():
  assert evaluate.ms_ssim_weights(256) == evaluate.ssim_lib.MS_SSIM_WEIGHTS
  assert evaluate.ms_ssim_weights(64, (0.2, 0.3, 0.5)) == (0.2, 0.3, 0.5)
  w = evaluate.ms_ssim_weights(100)             # 4 scales fit (> 80 px), renormalised
  assert len(w) == 4 and sum(w) == pytest.approx(1.0)
  assert w[0] / w[1] == pytest.approx(0.0448 / 0.2856)
  assert evaluate.ms_ssim_weights(10) is None


def test_random_metric_variables_have_he_scale():
  from difai_jax.metrics import lpips as lpips_lib  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  x = jax.ShapeDtypeStruct((1, 64, 64, 3), np.float32)
  variables = evaluate.random_variables(lpips_lib.LPIPS(net="alex"), x, x, seed=3)
  kernel = variables["params"]["backbone"]["features_3"]["kernel"]   # (5, 5, 64, 192)
  assert kernel.shape == (5, 5, 64, 192)
  assert np.std(kernel) == pytest.approx(math.sqrt(2 / (5 * 5 * 64)), rel=0.02)
  assert np.all(variables["params"]["lin0"] >= 0)
