"""Safe reading of PyTorch checkpoints and the bookkeeping every converter shares.

Checkpoints are read with ``torch.load(weights_only=True)``: no arbitrary object is ever
unpickled. The only non-tensor global we allow is ``argparse.Namespace``, which rosinality's
training checkpoints store under ``"args"``.

A converter is a table: it asks a :class:`StateDict` for tensors by PyTorch name (``take``),
places them at Flax paths, and finally calls :meth:`StateDict.check_all_used`, so that a tensor
that was not converted, a missing one or one of the wrong shape stops the conversion with a
message naming the key and both shapes.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
from typing import Any, Iterable, Mapping

import numpy as np


class ConversionError(ValueError):
  """A checkpoint does not match what the converter expects."""


def _import_torch():
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "Reading PyTorch checkpoints needs torch: pip install 'difai-jax[convert]'") from e
  return torch


def to_numpy(tree: Any) -> Any:
  """Recursively turns torch tensors into float32/int numpy arrays (other leaves unchanged)."""
  torch = _import_torch()
  if isinstance(tree, torch.Tensor):
    t = tree.detach().cpu()
    if t.is_floating_point():
      t = t.float()
    return t.numpy()
  if isinstance(tree, Mapping):
    return {k: to_numpy(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return type(tree)(to_numpy(v) for v in tree)
  return tree


def load_checkpoint(path: str | os.PathLike) -> dict:
  """Loads a ``.pt``/``.pth`` file safely and returns its content with numpy arrays.

  Raises FileNotFoundError with the path when it does not exist, and ConversionError when the
  file holds objects outside the allow-list.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"checkpoint file not found: {path}")
  torch = _import_torch()
  try:
    with torch.serialization.safe_globals([argparse.Namespace]):
      obj = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch raises UnpicklingError with a long text
    raise ConversionError(
        f"could not read {path} safely with torch.load(weights_only=True): {e}") from e
  if isinstance(obj, argparse.Namespace):
    obj = vars(obj)
  if not isinstance(obj, Mapping):
    raise ConversionError(f"{path} holds a {type(obj).__name__}, expected a dict of tensors")
  return to_numpy(dict(obj))


class StateDict:
  """A flat ``name -> array`` mapping that remembers which entries a converter used.

  Args:
    tensors: flat mapping of PyTorch names to numpy arrays.
    source: a label for error messages (usually the file and sub-dict).
    ignore: glob patterns of names that are allowed to stay unused
      (e.g. ``"*.num_batches_tracked"``).
  """

  def __init__(self, tensors: Mapping[str, np.ndarray], source: str = "checkpoint",
               ignore: Iterable[str] = ()):
    self.tensors = dict(tensors)
    self.source = source
    self.ignore = tuple(ignore)
    self.used: set[str] = set()

  def __contains__(self, key: str) -> bool:
    return key in self.tensors

  def keys(self):
    return self.tensors.keys()

  def shape(self, key: str) -> tuple[int, ...]:
    if key not in self.tensors:
      raise ConversionError(f"{self.source}: missing key {key!r}")
    return tuple(np.shape(self.tensors[key]))

  def take(self, key: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Returns tensor ``key`` (marking it used); checks its shape when ``shape`` is given."""
    if key not in self.tensors:
      near = [k for k in self.tensors if k.split(".")[-1] == key.split(".")[-1]][:5]
      hint = f" (keys with the same last part: {near})" if near else ""
      raise ConversionError(f"{self.source}: missing key {key!r}{hint}")
    if key in self.used:
      raise ConversionError(f"{self.source}: key {key!r} used twice by the converter")
    value = np.asarray(self.tensors[key])
    if shape is not None and tuple(value.shape) != tuple(shape):
      raise ConversionError(
          f"{self.source}: key {key!r} has shape {tuple(value.shape)}, expected {tuple(shape)}")
    self.used.add(key)
    return value

  def unused(self) -> list[str]:
    return sorted(k for k in self.tensors if k not in self.used
                  and not any(fnmatch.fnmatchcase(k, p) for p in self.ignore))

  def check_all_used(self) -> None:
    left = self.unused()
    if left:
      shown = ", ".join(f"{k} {tuple(np.shape(self.tensors[k]))}" for k in left[:10])
      more = f" and {len(left) - 10} more" if len(left) > 10 else ""
      raise ConversionError(
          f"{self.source}: {len(left)} unexpected key(s) the converter does not know: "
          f"{shown}{more}")


def sub_state_dict(tensors: Mapping[str, Any], prefix: str) -> dict[str, np.ndarray]:
  """Entries of ``tensors`` whose name starts with ``prefix``, with the prefix removed."""
  return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


# ---- layout changes: PyTorch -> Flax (NHWC, kernels HWIO, dense (in, out)) ----

def conv_kernel(w: np.ndarray) -> np.ndarray:
  """(O, I, kh, kw) PyTorch conv weight -> (kh, kw, I, O) Flax/lax HWIO kernel."""
  if w.ndim != 4:
    raise ConversionError(f"expected a 4-d conv weight, got shape {w.shape}")
  return np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)))


def dense_kernel(w: np.ndarray) -> np.ndarray:
  """(out, in) PyTorch linear weight -> (in, out) Flax kernel."""
  if w.ndim != 2:
    raise ConversionError(f"expected a 2-d linear weight, got shape {w.shape}")
  return np.ascontiguousarray(w.T)


def check_shapes(converted: Mapping, expected: Mapping, path: str = "") -> None:
  """Compares two nested dicts (converted variables vs ``jax.eval_shape`` of the module).

  Raises ConversionError naming the first Flax path that is missing, extra, or mis-shaped.
  """
  for k in expected:
    p = f"{path}/{k}"
    if k not in converted:
      raise ConversionError(f"converted variables lack {p}")
    if isinstance(expected[k], Mapping):
      if not isinstance(converted[k], Mapping):
        raise ConversionError(f"{p} should be a collection/dict")
      check_shapes(converted[k], expected[k], p)
    else:
      want, got = tuple(expected[k].shape), tuple(np.shape(converted[k]))
      if want != got:
        raise ConversionError(f"{p} has shape {got}, the Flax module expects {want}")
  for k in converted:
    if k not in expected:
      raise ConversionError(f"converted variables have {path}/{k}, which the module lacks")
