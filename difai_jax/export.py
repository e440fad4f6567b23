"""Exports a trained stage as a converted model directory that ``pretrained.load`` reads.

    python -m difai_jax.export --workdir runs/toy_stylegan2 --out weights/toy_stylegan2

The stage is read from the workdir's latest checkpoint (its EMA weights when the run kept
them, ``--raw`` for the trained weights themselves). Each exportable stage module has
``export_variables(meta, params, collections) -> (kind, config, variables)``.

A DiFAI run (coarse + difai stages) is exported for inference instead:

    python -m difai_jax.export --workdir runs/toy_difai --out weights/toy_difai

writes a workdir of the same layout whose checkpoints hold only what ``inpaint``, ``evaluate``
and ``checkpoints.load_difai`` read (the generator's weights and collections, the coarse net's
weights, the config and the SeFa cache): no optimizer state, critic or EMA copy, about a third of
the size. It cannot resume training.
"""

from __future__ import annotations

import importlib
import os
import shutil

from absl import app
from absl import flags

from difai_jax import checkpoints
from difai_jax import cli
from difai_jax import pretrained

_EXPORTABLE = {"stylegan2": "difai_jax.stages.stylegan2",
               "psp": "difai_jax.stages.psp",
               "recognizer": "difai_jax.stages.recognizer"}

INFERENCE_STAGES = ("coarse", "difai")


def export_inference_run(workdir: str, out: str, use_ema: bool = True) -> dict:
  """Writes an inference-only copy of a DiFAI run (see the module docstring); returns
  ``{stage: step}``."""
  if os.path.exists(out) and os.listdir(out):
    raise FileExistsError(f"{out} is not empty; choose a new directory")
  written = {}
  for stage in INFERENCE_STAGES:
    src = checkpoints.find_stage_dir(workdir, stage)
    meta = checkpoints.latest_meta(src)
    params, collections = checkpoints.load_stage_params(src, use_ema=use_ema)
    meta = {**meta, "inference_only": True}
    with checkpoints.checkpoint_manager(os.path.join(out, stage), keep=1) as manager:
      checkpoints.save_checkpoint(manager, int(meta["step"]),
                                  {"g_params": params, "g_collections": collections}, meta)
    if os.path.isfile(os.path.join(src, "sefa.npz")):
      shutil.copyfile(os.path.join(src, "sefa.npz"), os.path.join(out, stage, "sefa.npz"))
    written[stage] = int(meta["step"])
  return written


def _is_difai_run(workdir: str) -> bool:
  try:
    checkpoints.find_stage_dir(workdir, "difai")
  except FileNotFoundError:
    return False
  return True


def export(workdir: str, out: str, use_ema: bool = True) -> dict:
  """Writes ``out`` from the latest checkpoint of ``workdir``; returns the written config."""
  if os.path.exists(os.path.join(out, "config.json")):
    raise FileExistsError(f"{out} already holds a converted model; choose a new directory")
  if _is_difai_run(workdir):
    return {"kind": "difai inference run", **export_inference_run(workdir, out, use_ema)}
  meta = checkpoints.latest_meta(workdir)
  stage = meta["architecture"]["stage"]
  if stage not in _EXPORTABLE:
    raise ValueError(f"{workdir} holds a '{stage}' stage; exportable stages: "
                     f"{', '.join(_EXPORTABLE)} (DiFAI workdirs are used as they are)")
  params, collections = checkpoints.load_stage_params(workdir, use_ema=use_ema)
  module = importlib.import_module(_EXPORTABLE[stage])
  kind, config, variables = module.export_variables(meta, params, collections)
  pretrained.save(out, kind, {**config}, variables)
  if hasattr(module, "export_training"):      # what continuing the run needs (the GAN's critic)
    module.export_training(meta, checkpoints.load_stage_state(workdir), out)
  return {"kind": kind, **config}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  if not f.workdir or not f.out:
    raise app.UsageError("--workdir and --out are required")
  config = export(f.workdir, f.out, use_ema=not f.raw)
  print(f"wrote {config['kind']} to {f.out}")


if __name__ == "__main__":
  # Flags are defined only when run as a command: train.py (imported beside this module in
  # tests) defines its own --workdir.
  flags.DEFINE_string("workdir", None, "a training stage's workdir")
  flags.DEFINE_string("out", None, "new directory for the converted model")
  flags.DEFINE_bool("raw", False, "export the trained weights instead of their EMA")
  cli.run(main, user_errors=(FileNotFoundError, FileExistsError, ValueError))
