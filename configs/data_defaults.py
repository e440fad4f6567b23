"""The data part of a training / evaluation config (`config.data`): plain data, imported by
every config file and by ``difai_jax.data.config`` (which re-exports it).

Values follow the paper where it states them (CelebA-HQ 28,000 / 2,000 train / test; masks of
free-form strokes combined with 85x85 squares at 256 px; evaluation by hole-ratio bucket); the
rest are choices, each commented.
"""

import ml_collections


def default_data_config() -> ml_collections.ConfigDict:
  """Returns the data ConfigDict; every field can be overridden with `--config.data.x=y`."""
  c = ml_collections.ConfigDict()
  # Image source: "toy" (procedural faces, no files), "folder" (images under `path`) or "tfds"
  # (tensorflow-datasets `tfds_name`, prepared with file_format=array_record; `path` = data_dir).
  c.source = "toy"
  c.path = ""
  c.tfds_name = "celeb_a_hq/256"
  # Split (paper: 28,000 train / 2,000 test of CelebA-HQ's 30,000). `split_file` overrides the
  # rule: JSON {"train": [names], "test": [names]} or text lines "<name> <train|test|0|1|2>".
  # Without it: files in natural order of their relative path, the last
  # min(num_test, round(N * num_test / (num_train + num_test))) are test, the rest train.
  c.split_file = ""
  c.num_train = 28000
  c.num_test = 2000
  # Unreadable files: "skip" (count, report, use the next image) or "raise".
  c.on_corrupt = "skip"
  # Check every file's header when the folder is listed (finds most broken files up front).
  c.verify_files = True
  c.toy_seed = 0               # stream of toy faces (train and test are disjoint index ranges)
  c.random_flip = True         # horizontal flips of training faces (faces are ~symmetric)

  c.masks = ml_collections.ConfigDict()
  # Probability of each training mask kind (normalised). The paper combines strokes and squares.
  c.masks.probs = ml_collections.ConfigDict(
      {"strokes": 0.4, "square": 0.2, "strokes_square": 0.4, "external": 0.0})
  c.masks.square_side_at_256 = 85  # paper: 85x85 squares at 256 px, scaled with image size
  c.masks.max_strokes = 6
  c.masks.max_hole_ratio = 0.6     # redraw training masks with more hole than this
  c.masks.external_dir = ""        # folder of mask PNGs (e.g. the Quickdraw irregular mask set)
  # File convention of external_dir: "known_is_white" (ours) or "hole_is_white" (PIC / EXE-GAN /
  # Quickdraw set). Must be set explicitly for inverted sets.
  c.masks.external_convention = "known_is_white"
  c.masks.threshold = ml_collections.config_dict.placeholder(float)  # None: 0.5 with a warning
  c.masks.strict = False           # refuse non-binary mask files instead of thresholding

  # Fixed evaluation masks (one folder per image size, written once and reused).
  c.bucket_dir = "eval_masks"
  c.bucket_seed = 0
  c.masks_per_bucket = 2000        # one mask per test image
  c.quickdraw_from_external = False  # "quickdraw" bucket sampled from masks.external_dir

  # Input pipeline.
  c.num_workers = 0                # grain worker processes (0 = in the main process)
  c.worker_buffer_size = 2         # batches prefetched per worker
  # Threads reading elements ahead in each process (grain ReadOptions); grain's default buffer
  # (500 elements) would render hundreds of images before the first batch.
  c.read_threads = 2
  c.prefetch_buffer_size = 8
  return c
