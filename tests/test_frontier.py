"""The fidelity-diversity frontier (``evaluate --sefa_degrees``): one run scored at several SeFa
strengths, other methods as single points; the tiny trained run of tests/test_evaluate.py."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from difai_jax import pipeline
from difai_jax import pretrained
from difai_jax.evaluation import frontier
from difai_jax.evaluation import loop as eval_loop
from difai_jax.evaluation import options as eval_options
from difai_jax.evaluation import scoring as eval_metrics
from difai_jax.evaluation.metrics import lpips as lpips_lib
from tests import test_evaluate
from tests.test_compare_methods import SIZE
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
  lpips_dir = str(tmp / "lpips_alex")                  # random LPIPS weights, converted form
  x = jax.ShapeDtypeStruct((1, SIZE, SIZE, 3), jnp.float32)
  pretrained.save(lpips_dir, "lpips", {"net": "alex"}, eval_metrics.random_variables(
      lpips_lib.LPIPS(net="alex"), x, x, seed=0))
  opts = eval_options.EvalOptions(buckets=("40-50",), max_images=4, batch_size=4,
                                  num_completions=3, lpips_dir=lpips_dir)
  probes = test_evaluate.toy_probes(SIZE)
  # A single-completion method: the coarse net alone, K = 1.
  eval_loop.evaluate(run, dataclasses.replace(opts, completions="coarse", num_completions=1),
                     data_config=tiny_data(), eval_dir=str(tmp / "coarse_eval"), probes=probes,
                     verbose=False)
  out = tmp / "sweep"
  table = frontier.sweep(run, opts, [8.0, 0.5], data_config=tiny_data(), eval_dir=str(out),
                         probes=probes, points=[str(tmp / "coarse_eval")], verbose=False)
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
  assert point["name"] == "coarse net" and point["bucket"] == "40-50"
  assert point["diversity"] is None and point["lpips"] is not None
  md = (out / "frontier.md").read_text(encoding="utf-8")
  assert "| 40-50 | 0.5 |" in md and "| 40-50 | coarse net | n/a |" in md
  with Image.open(out / "frontier.png") as img:
    assert img.size == (2 * 520 + 20, 64 + 360 + 20)
    pixels = np.asarray(img.convert("RGB"))
  assert (pixels != 255).any(axis=-1).mean() > 0.01        # something is drawn


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
