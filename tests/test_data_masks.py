"""Tests for difai_jax.data.masks: validation, generators, external sets, evaluation buckets."""

import json
import os
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
from PIL import Image

from difai_jax.data import masks


def _rng(*k):
  return np.random.default_rng(list(k))


# -- validate_mask ----------------------------------------------------------------------------
def test_validate_mask_accepts_good_masks_numpy_and_jax():
  m = np.ones((2, 4, 4, 1), np.float32)
  m[:, :2] = 0
  masks.validate_mask(m)
  masks.validate_mask(jnp.asarray(m[0]))
  masks.validate_mask(m.astype(bool), allow_no_hole=False)
  masks.validate_mask(np.ones((4, 4, 1)))  # no hole allowed by default


def test_validate_mask_messages():
  m = np.ones((1, 5, 5, 1), np.float32)
  m[0, 3, 4, 0] = 0.5
  with pytest.raises(ValueError, match=r"mask has values other than 0 and 1 \(found 0.5 at "
                                       r"\(0, 3, 4, 0\)\); pass a binary mask or threshold it"):
    masks.validate_mask(m)
  with pytest.raises(ValueError, match=r"shape \(N, H, W, 1\).*got shape \(5, 5, 3\)"):
    masks.validate_mask(np.ones((5, 5, 3)))
  batch = np.ones((3, 4, 4, 1))
  batch[1] = 0
  with pytest.raises(ValueError, match=r"--mask is all hole \(sample 1\)"):
    masks.validate_mask(batch, name="--mask")
  masks.validate_mask(batch, allow_all_hole=True)
  batch[1] = 1
  batch[0, 0, 0] = 0
  with pytest.raises(ValueError, match=r"has no hole \(sample 1\)"):
    masks.validate_mask(batch, allow_no_hole=False)


# -- generators -------------------------------------------------------------------------------
def test_stroke_masks_are_binary_seeded_and_varied():
  a = masks.stroke_mask(_rng(0, 1), 64)
  b = masks.stroke_mask(_rng(0, 1), 64)
  c = masks.stroke_mask(_rng(0, 2), 64)
  np.testing.assert_array_equal(a, b)
  assert a.shape == (64, 64, 1) and a.dtype == np.float32
  masks.validate_mask(a, allow_no_hole=False)
  assert np.mean(a != c) > 0.02
  ratios = [masks.hole_ratio(masks.stroke_mask(_rng(1, i), 64)) for i in range(40)]
  assert 0 < min(ratios) and max(ratios) < 0.7 and np.std(ratios) > 0.03


def test_square_mask_scales_with_size():
  assert masks.square_side(256) == 85 and masks.square_side(64) == 21
  m = masks.square_mask(_rng(3), 64)
  hole = m[..., 0] == 0
  ys, xs = np.nonzero(hole)
  assert hole.sum() == 21 * 21
  assert ys.max() - ys.min() == 20 and xs.max() - xs.min() == 20


def test_mask_sampler_kinds():
  only_square = masks.MaskSampler(64, {"square": 1.0})
  for i in range(5):
    assert masks.hole_ratio(only_square(_rng(i))) == pytest.approx(21 * 21 / 64 ** 2)
  both = masks.MaskSampler(64, {"strokes_square": 1.0})
  ratios = [masks.hole_ratio(both(_rng(i))) for i in range(10)]
  assert min(ratios) >= 21 * 21 / 64 ** 2 and max(ratios) <= 0.6
  mixed = masks.MaskSampler(64, {"strokes": 1, "square": 1, "strokes_square": 1})
  np.testing.assert_array_equal(mixed(_rng(7)), mixed(_rng(7)))
  with pytest.raises(ValueError, match="unknown mask kinds"):
    masks.MaskSampler(64, {"circles": 1.0})
  with pytest.raises(ValueError, match="no mask folder"):
    masks.MaskSampler(64, {"external": 1.0})
  with pytest.raises(ValueError, match="positive sum"):
    masks.MaskSampler(64, {"square": 0.0})


@pytest.fixture(scope="module")
def external_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("qd")
  hole = np.zeros((40, 40), np.uint8)  # PIC-style file: white = hole
  hole[5:15, 2:30] = 255
  Image.fromarray(hole).save(root / "a.png")
  os.makedirs(root / "sub")
  Image.fromarray(255 - hole).save(root / "sub" / "b.png")
  return str(root)


def test_external_mask_set_convention_flips_and_rotations(external_dir):
  qd = masks.ExternalMaskSet(external_dir, convention="hole_is_white")
  assert len(qd) == 2
  a = qd.load(0, 20)
  assert a.shape == (20, 20, 1)
  assert masks.hole_ratio(a) == pytest.approx(5 * 14 / 400)
  seen = set()
  for i in range(30):
    m = qd.sample(_rng(i), 20)
    r = masks.hole_ratio(m)
    assert r == pytest.approx(5 * 14 / 400) or r == pytest.approx(1 - 5 * 14 / 400)
    seen.add(m.tobytes())
  assert len(seen) >= 6  # flips and rotations give different placements
  ours = masks.ExternalMaskSet(external_dir)  # default: white = known
  np.testing.assert_array_equal(ours.load(0, 20), 1 - a)
  sampler = masks.MaskSampler(20, {"external": 1.0}, max_hole_ratio=0.9, external=qd)
  assert masks.hole_ratio(sampler(_rng(0))) < 0.9


def test_external_mask_set_bad_inputs(tmp_path):
  with pytest.raises(ValueError, match="mask folder not found"):
    masks.ExternalMaskSet(str(tmp_path / "nope"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="holds no mask images"):
    masks.ExternalMaskSet(str(tmp_path / "empty"))
  with pytest.raises(ValueError, match="unknown mask convention"):
    masks.ExternalMaskSet(str(tmp_path), convention="black_is_hole")
  soft = np.full((8, 8), 255, np.uint8)
  soft[:4] = 90
  (tmp_path / "soft").mkdir()
  Image.fromarray(soft).save(tmp_path / "soft" / "s.png")
  with pytest.warns(UserWarning, match="thresholding at 0.5"):
    m = masks.ExternalMaskSet(str(tmp_path / "soft")).load(0, 8)
  assert masks.hole_ratio(m) == 0.5
  with pytest.raises(ValueError, match="values other than 0 and 1"):
    masks.ExternalMaskSet(str(tmp_path / "soft"), strict=True).load(0, 8)


# -- buckets ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bucket_root(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("buckets"))
  return d, masks.ensure_buckets(d, 48, num_per_bucket=12, seed=5, verbose=False)


def test_every_bucket_mask_lies_in_its_bucket(bucket_root):
  _, root = bucket_root
  for name, (lo, hi) in masks.BUCKET_RANGES.items():
    ms = masks.load_bucket(root, name)
    assert ms.shape == (12, 48, 48, 1)
    masks.validate_mask(ms, allow_no_hole=False)
    r = masks.hole_ratio(ms)
    assert np.all(r >= lo) and np.all(r < hi), (name, r)
    assert len({m.tobytes() for m in ms}) == 12
  ratio_means = [masks.hole_ratio(masks.load_bucket(root, n)).mean()
                 for n in masks.BUCKET_NAMES[:4]]
  assert np.all(np.diff(ratio_means) > 0.05)


def test_buckets_are_reused_and_reproducible(bucket_root):
  d, root = bucket_root
  f = os.path.join(root, "30-40", "00003.png")
  before = os.stat(f).st_mtime_ns
  assert masks.ensure_buckets(d, 48, num_per_bucket=12, seed=5) == root
  assert os.stat(f).st_mtime_ns == before
  want = masks.bucket_mask(_rng(5, masks.BUCKET_NAMES.index("30-40"), 3), 48, "30-40")
  np.testing.assert_array_equal(masks.BucketMasks(root, "30-40")[3], want)
  with pytest.raises(ValueError, match="other settings.*seed"):
    masks.ensure_buckets(d, 48, num_per_bucket=12, seed=6)
  with pytest.raises(ValueError, match="unknown mask bucket"):
    masks.BucketMasks(root, "50-60")


def test_quickdraw_bucket_from_external_set(external_dir, tmp_path):
  qd = masks.ExternalMaskSet(external_dir, convention="hole_is_white")
  root = masks.ensure_buckets(str(tmp_path), 32, num_per_bucket=3, external=qd, verbose=False)
  r = masks.hole_ratio(masks.load_bucket(root, "quickdraw"))
  np.testing.assert_allclose(r, 5 * 14 / 400, atol=0.02)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    masks.load_bucket(root, "10-20")  # files written by us are binary


# -- held-out mask families -------------------------------------------------------------------
def test_square_family_covers_15_to_30_percent_with_1_to_3_squares():
  for i in range(40):
    m = masks.random_squares_mask(_rng(1, i), 64)
    assert 0.15 <= masks.hole_ratio(m) < 0.30
    labels, n = scipy.ndimage.label(m[..., 0] == 0)
    assert 1 <= n <= 3
    for k in range(1, n + 1):  # each piece is squares: its rows are full runs of its box
      ys, xs = np.nonzero(labels == k)
      box = labels[ys.min():ys.max() + 1, xs.min():xs.max() + 1] == k
      assert box[0].sum() >= 2 and box[:, 0].sum() >= 2


def test_thick_strokes_have_the_fixed_width():
  size = 256
  width = round(masks.THICK_STROKE_WIDTH_FRAC * size)
  for i in range(6):
    hole = masks.thick_strokes_mask(_rng(2, i), size)[..., 0] == 0
    # a disk of the stroke's radius fits inside the hole (erosion by width-2 keeps pixels),
    # one twice as wide does not (no blob is thicker than a stroke crossing)
    def eroded(r):
      out = hole.copy()
      for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
          if dy * dy + dx * dx <= r * r:
            out &= np.roll(np.roll(hole, dy, 0), dx, 1)
      return out
    assert eroded(width // 2 - 2).sum() > 0
    assert eroded(width + 2).sum() < 0.01 * hole.sum()


def test_families_have_their_own_folder_and_leave_table_buckets_as_they_were(tmp_path):
  d = str(tmp_path)
  table = masks.ensure_buckets(d, 32, num_per_bucket=2, seed=3, verbose=False)
  with open(os.path.join(table, "manifest.json")) as f:
    assert sorted(json.load(f)["buckets"]) == sorted(masks.BUCKET_NAMES)
  for fam in masks.FAMILY_RANGES:
    root = masks.ensure_bucket(d, 32, fam, num_per_bucket=4, seed=3, verbose=False)
    assert root != table and sorted(os.listdir(root)) == sorted([fam, "manifest.json"])
    got = masks.load_bucket(root, fam)
    lo, hi = masks.FAMILY_RANGES[fam]
    assert got.shape == (4, 32, 32, 1)
    assert np.all((masks.hole_ratio(got) >= lo) & (masks.hole_ratio(got) < hi))
    want = masks.bucket_mask(_rng(3, masks.EVAL_BUCKET_NAMES.index(fam), 1), 32, fam)
    np.testing.assert_array_equal(got[1], want)
  assert masks.ensure_bucket(d, 32, "30-40", num_per_bucket=2, seed=3) == table
  with pytest.raises(ValueError, match="unknown mask bucket"):
    masks.ensure_bucket(d, 32, "circles")
