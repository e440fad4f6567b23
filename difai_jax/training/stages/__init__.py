"""Training stages: what each stage trains, its pure step, its frozen networks, its samples.

``training/loop.py`` owns the one loop (mesh, jit, checkpoints, resume, signals, logging); a stage
is the
data the loop needs, built by a function of the config (the flax examples' and big_vision's
split between the loop and what it runs). Stages:

- ``coarse``: the coarse net (the paper's customised MLGN), optional critic.
- ``difai``: the SPARN generator and critic with frozen coarse net, pSp, StyleGAN2, VGG-19.
- ``stylegan2``: an unconditional StyleGAN2 (rosinality's recipe), e.g. on the toy faces.
- ``psp``: a pSp encoder against a frozen StyleGAN2 (pSp's recipe).
- ``recognizer``: the toy-face attribute classifier behind the toy-domain measures.

Each stage module exposes one :class:`difai_jax.training.stage.StageSpec` (defaults, build,
export); this registry is the one place that names them.
"""

from __future__ import annotations

from typing import Mapping

from difai_jax.training.stage import Stage
from difai_jax.training.stage import StageSpec
from difai_jax.training.stages import inpainting
from difai_jax.training.stages import psp
from difai_jax.training.stages import recognizer
from difai_jax.training.stages import stylegan2

SPECS: dict[str, StageSpec] = {spec.name: spec for spec in (
    inpainting.COARSE, inpainting.DIFAI, stylegan2.SPEC, psp.SPEC, recognizer.SPEC)}
NAMES = tuple(SPECS)

__all__ = ["NAMES", "SPECS", "Stage", "StageSpec", "build", "spec"]


def spec(name: str) -> StageSpec:
  """The registered spec of stage ``name``."""
  if name not in SPECS:
    raise ValueError(f"unknown stage {name!r}; config.stages may name {', '.join(NAMES)}")
  return SPECS[name]


def build(name: str, config, workdir: str, previous: Mapping[str, str] | None = None) -> Stage:
  """Builds stage ``name`` of ``config`` for ``workdir``."""
  return spec(name).build(config, workdir, dict(previous or {}))
