"""Converted pretrained models: one directory per model.

Layout of a directory written by ``weights_conversion`` (or by :func:`save`)::

    DIR/config.json      {"kind": "stylegan2" | "psp" | "vgg19" | ..., <architecture fields>}
    DIR/variables/       orbax checkpoint of the Flax variables (params and other collections)

``load(DIR)`` reads both and returns ``(module, variables)``; no network access, ever.
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

from difai_jax.evaluation.metrics import fid
from difai_jax.evaluation.metrics import lpips
from difai_jax.inference.face import mtcnn
from difai_jax.models import coarse
from difai_jax.models import critic
from difai_jax.models import psp
from difai_jax.models import recognizer
from difai_jax.models import sparn
from difai_jax.models import stylegan2
from difai_jax.models import vgg
from difai_jax.nn import fingerprint

# kind -> the function building the Flax module from the config's architecture fields.
_BUILDERS: dict[str, Callable[[dict], Any]] = {
    "stylegan2": stylegan2.from_config,
    "stylegan2_discriminator": stylegan2.discriminator_from_config,
    "psp": psp.from_config,
    "vgg19": vgg.from_config,
    "lpips": lpips.from_config,
    "inception": fid.from_config,
    "ir_se_backbone": psp.backbone_from_config,
    "coarse": coarse.from_config,
    "difai_generator": sparn.from_config,
    "critic": critic.from_config,
    "toy_recognizer": recognizer.from_config,
    "mtcnn": mtcnn.from_config,
}


# Networks shipped with the package (the toy ones trained on the toy faces by the commands in
# README.md, MTCNN converted from facenet-pytorch), loadable by short name wherever a converted
# directory is asked for.
ASSETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
SHORT_NAMES = {
    "toy-stylegan2": "toy/stylegan2",
    # the wider generator in training, with its discriminator: continue it with init_from
    "toy-stylegan2-wide": "toy/stylegan2_wide",
    "toy-psp": "toy/psp",
    # the same pSp architecture fitted to DiFAI's use of it: it reads the coarse net's completion
    # of a masked face (psp_train.input="coarse"); toy-difai pairs with it (configs/toy_psp.py)
    "toy-psp-coarse": "toy/psp_coarse",
    # the toy pSp's perceptual network (configs/toy_psp.py)
    "toy-recognizer": "toy/recognizer",
    # the same recognizer from another seed, used by no training loss: every toy-domain measure
    # (toy FID, attribute changes, plausibility) reads it (configs/toy_judge.py)
    "toy-judge": "toy/judge",
    "toy-difai": "toy/difai",          # a training workdir (coarse + difai stages), not a model
    # facenet-pytorch's MTCNN face detector (MIT; weights_conversion/mtcnn.py), for --align.
    "mtcnn": "mtcnn",
}


# ----------------------------------------------------------------------------------------------
# Checkpoint directories are untrusted: what they declare is bounded before anything is read.
# ----------------------------------------------------------------------------------------------

# No checkpoint of these networks holds more (the 256 px DiFAI's train state is ~1 GB).
MAX_DECLARED_BYTES = 16 << 30
# Declared array bytes per byte on disk: trained weights barely compress, so a directory whose
# arrays claim far more than its files hold (a zeros "bomb", a forged shape) is refused.
MAX_EXPANSION = 32
EXPANSION_SLACK = 64 << 20
MAX_JSON_BYTES = 16 << 20            # config.json and orbax's metadata files
NUMERIC_KINDS = "biufc"              # bool, ints, floats, complex: never objects or strings


def directory_bytes(directory: str) -> int:
  """Bytes of the regular files under ``directory`` (links not followed)."""
  total = 0
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      if os.path.isfile(path) and not os.path.islink(path):
        total += os.path.getsize(path)
  return total


def check_json_size(path: str) -> None:
  if os.path.isfile(path) and os.path.getsize(path) > MAX_JSON_BYTES:
    raise ValueError(f"{path} is {os.path.getsize(path):,} bytes, more than the "
                     f"{MAX_JSON_BYTES:,} any metadata file of this package needs: refused")


def check_declared_arrays(tree, directory: str, what: str) -> None:
  """Refuses a checkpoint whose array metadata (orbax ``ArrayMetadata`` leaves of ``tree``)
  declares a non-numeric dtype, a malformed shape, or more bytes than :data:`MAX_DECLARED_BYTES`
  or :data:`MAX_EXPANSION` times the directory's size on disk; before any array is read."""
  leaves = jax.tree_util.tree_leaves_with_path(
      tree, is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"))
  total = 0
  for path, leaf in leaves:
    name = jax.tree_util.keystr(path)
    try:
      dtype = np.dtype(leaf.dtype)
      shape = tuple(leaf.shape)
    except (TypeError, ValueError, AttributeError):
      raise ValueError(f"{what}: array {name} has no readable dtype / shape; refused") from None
    if dtype.kind not in NUMERIC_KINDS:
      raise ValueError(f"{what}: array {name} has dtype {dtype}; only numeric arrays are read "
                       "(refused)")
    if not all(isinstance(d, (int, np.integer)) and d >= 0 for d in shape):
      raise ValueError(f"{what}: array {name} declares the shape {shape}; refused")
    total += int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
  on_disk = directory_bytes(directory)
  limit = min(MAX_DECLARED_BYTES, MAX_EXPANSION * on_disk + EXPANSION_SLACK)
  if total > limit:
    raise ValueError(f"{what}: its arrays claim {total:,} bytes, more than the {limit:,} "
                     f"allowed for {on_disk:,} bytes on disk; refused (a truncated, forged or "
                     "hostile checkpoint)")


def restore_checked(directory: str, what: str):
  """The variables of an orbax ``StandardCheckpointer`` directory, their metadata checked by
  :func:`check_declared_arrays` first and used as the restore target."""
  check_json_size(os.path.join(directory, "_METADATA"))
  with ocp.StandardCheckpointer() as ckptr:
    metadata = ckptr.metadata(directory)
    tree = getattr(metadata, "item_metadata", metadata)
    tree = getattr(tree, "tree", tree)
    check_declared_arrays(tree, directory, what)
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype), tree,
                          is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"))
    return ckptr.restore(directory, target)


def resolve(name_or_dir: str | os.PathLike) -> str:
  """The directory of a shipped network's short name (``toy-psp``, ...), else the path itself."""
  name = os.fspath(name_or_dir)
  if name in SHORT_NAMES:
    path = os.path.join(ASSETS_DIR, SHORT_NAMES[name])
    if not os.path.isdir(path):
      raise FileNotFoundError(f"the shipped network {name!r} is missing from this install "
                              f"({path}); reinstall the package")
    return path
  return name


def register(kind: str, builder: Callable[[dict], Any] | str) -> None:
  """Registers the builder of ``kind`` (for extensions): a function of the config's fields, or
  ``"module:function"`` naming one."""
  if isinstance(builder, str):
    module, function = builder.split(":")
    builder = getattr(importlib.import_module(module), function)
  _BUILDERS[kind] = builder


def _builder(kind: str) -> Callable[[dict], Any]:
  if kind not in _BUILDERS:
    raise ValueError(f"unknown pretrained kind {kind!r}; known kinds: {sorted(_BUILDERS)}")
  return _BUILDERS[kind]


MAX_DATA_FILE = 4 * 2**20


def save(directory: str | os.PathLike, kind: str, config: dict, variables: Any) -> None:
  """Writes ``config.json`` and the variables. Refuses to overwrite an existing model."""
  directory = os.path.abspath(os.fspath(directory))
  if os.path.exists(os.path.join(directory, "config.json")):
    raise FileExistsError(f"{directory} already holds a converted model; choose a new directory")
  os.makedirs(directory, exist_ok=True)
  variables = jax.tree.map(lambda x: np.asarray(x), variables)
  # Data files of at most ~4 MiB: shipped models live in git, which keeps every version.
  with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as ckptr:
    ckptr.save(os.path.join(directory, "variables"),
               args=ocp.args.PyTreeSave(variables, ocdbt_target_data_file_size=MAX_DATA_FILE))
  # config.json last: its presence marks a complete directory.
  with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as f:
    json.dump({"kind": kind, **config}, f, indent=2, sort_keys=True)


def read_config(directory: str | os.PathLike) -> dict:
  path = os.path.join(resolve(directory), "config.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"{directory} is not a converted model directory (no config.json). Convert a PyTorch "
        "checkpoint first, e.g. python -m weights_conversion.stylegan2 SRC.pt DST_DIR")
  check_json_size(path)
  with open(path, encoding="utf-8") as f:
    config = json.load(f)
  if not isinstance(config, dict) or "kind" not in config:
    raise ValueError(f"{path} has no 'kind' field")
  return config


def build(config: dict):
  """Builds the Flax module described by a config dict (with its ``kind``)."""
  config = dict(config)
  kind = config.pop("kind")
  return _builder(kind)(config)


def load(directory: str | os.PathLike) -> tuple[Any, Any]:
  """Returns ``(module, variables)`` of a converted model directory."""
  directory = os.path.abspath(resolve(directory))
  config = read_config(directory)
  module = build(config)
  variables = restore_checked(os.path.join(directory, "variables"),
                              f"converted model directory {directory}")
  return module, variables


def refuse_the_judge(option: str, spec: str, variables,
                     why: str = "training against it would reward what it measures") -> None:
  """Refuses the toy judge as a network that a loss reads (``option`` names the setting;
  ``why`` says what reading it would spoil).

  The judge (``toy-judge``) measures what the toy networks make: a loss on its features would
  train towards the measure. Compared by weights, so a copy of it is refused too.
  """
  judge = resolve("toy-judge")
  if not os.path.isfile(os.path.join(judge, "config.json")):
    return
  if fingerprint(variables) == fingerprint(load(judge)[1]):
    raise ValueError(
        f"{option} = {spec!r} is the toy judge, the recognizer every toy-domain measure reads: "
        f"{why}. Use 'toy-recognizer' (the same recipe from another seed) or another network")
