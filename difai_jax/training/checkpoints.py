"""Checkpoints and the networks a run is made of, shared by train, evaluate and inpaint.

A stage's workdir holds ``checkpoints/<step>/{state,meta}`` (orbax ``CheckpointManager``;
``state`` is the stage's :class:`difai_jax.training.steps.TrainState` or ``GanState``, ``meta``
JSON with the step, the
architecture and the full config) and, for the DiFAI stage, ``sefa.npz`` (the SeFa directions,
computed once). :func:`load_difai` rebuilds everything inference needs from such a workdir.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import orbax.checkpoint as ocp

from difai_jax import pipeline
from difai_jax import pretrained
from difai_jax import sefa as sefa_lib
from difai_jax.models import coarse as coarse_lib
from difai_jax.models import psp as psp_lib
from difai_jax.models import recognizer as recognizer_lib
from difai_jax.models import sparn as sparn_lib
from difai_jax.models import stylegan2
from difai_jax.models import vgg as vgg_lib
from difai_jax.nn import fingerprint
from difai_jax.nn import precision
from difai_jax.training import steps


class WorkdirMismatchError(RuntimeError):
  """The workdir holds checkpoints of a different architecture."""


def architecture(config: ml_collections.ConfigDict, stage: str) -> dict:
  """The config fields that shape the checkpoint; a resumed run must match them exactly."""
  arch = {"stage": stage, "image_size": config.image_size}
  if stage == "coarse":
    arch["coarse"] = config.coarse.to_dict()
    if config.coarse.lambda_adv:
      arch["critic"] = config.critic.to_dict()
  else:
    arch["generator"] = config.generator.to_dict()
    arch["critic"] = config.critic.to_dict()
  arch["ema"] = bool(config.train.ema_decay)
  return json.loads(json.dumps(arch))   # tuples -> lists, as they come back from JSON


def random_psp(config: ml_collections.ConfigDict, seed: int):
  """A randomly initialised small pSp (demos and tests only: config.pretrained.random_init)."""
  rc = config.pretrained.random_psp
  decoder = stylegan2.Generator(size=rc.decoder_size, style_dim=rc.style_dim, n_mlp=rc.n_mlp,
                                channels=tuple(rc.decoder_channels))
  encoder = psp_lib.GradualStyleEncoder(
      unit_counts=tuple(rc.unit_counts), widths=tuple(rc.widths), input_width=rc.input_width,
      n_styles=decoder.n_latent, style_dim=rc.style_dim)
  module = psp_lib.PSP(encoder=encoder, decoder=decoder, input_size=rc.input_size,
                       pool_size=rc.input_size)
  variables = jax.jit(module.init)(steps.prng_key(seed),
                                   jnp.zeros((1, rc.input_size, rc.input_size, 3)))
  return module, variables


_CONVERT_HINT = {"psp": "python -m weights_conversion.psp psp_ffhq_encode.pt DIR",
                 "vgg19": "python -m weights_conversion.vgg19 vgg19-dcbb9e9d.pth DIR"}


def load_pretrained(config: ml_collections.ConfigDict, kind: str):
  """(module, variables) of the frozen network ``kind`` ('psp' | 'vgg19') of a config.

  A converted directory from ``config.pretrained.<kind>``; random weights (deterministic in
  ``config.seed``) only with ``config.pretrained.random_init``. The module computes in
  ``config.pretrained.dtype.<kind>`` (float32 when unset).
  """
  module, variables = _load_pretrained(config, kind)
  dtype = (config.pretrained.get("dtype") or {}).get(kind, "float32")
  return precision.with_dtype(module, dtype), variables


def load_feature_net(config: ml_collections.ConfigDict):
  """(module, variables) of the network whose feature maps DiFAI's L_per and L_style compare
  (eq. 6-7); ``module.apply(variables, images)`` gives ``{tap: (N, h, w, C)}``.

  ``config.pretrained.feature_net`` names it: "" (the paper) is VGG-19
  (:func:`load_pretrained` of ``"vgg19"``); otherwise a converted directory or short name of
  kind ``vgg19`` or ``toy_recognizer`` (e.g. ``toy-recognizer``: features that know toy faces,
  where a random VGG-19 knows nothing). The toy judge is refused: the toy measures read it.
  """
  spec = config.pretrained.get("feature_net", "")
  if not spec:
    return load_pretrained(config, "vgg19")
  kind = pretrained.read_config(spec)["kind"]
  if kind not in ("vgg19", "toy_recognizer"):
    raise ValueError(f"pretrained.feature_net = {spec!r} is a {kind!r} directory; the loss "
                     "features come from a 'vgg19' or 'toy_recognizer' one (or '' for VGG-19 "
                     "from pretrained.vgg19)")
  module, variables = pretrained.load(spec)
  if kind == "vgg19":       # computes in pretrained.dtype.vgg19, as the default VGG-19 does
    dtype = (config.pretrained.get("dtype") or {}).get("vgg19", "float32")
    return precision.with_dtype(module, dtype), variables
  pretrained.refuse_the_judge("pretrained.feature_net", spec, variables)
  return recognizer_lib.SpatialTaps(module), variables


def psp_provenance(name: str, variables) -> dict:
  """The record of the frozen pSp a DiFAI run trains against (``Stage.provenance``): its name
  and the fingerprints of its weights and of its decoder alone."""
  return {"psp": name, "psp_fingerprint": fingerprint(variables),
          "psp_decoder_fingerprint": psp_lib.decoder_fingerprint(variables)}


def check_psp(meta: dict, variables, run: str) -> None:
  """Refuses a pSp whose decoder is not the one the DiFAI run of ``meta`` trained against (its
  style images and SeFa directions would mean other things), and warns when only its encoder
  differs (completions differ from those the run was measured with). Runs that recorded no
  provenance (before it was kept) are not checked."""
  recorded = meta.get("provenance") or {}
  if "psp_decoder_fingerprint" not in recorded:
    return
  now = meta["config"]["pretrained"].get("psp") or "a random pSp"
  decoder = psp_lib.decoder_fingerprint(variables)
  if decoder != recorded["psp_decoder_fingerprint"]:
    raise ValueError(
        f"{run}: its generator was trained against the pSp {recorded['psp']!r}, whose StyleGAN2 "
        f"decoder is not the one {now!r} loads now (fingerprints "
        f"{recorded['psp_decoder_fingerprint']} vs {decoder}): its style images and SeFa "
        "directions would mean other things. Load it with the pSp it was trained with.")
  encoder = fingerprint(variables)
  if encoder != recorded["psp_fingerprint"]:
    warnings.warn(f"{run}: the pSp {now!r} is not the one its generator was trained against "
                  f"({recorded['psp']!r}; fingerprints {recorded['psp_fingerprint']} vs "
                  f"{encoder}); same decoder, another encoder: completions differ from those "
                  "the run was measured with", stacklevel=2)


def _load_pretrained(config: ml_collections.ConfigDict, kind: str):
  directory = config.pretrained.get(kind, "")
  if directory:
    return pretrained.load(directory)
  if not config.pretrained.random_init:
    raise FileNotFoundError(
        f"config.pretrained.{kind} is not set: convert the PyTorch weights first "
        f"({_CONVERT_HINT[kind]}) and pass --config.pretrained.{kind}=DIR (random frozen "
        "weights only with --config.pretrained.random_init=True, for demos and tests)")
  if kind == "psp":
    return random_psp(config, config.seed)
  module = vgg_lib.VGG19Features(width_divisor=config.pretrained.random_vgg_width_divisor)
  size = config.image_size
  return module, jax.jit(module.init)(steps.prng_key(config.seed + 1),
                                      jnp.zeros((1, size, size, 3)))


# ----------------------------------------------------------------------------------------------

def _manager(directory: str, options=None) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.abspath(directory), options=options,   # orbax wants absolute paths
      item_handlers={"state": ocp.StandardCheckpointHandler(),
                     "meta": ocp.JsonCheckpointHandler()})


def checkpoint_manager(workdir: str, keep: int) -> ocp.CheckpointManager:
  """The run's manager: synchronous saves (a save is finished, renamed into place, when it
  returns), the last ``keep`` steps kept."""
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                         enable_async_checkpointing=False)
  return _manager(os.path.join(workdir, "checkpoints"), options)


def save_checkpoint(manager: ocp.CheckpointManager, step: int, state, meta: dict) -> None:
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                             meta=ocp.args.JsonSave(meta)), force=True)
  manager.wait_until_finished()


def restore_checkpoint(manager: ocp.CheckpointManager, abstract_state, arch: dict):
  """(state, meta) of the latest checkpoint, or (None, None); refuses another architecture."""
  step = manager.latest_step()
  if step is None:
    return None, None
  meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
  if meta.get("architecture") != arch:
    saved = meta.get("architecture", {})
    diff = sorted(k for k in set(saved) | set(arch) if saved.get(k) != arch.get(k))
    raise WorkdirMismatchError(
        f"{manager.directory} holds checkpoints of a different architecture (fields differing: "
        f"{diff}; saved {[saved.get(k) for k in diff]}, config {[arch.get(k) for k in diff]}). "
        "Use a new --workdir or the config the workdir was made with.")
  if isinstance(abstract_state, steps.TrainState) and "g_params" in _saved_tree(manager, step):
    return _restore_legacy(manager, step, abstract_state), meta
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state)))
  return restored["state"], meta


def _saved_tree(manager: ocp.CheckpointManager, step: int) -> dict:
  """The saved train state's tree of array metadata (shapes and dtypes)."""
  return manager.item_metadata(step)["state"].tree


def _restore_legacy(manager: ocp.CheckpointManager, step: int, abstract_state):
  """A one-network stage's checkpoint written in the GAN-shaped layout that every stage used
  before (``g_params`` ..., empty critic fields; the pSp stage's frozen decoder among
  ``g_collections``), read into ``abstract_state``'s :class:`steps.TrainState`. What the stage
  no longer keeps in its state (the critic fields, frozen networks now in ``Stage.frozen``) is
  dropped."""
  sharding = jax.tree.leaves(abstract_state)[0].sharding
  # The saved tree as it is (shapes and dtypes from its metadata), with the fields the new state
  # keeps taken from the new state's own abstract tree (optimizer states are tuples there).
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
                        dict(_saved_tree(manager, step)),
                        is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"))
  for field, key in steps.LEGACY_KEYS.items():
    if key in target and field != "collections":
      target[key] = getattr(abstract_state, field)
  target["g_collections"] = {**target["g_collections"], **abstract_state.collections}
  saved = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(target)))["state"]
  fields = {field: saved.get(key) for field, key in steps.LEGACY_KEYS.items()}
  fields["collections"] = {k: fields["collections"][k] for k in abstract_state.collections}
  return steps.TrainState(**fields)


def load_stage_state(workdir: str) -> dict:
  """The whole train state (a dict of arrays) of a stage's latest checkpoint, on this process's
  first device, whatever mesh the run was saved from."""
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    raise FileNotFoundError(
        f"no checkpoints in {workdir}: train the coarse stage first (python -m difai_jax.train "
        "--config configs/celebahq_coarse.py --workdir DIR) and set "
        "--config.pretrained.coarse_workdir=DIR")
  with _manager(directory) as manager:
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f"{directory} holds no finished checkpoint")
    step_dir = os.path.join(directory, str(step))
    for root, _, names in os.walk(step_dir):
      for name in names:
        if name.endswith(("_METADATA", "metadata", ".json")):
          pretrained.check_json_size(os.path.join(root, name))
    tree = manager.item_metadata(step)["state"].tree
    pretrained.check_declared_arrays(tree, step_dir, f"checkpoint {step_dir}")
    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
                          tree, is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"))
    return manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target)))["state"]


def load_stage_params(workdir: str, use_ema: bool = True):
  """``(params, other collections)`` of the trained network in a stage's latest checkpoint
  (the EMA params when the run kept them)."""
  state = load_stage_state(workdir)
  params = state.get("ema_params") if use_ema else None
  if params is None:
    params = state["params"] if "params" in state else state["g_params"]
  return params, state.get("collections", state.get("g_collections", {}))


def latest_meta(workdir: str) -> dict:
  """The JSON metadata (step, architecture, config) of a stage workdir's latest checkpoint."""
  directory = os.path.join(workdir, "checkpoints")
  with _manager(directory) as manager:
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f"{directory} holds no finished checkpoint")
    return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]


def rewrite_meta(workdir: str, meta: dict) -> None:
  """Replaces the JSON metadata of a stage workdir's latest (finished) checkpoint, its weights
  untouched: the item is written whole beside the old one, which it then replaces."""
  directory = os.path.join(workdir, "checkpoints")
  with _manager(directory) as manager:
    step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(f"{directory} holds no finished checkpoint")
  item = os.path.abspath(os.path.join(directory, str(step), "meta"))
  written = item + ".rewritten"
  ocp.Checkpointer(ocp.JsonCheckpointHandler()).save(written, args=ocp.args.JsonSave(meta))
  extra = os.path.join(written, "_CHECKPOINT_METADATA")   # a manager's item has none of its own
  if os.path.exists(extra):
    os.remove(extra)
  shutil.rmtree(item)
  os.rename(written, item)


def load_coarse_net(stage_dir: str) -> tuple[coarse_lib.CoarseNet, dict, dict]:
  """``(module, {"params": ...}, meta)`` of a coarse stage's latest checkpoint, the module built
  from that checkpoint's own architecture (not the reading run's ``config.coarse``: a generator
  may pair with a coarse net trained apart, e.g. at another floor_stride)."""
  meta = latest_meta(stage_dir)
  params, _ = load_stage_params(stage_dir)
  return coarse_lib.from_config(meta["architecture"]["coarse"]), {"params": params}, meta


def find_stage_dir(workdir: str, stage: str) -> str:
  """``workdir`` itself if it is a checkpointed run of ``stage``, else ``workdir/stage``."""
  for candidate in (workdir, os.path.join(workdir, stage)):
    if os.path.isdir(os.path.join(candidate, "checkpoints")):
      try:
        if latest_meta(candidate)["architecture"]["stage"] == stage:
          return candidate
      except FileNotFoundError:
        continue
  raise FileNotFoundError(f"no finished '{stage}' checkpoint in {workdir} or "
                          f"{os.path.join(workdir, stage)}")


@dataclasses.dataclass
class Inference:
  """Everything inference needs: the modules, their variables and the run's config."""
  models: pipeline.Models
  variables: dict[str, Any]     # {"coarse", "psp", "generator", "sefa"}
  config: ml_collections.ConfigDict
  step: int
  sefa_values: Any


def coarse_stage_dir(difai_dir: str, config: ml_collections.ConfigDict) -> str:
  """The coarse stage a DiFAI stage runs with: the run's own (``<run>/coarse``; an exported run
  carries it), else its config's ``pretrained.coarse_workdir`` (a path that may mean another
  directory where the run is loaded from)."""
  coarse_dir = os.path.join(os.path.dirname(os.path.abspath(difai_dir)), "coarse")
  if not os.path.isdir(coarse_dir):
    coarse_dir = pretrained.resolve(config.pretrained.coarse_workdir)
  return find_stage_dir(coarse_dir, "coarse")


def load_difai(workdir: str) -> Inference:
  """Rebuilds a trained DiFAI (latest checkpoint; EMA weights when the run kept them).

  ``workdir`` may be the DiFAI stage's directory or a multi-stage run's top directory. The
  coarse net (weights and architecture) comes from the run's coarse stage (``<run>/coarse`` or
  the config's ``pretrained.coarse_workdir``); pSp from the config's converted directory (or the
  same random weights the run trained with, when it used ``pretrained.random_init``).
  """
  workdir = pretrained.resolve(workdir)            # short names: toy-difai
  difai_dir = find_stage_dir(workdir, "difai")
  meta = latest_meta(difai_dir)
  config = ml_collections.ConfigDict(meta["config"])
  g_params, g_collections = load_stage_params(difai_dir)
  coarse, coarse_variables, _ = load_coarse_net(coarse_stage_dir(difai_dir, config))
  psp, psp_variables = load_pretrained(config, "psp")
  check_psp(meta, psp_variables, workdir)
  factors = sefa_lib.cached(os.path.join(difai_dir, "sefa.npz"),
                            psp_variables["params"]["decoder"], config.sefa.method,
                            config.sefa.factor_layers)
  models = pipeline.Models(coarse=coarse, psp=psp,
                           generator=sparn_lib.from_config(config.generator),
                           image_size=config.image_size,
                           psp_decode_size=config.pretrained.get("psp_decode_size", 0))
  variables = {"coarse": coarse_variables, "psp": psp_variables,
               "generator": {"params": g_params, **g_collections},
               "sefa": factors.directions}
  return Inference(models, variables, config, int(meta["step"]), factors.values)
