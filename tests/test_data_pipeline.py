"""Tests for the grain pipelines: per-host shards, determinism, resume, workers, evaluation."""

import numpy as np
import pytest
from absl import flags

from difai_jax.data import default_data_config, masks
from difai_jax.data.loader import (make_eval_dataset, make_train_dataset,
                                     make_train_iterator)
from difai_jax.data.toy_faces import render_face


class IndexImages:
  """A source whose image i is constant (i - 64) / 64 in [-1, 1] after conversion: ids survive."""

  def __init__(self, n, size=16):
    self.n, self.size = n, size

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    return np.full((self.size, self.size, 3), 2 * i, np.uint8)


def _ids(batch):
  return np.round((batch["image"][:, 0, 0, 0] + 1) * 127.5 / 2).astype(int).tolist()


def _cfg():
  c = default_data_config()
  c.num_train, c.num_test = 12, 5
  return c


def test_two_hosts_see_disjoint_shards_covering_each_epoch():
  src = IndexImages(12)
  seen = []
  for p in range(2):
    ds = make_train_dataset(_cfg(), image_size=16, global_batch_size=4, seed=1, process_index=p,
                            process_count=2, source=src, verbose=False)
    epoch = sum((_ids(ds[s]) for s in range(3)), [])     # 6 images per host per epoch
    assert sorted(epoch) == sorted(set(epoch))
    nxt = sum((_ids(ds[s]) for s in range(3, 6)), [])    # the next epoch: same shard, reshuffled
    assert sorted(nxt) == sorted(epoch) and nxt != epoch
    b = ds[0]
    assert b["image"].shape == (2, 16, 16, 3) and b["mask"].shape == (2, 16, 16, 1)
    assert b["image"].dtype == np.float32 and b["mask"].dtype == np.float32
    masks.validate_mask(b["mask"], allow_no_hole=False)
    seen.append(set(epoch))
  assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(12))


def test_batches_are_deterministic_and_resumable():
  kw = dict(image_size=32, global_batch_size=2, seed=3, process_index=0, process_count=1,
            verbose=False)
  it = make_train_iterator(_cfg(), **kw)
  first = [next(it) for _ in range(3)]
  state = it.get_state()
  rest = [next(it) for _ in range(2)]
  again = make_train_iterator(_cfg(), **kw)
  for a, b in zip(first, [next(again) for _ in range(3)]):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["mask"], b["mask"])
  resumed = make_train_iterator(_cfg(), **kw)
  resumed.set_state(state)
  skipped = make_train_iterator(_cfg(), start_step=3, **kw)
  for want in rest:
    for got in (next(resumed), next(skipped)):
      np.testing.assert_array_equal(got["image"], want["image"])
      np.testing.assert_array_equal(got["mask"], want["mask"])
  other = make_train_iterator(_cfg(), **{**kw, "seed": 4})
  assert not np.array_equal(next(other)["mask"], first[0]["mask"])
  # Images are toy faces, possibly flipped, in [-1, 1].
  img = first[0]["image"][0]
  faces = [render_face(0, i, 32) / 127.5 - 1 for i in range(12)]
  assert any(np.allclose(img, f, atol=1e-6) or np.allclose(img, f[:, ::-1], atol=1e-6)
             for f in faces)


def test_worker_processes_give_the_same_batches():
  flags.FLAGS.mark_as_parsed()
  kw = dict(image_size=32, global_batch_size=2, seed=0, process_index=0, process_count=1,
            verbose=False)
  want = make_train_iterator(_cfg(), num_workers=0, **kw)
  got = make_train_iterator(_cfg(), num_workers=2, **kw)
  for _ in range(4):
    a, b = next(want), next(got)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["mask"], b["mask"])


def test_bad_sharding_arguments():
  with pytest.raises(ValueError, match="not divisible by the number of processes 2"):
    make_train_dataset(_cfg(), image_size=16, global_batch_size=3, seed=0, process_index=0,
                       process_count=2, source=IndexImages(4))
  with pytest.raises(ValueError, match="process_index < process_count"):
    make_train_dataset(_cfg(), image_size=16, global_batch_size=4, seed=0, process_index=2,
                       process_count=2, source=IndexImages(4))


def test_eval_dataset_pairs_test_images_with_bucket_masks_per_host(tmp_path):
  cfg = _cfg()
  cfg.bucket_dir = str(tmp_path)
  cfg.masks_per_bucket = 3
  got = {}
  for p in range(2):
    ds = make_eval_dataset(cfg, bucket="20-30", image_size=32, batch_size=2, process_index=p,
                           process_count=2, verbose=False)
    assert len(ds) == 2  # 5 test images padded to 8 = 2 hosts x 2 batches x 2
    for s in range(len(ds)):
      b = ds[s]
      assert b["image"].shape == (2, 32, 32, 3) and b["mask"].shape == (2, 32, 32, 1)
      for k in range(2):
        got.setdefault(int(b["index"][k]), []).append((p, bool(b["valid"][k]), b["image"][k],
                                                       b["mask"][k]))
  assert sorted(got) == [-1, 0, 1, 2, 3, 4] and len(got[-1]) == 3
  bucket = masks.load_bucket(cfg.bucket_dir + "/32px", "20-30")
  for i in range(5):
    (p, valid, image, mask), = got[i]
    assert valid and p == i % 2
    np.testing.assert_allclose(image, render_face(cfg.toy_seed, 12 + i, 32) / 127.5 - 1,
                               atol=1e-6)
    np.testing.assert_array_equal(mask, bucket[i % 3])
  assert not any(v for _, v, _, _ in got[-1])
  with pytest.raises(ValueError, match="unknown mask bucket"):
    make_eval_dataset(cfg, bucket="60-70", image_size=32, batch_size=2, process_index=0,
                      process_count=1)
