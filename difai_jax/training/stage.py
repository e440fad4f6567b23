"""What a training stage gives the loop (:class:`Stage`) and what every stage module exposes
(:class:`StageSpec`: its config defaults, its builder, its export), registered in
:mod:`difai_jax.training.stages`."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Mapping

import ml_collections

PyTree = Any


@dataclasses.dataclass
class Stage:
  """What the training loop needs from a stage.

  Attributes:
    name: the stage's name (log prefix, sample file names).
    architecture: JSON-able fields that shape the checkpoint; a resumed run must match them.
    init: ``rng -> state`` (a ``steps.TrainState``, or a ``steps.GanState`` for a generator
      trained against a critic; pure; the loop jits it with replicated output shardings).
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
    provenance: optional JSON-able record of what the run builds on from outside its workdir:
      a warm start's source and the images it had seen (StyleGAN2), the frozen pSp's
      fingerprints (DiFAI). The loop keeps the one of the run's first start in every
      checkpoint's metadata (``meta["provenance"]``) and warns on a resume whose
      ``*fingerprint`` entries differ from it (a frozen network replaced under the run); the
      record then names the network loaded now and lists the replaced one under
      ``"replaced"``.
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
  provenance: dict | None = None


@dataclasses.dataclass(frozen=True)
class StageSpec:
  """One stage module's interface, the same for every stage.

  Attributes:
    name: the stage's name in ``config.stages`` and in its checkpoints' architecture.
    build: ``(config, workdir, previous) -> Stage``; ``previous`` maps the stages run before it
      (same run) to their workdirs.
    defaults: ``() -> {section: ConfigDict}``, the config sections the stage reads with their
      default values (a config file starts from them and overrides what it chooses).
    export: ``(meta, params, collections, workdir) -> (kind, config, variables)`` of the
      trained network for ``pretrained.save``; None for stages exported otherwise (the DiFAI
      run as a whole).
    export_training: ``(meta, state, out)``: what continuing the training needs, written beside
      the export (the GAN's discriminator), or None.
  """
  name: str
  build: Callable[[ml_collections.ConfigDict, str, Mapping[str, str]], Stage]
  defaults: Callable[[], dict[str, ml_collections.ConfigDict]] = dict
  export: Callable[[dict, PyTree, PyTree, str], tuple[str, dict, PyTree]] | None = None
  export_training: Callable[[dict, dict, str], None] | None = None
