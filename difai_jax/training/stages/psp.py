"""Stage ``psp``: a pSp encoder trained against a frozen StyleGAN2 (pSp's recipe).

Re-expresses the encoding recipe of eladrich/pixel2style2pixel (``training/coach.py``,
``criteria/``, ``options/train_options.py``) as one pure step:

- the GradualStyleEncoder (``models/psp.py``; a small IR-SE body for 64 px toy faces) predicts
  W+ codes relative to ``latent_avg`` (``--start_from_latent_avg``); ``latent_avg`` is the frozen
  generator's mean w over ``latent_avg_samples`` random z (pSp: ``decoder.mean_latent(1e5)``
  when the StyleGAN2 checkpoint has none), the same vector for every style;
- the StyleGAN2 decoder is frozen (pSp's default ``train_decoder=False``: only the encoder's
  parameters reach the optimizer) and synthesises at the input size with fresh noise per step
  (pSp trains with ``randomize_noise=True``; inference and the measures below use the stored
  noise buffers);
- the encoder's BatchNorms run in training mode (pSp's ``net.train()``): batch statistics, with
  the running statistics updated for inference;
- loss = ``lambda_l2 * L2 + lambda_perceptual * perceptual + lambda_wnorm * w_norm``, with
  ``L2`` = mean squared error of the reconstruction (``F.mse_loss``) and ``w_norm`` = the batch
  mean of the Frobenius norm of the codes relative to ``latent_avg`` (``criteria/w_norm.py``:
  the norm, not its square).

What differs from pSp, and why:

- **Perceptual term.** pSp uses LPIPS (AlexNet, ImageNet weights); none exist here. The frozen
  feature network is configurable (``psp_train.perceptual``): a converted directory of kind
  ``lpips`` (then it is pSp's exact term), ``vgg19`` or ``toy_recognizer`` (the toy-face
  attribute classifier, trained in this project without downloaded weights), whose feature maps
  enter LPIPS's parameter-free form (channel-unit-normalised features, squared difference summed
  over channels, averaged over space, summed over taps: the ``lpips=False`` baseline of the lpips
  package); ``"ms_ssim"`` (1 - MS-SSIM, no network); or ``""`` (none).
- **No identity loss.** pSp's ``id_lambda`` needs ArcFace (IR-SE50 trained on MS-Celeb-1M); it
  is left out, and so is the MoCo variant. The encoder starts from random weights, not from
  the ArcFace backbone.
- **Optimizer.** Adam instead of Ranger (RAdam + Lookahead): fewer moving parts, same lr scale.
- **Coarse inputs (an option, ``psp_train.input="coarse"``).** DiFAI inverts the coarse net's
  blurry completion of a masked face, not a face. With this option the encoder reads exactly
  that (the frozen coarse net of ``pretrained.coarse_workdir`` on the face under a training
  mask, known pixels exact) and the loss still compares the reconstruction with the whole face:
  an encoder fitted to DiFAI's use of it. The default, ``"image"``, is pSp's recipe.

The frozen decoder, its noise buffers and ``latent_avg`` reach the step through ``Stage.frozen``,
as every stage's frozen networks do; the checkpoint holds the encoder alone (its weights, batch
statistics and optimizer state) and the architecture the decoder's fingerprint, so that a resume
or an export (:func:`export_variables`, kind ``psp``, the layout ``weights_conversion.psp``
writes) against another StyleGAN2 is refused. Workdirs written before this layout carry the
decoder in their checkpoint; they resume and export as they are. :func:`reconstruction_quality`
measures mean L2 and PSNR on test-split faces:

    python -m difai_jax.training.stages.psp --psp toy-psp --num_images 256
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from configs import stage_defaults
from difai_jax import pretrained
from difai_jax.data import config as data_config_lib
from difai_jax.data import image_io
from difai_jax.data import loader as data_pipeline
from difai_jax.data import sources
from difai_jax.evaluation.metrics import ssim as ssim_lib
from difai_jax import pipeline
from difai_jax.models import coarse as coarse_lib
from difai_jax.models import psp as psp_lib
from difai_jax.models import stylegan2
from difai_jax.nn import fingerprint
from difai_jax.nn import parameter_count
from difai_jax.training import checkpoints
from difai_jax.training import steps
from difai_jax.training.stage import Stage
from difai_jax.training.stage import StageSpec

PyTree = Any

# Where checkpoints written before the frozen decoder left the train state kept its params.
LEGACY_FROZEN_PARAMS = "frozen_params"
# Added inside the square root of the w-norm: keeps its gradient finite at codes == 0.
_NORM_EPS = 1e-8
# Added to the feature norms before unit-normalising them (lpips.normalize_tensor's eps).
_FEATURE_EPS = 1e-10


@dataclasses.dataclass(frozen=True)
class Recipe:
  """Static settings of the pSp step (pSp's ``train_options.py`` loss lambdas)."""
  lambda_l2: float = 1.0
  lambda_perceptual: float = 0.8
  lambda_wnorm: float = 0.005
  randomize_noise: bool = True
  ema_decay: float = 0.0


# ----------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------

def config_defaults() -> ml_collections.ConfigDict:
  """``config.psp`` defaults (``configs/stage_defaults.py``)."""
  return stage_defaults.psp()


def train_defaults() -> ml_collections.ConfigDict:
  """``config.psp_train`` defaults (``configs/stage_defaults.py``)."""
  return stage_defaults.psp_train()


def encoder_config(config: ml_collections.ConfigDict, decoder_config: Mapping) -> dict:
  """The ``encoder`` section of a kind-``psp`` config.json (``models.psp.from_config``)."""
  c = config.psp
  return {"unit_counts": [int(u) for u in c.unit_counts], "widths": [int(w) for w in c.widths],
          "input_width": int(c.input_width), "mode": str(c.mode),
          "se_reduction": int(c.se_reduction),
          "n_styles": psp_lib.n_styles_for_size(int(decoder_config["size"])),
          "style_dim": int(decoder_config["style_dim"]), "coarse_ind": int(c.coarse_ind),
          "middle_ind": int(c.middle_ind), "block_width": int(c.block_width)}


def psp_config(config: ml_collections.ConfigDict, decoder_config: Mapping) -> dict:
  """The fields of a kind-``psp`` config.json (as ``weights_conversion.psp`` writes them)."""
  size = int(config.image_size)
  out = {"encoder": encoder_config(config, decoder_config),
         "decoder": json_ready(decoder_config), "start_from_latent_avg": True,
         "input_size": size, "pool_size": size}
  iterations = int(config.psp.get("restyle_iterations", 0))
  if iterations:   # only then: workdirs and exports of single-pass runs keep their architecture
    out["restyle_iterations"] = iterations
  return out


def json_ready(tree):
  """Tuples -> lists, as a config comes back from JSON (architectures compare equal)."""
  if isinstance(tree, Mapping):
    return {str(k): json_ready(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return [json_ready(v) for v in tree]
  return tree


# ----------------------------------------------------------------------------------------------
# The frozen StyleGAN2 and latent_avg
# ----------------------------------------------------------------------------------------------

def load_decoder(config: ml_collections.ConfigDict, previous: Mapping[str, str]):
  """(config dict, variables) of the frozen StyleGAN2.

  From the ``stylegan2`` stage of the same run (``previous["stylegan2"]``: its EMA weights), else
  from ``config.pretrained.stylegan2`` (a converted directory of kind ``stylegan2``, or a
  shipped short name such as ``toy-stylegan2``).
  """
  workdir = previous.get("stylegan2")
  if workdir:
    meta = checkpoints.latest_meta(workdir)
    params, collections = checkpoints.load_stage_params(workdir)
    return dict(meta["architecture"]["stylegan2"]), {"params": params, **collections}
  directory = config.get("pretrained", {}).get("stylegan2", "")
  if not directory:
    raise FileNotFoundError(
        "the psp stage needs a frozen StyleGAN2: set --config.pretrained.stylegan2=DIR (a "
        "converted directory: python -m weights_conversion.stylegan2 SRC.pt DIR, or python -m "
        "difai_jax.export --workdir STYLEGAN2_RUN --out DIR), or run a stylegan2 stage first in "
        "the same config (config.stages = ('stylegan2', 'psp'))")
  decoder_config = pretrained.read_config(directory)
  if decoder_config.get("kind") != "stylegan2":
    raise ValueError(f"config.pretrained.stylegan2 = {directory} holds a "
                     f"'{decoder_config.get('kind')}' model, not a stylegan2 generator")
  _, variables = pretrained.load(directory)
  decoder_config.pop("kind")
  return decoder_config, dict(variables)


def latent_average(decoder: stylegan2.Generator, variables, num_samples: int,
                   seed: int = 0) -> np.ndarray:
  """The decoder's mean w over ``num_samples`` random z, shape (style_dim,) (pSp's
  ``decoder.mean_latent(int(1e5))[0]``), in chunks of 10,000."""
  chunk = 10_000

  @functools.partial(jax.jit, static_argnums=2)
  def mapped_sum(params, rng, n):
    z = jax.random.normal(rng, (n, decoder.style_dim))
    return decoder.apply({"params": params}, z, method="mapping").sum(axis=0)

  total, done, key = np.zeros((decoder.style_dim,), np.float64), 0, jax.random.key(seed)
  while done < num_samples:
    n = min(chunk, num_samples - done)
    total += np.asarray(mapped_sum(variables["params"], jax.random.fold_in(key, done), n))
    done += n
  return (total / num_samples).astype(np.float32)


def frozen_variables(decoder: stylegan2.Generator, decoder_variables, latent_avg: np.ndarray,
                     n_styles: int, seed: int) -> dict:
  """The PSP's variables that training leaves alone, in the PSP's own layout: the decoder's
  params and noise buffers and ``latent_avg``."""
  noises = decoder_variables.get("noises")
  if noises is None:   # a converted generator without buffers: fixed N(0, 1) ones, as at init
    keys = jax.random.split(jax.random.key(seed), decoder.num_layers)
    noises = {f"noise_{i}": np.asarray(jax.random.normal(k, shape))
              for i, (k, shape) in enumerate(zip(keys, stylegan2.noise_shapes(decoder.size)))}
  as_np = lambda t: jax.tree.map(lambda x: np.asarray(x, np.float32), t)
  return {"params": {"decoder": as_np(decoder_variables["params"])},
          "noises": {"decoder": as_np(noises)},
          "constants": {"latent_avg": np.broadcast_to(latent_avg, (n_styles,
                                                                   latent_avg.shape[-1])).copy()}}


def trained_params(params) -> dict:
  """The PSP's trained ``params`` by submodule. The train state holds the encoder's params
  alone (pSp; every workdir before ReStyle) or ``{"encoder": ..., "restyle": ...}``."""
  return dict(params) if "restyle" in params else {"encoder": params}


def psp_variables(params, collections, frozen) -> dict:
  """The PSP's variables: the trained params (:func:`trained_params`) and ``collections``
  (their batch statistics) with the :func:`frozen_variables`."""
  return {**frozen, **collections, "params": {**trained_params(params), **frozen["params"]}}


# ----------------------------------------------------------------------------------------------
# The perceptual term
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Perceptual:
  """A frozen perceptual distance: ``distance(variables, x, y) -> (N,)``; ``kind`` names it."""
  kind: str
  distance: Callable[[Any, jax.Array, jax.Array], jax.Array] | None


def _unit_normalize(f: jax.Array) -> jax.Array:
  return f / (jnp.sqrt(jnp.sum(jnp.square(f), axis=-1, keepdims=True)) + _FEATURE_EPS)


def feature_distance(feats_x, feats_y) -> jax.Array:
  """LPIPS's parameter-free form over lists of (N, h, w, C) (or (N, C)) feature maps: per tap,
  the squared difference of channel-unit-normalised features summed over channels and averaged
  over space; summed over taps. Returns (N,)."""
  total = 0.0
  for fx, fy in zip(feats_x, feats_y):
    fx, fy = fx.astype(jnp.float32), fy.astype(jnp.float32)
    diff = jnp.sum(jnp.square(_unit_normalize(fx) - _unit_normalize(fy)), axis=-1)
    total = total + diff.reshape(diff.shape[0], -1).mean(axis=1)
  return total


def _feature_list(out) -> list:
  if isinstance(out, Mapping):
    return list(out.values())
  if isinstance(out, (list, tuple)):
    return list(out)
  return [out]


def _features_of(kind: str, module) -> Callable[[Any, jax.Array], list]:
  """``(variables, images) -> [feature maps]`` of a converted feature network."""
  if kind == "vgg19":
    return lambda variables, x: _feature_list(module.apply(variables, x))
  if hasattr(module, "features"):
    return lambda variables, x: _feature_list(module.apply(variables, x, method="features"))
  return lambda variables, x: _feature_list(module.apply(variables, x))


def load_perceptual(spec: str, ms_ssim_weights=(0.0710, 0.4529, 0.4761)):
  """(:class:`Perceptual`, its frozen variables) for ``psp_train.perceptual``."""
  if not spec:
    return Perceptual("none", None), {}
  if spec == "ms_ssim":
    weights = tuple(float(w) for w in ms_ssim_weights)

    def ms_ssim_distance(variables, x, y):
      del variables
      return 1.0 - ssim_lib.ms_ssim((x + 1.0) * 0.5, (y + 1.0) * 0.5, data_range=1.0,
                                    weights=weights)
    return Perceptual("ms_ssim", ms_ssim_distance), {}
  if not os.path.isfile(os.path.join(pretrained.resolve(spec), "config.json")):
    raise FileNotFoundError(
        f"psp_train.perceptual = {spec!r}: not a converted model directory (no config.json); "
        "use '' (no perceptual term), 'ms_ssim', or a directory of kind lpips, vgg19 or "
        "toy_recognizer (e.g. the shipped 'toy-recognizer')")
  kind = pretrained.read_config(spec)["kind"]
  module, variables = pretrained.load(spec)
  if kind == "toy_recognizer":
    pretrained.refuse_the_judge("psp_train.perceptual", spec, variables)
  if kind == "lpips":
    return Perceptual("lpips", lambda v, x, y: module.apply(v, x, y)), variables
  features = _features_of(kind, module)

  def distance(v, x, y):
    n = x.shape[0]
    feats = features(v, jnp.concatenate([x, y], axis=0))   # one pass over both batches
    return feature_distance([f[:n] for f in feats], [f[n:] for f in feats])
  return Perceptual(kind, distance), variables


# ----------------------------------------------------------------------------------------------
# The step
# ----------------------------------------------------------------------------------------------

def w_norm(codes: jax.Array) -> jax.Array:
  """pSp's ``WNormLoss``: batch mean of ||codes||_F over (styles, dim), codes relative to
  ``latent_avg``."""
  return jnp.mean(jnp.sqrt(jnp.sum(jnp.square(codes), axis=(1, 2)) + _NORM_EPS))


def loss_terms(psp: psp_lib.PSP, variables, images, rng, *, perceptual: Perceptual,
               perceptual_variables, recipe: Recipe, train: bool = True, inputs=None):
  """(total, terms, reconstruction, updated batch_stats) of pSp's loss on ``images``, which the
  encoder reads unless ``inputs`` are given (``psp_train.input="coarse"``: coarse completions
  of them). With ReStyle passes, each term is the mean over the passes' reconstructions
  (ReStyle's loss at every step; every pass decoded with its own noise) and the w-norm is the
  final codes'."""
  rng_passes, rng_last = jax.random.split(rng) if psp.restyle_iterations else (None, rng)
  out = psp.apply(variables, images if inputs is None else inputs, train=train,
                  randomize_noise=recipe.randomize_noise,
                  method="encode_passes", rngs={} if rng_passes is None else {"noise": rng_passes},
                  mutable=["batch_stats"] if train else False)
  (codes, recons), updated = out if train else (out, {})
  latents = codes[-1] + variables["constants"]["latent_avg"][None]
  recons = recons + [psp.apply(variables, latents, randomize_noise=recipe.randomize_noise,
                               return_latents=False, rngs={"noise": rng_last}, method="decode")]
  mean = lambda f: sum(jnp.mean(f(r)) for r in recons) / len(recons)
  terms = {"l2": mean(lambda r: jnp.square(r - images)), "w_norm": w_norm(codes[-1])}
  if psp.restyle_iterations:
    terms["l2_first"] = jnp.mean(jnp.square(recons[0] - images))
    terms["l2_last"] = jnp.mean(jnp.square(recons[-1] - images))
  total = recipe.lambda_l2 * terms["l2"] + recipe.lambda_wnorm * terms["w_norm"]
  if perceptual.distance is not None and recipe.lambda_perceptual:
    terms["perceptual"] = mean(lambda r: perceptual.distance(perceptual_variables, r, images))
    total = total + recipe.lambda_perceptual * terms["perceptual"]
  return total, terms, recons[-1], updated


def coarse_inputs(coarse: coarse_lib.CoarseNet, variables, batch) -> jax.Array:
  """What DiFAI inverts: the coarse completion of the masked faces (eq. 1-2), known pixels
  exact."""
  mask = batch["mask"]
  return pipeline.coarse_completion(coarse, variables,
                                    pipeline.masked_image(batch["image"], mask), mask)


def load_coarse(config) -> tuple[coarse_lib.CoarseNet, dict]:
  """The frozen coarse net of ``pretrained.coarse_workdir`` (a coarse-stage workdir or a run
  holding one, e.g. ``toy-difai``), built from its own checkpoint's config."""
  source = config.pretrained.get("coarse_workdir", "")
  if not source:
    raise ValueError('psp_train.input="coarse" reads a coarse net: set '
                     "pretrained.coarse_workdir (e.g. toy-difai)")
  stage_dir = checkpoints.find_stage_dir(pretrained.resolve(source), "coarse")
  module, variables, meta = checkpoints.load_coarse_net(stage_dir)
  if int(meta["architecture"]["image_size"]) != int(config.image_size):
    raise ValueError(f"pretrained.coarse_workdir={source!r} completes "
                     f"{meta['architecture']['image_size']} px faces, not {config.image_size}")
  return module, variables


def _coarse_input(config, architecture: dict, frozen: dict):
  """(the frozen coarse net or None, the run's provenance or None) of ``psp_train.input``;
  with "coarse" adds the net's variables to ``frozen`` and ``input`` to ``architecture``."""
  kind = config.psp_train.get("input", "image")
  if kind == "image":
    return None, None
  if kind != "coarse":
    raise ValueError(f"psp_train.input must be 'image' or 'coarse', got {kind!r}")
  coarse, frozen["coarse"] = load_coarse(config)
  architecture["input"] = "coarse"      # (absent: the face itself, as every earlier run)
  # Which coarse net's completions it learns to invert: the checkpoints name it, and a resume
  # against another one is reported (the loop's provenance check).
  return coarse, {"coarse": str(config.pretrained.coarse_workdir),
                  "coarse_fingerprint": fingerprint(frozen["coarse"])}


def train_step(state: steps.TrainState, batch, frozen, rng, *, psp: psp_lib.PSP,
               perceptual: Perceptual, tx, recipe: Recipe,
               coarse: coarse_lib.CoarseNet | None = None):
  """One pSp iteration: encoder forward (BatchNorm batch statistics), frozen decoder, loss,
  Adam on the encoder's parameters only. ``frozen``: ``{"psp": frozen_variables(...),
  "perceptual": variables}``, and ``"coarse"`` with ``coarse`` (the module): the encoder then
  reads the coarse completion of ``batch["image"]`` under ``batch["mask"]``."""
  images = batch["image"]
  inputs = None if coarse is None else coarse_inputs(coarse, frozen["coarse"], batch)

  def loss_fn(params):
    total, terms, _, updated = loss_terms(
        psp, psp_variables(params, state.collections, frozen["psp"]), images, rng,
        perceptual=perceptual, perceptual_variables=frozen["perceptual"], recipe=recipe,
        inputs=inputs)
    return total, (terms, updated)

  (total, (terms, updated)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  params, opt_state, ema = steps.apply_grads(state.params, state.opt_state, state.ema_params,
                                             grads, tx, recipe.ema_decay)
  metrics = {"g/loss": total, **{f"g/{k}": v for k, v in terms.items()}}
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema,
                       collections={**state.collections, **updated}), metrics


def init_state(rng, *, psp: psp_lib.PSP, tx, use_ema: bool) -> steps.TrainState:
  """Fresh encoder params (random, as pSp without the ArcFace backbone) and Adam state; with
  ReStyle passes, a ``restyle`` encoder started from it (``psp_lib.restyle_from_encoder``)."""
  size = psp.input_size
  enc = dict(psp.encoder.init(rng, jnp.zeros((1, size, size, 3))))
  return state_of(enc.pop("params"), enc.pop("batch_stats"), psp=psp, tx=tx, use_ema=use_ema)


def state_of(params, batch_stats, *, psp: psp_lib.PSP, tx, use_ema: bool) -> steps.TrainState:
  """A fresh train state (step 0, new Adam) of encoder ``params`` / ``batch_stats`` (or both
  submodules' as ``{"encoder": ..., "restyle": ...}``): a ``restyle`` encoder the config asks
  for and the source lacks starts from the encoder; one the source has and the config does not
  ask for is refused."""
  params, batch_stats = jax.tree.map(jnp.asarray, (params, batch_stats))
  if "restyle" in params and not psp.restyle_iterations:
    raise ValueError("the pSp to start from has ReStyle passes (a 'restyle' encoder) but this "
                     "config has psp.restyle_iterations = 0")
  if psp.restyle_iterations and "restyle" not in params:
    restyle = psp_lib.restyle_from_encoder(params, batch_stats)
    params, batch_stats = ({"encoder": params, "restyle": restyle[0]},
                           {"encoder": batch_stats, "restyle": restyle[1]})
  if "restyle" not in params:
    batch_stats = {"encoder": batch_stats}
  return steps.TrainState(
      step=jnp.zeros((), jnp.int32), params=params, collections={"batch_stats": batch_stats},
      opt_state=tx.init(params), ema_params=jax.tree.map(jnp.copy, params) if use_ema else None)


def load_encoder(source: str):
  """(encoder params, encoder batch statistics) of a trained pSp: an exported directory of kind
  ``psp`` (or a shipped short name such as ``toy-psp``), or a pSp run's workdir. A pSp with
  ReStyle passes gives both trees as ``{"encoder": ..., "restyle": ...}``."""
  directory = pretrained.resolve(source)
  if os.path.isfile(os.path.join(directory, "config.json")):
    kind = pretrained.read_config(directory).get("kind")
    if kind != "psp":
      raise ValueError(f"pretrained.init_from={source!r} holds a '{kind}' model, not a psp "
                       "encoder")
    _, variables = pretrained.load(directory)
    if "restyle" in variables["params"]:
      parts = ("encoder", "restyle")
      return tuple({k: variables[c][k] for k in parts} for c in ("params", "batch_stats"))
    return variables["params"]["encoder"], variables["batch_stats"]["encoder"]
  try:
    stage_dir = checkpoints.find_stage_dir(directory, "psp")
  except FileNotFoundError as e:
    raise FileNotFoundError(f"pretrained.init_from={source!r}: neither an exported psp "
                            f"directory (config.json) nor a psp run's workdir ({e})") from None
  params, collections = checkpoints.load_stage_params(stage_dir)
  stats = collections["batch_stats"]
  return params, stats if "restyle" in params else stats["encoder"]


def warm_started(init, source: str, *, psp: psp_lib.PSP, tx):
  """``init`` whose encoder (weights and BatchNorm running statistics) starts from the trained
  pSp ``source`` (:func:`load_encoder`); the frozen decoder and ``latent_avg`` stay this
  config's, the optimizer starts fresh. Only a new run calls ``init``: a resumed one restores
  its own checkpoint (the loop reads the state's shapes from the unwrapped init)."""
  params, batch_stats = load_encoder(source)

  @functools.wraps(init)
  def warm(rng):
    state = jax.eval_shape(init, rng)        # only its shapes: nothing initialised
    shapes = lambda t: jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), t)
    try:
      new = state_of(params, batch_stats, psp=psp, tx=tx, use_ema=state.ema_params is not None)
    except ValueError as e:
      raise ValueError(f"pretrained.init_from={source!r}: {e}") from None
    if shapes((new.params, new.collections)) != shapes((state.params, state.collections)):
      raise ValueError(f"pretrained.init_from={source!r}: its encoder does not have this "
                       "config's architecture (psp widths, unit counts, block width, the number "
                       "of styles and style_dim of the frozen StyleGAN2)")
    return new
  return warm


def optimizer(t: ml_collections.ConfigDict, psp: psp_lib.PSP) -> optax.GradientTransformation:
  """Adam at ``psp_train.lr``; with ReStyle passes, the ``restyle`` encoder at its own
  ``psp_train.restyle_lr`` (0: the same), so that a new refiner can learn fast on top of a
  trained encoder that is only fine-tuned."""
  adam = lambda lr: optax.adam(float(lr), b1=float(t.b1), b2=float(t.b2))
  restyle_lr = float(t.get("restyle_lr", 0.0)) or float(t.lr)
  if not psp.restyle_iterations or restyle_lr == float(t.lr):
    return adam(t.lr)
  return optax.multi_transform({"encoder": adam(t.lr), "restyle": adam(restyle_lr)},
                               {"encoder": "encoder", "restyle": "restyle"})


@functools.partial(jax.jit, static_argnums=0)
def reconstruct(psp: psp_lib.PSP, variables, images) -> jax.Array:
  """Inference: encode with running statistics, decode with the stored noise; (N, S, S, 3).
  One compiled function per pSp architecture and image shape (modules compare by fields)."""
  return psp.apply(variables, images, randomize_noise=False, return_latents=False)


@functools.partial(jax.jit, static_argnums=0)
def reconstruct_passes(psp: psp_lib.PSP, variables, images) -> list:
  """:func:`reconstruct` after each pass of a pSp with ReStyle passes: the decoded codes of
  pass 0 (pSp's encoder alone), 1, ..., ``restyle_iterations`` (the last is ``reconstruct``)."""
  codes, recons = psp.apply(variables, images, method="encode_passes")   # passes 0..K-1
  offset = variables["constants"]["latent_avg"][None] if psp.start_from_latent_avg else 0.0
  return recons + [psp.apply(variables, codes[-1] + offset, return_latents=False,
                             method="decode")]


def build(config, workdir: str, previous) -> Stage:
  del workdir
  size = int(config.image_size)
  decoder_config, decoder_variables = load_decoder(config, previous)
  if int(decoder_config["size"]) != size:
    raise ValueError(f"the frozen StyleGAN2 is {decoder_config['size']} px but image_size is "
                     f"{size}: pSp reconstructs at the input size here (pool_size = image_size)")
  architecture = {"stage": "psp", "image_size": size, "psp": psp_config(config, decoder_config),
                  # Resuming or exporting against another decoder is refused.
                  "stylegan2_sha256": fingerprint(decoder_variables)}
  psp = psp_lib.from_config(architecture["psp"])
  t = config.psp_train
  recipe = Recipe(lambda_l2=float(t.lambda_l2), lambda_perceptual=float(t.lambda_perceptual),
                  lambda_wnorm=float(t.lambda_wnorm), randomize_noise=bool(t.randomize_noise),
                  ema_decay=float(t.ema_decay))
  architecture["ema"] = bool(recipe.ema_decay)
  perceptual, perceptual_variables = load_perceptual(str(t.perceptual),
                                                     tuple(t.ms_ssim_weights))
  frozen = {"psp": _frozen(config, psp, decoder_variables), "perceptual": perceptual_variables}
  coarse, provenance = _coarse_input(config, architecture, frozen)
  tx = optimizer(t, psp)
  init = functools.partial(init_state, psp=psp, tx=tx, use_ema=architecture["ema"])
  source = (config.get("pretrained") or {}).get("init_from", "")
  if source:
    init = warm_started(init, source, psp=psp, tx=tx)
  step = functools.partial(train_step, psp=psp, perceptual=perceptual, tx=tx, recipe=recipe,
                           coarse=coarse)

  def preview(params, collections, frozen, batch):
    batch = jax.tree.map(lambda x: x[:8], batch)
    inputs = batch["image"] if coarse is None else coarse_inputs(coarse, frozen["coarse"], batch)
    variables = psp_variables(params, collections, frozen["psp"])
    return ([batch["image"]] + ([] if coarse is None else [inputs])
            + [reconstruct(psp, variables, inputs)])

  def batches(start_step: int):
    return data_pipeline.make_train_iterator(
        config.data, image_size=size, global_batch_size=int(config.train.batch_size),
        seed=config.seed, start_step=start_step, verbose=jax.process_index() == 0,
        with_masks=coarse is not None)

  def describe(state) -> str:
    count = parameter_count(state.params)
    passes = (f"; {psp.restyle_iterations} ReStyle passes" if psp.restyle_iterations else "")
    return (f"encoder {count:,} parameters{passes} ({psp.encoder.n_styles} styles of "
            f"{psp.encoder.style_dim}); frozen {size} px StyleGAN2; perceptual term: "
            f"{perceptual.kind}; identity loss: none (no ArcFace weights)"
            + ("; reads the coarse net's completions of masked faces" if coarse else ""))

  return Stage(name="psp", architecture=architecture, init=init, step=step, batches=batches,
               frozen=frozen, preview=preview, provenance=provenance,
               log_prefixes=("g/",), describe=describe)


# ----------------------------------------------------------------------------------------------
# Export and measures
# ----------------------------------------------------------------------------------------------

def _frozen(config, psp: psp_lib.PSP, decoder_variables) -> dict:
  """:func:`frozen_variables` of a config: ``latent_avg`` from its seed and sample count."""
  latent_avg = latent_average(psp.decoder, decoder_variables,
                              int(config.psp_train.latent_avg_samples), seed=int(config.seed))
  return frozen_variables(psp.decoder, decoder_variables, latent_avg, psp.encoder.n_styles,
                          int(config.seed))


def export_variables(meta: dict, params, collections, workdir: str):
  """(kind, config, variables) of a trained pSp for ``pretrained.save``: kind ``psp`` with the
  frozen decoder, its noise buffers and ``latent_avg``, as ``weights_conversion.psp`` writes.

  The decoder is the run's (its ``pretrained.stylegan2``, or the ``stylegan2`` stage beside
  ``workdir`` in a two-stage run), refused unless its fingerprint is the one the run recorded.
  """
  collections = dict(collections)
  if LEGACY_FROZEN_PARAMS in collections:   # a checkpoint that carried the frozen decoder
    frozen = {"params": collections.pop(LEGACY_FROZEN_PARAMS),
              "noises": collections.pop("noises"), "constants": collections.pop("constants")}
  else:
    config = ml_collections.ConfigDict(meta["config"])
    stages_run = list(config.get("stages", ()))
    previous = {}
    if "stylegan2" in stages_run and len(stages_run) > 1:
      previous["stylegan2"] = os.path.join(os.path.dirname(os.path.abspath(workdir)),
                                           "stylegan2")
    _, decoder_variables = load_decoder(config, previous)
    if fingerprint(decoder_variables) != meta["architecture"].get("stylegan2_sha256"):
      raise ValueError(f"{workdir}: the StyleGAN2 its config names now holds other weights "
                       "than the one the encoder was trained against (fingerprints differ)")
    frozen = _frozen(config, psp_lib.from_config(meta["architecture"]["psp"]),
                     decoder_variables)
  variables = psp_variables(params, collections, frozen)
  variables = jax.tree.map(lambda x: np.asarray(x, np.float32), variables)
  return "psp", json_ready(meta["architecture"]["psp"]), variables


def reconstruction_quality(module: psp_lib.PSP, variables, *, data_config=None,
                           num_images: int = 256, batch_size: int = 32) -> dict:
  """Mean L2 and PSNR of pSp reconstructions of the first ``num_images`` test-split faces.

  ``l2``: mean squared error with images in [-1, 1] (pSp's ``loss_l2``); ``psnr``: mean over
  images of 10 log10(1 / MSE) with images in [0, 1], in dB; with ReStyle passes also
  ``psnr_passes``, the PSNR after each pass (pass 0: the encoder alone). Images come from
  ``data_config`` (default: the toy faces) at the pSp's input size; reconstructions use the
  running BatchNorm statistics and the stored noise (pSp's inference).
  """
  if data_config is None:
    data_config = data_config_lib.default_data_config()
    data_config.source = "toy"
    data_config.verify_files = False
  source = sources.make_source(data_config, "test", module.input_size, verbose=False)
  n = min(int(num_images), len(source))
  mses = []   # (passes, images): the last row is the pSp's output
  for start in range(0, n, batch_size):
    images = np.stack([image_io.uint8_to_float(source[i])
                       for i in range(start, min(start + batch_size, n))])
    recons = (reconstruct_passes(module, variables, jnp.asarray(images))
              if module.restyle_iterations
              else [reconstruct(module, variables, jnp.asarray(images))])
    mses.append([_mse(recon, images) for recon in recons])
  mse = np.concatenate(mses, axis=1)
  psnr = 10.0 * np.log10(1.0 / np.maximum(mse / 4.0, 1e-12))
  out = {"num_images": n, "l2": float(np.mean(mse[-1])), "psnr": float(np.mean(psnr[-1]))}
  if module.restyle_iterations:
    out["psnr_passes"] = [float(p) for p in psnr.mean(axis=1)]
  return out


def _mse(recon, images: np.ndarray) -> np.ndarray:
  """Per-image mean squared error, compared at the images' size (pool_size != input_size)."""
  if recon.shape != images.shape:
    recon = psp_lib.adaptive_avg_pool(jnp.asarray(recon), *images.shape[1:3])
  return np.mean(np.square(np.asarray(recon, np.float64) - images), axis=(1, 2, 3))


SPEC = StageSpec(name="psp", build=build,
                 defaults=lambda: {"psp": config_defaults(), "psp_train": train_defaults()},
                 export=export_variables)
