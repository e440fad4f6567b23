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
    "toy-recognizer": "toy/recognizer",
    "toy-difai": "toy/difai",          # a training workdir (coarse + difai stages), not a model
    # facenet-pytorch's MTCNN face detector (MIT; weights_conversion/mtcnn.py), for --align.
    "mtcnn": "mtcnn",
}


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


def save(directory: str | os.PathLike, kind: str, config: dict, variables: Any) -> None:
  """Writes ``config.json`` and the variables. Refuses to overwrite an existing model."""
  directory = os.path.abspath(os.fspath(directory))
  if os.path.exists(os.path.join(directory, "config.json")):
    raise FileExistsError(f"{directory} already holds a converted model; choose a new directory")
  os.makedirs(directory, exist_ok=True)
  variables = jax.tree.map(lambda x: np.asarray(x), variables)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(os.path.join(directory, "variables"), variables)
  # config.json last: its presence marks a complete directory.
  with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as f:
    json.dump({"kind": kind, **config}, f, indent=2, sort_keys=True)


def read_config(directory: str | os.PathLike) -> dict:
  path = os.path.join(resolve(directory), "config.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"{directory} is not a converted model directory (no config.json). Convert a PyTorch "
        "checkpoint first, e.g. python -m weights_conversion.stylegan2 SRC.pt DST_DIR")
  with open(path, encoding="utf-8") as f:
    config = json.load(f)
  if "kind" not in config:
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
  with ocp.StandardCheckpointer() as ckptr:
    variables = ckptr.restore(os.path.join(directory, "variables"))
  return module, variables
