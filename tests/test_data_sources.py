"""Tests for the image sources: toy faces, image folders (split rules, bad files), tfds (mocked)."""

import json
import os
import pickle
import warnings

import numpy as np
import pytest
from PIL import Image

from difai_jax.data import default_data_config
from difai_jax.data import sources
from difai_jax.data.toy_faces import ToyFaces, render_face


# -- toy faces --------------------------------------------------------------------------------
def test_toy_faces_deterministic_and_order_independent():
  a = ToyFaces(32, 10, seed=3)
  forward = [a[i] for i in range(4)]
  backward = [ToyFaces(32, 10, seed=3)[i] for i in reversed(range(4))][::-1]
  for f, b in zip(forward, backward):
    assert f.dtype == np.uint8 and f.shape == (32, 32, 3)
    np.testing.assert_array_equal(f, b)
  assert np.abs(forward[0].astype(int) - forward[1].astype(int)).mean() > 10
  assert np.abs(render_face(4, 0, 32).astype(int) - forward[0].astype(int)).mean() > 10
  # The test split is a disjoint index range of the same stream.
  np.testing.assert_array_equal(ToyFaces(32, 2, seed=3, offset=2)[0], forward[2])


def test_toy_faces_cache_returns_the_drawn_face_and_private_copies():
  cached, uncached = ToyFaces(32, 6, seed=2), ToyFaces(32, 6, seed=2, cache_bytes=0)
  first = cached[3]
  first[:] = 0                                    # the caller's copy, not the cache
  for _ in range(2):                              # drawn once, then served from memory
    np.testing.assert_array_equal(cached[3], uncached[3])
  assert cached._cached.sum() == 1 and uncached._cache is None
  clone = pickle.loads(pickle.dumps(cached))      # a worker process: its own, empty cache
  assert clone._cache is None
  np.testing.assert_array_equal(clone[3], uncached[3])
  big = ToyFaces(256, 10, cache_bytes=10 * 256 * 256 * 3 - 1)   # does not fit: no cache
  big[0]
  assert big._cache is None


def test_toy_faces_sizes_and_errors():
  for size in (32, 48, 256):
    assert render_face(0, 1, size).shape == (size, size, 3)
  # Same face at two sizes: the small one is close to the big one reduced.
  big = Image.fromarray(render_face(0, 1, 256)).resize((32, 32), Image.BOX)
  small = render_face(0, 1, 32)
  assert np.abs(np.asarray(big, float) - small).mean() < 12
  with pytest.raises(ValueError, match="sizes 32..256"):
    ToyFaces(16, 4)
  with pytest.raises(ValueError, match="num_images"):
    ToyFaces(32, 0)
  with pytest.raises(IndexError):
    ToyFaces(32, 4)[4]


def test_toy_faces_have_variety_in_every_face_region():
  faces = np.stack([render_face(0, i, 64) for i in range(24)]).astype(np.float32)
  # Mouth / chin, eyes and hair regions must all vary across faces (completions can differ).
  for name, (y0, y1, x0, x1) in {"eyes": (22, 32, 16, 48), "mouth": (38, 50, 20, 44),
                                 "hair": (4, 16, 16, 48)}.items():
    patch = faces[:, y0:y1, x0:x1].reshape(24, -1)
    spread = np.abs(patch[:, None] - patch[None]).mean(-1)
    assert np.median(spread[np.triu_indices(24, 1)]) > 15, name
  # Mean colour is face-like: not flat, not saturated.
  assert 40 < faces.mean() < 200 and faces.std() > 30


# -- image folder -----------------------------------------------------------------------------
def _write(path, arr, fmt=None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(arr).save(path, format=fmt)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  root = tmp_path_factory.mktemp("faces")
  for i in range(10):
    arr = np.full((20, 20, 3), 20 * i, np.uint8)
    ext = ["png", "jpg", "webp"][i % 3]
    sub = "a" if i < 5 else os.path.join("b", "c")
    _write(str(root / sub / f"{i}.{ext}"), arr)
  # Grayscale, RGBA and non-square (red | green | red stripes) files.
  _write(str(root / "10.png"), np.full((20, 20), 200, np.uint8))
  rgba = np.zeros((20, 20, 4), np.uint8)
  rgba[..., 2] = 255
  rgba[:10, :, 3] = 255
  _write(str(root / "11.png"), rgba)
  wide = np.zeros((20, 40, 3), np.uint8)
  wide[:, :10, 0] = 255
  wide[:, 10:30, 1] = 255
  wide[:, 30:, 0] = 255
  _write(str(root / "12.png"), wide)
  (root / "13.png").write_bytes(b"\x89PNG broken")
  (root / "notes.txt").write_text("not an image")
  return str(root)


def test_folder_lists_recursively_in_natural_order(folder):
  files = sources.list_image_files(folder)
  assert len(files) == 14  # 13 images + the broken one; notes.txt ignored
  names = [os.path.splitext(os.path.basename(f))[0] for f in files]
  # Natural order of relative paths: "10.png" < "a/0.png" < "a/2.webp" < "a/3.png" < "b/c/5..".
  assert names == ["10", "11", "12", "13", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]


def test_folder_default_split_and_conversions(folder, capsys):
  train = sources.FolderSource(folder, 16, "train", num_train=10, num_test=3)
  test = sources.FolderSource(folder, 16, "test", num_train=10, num_test=3, verbose=False)
  out = capsys.readouterr().out
  assert "1 unreadable skipped" in out and "13.png" in out and "last 3 of 13" in out
  assert len(train) == 10 and len(test) == 3 and train.skipped == ["13.png"]
  assert not set(train.files) & set(test.files)
  for src in (train, test):
    for i in range(len(src)):
      img = src[i]
      assert img.shape == (16, 16, 3) and img.dtype == np.uint8
  by_name = {os.path.basename(f): train[i] for i, f in enumerate(train.files)}
  np.testing.assert_array_equal(by_name["10.png"][..., 0], by_name["10.png"][..., 2])  # gray
  assert by_name["11.png"][0, 0].tolist() == [0, 0, 255]          # opaque blue
  assert by_name["11.png"][15, 15].tolist() == [255, 255, 255]    # transparent -> white
  wide = by_name["12.png"]                                         # centre crop: green only
  assert wide[..., 0].max() < 30 and wide[..., 1].min() > 220
  assert sources.num_test_for(30000) == 2000


def test_folder_split_file_text_and_json(folder, tmp_path):
  txt = tmp_path / "split.txt"
  txt.write_text("# name label\n0.png 0\na/1.jpg train\n2.webp 2\n5.webp test\n6.png 1\n")
  train = sources.FolderSource(folder, 8, "train", split_file=str(txt), verbose=False)
  test = sources.FolderSource(folder, 8, "test", split_file=str(txt), verbose=False)
  assert [os.path.basename(f) for f in train.files] == ["0.png", "1.jpg"]
  assert [os.path.basename(f) for f in test.files] == ["2.webp", "5.webp"]
  js = tmp_path / "split.json"
  js.write_text(json.dumps({"train": ["3.png", "13.png"], "test": ["9.png"]}))
  train = sources.FolderSource(folder, 8, "train", split_file=str(js), verbose=False)
  assert [os.path.basename(f) for f in train.files] == ["3.png"]  # 13.png skipped as unreadable
  bad = tmp_path / "bad.txt"
  bad.write_text("0.png 0\nnope.png 0\n")
  with pytest.raises(ValueError, match="1 train images not found.*nope.png"):
    sources.FolderSource(folder, 8, "train", split_file=str(bad), verbose=False)
  bad.write_text("0.png maybe\n")
  with pytest.raises(ValueError, match="line 1"):
    sources.FolderSource(folder, 8, "train", split_file=str(bad), verbose=False)
  with pytest.raises(ValueError, match="split file not found"):
    sources.FolderSource(folder, 8, "train", split_file=str(tmp_path / "x.txt"), verbose=False)


def test_folder_bad_inputs(folder, tmp_path):
  with pytest.raises(ValueError, match="cannot read image file.*13.png"):
    sources.FolderSource(folder, 8, "train", on_corrupt="raise", verbose=False)
  # Corrupt files found at load time (verify=False): skipped with a warning, or raised.
  lazy = sources.FolderSource(folder, 8, "train", num_train=10, num_test=3, verify=False,
                              verbose=False)
  k = [os.path.basename(f) for f in lazy.files].index("13.png")
  with pytest.warns(UserWarning, match=r"skipping unreadable image \(1 found so far in this "
                    r"process, each reported once; using the next image instead\):.*13.png"):
    img = lazy[k]
  np.testing.assert_array_equal(img, lazy.load((k + 1) % len(lazy)))
  assert lazy.load_failures == 1
  # The next passes over the data skip it silently: reported once, not on every pass.
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    for _ in range(3):
      np.testing.assert_array_equal(lazy[k], img)
  assert lazy.load_failures == 1 and lazy.unreadable == {k}
  strict = sources.FolderSource(folder, 8, "train", num_train=10, num_test=3, verify=False,
                                on_corrupt="raise", verbose=False)
  with pytest.raises(ValueError, match="13.png"):
    strict[k]
  with pytest.raises(ValueError, match="needs a path"):
    sources.list_image_files("")


def test_unusable_folders_raise_one_line_data_errors(tmp_path):
  """The message is complete on its own: entry points print it alone, without a traceback."""
  empty = tmp_path / "empty"
  (empty / "sub").mkdir(parents=True)
  (tmp_path / "a_file").write_text("x")
  cases = [
      (str(empty), f"image folder {str(empty)!r} holds no images (.jpg, .jpeg, .png, .webp), "
       "searched recursively (config.data.path)"),
      (str(tmp_path / "missing"), f"image folder not found: {str(tmp_path / 'missing')!r} does "
       "not exist (config.data.path)"),
      (str(tmp_path / "a_file"), f"image folder not found: {str(tmp_path / 'a_file')!r} is a "
       "file, not a folder (config.data.path)"),
      ("", "image folder source needs a path: set --config.data.path=DIR"),
  ]
  for root, message in cases:
    with pytest.raises(sources.DataError) as e:
      sources.FolderSource(root, 8)
    assert str(e.value) == message
    assert isinstance(e.value, ValueError)   # callers that catch ValueError still do
  cfg = default_data_config()
  cfg.source, cfg.path = "folder", str(empty)
  with pytest.raises(sources.DataError, match="holds no images"):
    sources.make_source(cfg, "train", 32, verbose=False)
  assert sorted(os.listdir(tmp_path)) == ["a_file", "empty"]   # nothing written
  with pytest.raises(ValueError, match="split must be"):
    sources.FolderSource(folder, 8, "val")


# -- tfds -------------------------------------------------------------------------------------
def test_tfds_source_with_mock_data():
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=6):
    raw = tfds.data_source("celeb_a_hq/128", split="train")
    want = [np.asarray(Image.fromarray(raw[i]["image"]).resize((32, 32), Image.LANCZOS))
            for i in range(6)]
    cfg = default_data_config()
    cfg.source, cfg.tfds_name, cfg.num_train, cfg.num_test = "tfds", "celeb_a_hq/128", 4, 2
    train = sources.make_source(cfg, "train", 32, verbose=False)
    test = sources.make_source(cfg, "test", 32, verbose=False)
    assert (len(train), len(test)) == (4, 2)
    np.testing.assert_array_equal(train[3], want[3])
    np.testing.assert_array_equal(test[0], want[4])
    assert test[1].dtype == np.uint8 and test[1].shape == (32, 32, 3)
    with pytest.raises(IndexError):
      test[2]


def test_tfds_not_prepared_names_the_manual_step(tmp_path):
  with pytest.raises(ValueError, match="not prepared.*manual download.*tfds build"):
    sources.TfdsSource("celeb_a_hq/128", 32, data_dir=str(tmp_path))


def test_make_source_toy_and_unknown():
  cfg = default_data_config()
  cfg.num_train, cfg.num_test = 5, 3
  train = sources.make_source(cfg, "train", 32, verbose=False)
  test = sources.make_source(cfg, "test", 32, verbose=False)
  assert (len(train), len(test)) == (5, 3)
  np.testing.assert_array_equal(test[0], render_face(cfg.toy_seed, 5, 32))
  cfg.source = "webdataset"
  with pytest.raises(ValueError, match="unknown data source 'webdataset'"):
    sources.make_source(cfg, "train", 32)
