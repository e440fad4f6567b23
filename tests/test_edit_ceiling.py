"""benchmarks/edit_ceiling.py's oracle choice, on arrays whose answer can be worked out by hand."""

import numpy as np

from benchmarks.edit_ceiling import ceiling


def test_the_ceiling_takes_the_cheapest_read_edit_of_each_change_and_fills_with_completion_00():
  # 4 candidates (C) of 2 faces (N): keys 1, 1, 2, 3 (the first two: one change, two strengths).
  keys = np.array([1, 1, 2, 3])
  read = np.array([[True, True], [True, False], [False, True], [True, False]])
  error = np.array([[20.0, 9.0], [12.0, 99.0], [5.0, 30.0], [40.0, 1.0]])
  base = np.array([8.0, 6.0])
  # Face 0: change 1 at its cheaper strength (12), change 3 (40); change 2 was not read.
  # Face 1: change 1 (9) and change 2 (30); change 3 was not read (1 does not count).
  got = ceiling(read, error, keys, base, count=3)
  assert got["count_mean"] == 2.0 and got["count_shares"] == [0.0, 0.0, 1.0, 0.0]
  assert np.isclose(got["error"], np.mean([(12 + 40 + 8) / 3, (9 + 30 + 6) / 3]))
  # Only the two cheapest of each face with count = 1 ... and a cap of 25 drops 40 and 30.
  one = ceiling(read, error, keys, base, count=1)
  assert one["count_mean"] == 1.0 and np.isclose(one["error"], (12 + 9) / 2)
  capped = ceiling(read, error, keys, base, count=3, cap=25.0)
  assert capped["count_shares"] == [0.0, 1.0, 0.0, 0.0]
  assert np.isclose(capped["error"], np.mean([(12 + 8 + 8) / 3, (9 + 6 + 6) / 3]))
