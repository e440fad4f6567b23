"""Stage ``recognizer``: the toy-face attribute classifier behind the toy-domain measures.

Not a paper component (see ``difai_jax/models/recognizer.py``). Trains
:class:`~difai_jax.models.recognizer.Recognizer` on procedural toy faces with the labels the
renderer knows (``toy_faces.ATTRIBUTES``): the loss is the cross-entropy summed over the
attribute heads (mean over the batch), AdamW with a linear warm-up and a cosine decay.

Data: faces of the toy train split (indices ``[0, recognizer.num_train_faces)`` of stream
``data.toy_seed``, inside the train split ``[0, data.num_train)``; the test split is the next
``data.num_test`` indices), rendered with their labels in numpy. Batch ``s`` of host ``p`` draws
its faces, flips and shifts from ``np.random.default_rng([seed, p, s])`` only, so a resumed run
sees exactly the batches it would have seen. Rendering is the expensive part on a CPU (about
10-20 ms a face), so each face is rendered once and kept in memory, and the next batch is
rendered in a thread while the current step runs.

Export (``python -m difai_jax.export``) writes kind ``toy_recognizer``, which
``difai_jax.pretrained.load`` builds with ``difai_jax.models.recognizer.from_config``.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
from typing import Any, Iterator, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from configs import stage_defaults
from difai_jax.data import image_io
from difai_jax.data import toy_faces
from difai_jax.models import recognizer as recognizer_lib
from difai_jax.nn import parameter_count
from difai_jax.training import steps
from difai_jax.training.stage import Stage
from difai_jax.training.stage import StageSpec

KIND = "toy_recognizer"
PREFIX = "recognizer/"


def config_defaults() -> ml_collections.ConfigDict:
  """``config.recognizer`` defaults (``configs/stage_defaults.py``)."""
  return stage_defaults.recognizer()


def architecture(config) -> dict:
  """The converted ``config.json`` fields of ``config.recognizer``."""
  return recognizer_lib.architecture(config.recognizer, toy_faces.ATTRIBUTES)


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------

class FaceCache:
  """Renders toy faces with their labels once: ``(uint8 (size, size, 3), int32 (A,))``."""

  def __init__(self, toy_seed: int, size: int):
    self.toy_seed = int(toy_seed)
    self.size = int(size)
    self._faces: dict[int, tuple[np.ndarray, np.ndarray]] = {}

  def __len__(self) -> int:
    return len(self._faces)

  def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
    index = int(index)
    if index not in self._faces:
      image, labels = toy_faces.render_face_with_attributes(self.toy_seed, index, self.size)
      self._faces[index] = (image, toy_faces.attribute_vector(labels))
    return self._faces[index]


def shift_image(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
  """Translates (H, W, C) by (dy, dx) pixels, repeating the border pixels into the gap."""
  h, w = image.shape[:2]
  pad = max(abs(dy), abs(dx))
  if not pad:
    return image
  padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
  return padded[pad - dy:pad - dy + h, pad - dx:pad - dx + w]


def make_batch(cache: FaceCache, *, seed: int, host: int, step: int, batch_size: int,
               num_faces: int, max_shift: int, augment: bool = True) -> dict[str, np.ndarray]:
  """Batch ``step`` of ``host``: {"image" float32 (B, H, W, 3) in [-1, 1], "labels" int32 (B, A)}.

  A function of (seed, host, step) only: faces, flips and shifts come from
  ``np.random.default_rng([seed, host, step])``.
  """
  rng = np.random.default_rng([int(seed), int(host), int(step)])
  indices = rng.integers(0, num_faces, batch_size)
  flips = rng.uniform(size=batch_size) < 0.5
  shifts = rng.integers(-max_shift, max_shift + 1, (batch_size, 2))
  images, labels = [], []
  for index, flip, (dy, dx) in zip(indices, flips, shifts):
    image, label = cache[index]
    if augment:
      image = shift_image(image[:, ::-1] if flip else image, int(dy), int(dx))
    images.append(image)
    labels.append(label)
  return {"image": image_io.uint8_to_float(np.stack(images)),
          "labels": np.stack(labels).astype(np.int32)}


def batch_iterator(cache: FaceCache, start_step: int, *, prefetch: bool = True,
                   **kwargs) -> Iterator[dict[str, np.ndarray]]:
  """Batches ``start_step, start_step + 1, ...`` (``make_batch`` keyword arguments), the next one
  rendered in a thread while the caller uses the current one."""
  if not prefetch:
    step = start_step
    while True:
      yield make_batch(cache, step=step, **kwargs)
      step += 1
  with concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                             thread_name_prefix="toy_faces") as pool:
    step = start_step
    future = pool.submit(functools.partial(make_batch, cache, step=step, **kwargs))
    while True:
      batch = future.result()
      step += 1
      future = pool.submit(functools.partial(make_batch, cache, step=step, **kwargs))
      yield batch


# ----------------------------------------------------------------------------------------------
# The step
# ----------------------------------------------------------------------------------------------

def loss_fn(params, module: recognizer_lib.Recognizer, images, labels):
  """Cross-entropy summed over the heads (batch mean), and the per-head accuracies.

  ``labels`` (B, A) are in ``toy_faces.ATTRIBUTE_NAMES`` order (``attribute_vector``)."""
  logits = module.apply({"params": params}, images)["logits"]
  loss, metrics = 0.0, {}
  for name, _ in module.attributes:
    target = labels[:, toy_faces.ATTRIBUTE_NAMES.index(name)]     # (B,) labels of this head
    ce = optax.softmax_cross_entropy_with_integer_labels(logits[name], target).mean()
    loss = loss + ce
    metrics[f"recognizer_accuracy/{name}"] = jnp.mean(
        (jnp.argmax(logits[name], axis=-1) == target).astype(jnp.float32))
  accuracy = jnp.mean(jnp.stack(list(metrics.values())))
  return loss, {f"{PREFIX}loss": loss, f"{PREFIX}accuracy": accuracy, **metrics}


def train_step(state: steps.TrainState, batch: Mapping[str, jax.Array], frozen, rng, *,
               module: recognizer_lib.Recognizer, tx) -> tuple[steps.TrainState, dict]:
  """One AdamW step on the summed cross-entropy. Pure; ``frozen`` and ``rng`` are unused (the
  augmentation is part of the batch)."""
  del frozen, rng
  (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params, module, batch["image"], batch["labels"])
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                       opt_state=opt_state), metrics


def init_state(rng, *, module: recognizer_lib.Recognizer, tx) -> steps.TrainState:
  size = module.input_size
  params = module.init(rng, jnp.zeros((1, size, size, 3), jnp.float32))["params"]
  return steps.TrainState(step=jnp.zeros((), jnp.int32), params=params, collections={},
                          opt_state=tx.init(params))


def optimizer(c: ml_collections.ConfigDict, num_steps: int) -> optax.GradientTransformation:
  """AdamW with a linear warm-up to ``lr`` and a cosine decay to 0 at the last step."""
  warmup = max(1, min(int(c.warmup_steps), num_steps - 1))
  schedule = optax.warmup_cosine_decay_schedule(0.0, float(c.lr), warmup,
                                                 max(num_steps, warmup + 1))
  return optax.adamw(schedule, weight_decay=float(c.weight_decay))


@functools.lru_cache(maxsize=4)
def _functions(architecture_json: str, lr: float, warmup_steps: int, weight_decay: float,
               num_steps: int):
  """(module, init, step) for these settings: the same function objects every time, so that
  runs in one process (a resumed run, tests) reuse JAX's traced and compiled step."""
  module = recognizer_lib.from_config(json.loads(architecture_json))
  tx = optimizer(ml_collections.ConfigDict(
      {"lr": lr, "warmup_steps": warmup_steps, "weight_decay": weight_decay}), num_steps)
  return (module, functools.partial(init_state, module=module, tx=tx),
          functools.partial(train_step, module=module, tx=tx))


def build(config, workdir: str, previous) -> Stage:
  """The ``recognizer`` stage of ``config`` (needs ``config.data.source == "toy"``)."""
  del workdir, previous
  if config.data.source != "toy":
    raise ValueError(f"the recognizer stage trains on toy faces (labels come from the renderer); "
                     f"config.data.source is {config.data.source!r}")
  c = config.recognizer
  size = int(config.image_size)
  num_faces = int(c.num_train_faces)
  if not 0 < num_faces <= int(config.data.num_train):
    raise ValueError(f"recognizer.num_train_faces {num_faces} must be in (0, data.num_train = "
                     f"{config.data.num_train}]: the train split")
  num_steps = int(config.train.num_steps["recognizer"])
  module, init, step = _functions(json.dumps(architecture(config)), float(c.lr),
                                  int(c.warmup_steps), float(c.weight_decay), num_steps)
  batch_size = int(config.train.batch_size)
  if batch_size % jax.process_count():
    raise ValueError(f"train.batch_size {batch_size} is not divisible by the "
                     f"{jax.process_count()} processes")
  cache = FaceCache(config.data.toy_seed, size)
  max_shift = int(round(int(c.max_shift) * size / 64))

  def batches(start_step: int):
    return batch_iterator(cache, start_step, seed=int(config.seed), host=jax.process_index(),
                          batch_size=batch_size // jax.process_count(), num_faces=num_faces,
                          max_shift=max_shift)

  def describe(state) -> str:
    count = parameter_count(state.params)
    return (f"toy-face recognizer: {count:,} parameters, heads "
            + ", ".join(f"{n} ({k})" for n, k in module.attributes)
            + f"; {num_faces} train faces of toy seed {config.data.toy_seed} at {size} px")

  arch = {"stage": "recognizer", "image_size": size, "recognizer": architecture(config)}
  return Stage(name="recognizer", architecture=arch, init=init, step=step, batches=batches,
               log_prefixes=(PREFIX,), describe=describe)


def export_variables(meta: dict, params, collections, workdir: str) -> tuple[str, dict, Any]:
  """(kind, config, variables) of a trained recognizer for ``pretrained.save``."""
  del collections, workdir
  config = dict(meta["architecture"]["recognizer"])
  attributes = config["attributes"]
  if isinstance(attributes, Mapping):
    # JSON metadata written with sorted keys loses the head order: restore the label order.
    names = [n for n in toy_faces.ATTRIBUTE_NAMES if n in attributes]
    names += [n for n in attributes if n not in names]
    config["attributes"] = [[n, list(attributes[n])] for n in names]
  return KIND, config, {"params": params}


SPEC = StageSpec(name="recognizer", build=build,
                 defaults=lambda: {"recognizer": config_defaults()}, export=export_variables)
