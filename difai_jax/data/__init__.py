"""Data for DiFAI: image sources, masks (1 = known, 0 = hole; eq. 1) and grain pipelines.

  config.py     default_data_config(): the `config.data` fields, documented
  sources.py    FolderSource (CelebA-HQ folders), TfdsSource (tfds celeb_a_hq), make_source
  toy_faces.py  ToyFaces: procedural faces, no files (demo, tests, fresh machines)
  masks.py      validate_mask, stroke / square / external masks, fixed evaluation buckets
  pipeline.py   make_train_iterator (checkpointable, per-host shards), make_eval_dataset
  preview.py    python -m difai_jax.data.preview --out sheet.png
"""

from difai_jax.data.config import default_data_config
from difai_jax.data.masks import BUCKET_NAMES, BUCKET_RANGES, hole_ratio, validate_mask
from difai_jax.data.toy_faces import ToyFaces, render_face
