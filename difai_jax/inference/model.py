"""A trained DiFAI run as inference sees it: what its metadata says before any weights load
(:func:`read_run_info`) and the jitted pipeline over a mesh of local devices
(:func:`make_inpaint_fn`)."""

from __future__ import annotations

import dataclasses
import os

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from difai_jax import pipeline
from difai_jax import pretrained
from difai_jax import runtime
from difai_jax.training import checkpoints


@dataclasses.dataclass
class RunInfo:
  """What inference needs to know of a run before loading it (from its JSON metadata)."""
  difai_dir: str
  step: int
  image_size: int
  n_directions: int              # SeFa directions (rows of sefa.npz, else the style dim)
  n_latent: int                  # W+ layers of the pSp decoder
  config_layers: tuple[int, ...]  # config.sefa.layers (empty: all)


def read_run_info(checkpoint: str) -> RunInfo:
  """The model size, SeFa directions and W+ layers of a trained run, without its weights."""
  checkpoint = pretrained.resolve(checkpoint)      # short names: toy-difai
  if not os.path.isdir(checkpoint):
    raise FileNotFoundError(f"--checkpoint {checkpoint!r} is not a folder (a trained DiFAI run) "
                            f"nor a shipped one ({', '.join(pretrained.SHORT_NAMES)})")
  difai_dir = checkpoints.find_stage_dir(checkpoint, "difai")
  meta = checkpoints.latest_meta(difai_dir)
  config = meta["config"]
  pre = config["pretrained"]
  if pre.get("psp"):
    decoder = pretrained.read_config(pre["psp"])["decoder"]
    decoder_size, style_dim = int(decoder["size"]), int(decoder["style_dim"])
  else:
    decoder_size = int(pre["random_psp"]["decoder_size"])
    style_dim = int(pre["random_psp"]["style_dim"])
  n_directions = style_dim
  sefa_file = os.path.join(difai_dir, "sefa.npz")
  if os.path.exists(sefa_file):
    with np.load(sefa_file) as cached:
      n_directions = int(cached["directions"].shape[0])
  n_latent = 2 * int(np.log2(decoder_size)) - 2
  return RunInfo(difai_dir, int(meta["step"]), int(config["image_size"]), n_directions,
                 n_latent, tuple(int(l) for l in config["sefa"].get("layers") or ()))


def make_inpaint_fn(models, mesh, layers: tuple[int, ...] | None, refine_steps: int = 0,
                    refine_lr: float = runtime.REFINE_LR):
  """A jitted ``(variables, image, mask, components, degrees, valid) -> outputs`` over ``mesh``.

  image (N, S, S, 3), mask (N, S, S, 1), components / degrees (N, alpha), valid (N,) bool
  (False: a padding row, kept out of the generator's batch statistics); N a multiple of the
  device count (batch sharded, variables replicated). Returns ``i_coarse`` (N, S, S, 3),
  ``i_style`` (N, S, S, 3) (j = 0) and ``completions`` (K, N, S, S, 3), all in [-1, 1], and
  ``w_plus`` (N, L, D), the codes the edits moved (fitted, with ``refine_steps``).
  ``refine_steps`` > 0 fits pSp's codes to the known pixels first
  (:func:`pipeline.fit_codes_to_known`).
  """
  replicated = NamedSharding(mesh, P())
  sharded = NamedSharding(mesh, P("data"))

  def fn(variables, image, mask, components, degrees, valid):
    out = pipeline.inpaint(models, variables, image, mask, components, degrees, layers,
                           valid=valid, refine_steps=refine_steps, refine_lr=refine_lr)
    return {"i_coarse": out["i_coarse"], "i_style": out["i_style"][0],
            "completions": out["completions"], "w_plus": out["w_plus"]}

  return jax.jit(fn, in_shardings=(replicated, sharded, sharded, sharded, sharded, sharded))
