"""grain input pipelines for training and evaluation.

Training (`make_train_dataset` / `make_train_iterator`): each host takes its shard of the train
split (image indices `process_index::process_count`, so a host reads only its own files),
shuffles it with the seed (reshuffled every epoch), repeats forever, pairs every image with a
freshly drawn training mask and an optional horizontal flip, and batches to the per-host batch
`global_batch_size // process_count`. Randomness of element k of host p comes from
`default_rng([seed, p, k])`: batches are a function of (seed, host, step) only, so a resumed run
(iterator state restored through `get_state` / `set_state`, i.e. `grain.checkpoint` / orbax, or
`start_step=`) sees the batches it would have seen. Worker processes (`num_workers > 0`) use
grain's `mp_prefetch`; everything they run is a top-level, picklable class.

Evaluation (`make_eval_dataset`): the test split paired in order with one bucket's fixed masks
(test image i gets bucket mask i mod M), padded to a multiple of `process_count * batch_size`
(padding rows carry `valid = False`) and sharded per host.

Batches are dicts: "image" float32 (B, H, W, 3) in [-1, 1], "mask" float32 (B, H, W, 1) with
1 = known, 0 = hole (eq. 1); evaluation batches add "index" int32 and "valid" bool.
"""

from __future__ import annotations

from typing import Optional

import grain
import numpy as np

from difai_jax.data import image_io
from difai_jax.data import masks as masks_lib
from difai_jax.data import sources


def make_mask_sampler(config, image_size: int) -> masks_lib.MaskSampler:
  """The training MaskSampler described by `config.masks`."""
  m = config.masks
  external = None
  if m.external_dir:
    external = masks_lib.ExternalMaskSet(m.external_dir, convention=m.external_convention,
                                         threshold=m.threshold, strict=m.strict)
  return masks_lib.MaskSampler(image_size, dict(m.probs), square_side_at_256=m.square_side_at_256,
                               max_strokes=m.max_strokes, max_hole_ratio=m.max_hole_ratio,
                               external=external)


class TrainExample(grain.transforms.MapWithIndex):
  """(position k in this host's stream, image index) -> {"image", "mask"}; runs in workers."""

  def __init__(self, source, mask_sampler, seed: int, process_index: int, random_flip: bool):
    # mask_sampler None: images only (e.g. the StyleGAN2 and pSp stages).
    self.source = source
    self.mask_sampler = mask_sampler
    self.seed = int(seed)
    self.process_index = int(process_index)
    self.random_flip = bool(random_flip)

  def map_with_index(self, index: int, element: int):
    rng = np.random.default_rng([self.seed, self.process_index, int(index)])
    image = self.source[int(element)]
    if self.random_flip and rng.uniform() < 0.5:
      image = image[:, ::-1]
    example = {"image": image_io.uint8_to_float(image)}
    if self.mask_sampler is not None:
      example["mask"] = self.mask_sampler(rng)
    return example


def _check_sharding(global_batch_size: int, process_index: int, process_count: int) -> int:
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f"need 0 <= process_index < process_count; got {process_index}, "
                     f"{process_count}")
  if global_batch_size % process_count:
    raise ValueError(f"global batch size {global_batch_size} is not divisible by the number of "
                     f"processes {process_count}")
  return global_batch_size // process_count


def _jax_process(process_index, process_count):
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  return int(process_index), int(process_count)


def make_train_dataset(config, *, image_size: int, global_batch_size: int, seed: int,
                       process_index: Optional[int] = None, process_count: Optional[int] = None,
                       source=None, verbose: bool = True,
                       with_masks: bool = True) -> grain.MapDataset:
  """This host's infinite training MapDataset of batches (element s = batch of step s).

  Args:
    config: the data ConfigDict (config.default_data_config()).
    image_size: side in pixels.
    global_batch_size: batch over all hosts; each host yields global_batch_size // process_count.
    seed: shuffling and augmentation seed.
    process_index, process_count: this host and the number of hosts (default: from jax).
    source: an already-built train source (default: `sources.make_source(config, "train")`).
    with_masks: pair each image with a training mask (False: {"image"} only).
  """
  process_index, process_count = _jax_process(process_index, process_count)
  per_host = _check_sharding(global_batch_size, process_index, process_count)
  source = source if source is not None else sources.make_source(config, "train", image_size,
                                                                 verbose=verbose)
  if len(source) < process_count:
    raise ValueError(f"train split has {len(source)} images, fewer than the {process_count} hosts")
  indices = grain.MapDataset.range(len(source))[process_index::process_count]
  ds = indices.shuffle(seed=int(seed)).repeat(None)
  sampler = make_mask_sampler(config, image_size) if with_masks else None
  ds = ds.map_with_index(TrainExample(source, sampler, seed, process_index, config.random_flip))
  return ds.batch(per_host, drop_remainder=True)


def make_train_iterator(config, *, image_size: int, global_batch_size: int, seed: int,
                        process_index: Optional[int] = None, process_count: Optional[int] = None,
                        num_workers: Optional[int] = None, start_step: int = 0,
                        source=None, verbose: bool = True, with_masks: bool = True):
  """A checkpointable iterator over this host's training batches.

  Yields {"image": float32 (B, H, W, 3) in [-1, 1], "mask": float32 (B, H, W, 1)}, B =
  global_batch_size // process_count. The iterator has `get_state()` / `set_state()`
  (save it with `grain.checkpoint.CheckpointHandler` / orbax). `start_step` skips to a step
  without a saved state (same batches, since a batch depends only on seed, host and step).
  `num_workers` defaults to `config.num_workers`; with workers, call from under a
  `if __name__ == "__main__":` guard (they are spawned).
  """
  ds = make_train_dataset(config, image_size=image_size, global_batch_size=global_batch_size,
                          seed=seed, process_index=process_index, process_count=process_count,
                          source=source, verbose=verbose, with_masks=with_masks)
  if start_step:
    ds = ds[int(start_step):]
  it_ds = ds.to_iter_dataset(grain.ReadOptions(
      num_threads=int(config.read_threads), prefetch_buffer_size=int(config.prefetch_buffer_size)))
  workers = config.num_workers if num_workers is None else num_workers
  if workers and workers > 0:
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=int(workers), per_worker_buffer_size=int(config.worker_buffer_size)))
  return iter(it_ds)


class EvalExample(grain.transforms.Map):
  """Padded position -> {"image", "mask", "index", "valid"}; runs in workers."""

  def __init__(self, source, bucket_masks, num_images: int):
    self.source = source
    self.bucket_masks = bucket_masks
    self.num_images = int(num_images)

  def map(self, element: int):
    i = int(element)
    valid = i < self.num_images
    j = i if valid else 0
    return {"image": image_io.uint8_to_float(self.source[j]),
            "mask": self.bucket_masks[j % len(self.bucket_masks)],
            "index": np.int32(j if valid else -1), "valid": np.bool_(valid)}


def make_eval_dataset(config, *, bucket: str, image_size: int, batch_size: int,
                      process_index: Optional[int] = None, process_count: Optional[int] = None,
                      num_images: Optional[int] = None, source=None,
                      verbose: bool = True, bucket_masks=None) -> grain.MapDataset:
  """This host's evaluation batches: test images in order with a bucket's fixed masks.

  The masks are written on first use by `masks.ensure_buckets(config.bucket_dir, ...)`, unless
  `bucket_masks` gives them (anything with `len()` and `[i] -> (H, W, 1)`, e.g. a mask folder
  made elsewhere: `difai_jax.evaluation.mask_exchange`). The test
  list (first `num_images` test images; default all) is padded to a multiple of
  `process_count * batch_size`; host p takes positions p, p + P, ... Every host gets the same
  number of batches; padding rows repeat image 0 with `valid = False` and `index = -1`.

  Returns:
    A MapDataset of batches {"image" (B, H, W, 3), "mask" (B, H, W, 1), "index" (B,),
    "valid" (B,)}; iterate it directly or through `.to_iter_dataset().mp_prefetch(...)`.
  """
  process_index, process_count = _jax_process(process_index, process_count)
  if bucket not in masks_lib.EVAL_BUCKET_RANGES:
    raise ValueError(f"unknown mask bucket {bucket!r}; expected one of "
                     f"{masks_lib.EVAL_BUCKET_NAMES}")
  source = source if source is not None else sources.make_source(config, "test", image_size,
                                                                 verbose=verbose)
  n = len(source) if num_images is None else min(int(num_images), len(source))
  if n <= 0:
    raise ValueError(f"evaluation needs at least one test image; got num_images={num_images}")
  if bucket_masks is None:
    bucket_masks = _generated_bucket(config, bucket, image_size, verbose)
  chunk = process_count * batch_size
  padded = -(-n // chunk) * chunk
  ds = grain.MapDataset.range(padded)[process_index::process_count]
  ds = ds.map(EvalExample(source, bucket_masks, n))
  return ds.batch(batch_size, drop_remainder=True)


def _generated_bucket(config, bucket: str, image_size: int, verbose: bool):
  """The fixed masks of `bucket` under `config.bucket_dir` (written on first use)."""
  external = None
  if config.quickdraw_from_external:
    m = config.masks
    if not m.external_dir:
      raise ValueError("quickdraw_from_external=True needs data.masks.external_dir")
    external = masks_lib.ExternalMaskSet(m.external_dir, convention=m.external_convention,
                                         threshold=m.threshold, strict=m.strict)
  root = masks_lib.ensure_bucket(config.bucket_dir, image_size, bucket, config.masks_per_bucket,
                                 seed=config.bucket_seed, external=external, verbose=verbose)
  return masks_lib.BucketMasks(root, bucket)
