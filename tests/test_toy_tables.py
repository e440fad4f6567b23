"""benchmarks/toy_tables.py: the run list, evaluation seeds and the intervals table (no model)."""

import json
import os

import numpy as np
import pytest

from benchmarks import toy_tables


def test_runs_take_several_workdirs_and_refuse_a_name_twice():
  runs = toy_tables.parse_runs(["SPADE 200=runs/a,runs/b", "DiFAI=toy-difai"])
  assert runs == {"SPADE 200": ["runs/a", "runs/b"], "DiFAI": ["toy-difai"]}
  with pytest.raises(SystemExit, match="given twice"):
    toy_tables.parse_runs(["A=x", "A=y"])
  with pytest.raises(SystemExit, match="NAME=WORKDIR"):
    toy_tables.parse_runs(["A=,"])
  assert toy_tables.parse_seeds("0, 2,5") == (0, 2, 5)
  for bad in ("0,0", "", "a"):
    with pytest.raises(SystemExit, match="--seeds"):
      toy_tables.parse_seeds(bad)


def test_one_replicate_keeps_its_folder_several_get_one_each(tmp_path):
  assert toy_tables.replicate_dirs(str(tmp_path), "DiFAI 200", 1, (0,)) == [
      (0, 0, os.path.join(tmp_path, "difai_200"))]
  dirs = toy_tables.replicate_dirs(str(tmp_path), "SPADE 200", 2, (0, 1))
  assert [(i, s) for i, s, _ in dirs] == [(0, 0), (0, 1), (1, 0), (1, 1)]
  assert len({d for _, _, d in dirs}) == 4


def _write_results(folder, ssim, toy_fid):
  folder.mkdir()
  row = {"ssim": ssim, "ms_ssim": 0.5, "lpips": 0.1, "toy_fid": toy_fid}
  (folder / "results.json").write_text(json.dumps({"results": {"quickdraw": row}}))
  return str(folder)


def test_interval_table_gives_mean_sd_and_range_of_the_replicates(tmp_path):
  # A: one training run, three evaluations; B: a single evaluation.
  eval_dirs = {"A": [[_write_results(tmp_path / f"A{i}", ssim, 10.0 + i)
                      for i, ssim in enumerate([0.80, 0.84, 0.90])]],
               "B": [[_write_results(tmp_path / "B0", 0.70, 10.0)]]}
  table = toy_tables.interval_table(eval_dirs, ("quickdraw",))
  rows = {line.split(" | ")[1]: line for line in table.splitlines()[2:]}
  sd = np.std([0.80, 0.84, 0.90], ddof=1)
  assert f"| 0.8467 ± {sd:.4f} [0.8000, 0.9000] (1 run x 3) | 0.7000 (1) |" in rows["SSIM ↑"]
  assert "| 11.00 ± 1.00 [10.00, 12.00] (1 run x 3) | 10.00 (1) |" in rows["toy FID ↓"]
  assert rows["diversity ↑"].endswith("| n/a | n/a |")    # not in these results


def test_with_several_training_runs_the_sd_is_between_their_means(tmp_path):
  """Two training runs, two evaluation seeds each, SSIM the same for both seeds of a run (as
  completion 0's is): the spread is that of 2 values, not of 4."""
  runs = [[_write_results(tmp_path / f"r{r}s{s}", ssim, 5.0 + r + s) for s in range(2)]
          for r, ssim in enumerate([0.80, 0.86])]
  table = toy_tables.interval_table({"A": runs}, ("quickdraw",))
  rows = {line.split(" | ")[1]: line for line in table.splitlines()[2:]}
  sd = np.std([0.80, 0.86], ddof=1)                 # 0.0424; over 4 values it would be 0.0346
  assert f"| 0.8300 ± {sd:.4f} [0.8000, 0.8600] (2 runs x 2) |" in rows["SSIM ↑"]
  sd_fid = np.std([5.5, 6.5], ddof=1)               # the runs' means over their seeds
  assert f"| 6.00 ± {sd_fid:.2f} [5.00, 7.00] (2 runs x 2) |" in rows["toy FID ↓"]
