"""The fidelity-diversity frontier (``evaluate --sefa_degrees``): one run scored at several SeFa
strengths, other methods as single points; the tiny trained run of tests/test_evaluate.py."""

import dataclasses
import json
import os

import jax.numpy as jnp
import numpy as np
from PIL import Image

from difai_jax import pipeline
from difai_jax.evaluation import frontier
from difai_jax.evaluation import loop as eval_loop
from difai_jax.evaluation import options as eval_options
from tests import test_evaluate
from tests.test_compare_methods import SIZE
from tests.test_compare_methods import random_lpips_dir
from tests.test_compare_methods import tiny_data


def test_a_degree_changes_only_the_step_length_of_the_edits():
  spec = eval_loop.EvalSpec(num_completions=4, sampling=pipeline.SefaSampling(top_k=5),
                            n_directions=5, seed=3)
  index = jnp.arange(6, dtype=jnp.int32)
  fixed = lambda d: dataclasses.replace(spec, sampling=dataclasses.replace(
      spec.sampling, min_degree=d, max_degree=d))
  comps_1, degs_1 = eval_loop.edits_for(index, fixed(1.0))
  comps_8, degs_8 = eval_loop.edits_for(index, fixed(8.0))
  np.testing.assert_array_equal(comps_1, comps_8)          # same directions ...
  np.testing.assert_array_equal(np.abs(degs_1), 1.0)        # ... each moved by exactly d
  np.testing.assert_array_equal(degs_8, 8.0 * degs_1)      # ... with the same signs
  assert {-1.0, 1.0} == set(np.asarray(degs_1).ravel().tolist())


def test_sweep_scores_each_degree_and_draws_the_frontier(tmp_path_factory):
  run = test_evaluate.trained_tiny_run(tmp_path_factory)
  tmp = tmp_path_factory.mktemp("frontier")
  lpips_dir = random_lpips_dir(tmp)
  opts = eval_options.EvalOptions(buckets=("40-50",), max_images=4, batch_size=4,
                                  num_completions=3, lpips_dir=lpips_dir)
  probes = test_evaluate.toy_probes(SIZE)
  # A single-completion method's report, as evaluate --completions_dir writes it (K = 1).
  os.makedirs(tmp / "one_shot")
  with open(tmp / "one_shot" / "results.json", "w", encoding="utf-8") as f:
    json.dump({"method": "one-shot", "num_completions": 1, "metrics": ["lpips", "toy_fid"],
               "results": {"40-50": {"lpips": 0.75, "toy_fid": 150.0, "diversity": None}}}, f)
  out = tmp / "sweep"
  table = frontier.sweep(run, opts, [8.0, 0.5], data_config=tiny_data(), eval_dir=str(out),
                         probes=probes, points=[str(tmp / "one_shot")], verbose=False)
  assert table["degrees"] == [0.5, 8.0] and table["table1_completions"] == "all"
  assert table["metrics"] == ["lpips", "toy_fid"]
  low, high = table["curve"]
  assert (low["degree"], high["degree"]) == (0.5, 8.0)
  # Longer SeFa steps, more different completions.
  assert 0 <= low["diversity"] < high["diversity"]
  for d, row in ((0.5, low), (8.0, high)):
    with open(out / f"degree_{d:g}" / "results.json", encoding="utf-8") as f:
      report = json.load(f)
    assert report["sefa_edits"]["min_degree"] == report["sefa_edits"]["max_degree"] == d
    assert report["protocol"]["table1_completions"] == "all"
    assert report["results"]["40-50"]["lpips"] == row["lpips"]
  # The bucket masks are made once, beside the degrees' folders.
  assert os.path.isdir(out / "eval_masks")
  assert not os.path.exists(out / "degree_8" / "eval_masks")
  [point] = table["points"]
  assert point == {"name": "one-shot", "bucket": "40-50", "diversity": None, "lpips": 0.75,
                   "toy_fid": 150.0}
  md = (out / "frontier.md").read_text(encoding="utf-8")
  assert "| 40-50 | 0.5 |" in md and "| 40-50 | one-shot | n/a | 0.7500 | 150.0000 |" in md
  with Image.open(out / "frontier.png") as img:
    assert img.size == (2 * 520 + 20, 64 + 360 + 13 + 20)    # + one line of key: one point
    pixels = np.asarray(img.convert("RGB"))
  assert (pixels != 255).any(axis=-1).mean() > 0.01        # something is drawn
  assert (pixels[64 + 360 - 4:64 + 360 + 10] != 255).any()   # the key under the plots


def test_cli_refuses_bad_degrees_before_loading_anything(tmp_path):
  for degrees, message in (("1,x", "--sefa_degrees must be numbers"),
                           ("2,-1", "distinct positive numbers"),
                           ("2,2", "distinct positive numbers")):
    proc = test_evaluate.run_module("difai_jax.evaluate", "--workdir", str(tmp_path),
                                    "--sefa_degrees", degrees)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr[-2000:]
  proc = test_evaluate.run_module("difai_jax.evaluate", "--workdir", str(tmp_path),
                                  "--sefa_degrees", "1,2", "--frontier_with", str(tmp_path))
  assert proc.returncode == 1 and "no results.json there" in proc.stderr, proc.stderr[-2000:]
  proc = test_evaluate.run_module("difai_jax.evaluate", "--workdir", str(tmp_path),
                                  "--frontier_with", str(tmp_path))
  assert proc.returncode == 1 and "pass --sefa_degrees too" in proc.stderr, proc.stderr[-2000:]
