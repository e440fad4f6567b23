"""Exports a trained stage as a converted model directory that ``pretrained.load`` reads
(``python -m difai_jax.export --workdir runs/toy_stylegan2 --out weights/toy_stylegan2``).

The stage is read from the workdir's latest checkpoint (its EMA weights when the run kept
them, ``use_ema=False`` for the trained weights themselves) and written by its
``StageSpec.export`` (and ``export_training``, what continuing its training needs).

A DiFAI run (coarse + difai stages) is exported for inference instead:

    python -m difai_jax.export --workdir runs/toy_difai --out weights/toy_difai

writes a workdir of the same layout whose checkpoints hold only what ``inpaint``, ``evaluate``
and ``checkpoints.load_difai`` read (the generator's weights and collections, the coarse net's
weights, the config and the SeFa cache): no optimizer state, critic or EMA copy, about a third of
the size. It cannot resume training. A stage that is already such a copy and that the export
leaves unchanged (the shipped coarse net under a retrained generator) is copied file for file.
"""

from __future__ import annotations

import os
import shutil

import ml_collections

from difai_jax import pretrained
from difai_jax.models import psp as psp_lib
from difai_jax.nn import fingerprint
from difai_jax.training import checkpoints
from difai_jax.training import stages

INFERENCE_STAGES = ("coarse", "difai")


def _checked_psp(meta: dict, psp: str) -> tuple[str | None, dict]:
  """Refuses ``psp`` unless it decodes with the StyleGAN2 (and latent_avg) of the pSp the run
  was trained with: the generator's style images and SeFa directions come from that decoder.

  The trained pSp is the one the run's provenance records (by fingerprint: its name may load
  other weights by now, a shipped short name after an update), else the one its config names.
  Returns (the trained pSp's name and fingerprint when ``psp``'s encoder differs (a better
  inversion into the same W+ space, paired as ``--coarse`` pairs another coarse net), else
  None; ``psp``'s variables)."""
  named = pretrained.load(psp)[1]
  recorded = meta.get("provenance") or {}
  if "psp_decoder_fingerprint" in recorded:
    source, decoder = recorded["psp"], recorded["psp_decoder_fingerprint"]
    trained_fingerprint = recorded["psp_fingerprint"]
  else:
    config = meta["config"]
    trained = checkpoints.load_pretrained(ml_collections.ConfigDict(config), "psp")[1]
    source = config["pretrained"].get("psp") or "a random pSp"
    decoder, trained_fingerprint = psp_lib.decoder_fingerprint(trained), fingerprint(trained)
  if decoder != psp_lib.decoder_fingerprint(named):
    raise ValueError(f"--psp {psp} does not decode with the StyleGAN2 of the pSp the run was "
                     f"trained with ({source}); an exported run may change pSp's encoder only")
  if trained_fingerprint == fingerprint(named):
    return None, named
  return meta.get("psp_trained_with") or f"{source} (fingerprint {trained_fingerprint})", named


def _paired_with(meta: dict, psp: str, stage: str) -> dict:
  """A stage's meta naming ``psp`` as its pSp. The DiFAI stage's is checked against the pSp it
  trained with (``_checked_psp``) and its record names ``psp`` too (another encoder on purpose,
  or the same weights by another name: a shipped short name for a run's local directory), so
  that its record and its config agree."""
  meta = dict(meta)
  if stage == "difai":
    trained_with, psp_variables = _checked_psp(meta, psp)
    if trained_with is not None:
      meta["psp_trained_with"] = trained_with
    if "provenance" in meta:
      meta["provenance"] = {**meta["provenance"], **checkpoints.psp_provenance(psp, psp_variables)}
  meta["config"] = {**meta["config"], "pretrained": {**meta["config"]["pretrained"], "psp": psp}}
  return meta


def export_inference_run(workdir: str, out: str, use_ema: bool = True,
                         psp: str | None = None, coarse: str | None = None) -> dict:
  """Writes an inference-only copy of a DiFAI run (see the module docstring); returns
  ``{stage: step}``. ``psp`` (a shipped short name or a directory) replaces the run's
  ``pretrained.psp`` in the copy's config: a run trained against a local directory can then be
  loaded on another machine. Its decoder must be the run's (checked); its encoder may be
  another (a better inversion into the same W+), recorded in the copy's meta as
  ``psp_trained_with``, the pSp the generator trained against. ``coarse`` (a coarse-stage
  workdir, or a run holding one) replaces the run's coarse net: the generator only sees the
  coarse completion through pSp's style image, so a coarse net trained apart (another
  architecture too) can complete the same run; the copy's config then records its section."""
  if os.path.exists(out) and os.listdir(out):
    raise FileExistsError(f"{out} is not empty; choose a new directory")
  written = {}
  difai_dir = checkpoints.find_stage_dir(workdir, "difai")
  if coarse is not None:
    coarse_dir = checkpoints.find_stage_dir(pretrained.resolve(coarse), "coarse")
  else:       # the run's own coarse stage, or the one its config names (a DiFAI-only run)
    config = ml_collections.ConfigDict(checkpoints.latest_meta(difai_dir)["config"])
    coarse_dir = checkpoints.coarse_stage_dir(difai_dir, config)
  sources = {"coarse": coarse_dir, "difai": difai_dir}
  coarse_meta = checkpoints.latest_meta(sources["coarse"])
  size = checkpoints.latest_meta(sources["difai"])["architecture"]["image_size"]
  if coarse_meta["architecture"]["image_size"] != size:
    raise ValueError(f"--coarse {coarse}: its coarse net completes "
                     f"{coarse_meta['architecture']['image_size']} px images, the run's "
                     f"generator {size} px")
  coarse_section = coarse_meta["config"]["coarse"]
  for stage, src in sources.items():
    source_meta = checkpoints.latest_meta(src)
    meta = {**source_meta, "inference_only": True}
    if psp is not None:
      meta = _paired_with(meta, psp, stage)
    meta["config"] = {**meta["config"], "coarse": coarse_section}
    if source_meta.get("inference_only") and _single_checkpoint(src):
      # An inference-only stage (a shipped stage exported again, perhaps re-paired): its files
      # as they are, the metadata rewritten where it changed, so that a re-export adds no second
      # copy of the same weights to a repository's history (a re-serialised checkpoint holds the
      # same arrays in other bytes).
      shutil.copytree(src, os.path.join(out, stage))
      if meta != source_meta:
        checkpoints.rewrite_meta(os.path.join(out, stage), meta)
      written[stage] = int(meta["step"])
      continue
    params, collections = checkpoints.load_stage_params(src, use_ema=use_ema)
    with checkpoints.checkpoint_manager(os.path.join(out, stage), keep=1) as manager:
      checkpoints.save_checkpoint(manager, int(meta["step"]),
                                  {"params": params, "collections": collections}, meta)
    for cached in _BESIDE_CHECKPOINTS:
      if os.path.isfile(os.path.join(src, cached)):
        shutil.copyfile(os.path.join(src, cached), os.path.join(out, stage, cached))
    written[stage] = int(meta["step"])
  return written


# Files a DiFAI stage keeps beside its checkpoints, copied with it: the SeFa directions and
# the labelled edits' (python -m difai_jax.fit_edits).
_BESIDE_CHECKPOINTS = ("sefa.npz", "labelled_edits.npz")


def _single_checkpoint(stage_dir: str) -> bool:
  """Whether ``stage_dir`` holds one checkpoint step and nothing else but the files kept beside
  it (:data:`_BESIDE_CHECKPOINTS`)."""
  entries = set(os.listdir(stage_dir)) - set(_BESIDE_CHECKPOINTS)
  root = os.path.join(stage_dir, "checkpoints")
  return entries == {"checkpoints"} and len(os.listdir(root)) == 1


def _is_difai_run(workdir: str) -> bool:
  try:
    checkpoints.find_stage_dir(workdir, "difai")
  except FileNotFoundError:
    return False
  return True


def export(workdir: str, out: str, use_ema: bool = True, psp: str | None = None,
           coarse: str | None = None) -> dict:
  """Writes ``out`` from the latest checkpoint of ``workdir``; returns the written config.
  ``psp``, ``coarse``: for a DiFAI run, the pSp its copy names and the coarse net it uses
  (:func:`export_inference_run`). ``workdir`` may be a shipped short name (``toy-difai``)."""
  workdir = pretrained.resolve(workdir)
  if os.path.exists(os.path.join(out, "config.json")):
    raise FileExistsError(f"{out} already holds a converted model; choose a new directory")
  if _is_difai_run(workdir):
    return {"kind": "difai inference run",
            **export_inference_run(workdir, out, use_ema, psp, coarse)}
  if psp is not None or coarse is not None:
    raise ValueError("--psp and --coarse apply to DiFAI runs only (the pSp their exported copy "
                     "names, the coarse net it uses)")
  meta = checkpoints.latest_meta(workdir)
  stage = meta["architecture"]["stage"]
  exportable = [name for name, spec in stages.SPECS.items() if spec.export is not None]
  if stage not in exportable:
    raise ValueError(f"{workdir} holds a '{stage}' stage; exportable stages: "
                     f"{', '.join(exportable)} (DiFAI workdirs are used as they are)")
  spec = stages.spec(stage)
  params, collections = checkpoints.load_stage_params(workdir, use_ema=use_ema)
  kind, config, variables = spec.export(meta, params, collections, workdir)
  pretrained.save(out, kind, {**config}, variables)
  if spec.export_training is not None:     # what continuing the run needs (the GAN's critic)
    spec.export_training(meta, checkpoints.load_stage_state(workdir), out)
  return {"kind": kind, **config}
