"""Training stages: what each stage trains, its pure step, its frozen networks, its samples.

``train.py`` owns the one loop (mesh, jit, checkpoints, resume, signals, logging); a stage is the
data the loop needs, built by a function of the config (the flax examples' and big_vision's
split between the loop and what it runs). Stages:

- ``coarse``: the coarse net (the paper's customised MLGN), optional critic.
- ``difai``: the SPARN generator and critic with frozen coarse net, pSp, StyleGAN2, VGG-19.
- ``stylegan2``: an unconditional StyleGAN2 (rosinality's recipe), e.g. on the toy faces.
- ``psp``: a pSp encoder against a frozen StyleGAN2 (pSp's recipe).
- ``recognizer``: the toy-face attribute classifier behind the toy-domain measures.

A stage's builder is ``build(config, workdir, previous) -> Stage``, ``previous`` mapping the
names of the stages run before it (same run) to their workdirs.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Iterator, Mapping

PyTree = Any

# name -> "module:function" (imported on use: a stage's imports stay its own).
_BUILDERS = {
    "coarse": "difai_jax.stages.inpainting:build_coarse",
    "difai": "difai_jax.stages.inpainting:build_difai",
    "stylegan2": "difai_jax.stages.stylegan2:build",
    "psp": "difai_jax.stages.psp:build",
    "recognizer": "difai_jax.stages.recognizer:build",
}
NAMES = tuple(_BUILDERS)


@dataclasses.dataclass
class Stage:
  """What the training loop needs from a stage.

  Attributes:
    name: the stage's name (log prefix, sample file names).
    architecture: JSON-able fields that shape the checkpoint; a resumed run must match them.
    init: ``rng -> TrainState`` (pure; the loop jits it with replicated output shardings).
    step: ``(state, batch, frozen, rng) -> (state, metrics)``, pure; jitted once by the loop.
    batches: ``start_step -> iterator`` of this host's batches (dicts of numpy arrays, leading
      axis the per-host batch); batch s must depend only on (seed, host, s) so resumes are exact.
    frozen: pytree of frozen variables passed to every step (replicated by the loop).
    preview: optional jittable ``(params, collections, frozen, batch) -> [columns]``, each a
      (N, H, W, 3) image batch in [-1, 1]; the loop writes them as one grid, a column each.
    log_prefixes: metric-name prefixes shown on the progress line.
    describe: optional ``state -> str`` for the start-of-run summary line.
    step_phase: optional ``step number -> hashable phase``; the loop then calls
      ``step(..., phase=phase)`` and compiles one step per phase (e.g. StyleGAN2's lazy
      regularisers: a static branch instead of a ``lax.cond`` that XLA:CPU runs slowly).
  """
  name: str
  architecture: dict
  init: Callable[[Any], Any]
  step: Callable[..., tuple[Any, dict]]
  batches: Callable[[int], Iterator[Mapping[str, Any]]]
  frozen: PyTree = dataclasses.field(default_factory=dict)
  preview: Callable[..., list] | None = None
  log_prefixes: tuple[str, ...] = ("g/",)
  describe: Callable[[Any], str] | None = None
  step_phase: Callable[[int], Any] | None = None


def build(name: str, config, workdir: str, previous: Mapping[str, str] | None = None) -> Stage:
  """Builds stage ``name`` of ``config`` for ``workdir``."""
  if name not in _BUILDERS:
    raise ValueError(f"unknown stage {name!r}; config.stages may name {', '.join(NAMES)}")
  module_name, function = _BUILDERS[name].split(":")
  return getattr(importlib.import_module(module_name), function)(config, workdir,
                                                                 dict(previous or {}))
