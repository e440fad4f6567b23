"""The held-out inpainting benchmark's pieces (benchmarks/toy_inpainting.py): its error measure,
its baselines and its mask families; the benchmark itself runs the shipped networks by hand."""

import numpy as np
import pytest

from benchmarks import toy_inpainting as bench
from difai_jax import labelled_edits
from difai_jax.data import masks as masks_lib


def test_hole_mae_counts_only_hole_pixels_on_the_0_255_scale():
  truth = np.zeros((2, 4, 4, 3), np.float32)
  guess = truth.copy()
  guess[0, :2] = 1.0              # rows 0-1 wrong by 127.5 (half of them in the hole)
  guess[1] = -1.0                 # all wrong by 127.5, hole = 4 pixels
  masks = np.ones((2, 4, 4, 1), np.float32)
  masks[0, 1:3] = 0.0             # hole rows 1-2: row 1 wrong, row 2 right
  masks[1, 0, :] = 0.0
  np.testing.assert_allclose(bench.hole_mae(guess, truth, masks), [63.75, 127.5])


def test_flat_fill_and_telea_keep_known_pixels_and_fill_smooth_holes_well():
  yy, xx = np.mgrid[0:32, 0:32] / 31.0
  image = np.stack([xx, yy, 0.5 * (xx + yy)], -1)[None].astype(np.float32) * 2 - 1
  masks = np.ones((1, 32, 32, 1), np.float32)
  masks[0, 12:20, 10:22] = 0.0
  for filled in (bench.flat_fill(image, masks), bench.telea(image, masks)):
    known = masks[..., 0] > 0
    np.testing.assert_allclose(filled[known], image[known], atol=1 / 127.5)
  # a linear ramp: Telea's first-order extrapolation is close, a flat colour is not
  telea_err = bench.hole_mae(bench.telea(image, masks), image, masks)[0]
  flat_err = bench.hole_mae(bench.flat_fill(image, masks), image, masks)[0]
  assert telea_err < 10 and flat_err > 2 * telea_err   # measured: 7.1 and 18.4


def test_mask_families_are_seeded_and_in_range():
  for family in bench.FAMILIES:
    a = bench.family_masks(family, 5, 64)
    np.testing.assert_array_equal(a, bench.family_masks(family, 5, 64))
    assert a.shape == (5, 64, 64, 1) and len({m.tobytes() for m in a}) == 5
    r = masks_lib.hole_ratio(a)
    if family in masks_lib.FAMILY_RANGES:
      lo, hi = masks_lib.FAMILY_RANGES[family]
      assert np.all((r >= lo) & (r < hi))
    else:
      assert np.all((r > 0) & (r <= 0.6))
  with pytest.raises(ValueError, match="unknown mask family"):
    bench.family_masks("circles", 1)


def test_with_psp_swaps_the_encoder_and_refuses_another_decoder(tmp_path):
  import jax  # pylint: disable=import-outside-toplevel
  from difai_jax import pretrained  # pylint: disable=import-outside-toplevel
  from difai_jax.training import checkpoints  # pylint: disable=import-outside-toplevel
  inference = checkpoints.load_difai("toy-difai")
  _, variables = pretrained.load("toy-psp")
  # an encoder of other weights on the same decoder is taken as it is
  encoder = jax.tree_util.tree_map(lambda a: a * 0.5, variables["params"]["encoder"])
  other = {**variables, "params": {**variables["params"], "encoder": encoder}}
  pretrained.save(tmp_path / "enc", "psp", pretrained.read_config(pretrained.resolve("toy-psp")),
                  other)
  swapped = bench.with_psp(inference, str(tmp_path / "enc"))
  for a, b in zip(jax.tree_util.tree_leaves(swapped.variables["psp"]["params"]["encoder"]),
                  jax.tree_util.tree_leaves(encoder)):
    np.testing.assert_array_equal(a, b)
  assert swapped.variables["generator"] is inference.variables["generator"]
  # another decoder would make the shipped SeFa directions meaningless
  decoder = jax.tree_util.tree_map(lambda a: a + 1e-3, variables["params"]["decoder"])
  other = {**variables, "params": {**variables["params"], "decoder": decoder}}
  pretrained.save(tmp_path / "dec", "psp", pretrained.read_config(pretrained.resolve("toy-psp")),
                  other)
  with pytest.raises(ValueError, match="decoder differs"):
    bench.with_psp(inference, str(tmp_path / "dec"))


def test_other_faces_paste_donor_pixels_into_the_hole_only():
  faces = np.zeros((3, 4, 4, 3), np.float32)
  donors = np.stack([np.full((4, 4, 3), v, np.float32) for v in (0.25, 0.5, 0.75)])
  masks = np.ones((3, 4, 4, 1), np.float32)
  masks[:, :2] = 0.0
  out = bench.other_faces(faces, masks, donors, count=2)
  assert out.shape == (3, 3, 4, 4, 3)
  np.testing.assert_array_equal(out[0], faces)
  np.testing.assert_array_equal(out[1:, :, 2:], 0.0)            # known pixels kept
  for copy in out[1:]:                                          # each hole one whole donor
    assert sorted(float(v) for v in copy[:, 0, 0, 0]) == [0.25, 0.5, 0.75]
    assert all(len(np.unique(face[:2])) == 1 for face in copy)


def test_shares_count_images_per_number_of_changes():
  np.testing.assert_allclose(bench.shares(np.array([0, 1, 1, 3, 5]), 3), [0.2, 0.4, 0.0, 0.4])


def test_edit_agree_refuses_the_judge():
  with pytest.raises(ValueError, match="--edit_agree = 'toy-judge' is the toy judge"):
    labelled_edits.load_recognizer("toy-judge", "--edit_agree")
  module, variables = labelled_edits.load_recognizer("toy-recognizer", "--edit_agree")
  assert module.attributes and variables
  with pytest.raises(ValueError, match="edit_agree, edit_classes and edit_local need edit_search"):
    bench.evaluate(edit_agree=("toy-recognizer",))
  with pytest.raises(ValueError, match="families must be some of"):
    bench.evaluate(families=("training", "circles"))


def test_recognizer_b_is_the_recipe_from_a_third_seed():
  # pylint: disable-next=import-outside-toplevel
  from configs import toy_judge, toy_recognizer, toy_recognizer_b
  base, other = toy_recognizer.get_config(), toy_recognizer_b.get_config()
  assert other.seed not in (base.seed, toy_judge.get_config().seed)
  other.seed = base.seed
  assert other.to_dict() == base.to_dict()
