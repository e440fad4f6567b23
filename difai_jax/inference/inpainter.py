"""A loaded DiFAI for interactive use: ``Inpainter(checkpoint)`` and three calls on arrays.

    inpainter = Inpainter("toy-difai")           # a shipped short name or a training workdir
    completions = inpainter.complete(image, known, num_completions=4)   # K uint8 images
    edited = inpainter.edit(image, known, component=0, degree=5.0)
    frames = inpainter.walk(image, known, component=0, max_degree=10.0, steps=9)
    labelled = Inpainter("toy-difai", edits="labelled")   # not the paper, see below
    completions = labelled.complete(image, known)
    print(labelled.last_edits)             # ['hair_colour -> red (strength 3, local)', ...]

No UI and no files: the browser demo (``difai_jax/app.py``) wires its widgets to these calls,
and a notebook can use them directly. The models are loaded once, in the constructor; the
pipeline is compiled once per number of SeFa edits (``K - 1`` for :meth:`complete`, 1 for
:meth:`edit`, ``steps`` for :meth:`walk`) and kept, also in JAX's persistent compilation cache
when ``compilation_cache`` names one.

``python -m difai_jax.inpaint`` is built on this class (its face crops and batches of files go
through :meth:`Inpainter.model_outputs`). The data flow (Sec. 3, Fig. 1 and 4 of the paper): any
input size, the model sees the image at its resolution
(:func:`inputs.to_model_resolution`), and each completion is resized back and composited in
uint8 with the input's known pixels (:func:`outputs.composite_uint8`), which stay bit-exact.

Masks: ``known`` is (H, W) or (H, W, 1), True / 1 = known pixel, False / 0 = hole (the package's
convention; see README "Conventions").

``edits="labelled"`` (not the paper; :mod:`difai_jax.labelled_edits`): :meth:`complete`'s
completions 1..K-1 come from attribute directions fitted on labelled faces (the run's
``labelled_edits.npz``), each edit the least that a recognizer (``edit_recognizer``, never the
judge) reads as a change of an attribute whose region lies in the hole. :meth:`edit` and
:meth:`walk` stay SeFa's.
"""

from __future__ import annotations

import threading
import time
from typing import Sequence

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from difai_jax import labelled_edits as labelled_lib
from difai_jax import mesh as mesh_lib
from difai_jax import runtime
from difai_jax.inference import inputs
from difai_jax.inference import model
from difai_jax.inference import outputs
from difai_jax.training import checkpoints


def _checked_before_loading(checkpoint: str, refine_steps: int, refine_lr: float, edits: str,
                            search: labelled_lib.Search | None):
  """``(run info, labelled search settings)``, or the ValueError / FileNotFoundError that the
  settings and the run's metadata give before any weights load: a wrong folder fails fast."""
  problem = runtime.refine_problem(refine_steps, refine_lr, prefix="")
  if problem:
    raise ValueError(problem)
  if edits not in runtime.EDIT_SOURCES:
    raise ValueError(f"edits must be 'sefa' (the paper) or 'labelled'; got {edits!r}")
  search = search or labelled_lib.Search()
  problem = search.problem()
  if problem:
    raise ValueError(problem)
  info = model.read_run_info(checkpoint)
  if edits == "labelled":
    labelled_lib.load_for_run(info.difai_dir)      # the file is there
  return info, search


def _sampling(sefa_config) -> tuple[int, float, float]:
  """(top_k, min_degree, max_degree) of a run's training SeFa edits (``config.sefa``)."""
  return (int(sefa_config.get("top_k", 8)), float(sefa_config.get("min_degree", 2.0)),
          float(sefa_config.get("max_degree", 5.0)))


class Inpainter:
  """A trained DiFAI, loaded once; each call inpaints one image.

  Attributes:
    checkpoint: what was asked for (a short name or a folder).
    step: the DiFAI checkpoint's training step.
    image_size: the model's resolution (inputs of any size are resized to it and back).
    n_directions: SeFa directions available to :meth:`edit` and :meth:`walk`.
    platform: JAX's backend (``cpu``, ``gpu``, ``tpu``).
    degree: magnitude of the default edits of :meth:`complete` (directions 0..K-2 at +d, -d, ...).
    sampling: (top_k, min_degree, max_degree) of the run's training edits, used with a seed.
    refine_steps, refine_lr: the fitting of each input's codes to its known pixels (0: none).
    edits: where :meth:`complete`'s edits come from: ``"sefa"`` (the paper) or ``"labelled"``.
    last_edits: what each perturbed completion of the last :meth:`complete` changed, one per
      completion 1..K-1: the labelled edit (``"hair_colour -> red (strength 3, local)"``) or
      SeFa's (``"direction 0, +5.0"``).
  """

  def __init__(self, checkpoint: str = "toy-difai", *, degree: float = 5.0,
               pad_edits: int = 0, compilation_cache: str | None = "off",
               layers: Sequence[int] | None = None, refine_steps: int = 0,
               refine_lr: float = runtime.REFINE_LR, edits: str = "sefa",
               edit_recognizer: str = "toy-recognizer",
               edit_search: labelled_lib.Search | None = None):
    """Loads the run's models and prepares the pipeline (compiled at the first call).

    Args:
      checkpoint: a shipped short name (``toy-difai``) or a trained DiFAI workdir (a multi-stage
        run's top directory or its ``difai`` stage).
      degree: magnitude of :meth:`complete`'s default edits (the CLI's ``--degree``).
      pad_edits: run every call with at least this many SeFa edits (the extra ones at degree 0,
        their outputs dropped), so that one compilation serves every K, :meth:`edit` and a
        walk of up to ``pad_edits`` steps; 0 compiles once per number of edits instead. Costs
        the extra variants' compute on every call; the results do not change (each variant's
        completion is independent of the others, see :func:`pipeline.generate`).
      compilation_cache: folder of JAX's persistent compilation cache (None: the user cache
        folder; ``"off"``: none, or the one a caller already turned on), see
        :func:`runtime.enable_compilation_cache`.
      layers: the W+ layers the SeFa edits move (default: the run's ``config.sefa.layers``,
        else all).
      refine_steps, refine_lr: > 0 fits pSp's codes of each input to its known pixels before
        the edits (Adam steps; :func:`pipeline.fit_codes_to_known`, not the paper): a closer
        style image, so a closer completion 0, for a little more time per call.
      edits: ``"sefa"`` (the paper: :meth:`default_edits`) or ``"labelled"``: the least
        attribute edits a recognizer reads (module docstring; the run's ``labelled_edits.npz``).
      edit_recognizer, edit_search: the labelled search's recognizer (a directory or short
        name; several comma-separated read as one) and settings (:class:`labelled_lib.Search`).

    Raises:
      FileNotFoundError: no such run; ValueError: a run whose metadata cannot be used.
    """
    info, self.edit_search = _checked_before_loading(checkpoint, refine_steps, refine_lr,
                                                     edits, edit_search)
    self.cache_dir = runtime.enable_compilation_cache(compilation_cache)
    self.checkpoint, self.degree = checkpoint, float(degree)
    self.pad_edits = max(int(pad_edits), 0)
    t0 = time.time()
    inference = checkpoints.load_difai(checkpoint)
    self.load_seconds = time.time() - t0
    self.step, self.image_size = inference.step, int(inference.config.image_size)
    self.n_directions, self.platform = info.n_directions, jax.default_backend()
    self.sampling = _sampling(inference.config.sefa)
    if layers is None:
      layers = inputs.check_layers(info.config_layers, info.n_latent,
                                   source="config.sefa.layers")
    self.layers, self.config = layers, inference.config
    self.refine_steps, self.refine_lr = int(refine_steps), float(refine_lr)
    mesh = mesh_lib.local_mesh()
    self.devices = mesh.size
    self._batch = mesh.size          # one image, repeated over the devices of the data axis
    self._fn = model.make_inpaint_fn(inference.models, mesh, layers, self.refine_steps,
                                     self.refine_lr)
    self._variables = jax.device_put(inference.variables, NamedSharding(mesh, P()))
    self._compiled: set[int] = set()   # numbers of edits (alpha) run once already
    self._lock = threading.Lock()      # one model call at a time (callers may be threads)
    self.edits, self.last_edits = edits, []
    if edits == "labelled":
      self._prepare_labelled(info, inference, edit_recognizer)

  def _prepare_labelled(self, info: model.RunInfo, inference: checkpoints.Inference,
                        recognizer: str) -> None:
    """The run's labelled edits (checked against its pSp), the search's recognizer and the
    compiled completion of given codes."""
    self._labelled = labelled_lib.load_for_run(info.difai_dir, inference.variables["psp"])
    self._recognizer = labelled_lib.load_recognizer(recognizer)
    self._complete_codes = labelled_lib.make_complete_fn(inference.models, self._variables)

  # --------------------------------------------------------------------------------------------
  # Inputs
  # --------------------------------------------------------------------------------------------

  @staticmethod
  def check_inputs(image: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(image (H, W, 3) uint8, known (H, W, 1) float32 {0, 1})`` or a ValueError saying why.

    The image must be (H, W, 3) uint8; the mask (H, W) or (H, W, 1) of the image's size, bool
    or numbers 0 / 1 (1 = known), with at least one known and one hole pixel.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
      raise ValueError(f"image must be (H, W, 3) uint8 RGB; got shape {image.shape} "
                       f"{image.dtype}")
    known = np.asarray(known)
    if known.ndim == 3 and known.shape[-1] == 1:
      known = known[..., 0]
    if known.shape != image.shape[:2]:
      raise ValueError(f"mask has shape {known.shape} but the image is {image.shape[0]}x"
                       f"{image.shape[1]} (HxW); give an (H, W) or (H, W, 1) mask of the "
                       "image's size (1 = known, 0 = hole)")
    if known.dtype != np.bool_:
      binary = (known == 0) | (known == 1)
      if not binary.all():
        where = tuple(int(i) for i in np.argwhere(~binary)[0])
        raise ValueError(f"mask has values other than 0 and 1 (found {known[where]:g} at "
                         f"{where}); pass a bool mask, True = known")
    known = known.astype(bool)
    if known.all():
      raise ValueError("mask has no hole: every pixel is known, nothing to inpaint")
    if not known.any():
      raise ValueError("mask is all hole: no known pixel to inpaint from")
    return image, known.astype(np.float32)[..., None]

  def notes(self, image: np.ndarray, name: str = "the image",
            prefix: str = "note: ") -> list[str]:
    """Notes on an input the model sees distorted (far smaller than the model, not square):
    sentences about ``name``, each starting with ``prefix``."""
    return inputs.size_notes(name, np.shape(image)[:2], self.image_size, prefix)

  def _padded(self, num_edits: int) -> int:
    return max(int(num_edits), self.pad_edits)

  def is_compiled(self, num_edits: int) -> bool:
    """Whether a call with ``num_edits`` SeFa edits has run (later ones skip compiling)."""
    return self._padded(num_edits) in self._compiled

  # --------------------------------------------------------------------------------------------
  # Edits
  # --------------------------------------------------------------------------------------------

  def default_edits(self, num_completions: int | None = None, seed: int | None = None, *,
                    k: int | None = None) -> tuple[list[int], list[float]]:
    """The K - 1 SeFa edits of :meth:`complete`.

    Without a seed, the CLI's: directions 0..K-2 with degrees +d, -d, +d, ... (d =
    ``self.degree``). With a seed, training's distribution (pipeline.SefaSampling): distinct
    directions among the run's ``top_k`` strongest (more when K - 1 exceeds it), degrees of
    random sign and magnitude in ``[min_degree, max_degree]``.
    """
    k = int(runtime.deprecated_alias(num_completions, k, "k", 4))
    if k < 1:
      raise ValueError(f"K must be at least 1 (the unperturbed completion); got {k}")
    if k - 1 > self.n_directions:
      raise ValueError(f"K = {k} asks for {k - 1} SeFa edits, one per direction, but the "
                       f"generator has {self.n_directions} directions; use K <= "
                       f"{self.n_directions + 1}")
    if seed is None:
      return inputs.edits(k, None, None, self.degree, self.n_directions)
    top_k, min_degree, max_degree = self.sampling
    pool = min(self.n_directions, max(top_k, k - 1))
    rng = np.random.default_rng(int(seed))
    components = [int(c) for c in rng.permutation(pool)[:k - 1]]
    magnitude = rng.uniform(min_degree, max_degree, k - 1)
    sign = np.where(rng.random(k - 1) < 0.5, -1.0, 1.0)
    return components, [float(d) for d in magnitude * sign]

  def _check_component(self, component: int) -> int:
    component = int(component)
    if not 0 <= component < self.n_directions:
      raise ValueError(f"SeFa direction {component} out of range: the generator has "
                       f"{self.n_directions} directions (0..{self.n_directions - 1})")
    return component

  # --------------------------------------------------------------------------------------------
  # Calls
  # --------------------------------------------------------------------------------------------

  def model_outputs(self, images: np.ndarray, masks: np.ndarray, components: np.ndarray,
                    degrees: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
    """The pipeline on a batch at the model's resolution, for callers that bring their own
    inputs (``python -m difai_jax.inpaint``: face crops, batches of files).

    Args:
      images: (N, S, S, 3) float32 in [-1, 1]; masks (N, S, S, 1), 1 = known; N a multiple of
        :attr:`devices`.
      components, degrees: (N, alpha) SeFa edits; valid (N,) bool (False: a padding row, kept
        out of the generator's batch statistics).

    Returns:
      ``i_coarse`` (N, S, S, 3), ``i_style`` (N, S, S, 3) (the unperturbed one) and
      ``completions`` (1 + alpha, N, S, S, 3), numpy, in [-1, 1].
    """
    with self._lock:
      out = jax.device_get(self._fn(self._variables, images, masks, components, degrees, valid))
      self._compiled.add(int(np.shape(components)[1]))
    return out

  def labelled_outputs(self, images: np.ndarray, masks: np.ndarray, valid: np.ndarray,
                       num_completions: int) -> dict:
    """:meth:`model_outputs` with the labelled edits (``edits="labelled"``) in place of SeFa's,
    for the valid rows only: ``i_coarse``, ``i_style`` (n, S, S, 3), ``completions`` (K, n, S,
    S, 3) and ``edits``: per image, what each of completions 1..K-1 changed (strings)."""
    if self.edits != "labelled":
      raise ValueError("labelled_outputs needs an Inpainter made with edits='labelled'")
    k = int(num_completions)
    if k < 1:
      raise ValueError(f"K must be at least 1 (the unperturbed completion); got {k}")
    n = len(images)
    none = (np.zeros((n, 0), np.int32), np.zeros((n, 0), np.float32))
    out = self.model_outputs(images, masks, *none, valid)
    real = np.flatnonzero(valid)
    base = np.stack([out["i_style"][real], out["completions"][0, real]])
    if k == 1:                                       # completion 0 alone: nothing to search
      return {"i_coarse": out["i_coarse"][real], "i_style": out["i_style"][real],
              "completions": base[1:], "edits": [[] for _ in real]}
    variants = max(len(m) for m in self._labelled.means.values()) - 1   # one compiled shape
    with self._lock:
      found = self.edit_search.run(self._complete_codes, self._labelled, self._recognizer,
                                   images[real], masks[real], out["w_plus"][real], base, k - 1,
                                   variants=variants)
    return {"i_coarse": out["i_coarse"][real], "i_style": out["i_style"][real],
            "completions": found.completions,
            "edits": [[self._describe(found, j, i) for j in range(k - 1)]
                      for i in range(len(real))]}

  def _describe(self, found: labelled_lib.Searched, j: int, i: int) -> str:
    """What kept edit ``j`` of image ``i`` changed, in words."""
    if found.attribute[j, i] < 0:
      return "nothing (no edit left to search: completion 0 again)"
    where = "local" if found.level[j, i] else "whole image"
    return (self._labelled.describe(found.attribute[j, i], found.target[j, i])
            + f" (strength {found.strength[j, i]:g}, {where}"
            + ("" if found.read[j, i] else "; not read as a change") + ")")

  def _run(self, image: np.ndarray, known: np.ndarray, components: Sequence[int],
           degrees: Sequence[float]) -> list[np.ndarray]:
    """1 + len(components) completions, composited at the input's size (uint8)."""
    image, known = self.check_inputs(image, known)
    model_image, model_mask = inputs.to_model_resolution(image, known, self.image_size)
    n, alpha = self._batch, self._padded(len(components))
    extra = alpha - len(components)
    components = list(components) + [0] * extra
    degrees = list(degrees) + [0.0] * extra
    images = np.broadcast_to(model_image[None], (n,) + model_image.shape).copy()
    masks = np.broadcast_to(model_mask[None], (n,) + model_mask.shape).copy()
    comps = np.broadcast_to(np.asarray(components, np.int32), (n, len(components))).copy()
    degs = np.broadcast_to(np.asarray(degrees, np.float32), (n, len(degrees))).copy()
    out = self.model_outputs(images, masks, comps, degs,
                             valid=np.arange(n) == 0)   # one face, copied to fill the devices
    hw = image.shape[:2]
    return [outputs.composite_uint8(image, known, outputs.resize_back(completion, hw))
            for completion in out["completions"][:1 + alpha - extra, 0]]

  def complete(self, image: np.ndarray, known: np.ndarray, num_completions: int | None = None,
               seed: int | None = None, *, k: int | None = None) -> list[np.ndarray]:
    """K diverse completions of ``image``'s hole, each (H, W, 3) uint8 like ``image``.

    Completion 0 follows the unperturbed style image; completion j >= 1 the style image moved
    by SeFa edit j (:meth:`default_edits`: fixed without ``seed``, drawn with it), or with
    ``edits="labelled"`` by the j-th labelled edit the search kept (:attr:`last_edits`). Known
    pixels equal ``image``'s exactly.

    Args:
      image: (H, W, 3) uint8 RGB, any size.
      known: (H, W) or (H, W, 1) bool / {0, 1}, 1 = known, 0 = hole.
      num_completions: K, the number of completions, 1 .. n_directions + 1 (default 4).
      seed: None for the fixed edits, an int for random ones (reproducible).
      k: the deprecated name of ``num_completions`` (kept for one release).

    Raises:
      ValueError: a bad image or mask (shape, values, no hole, no known pixel) or K.
    """
    if k is not None:
      num_completions = runtime.deprecated_alias(num_completions, k, "k", 4)
    if self.edits == "labelled":
      if seed is not None:
        raise ValueError("seed draws SeFa edits; the labelled edits are searched, not drawn "
                         "(edits='labelled')")
      return self._run_labelled(image, known, 4 if num_completions is None
                                else int(num_completions))
    components, degrees = self.default_edits(num_completions, seed)
    completions = self._run(image, known, components, degrees)
    self.last_edits = [f"direction {c}, {d:+.1f}" for c, d in zip(components, degrees)]
    return completions

  def _run_labelled(self, image: np.ndarray, known: np.ndarray, k: int) -> list[np.ndarray]:
    """:meth:`complete` with the labelled edits; :attr:`last_edits` says what each changed."""
    image, known = self.check_inputs(image, known)
    model_image, model_mask = inputs.to_model_resolution(image, known, self.image_size)
    n = self._batch
    out = self.labelled_outputs(np.repeat(model_image[None], n, 0),
                                np.repeat(model_mask[None], n, 0), np.arange(n) == 0, k)
    self.last_edits = out["edits"][0]
    hw = image.shape[:2]
    return [outputs.composite_uint8(image, known, outputs.resize_back(completion, hw))
            for completion in out["completions"][:, 0]]

  def edit(self, image: np.ndarray, known: np.ndarray, component: int,
           degree: float) -> np.ndarray:
    """One completion from the style image moved along SeFa direction ``component`` by
    ``degree`` (eq. 3), (H, W, 3) uint8; ``degree`` 0 gives completion 0 of :meth:`complete`."""
    component = self._check_component(component)
    return self._run(image, known, [component], [float(degree)])[1]

  def walk(self, image: np.ndarray, known: np.ndarray, component: int = 0,
           max_degree: float = 10.0, steps: int = 9) -> list[np.ndarray]:
    """A continuous SeFa walk (Fig. 4): ``steps`` completions along direction ``component`` at
    degrees evenly spaced in ``[-max_degree, +max_degree]``, each (H, W, 3) uint8."""
    component = self._check_component(component)
    steps = int(steps)
    if steps < 2:
      raise ValueError(f"a walk needs at least 2 steps; got {steps}")
    degrees = np.linspace(-float(max_degree), float(max_degree), steps)
    return self._run(image, known, [component] * steps, degrees)[1:]
