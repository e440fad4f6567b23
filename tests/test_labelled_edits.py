"""Labelled edits (difai_jax/labelled_edits.py, not the paper): directions between class means
of W+, their regions, the file they are kept in, and the search for the least edit a recognizer
reads, on stand-ins whose answers can be worked out by hand (a 4 x 4 picture whose rows show a
two-number code, a recognizer that reads those rows), and on the shipped networks."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difai_jax import labelled_edits as le
from difai_jax.evaluation.metrics import toy
from difai_jax.models import recognizer as recognizer_lib
from difai_jax.training import checkpoints


def _search(*args, **kwargs):
  """:func:`le.minimal_edits`' style images, completions and found counts."""
  return le.minimal_edits(*args, **kwargs)[:3]


def _edits():
  """Two attributes in a (L=1, D=2) code space: 'top' moves along x and changes rows 0-1 of a
  4 x 4 picture, 'bottom' (three classes) along y and changes rows 2-3."""
  top = np.zeros((4, 4))
  top[:2] = 1 / 8
  means = {"top": {0: np.array([[0.0, 0.0]]), 1: np.array([[2.0, 0.0]])},
           "bottom": {0: np.array([[0.0, 0.0]]), 1: np.array([[0.0, 3.0]]),
                      2: np.array([[0.0, -3.0]])}}
  return le.LabelledEdits(means, {"top": top, "bottom": top[::-1]})


def test_labelled_edits_move_a_code_between_class_means():
  edits = _edits()
  codes = np.array([[[0.1, 0.2]], [[1.9, -0.1]]])
  np.testing.assert_array_equal(edits.nearest("top", codes), [0, 1])
  moved = edits.move("top", codes, np.random.default_rng(0))
  np.testing.assert_allclose(moved - codes, [[[2.0, 0.0]], [[-2.0, 0.0]]])
  moved = edits.move("bottom", codes, np.random.default_rng(0))
  assert all(np.isclose(abs(d), 3.0) for d in (moved - codes)[:, 0, 1])   # to class 1 or 2
  np.testing.assert_allclose((moved - codes)[:, 0, 0], 0.0)
  twice = le.LabelledEdits(edits.means, edits.regions, strength=2.0)
  np.testing.assert_allclose(twice.move("top", codes, np.random.default_rng(0)) - codes,
                             [[[4.0, 0.0]], [[-4.0, 0.0]]])


def test_labelled_edits_follow_the_hole():
  edits = _edits()
  w_plus = np.zeros((2, 1, 2))
  masks = np.ones((2, 4, 4, 1), np.float32)
  masks[0, :2] = 0.0                 # hole over the top rows: 'top' first
  masks[1, 3:] = 0.0                 # hole over the bottom row: 'bottom' first
  latents = edits.latents(w_plus, masks, 2, np.random.default_rng(0))
  assert latents.shape == (3, 2, 1, 2)
  np.testing.assert_array_equal(latents[0], w_plus)
  np.testing.assert_allclose(latents[1, 0], [[2.0, 0.0]])       # image 0's first edit: 'top'
  assert latents[1, 1, 0, 0] == 0 and abs(latents[1, 1, 0, 1]) == 3.0
  assert abs(latents[2, 0, 0, 1]) == 3.0 and latents[2, 1, 0, 0] == 2.0
  with pytest.raises(ValueError, match="3 edits asked; only 2 attributes"):
    edits.latents(w_plus, masks, 3, np.random.default_rng(0))


def test_labelled_edits_fit_on_the_shipped_networks_find_where_attributes_are():
  inference = checkpoints.load_difai("toy-difai")
  edits = le.LabelledEdits.fit_toy(inference.models, inference.variables,
                                   attributes=("glasses", "beard"), num_faces=250, min_count=10)
  assert set(edits.means["glasses"]) >= {0, 1} and set(edits.means["beard"]) >= {0, 1}
  for region in edits.regions.values():
    assert region.shape == (64, 64) and np.isclose(region.sum(), 1.0)
  # the glasses change the eye band (rows 26-35) more than the chin (rows 38-47), and more than
  # the beard changes it (measured with 250 faces: 0.26 / 0.16, beard 0.16; the directions
  # are entangled: both move hair and background too)
  eyes = {a: float(r[26:36].sum()) for a, r in edits.regions.items()}
  chin = {a: float(r[38:48].sum()) for a, r in edits.regions.items()}
  print("share of the change at the eyes:", eyes, "at the chin:", chin)
  assert eyes["glasses"] > 1.4 * chin["glasses"] and eyes["glasses"] > eyes["beard"] + 0.05


class _RowRecognizer(nn.Module):
  """Reads 'top' from the mean of rows 0-1 (class 1 above 3, less sure of class 0 the nearer to
  3) and 'bottom' from rows 2-3 (class 1 above 4, class 2 below -8), as a toy recognizer."""
  attributes: tuple = (("top", 2), ("bottom", 3))
  top_at: float = 3.0                # where 'top' turns to class 1

  @nn.compact
  def __call__(self, x):
    top, bottom = x[:, :2].mean(axis=(1, 2, 3)), x[:, 2:].mean(axis=(1, 2, 3))
    zero = jnp.zeros_like(top)
    return {"logits": {"top": jnp.stack([zero, (top - self.top_at) / 4], -1),
                       "bottom": jnp.stack([zero, 4 * (bottom - 4), 4 * (-8 - bottom)], -1)},
            "embedding": x.reshape(x.shape[0], -1)}


def _row_complete(faces, masks, latents):
  """A stand-in for the generator: rows 0-1 show the code's x, rows 2-3 its y."""
  del faces, masks
  x, y = latents[..., 0, 0], latents[..., 0, 1]                     # (K, n)
  rows = np.stack([x, x, y, y], axis=-1)[..., None, None]            # (K, n, 4, 1, 1)
  out = np.broadcast_to(rows, latents.shape[:2] + (4, 4, 3)).astype(np.float32)
  return out, out


def _local_complete(faces, masks, latents, weight=None, base_style=None):
  """:func:`_row_complete` with make_complete_fn's local blend of the style image."""
  style, _ = _row_complete(faces, masks, latents)
  if weight is not None:
    style = base_style[None] + weight[:, :, None] * (style - base_style[None])
  return style, style


def test_minimal_edits_keep_the_least_change_the_training_recognizer_reads():
  edits = _edits()
  edits.means["bottom"][2] = np.array([[0.0, -5.0]])
  w_plus = np.array([[[0.0, 0.0]], [[0.0, 0.0]], [[-10.0, 0.0]]])
  masks = np.ones((3, 4, 4, 1), np.float32)
  masks[0, :2] = masks[1, 2:] = masks[2, :2] = 0.0          # holes: top, bottom, top
  faces = np.zeros((3, 4, 4, 3), np.float32)
  base = np.stack(_row_complete(None, None, w_plus[None])[1][:1].repeat(2, 0))
  styles, done, found = _search(_row_complete, edits, (_RowRecognizer(), {}), faces,
                                            masks, w_plus, base, 1, (1.0, 2.0, 3.0), chunk=2)
  assert styles.shape == done.shape == (2, 3, 4, 4, 3)
  np.testing.assert_array_equal(found, [1, 1, 0])      # image 2's edit is never read (below)
  np.testing.assert_array_equal(done[0], base[1])
  # image 0: 'top' reads as class 1 from strength 2 on (x = 4 > 3): the least strength is kept
  np.testing.assert_allclose(done[1, 0, :2], 4.0)
  # image 1: at strength 2 both other 'bottom' classes are read (y = 6 and y = -10); the one
  # that changes the hole less (6) is kept
  np.testing.assert_allclose(done[1, 1, 2:], 6.0)
  # image 2: no strength reaches 'top' class 1 (x <= -4): the least sure class 0 is kept
  np.testing.assert_allclose(done[1, 2, :2], -4.0)
  with pytest.raises(ValueError, match="3 edits asked; only 2 attributes"):
    _search(_row_complete, edits, (_RowRecognizer(), {}), faces, masks, w_plus, base,
                        3, (1.0,))
  # A pool of both attributes, one kept: the edit the recognizer reads as a change, the least
  # hole change first. Image 2's 'top' edit is never read (above); its 'bottom' edit is read
  # at strength 2 and leaves the hole (the top rows) as it was: that one is kept.
  styles, pooled, found = _search(_row_complete, edits, (_RowRecognizer(), {}),
                                              faces, masks, w_plus, base, 1, (1.0, 2.0, 3.0),
                                              chunk=2, pool=2)
  assert styles.shape == pooled.shape == (2, 3, 4, 4, 3)
  np.testing.assert_array_equal(found, [2, 2, 1])     # one kept, all the read ones counted
  np.testing.assert_array_equal(pooled[0], base[1])
  np.testing.assert_allclose(pooled[1, 2, :2], -10.0)              # the hole is unchanged
  np.testing.assert_allclose(pooled[1, 2, 2:], 6.0)                # 'bottom' read as class 1
  # image 1 (hole at the bottom): both are read; 'top' (strength 2) changes its hole less
  np.testing.assert_allclose(pooled[1, 1, :2], 4.0)
  np.testing.assert_allclose(pooled[1, 1, 2:], 0.0)
  # A margin: image 0's 'top' class 1 reads with p = sigmoid((x - 3) / 4), 0.56 at strength 2
  # (x = 4) and 0.68 at 3 (x = 6): asking 0.6 takes strength 3.
  _, sure, _ = _search(_row_complete, edits, (_RowRecognizer(), {}), faces, masks,
                                   w_plus, base, 1, (1.0, 2.0, 3.0), chunk=2, margin=0.6)
  np.testing.assert_allclose(sure[1, 0, :2], 6.0)
  np.testing.assert_allclose(sure[1, 1], done[1, 1])   # 'bottom' reads surely at strength 2
  # A second recognizer that must agree, reading 'top' as class 1 only above 5: image 0's 'top'
  # edit then takes strength 3 (x = 6); 'bottom', which both read alike, is unchanged.
  _, both, _ = _search(_row_complete, edits, (_RowRecognizer(), {}), faces, masks,
                                   w_plus, base, 1, (1.0, 2.0, 3.0), chunk=2,
                                   agree=((_RowRecognizer(top_at=5.0), {}),))
  np.testing.assert_allclose(both[1, 0, :2], 6.0)
  np.testing.assert_allclose(both[1, 1], done[1, 1])


def test_minimal_edits_per_class_search_each_target_class_to_its_own_strength():
  full = _edits()                    # 'bottom': class 1 reads above y = 4, class 2 below -8
  edits = le.LabelledEdits({"bottom": full.means["bottom"]},
                              {"bottom": full.regions["bottom"]})
  w_plus = np.zeros((2, 1, 2))
  masks = np.ones((2, 4, 4, 1), np.float32)
  masks[0, 2:] = masks[1, :2] = 0.0                         # holes: bottom, top
  faces = np.zeros((2, 4, 4, 3), np.float32)
  base = np.stack(_row_complete(None, None, w_plus[None])[1][:1].repeat(2, 0))
  search = (_row_complete, edits, (_RowRecognizer(), {}), faces, masks, w_plus, base)
  with pytest.raises(ValueError, match="2 edits asked; only 1 attributes$"):
    _search(*search, 2, (1.0, 2.0, 3.0))
  _, one, _ = _search(*search, 1, (1.0, 2.0, 3.0), chunk=2)
  np.testing.assert_allclose(one[1, :, 2:], 6.0)     # one slot: the first strength read (2)
  _, done, found = _search(*search, 2, (1.0, 2.0, 3.0), chunk=2, per_class=True)
  np.testing.assert_array_equal(found, [2, 2])
  assert done.shape == (3, 2, 4, 4, 3)
  np.testing.assert_array_equal(done[0], base[1])
  # image 0: class 1 is read at strength 2 (y = 6), class 2 only at 3 (y = -9): both kept,
  # the smaller hole change first
  np.testing.assert_allclose(done[1, 0, 2:], 6.0)
  np.testing.assert_allclose(done[2, 0, 2:], -9.0)
  # image 1: neither touches its hole (the top rows): both kept, each at its own strength
  assert sorted(float(done[k, 1, 2, 0, 0]) for k in (1, 2)) == [-9.0, 6.0]
  np.testing.assert_allclose(done[1:, :, :2], 0.0)
  with pytest.raises(ValueError, match="3 edits asked; only 1 attributes of at most 3 classes"):
    _search(*search, 3, (1.0,), per_class=True)


def test_local_edits_keep_the_style_image_outside_the_attributes_region():
  edits = _edits()                   # 'top' region: rows 0-1 (1/8 each), 0 on rows 2-3
  np.testing.assert_allclose(edits.weight("top", 0.5), np.repeat([[1.0], [1.0], [0.0], [0.0]],
                                                                  4, axis=1))
  region = edits.regions["top"].copy()
  region[1] = 1 / 32                 # a quarter of the peak: weight 1/2 at level 0.5
  half = le.LabelledEdits(edits.means, {"top": region}).weight("top", 0.5)
  np.testing.assert_allclose(half[:, 0], [1.0, 0.5, 0.0, 0.0])
  # 'top' class 1 now also moves y (what rows 2-3 show): a whole-image edit changes them too,
  # a local one keeps completion 00's style image there
  means = {"top": {0: np.array([[0.0, 0.0]]), 1: np.array([[2.0, 1.0]])}}
  edits = le.LabelledEdits(means, {"top": edits.regions["top"]})

  w_plus = np.zeros((1, 1, 2))
  masks = np.ones((1, 4, 4, 1), np.float32)
  masks[0, :2] = 0.0
  base = np.stack(_row_complete(None, None, w_plus[None])[1][:1].repeat(2, 0))
  search = (_local_complete, edits, (_RowRecognizer(), {}), np.zeros((1, 4, 4, 3), np.float32),
            masks, w_plus, base, 1, (1.0, 2.0))
  _, whole, _ = _search(*search)
  np.testing.assert_allclose(whole[1, 0, :2], 4.0)          # read at strength 2 (x = 4)
  np.testing.assert_allclose(whole[1, 0, 2:], 2.0)
  styles, local, _ = _search(*search, local=0.5)
  np.testing.assert_allclose(local[1, 0, :2], 4.0)
  np.testing.assert_allclose(local[1, 0, 2:], 0.0)
  np.testing.assert_allclose(styles[1], local[1])


def test_edits_at_two_local_levels_keep_one_per_change_the_cheaper_read_first():
  top = np.zeros((4, 4))
  top[:2] = 1 / 8
  means = {"top": {0: np.array([[0.0, 0.0]]), 1: np.array([[2.0, 1.0]])}}   # moves y too

  w_plus = np.zeros((2, 1, 2))
  masks = np.ones((2, 4, 4, 1), np.float32)
  masks[:, :3] = 0.0                 # holes over rows 0-2: y (row 2) counts as hole change
  base = np.stack(_row_complete(None, None, w_plus[None])[1][:1].repeat(2, 0))
  faces = np.zeros((2, 4, 4, 3), np.float32)
  # the right region (rows 0-1): both levels are read at strength 2; the local edit leaves
  # row 2 as it was, so it changes the hole less and is the one kept
  edits = le.LabelledEdits(means, {"top": top})
  search = (_local_complete, edits, (_RowRecognizer(), {}), faces, masks, w_plus, base, 1,
            (1.0, 2.0))
  _, done, found = _search(*search, local=(0.5, 0.0))
  np.testing.assert_allclose(done[1, :, :2], 4.0)
  np.testing.assert_allclose(done[1, :, 2:], 0.0)
  np.testing.assert_array_equal(found, [1, 1])           # one change, not one per level
  with pytest.raises(ValueError, match="2 edits asked; only 1 attributes$"):
    _search(*search[:-2], 2, (1.0, 2.0), local=(0.5, 0.0))
  # a region where the recognizer does not look (rows 2-3): the local edit is never read, the
  # whole-image one is kept
  edits = le.LabelledEdits(means, {"top": top[::-1]})
  _, done, found = _search(_local_complete, edits, *search[2:], local=(0.5, 0.0))
  np.testing.assert_allclose(done[1, :, :2], 4.0)
  np.testing.assert_allclose(done[1, :, 2:], 2.0)
  np.testing.assert_array_equal(found, [1, 1])
  _, alone, found = _search(_local_complete, edits, *search[2:], local=0.5)
  np.testing.assert_allclose(alone[1, :, :2], 0.0)       # local only: nothing read
  np.testing.assert_array_equal(found, [0, 0])




def test_the_search_says_what_each_kept_edit_changed():
  edits = _edits()
  edits.class_names = {"bottom": {0: "flat", 1: "up", 2: "down"}}
  w_plus = np.zeros((2, 1, 2))
  masks = np.ones((2, 4, 4, 1), np.float32)
  masks[0, :2] = masks[1, 2:] = 0.0                         # holes: top, bottom
  faces = np.zeros((2, 4, 4, 3), np.float32)
  base = np.stack(_row_complete(None, None, w_plus[None])[1][:1].repeat(2, 0))
  found = le.minimal_edits(_row_complete, edits, (_RowRecognizer(), {}), faces, masks, w_plus,
                           base, 2, (1.0, 2.0, 3.0), chunk=2)
  # image 0: 'top' (its hole) read at strength 2 towards class 1; 'bottom' at 2 towards class 1
  # (y = 6 reads before y = -6 does). Image 1: 'bottom' first, then 'top', the same strengths.
  np.testing.assert_array_equal(found.attribute, [[0, 1], [1, 0]])
  np.testing.assert_array_equal(found.target, [[1, 1], [1, 1]])
  np.testing.assert_array_equal(found.strength, [[2.0, 2.0], [2.0, 2.0]])
  np.testing.assert_array_equal(found.level, 0.0)
  assert found.read.all()
  assert edits.describe(0, 1) == "top -> 1" and edits.describe(1, 2) == "bottom -> down"
  # local edits at level 0.5 are recorded as such; an edit never read is flagged
  local = le.minimal_edits(_local_complete, edits, (_RowRecognizer(), {}), faces, masks,
                           w_plus, base, 1, (1.0,), chunk=2, local=0.5)
  np.testing.assert_array_equal(local.level, 0.5)
  np.testing.assert_array_equal(local.read, False)       # strength 1 reads nothing


def test_padded_variants_change_nothing_and_share_one_shape():
  edits = _edits()                   # 'top': 1 other class, 'bottom': 2
  w_plus = np.array([[[0.0, 0.0]], [[0.5, 1.0]]])
  masks = np.ones((2, 4, 4, 1), np.float32)
  masks[0, :2] = masks[1, 2:] = 0.0
  faces = np.zeros((2, 4, 4, 3), np.float32)
  base = np.stack(_row_complete(None, None, w_plus[None])[1][:1].repeat(2, 0))
  shapes = []

  def complete(faces, masks, latents):
    shapes.append(latents.shape[0])
    return _row_complete(faces, masks, latents)

  args = (edits, (_RowRecognizer(), {}), faces, masks, w_plus, base, 3, (1.0, 2.0, 3.0))
  plain = le.minimal_edits(complete, *args, chunk=2, per_class=True)
  assert set(shapes) == {1, 2}
  shapes.clear()
  padded = le.minimal_edits(complete, *args, chunk=2, per_class=True, variants=4)
  assert set(shapes) == {4}
  for a, b in zip(plain, padded):
    np.testing.assert_array_equal(a, b)


def test_the_edits_file_keeps_everything_and_refuses_other_files(tmp_path):
  edits = _edits()
  edits.psp, edits.class_names = "abc123", {"bottom": {0: "flat", 1: "up", 2: "down"}}
  path = str(tmp_path / le.FILE_NAME)
  edits.save(path)
  back = le.LabelledEdits.load(path)
  assert list(back.regions) == ["top", "bottom"] and back.psp == "abc123"
  assert back.class_names == edits.class_names
  for attribute, classes in edits.means.items():
    assert sorted(back.means[attribute]) == sorted(classes)
    for c, mean in classes.items():
      np.testing.assert_allclose(back.means[attribute][c], mean)
    np.testing.assert_allclose(back.regions[attribute], edits.regions[attribute])
  (tmp_path / "bad.npz").write_bytes(b"not a zip")
  with pytest.raises(ValueError, match="bad.npz: not a labelled-edits file"):
    le.LabelledEdits.load(str(tmp_path / "bad.npz"))
  np.savez(tmp_path / "half.npz", psp=np.asarray(""), **{"mean/top/0": np.zeros((1, 2))})
  with pytest.raises(ValueError, match="each attribute needs a region and two or more"):
    le.LabelledEdits.load(str(tmp_path / "half.npz"))
  with pytest.raises(FileNotFoundError, match="has no labelled_edits.npz.*fit_edits"):
    le.load_for_run(str(tmp_path / "elsewhere"))
  with pytest.raises(ValueError, match="fitted on the codes of another pSp"):
    le.load_for_run(str(tmp_path), {"params": {"w": np.zeros(3)}})


def test_search_settings_refuse_what_cannot_be_searched():
  assert le.Search().problem() is None
  assert "positive" in le.Search(strengths=(0.0, 1.0)).problem()
  assert "below 1" in le.Search(margin=1.0).problem()
  assert "distinct" in le.Search(local=(0.5, 0.5)).problem()
  with pytest.raises(ValueError, match="is the toy judge"):
    le.load_recognizer("toy-judge")


def test_fit_edits_refuses_what_it_cannot_write_or_read(tmp_path):
  from tests.test_cli import run_cli  # pylint: disable=import-outside-toplevel
  proc = run_cli("difai_jax.fit_edits", "--checkpoint", "toy-difai", "--out", str(tmp_path))
  assert proc.returncode == 1 and "give a file path in an existing folder" in proc.stderr
  proc = run_cli("difai_jax.fit_edits", "--checkpoint", str(tmp_path / "nowhere"))
  assert proc.returncode == 1 and "is not a folder (a trained DiFAI run)" in proc.stderr
  assert not os.listdir(tmp_path)


def test_hostile_edits_files_are_refused_by_name(tmp_path):
  edits = _edits()
  path = tmp_path / "ok.npz"
  edits.save(str(path))
  data = path.read_bytes()
  (tmp_path / "cut.npz").write_bytes(data[:len(data) // 2])          # a truncated zip
  with pytest.raises(ValueError, match="cut.npz: not a labelled-edits file"):
    le.LabelledEdits.load(str(tmp_path / "cut.npz"))
  arrays = dict(np.load(path))
  for name, bad in (("nan", np.full((1, 2), np.nan)), ("shape", np.zeros((1, 3))),
                    ("ints", np.zeros((1, 2), np.int64))):
    np.savez(tmp_path / f"{name}.npz", **{**arrays, "mean/top/1": bad})
    with pytest.raises(ValueError, match=f"{name}.npz: not a labelled-edits file .class means"):
      le.LabelledEdits.load(str(tmp_path / f"{name}.npz"))


def test_several_recognizers_read_as_one_give_their_mean_probabilities():
  """A comma-separated edit recognizer: an Ensemble whose softmax is the members' mean (math:
  softmax(log p) = p for a distribution p) and whose embedding is theirs concatenated; the
  judge is refused inside a list too, and members must name the same attributes."""
  module, variables = toy.load_toy_recognizer("toy-recognizer")
  images = np.random.default_rng(0).uniform(-1, 1, (3, 64, 64, 3)).astype(np.float32)
  other = module.init(jax.random.PRNGKey(1), images)            # a second member, random weights
  both, both_vars = recognizer_lib.ensemble([(module, variables), (module, other)])
  out = both.apply(both_vars, images)
  one, two = module.apply(variables, images), module.apply(other, images)
  for name, _ in module.attributes:
    mean = (jax.nn.softmax(one["logits"][name]) + jax.nn.softmax(two["logits"][name])) / 2
    np.testing.assert_allclose(jax.nn.softmax(out["logits"][name]), mean, atol=1e-6)
  np.testing.assert_array_equal(out["embedding"], np.concatenate([one["embedding"],
                                                                  two["embedding"]], -1))
  # Two copies of one recognizer read exactly as it does.
  twice = le.load_recognizer("toy-recognizer, toy-recognizer")
  alone, paired = (toy.predict_attributes(*r, images) for r in ((module, variables), twice))
  np.testing.assert_array_equal(alone.labels, paired.labels)
  np.testing.assert_allclose(alone.confidence, paired.confidence, atol=1e-6)
  with pytest.raises(ValueError, match="is the toy judge"):
    le.load_recognizer("toy-recognizer,toy-judge")
  with pytest.raises(ValueError, match="an empty recognizer name"):
    le.load_recognizer("toy-recognizer,")
  narrow = recognizer_lib.Recognizer(attributes=(("glasses", 3),))
  with pytest.raises(ValueError, match="must name the same attributes"):
    recognizer_lib.ensemble([(module, variables), (narrow, narrow.init(jax.random.PRNGKey(0),
                                                                       images))])
