"""Safe reading of NVIDIA's StyleGAN2-ADA / StyleGAN3 network pickles (``network-snapshot-*.pkl``).

NVIDIA's training loops (NVlabs/stylegan2-ada-pytorch, NVlabs/stylegan3) write a plain
``pickle.dump({"training_set_kwargs": ..., "G": G, "D": D, "G_ema": G_ema, "augment_pipe": ...})``.
Each network is a ``torch_utils.persistence`` object, pickled as a call
``_reconstruct_persistent_obj(meta)`` whose ``meta`` holds the *source code* of the module that
defined the class (``module_src``), the class name and the object's ``__dict__`` (``state``:
``_parameters``, ``_buffers``, ``_modules``, ``_init_kwargs`` and plain attributes). Ordinary
unpickling executes that source. Each tensor is ``_rebuild_tensor_v2(storage, offset, size,
stride, ...)`` whose storage is a small legacy ``torch.save`` stream passed to
``torch.storage._load_from_bytes``, which ordinary unpickling reads with
``torch.load(weights_only=False)``.

This reader runs none of that. ``find_class`` answers from an allow-list of the globals such
files use, each replaced by an inert stand-in::

    torch_utils.persistence._reconstruct_persistent_obj   PersistentObject(class_name, state);
                                                          module_src is dropped, never run
    torch.storage._load_from_bytes                        the storage's bytes parsed here (legacy
                                                          torch.save layout) into a numpy array
    torch._utils._rebuild_tensor_v2, _rebuild_parameter   a bounds-checked numpy copy of it
    torch.FloatStorage, torch.HalfStorage, ...            dtype markers (inside storage bytes)
    dnnlib.util.EasyDict, collections.OrderedDict,        dict / OrderedDict / set
      builtins.set, builtins.frozenset
    numpy scalar / dtype / ndarray reconstruction         numpy values

Any other global stops the load before anything is called, with its name:
``refusing to load X.pkl: the pickle references os.system ...``. torch is not needed.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import struct
from typing import Any, Callable

import numpy as np

from weights_conversion.torch_io import ConversionError


class UnsafePickleError(ConversionError):
  """The pickle asks for something outside the allow-list; nothing of it was executed."""


@dataclasses.dataclass(eq=False)
class PersistentObject:
  """What a ``torch_utils.persistence`` object leaves when its code is not run.

  Attributes:
    class_name: the class name in the pickled module (``Generator``, ``SynthesisLayer``, ...).
    state: the object's ``__dict__``: ``_parameters`` / ``_buffers`` (name -> numpy array),
      ``_modules`` (name -> PersistentObject), ``_init_kwargs`` and plain attributes.
    version: ``torch_utils.persistence``'s format number.
  """
  class_name: str
  state: dict
  version: Any = None

  @property
  def modules(self) -> dict[str, "PersistentObject"]:
    """Child modules by attribute name (``_modules`` without the None entries)."""
    return {k: v for k, v in (self.state.get("_modules") or {}).items() if v is not None}

  @property
  def init_kwargs(self) -> dict:
    """The constructor's keyword arguments, as plain dicts (``init_kwargs`` in NVIDIA's code)."""
    return plain(self.state.get("_init_kwargs") or {})

  def __repr__(self) -> str:
    return f"PersistentObject({self.class_name}, children={list(self.modules)})"


class _EasyDict(dict):
  """Stand-in for ``dnnlib.util.EasyDict`` (a dict with attribute access; data only here)."""

  def __setstate__(self, state):
    # A pickle's BUILD on this class itself (not an instance) fails here, so it cannot be
    # altered; an instance's (empty) attribute dict is ignored.
    del state


def plain(value: Any) -> Any:
  """Recursively turns EasyDict / OrderedDict into dict (other values unchanged)."""
  if isinstance(value, dict):
    return {k: plain(v) for k, v in value.items()}
  if isinstance(value, list):
    return [plain(v) for v in value]
  if isinstance(value, tuple):
    return tuple(plain(v) for v in value)
  return value


# ---- tensors ----

# torch storage class -> little-endian numpy dtype ("bfloat16" is widened to float32).
_STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
    "BFloat16Storage": "bfloat16", "LongStorage": "<i8", "IntStorage": "<i4",
    "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C   # torch.serialization.MAGIC_NUMBER
_LEGACY_PROTOCOL = 1001                  # torch.serialization.PROTOCOL_VERSION


@dataclasses.dataclass(frozen=True)
class _StorageType:
  name: str

  @property
  def itemsize(self) -> int:
    dtype = _STORAGE_DTYPES[self.name]
    return 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize

  def decode(self, raw: bytes) -> np.ndarray:
    dtype = _STORAGE_DTYPES[self.name]
    if dtype == "bfloat16":   # the upper half of a float32
      return (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
    return np.frombuffer(raw, dtype).astype(np.dtype(dtype).newbyteorder("="))


class _Storage:
  """A rebuilt torch storage: a flat numpy array (filled after its pickle is read)."""

  def __init__(self, storage_type: _StorageType, numel: int):
    self.type = storage_type
    self.numel = numel
    self.array: np.ndarray | None = None


class _StorageUnpickler(pickle.Unpickler):
  """One pickle of a legacy ``torch.save`` stream: only storage types and storage ids."""

  def __init__(self, file, source: str, storages: dict[str, _Storage]):
    super().__init__(file)
    self.source = source
    self.storages = storages

  def find_class(self, module, name):
    if module in ("torch", "torch.cuda") and name in _STORAGE_DTYPES:
      return _StorageType(name)
    raise UnsafePickleError(f"refusing to load {self.source}: a tensor's storage bytes reference "
                            f"{module}.{name}, which is not a torch storage type; nothing was "
                            "executed")

  def persistent_load(self, pid):
    # ('storage', storage_type, key, location, numel[, view_metadata])
    if (not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != "storage"
        or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str)
        or not isinstance(pid[4], int) or pid[4] < 0):
      raise UnsafePickleError(f"refusing to load {self.source}: unexpected persistent id in a "
                              f"tensor's storage bytes: {pid!r:.80}")
    if len(pid) == 6 and pid[5] is not None:
      raise ConversionError(f"{self.source}: storage views (pre-1.0 torch serialization) are "
                            "not supported")
    if pid[2] not in self.storages:
      self.storages[pid[2]] = _Storage(pid[1], pid[4])
    return self.storages[pid[2]]


def _load_storage_bytes(source: str) -> Callable[[bytes], _Storage]:
  """Stand-in for ``torch.storage._load_from_bytes``: parses the legacy ``torch.save`` layout.

  Layout: pickles of the magic number, the protocol version and a sys-info dict; the pickled
  object (here a storage, by persistent id); the list of storage keys; then per key an int64
  little-endian element count followed by the raw little-endian data.
  """
  def load(data) -> _Storage:
    if not isinstance(data, (bytes, bytearray)):
      raise UnsafePickleError(f"refusing to load {source}: _load_from_bytes got a "
                              f"{type(data).__name__}, not bytes")
    f = io.BytesIO(data)
    storages: dict[str, _Storage] = {}
    read = lambda: _StorageUnpickler(f, source, storages).load()
    if read() != _LEGACY_MAGIC or read() != _LEGACY_PROTOCOL:
      raise ConversionError(f"{source}: a tensor's storage bytes are not in the legacy "
                            "torch.save layout")
    sys_info = read()
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", True):
      raise ConversionError(f"{source}: tensor storages written on a big-endian machine are not "
                            "supported")
    obj = read()
    keys = read()
    if not isinstance(obj, _Storage) or not isinstance(keys, list):
      raise ConversionError(f"{source}: a tensor's storage bytes do not hold one storage")
    for key in keys:
      storage = storages.get(key)
      if storage is None:
        raise ConversionError(f"{source}: storage bytes list an unknown key {key!r}")
      header = f.read(8)
      if len(header) != 8 or struct.unpack("<q", header)[0] != storage.numel:
        raise ConversionError(f"{source}: storage {key!r} is truncated or has the wrong size")
      raw = f.read(storage.numel * storage.type.itemsize)
      if len(raw) != storage.numel * storage.type.itemsize:
        raise ConversionError(f"{source}: storage {key!r} is truncated")
      storage.array = storage.type.decode(raw)
    if obj.array is None:
      raise ConversionError(f"{source}: a storage's data is missing from its bytes")
    return obj
  return load


def _rebuild_tensor(storage, storage_offset, size, stride, *unused) -> np.ndarray:
  """Stand-in for ``torch._utils._rebuild_tensor_v2``: a bounds-checked strided copy."""
  if not isinstance(storage, _Storage) or storage.array is None:
    raise UnsafePickleError(f"a tensor is built from a {type(storage).__name__}, not a storage")
  ints = lambda t: isinstance(t, tuple) and all(isinstance(v, int) and v >= 0 for v in t)
  if not (isinstance(storage_offset, int) and storage_offset >= 0 and ints(tuple(size))
          and ints(tuple(stride)) and len(size) == len(stride)):
    raise ConversionError(f"a tensor has an invalid layout (offset {storage_offset!r}, size "
                          f"{size!r}, stride {stride!r})")
  size, stride = tuple(size), tuple(stride)
  array = storage.array
  if 0 in size:
    return np.zeros(size, array.dtype)
  last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
  if last >= array.size:
    raise ConversionError(f"a tensor (offset {storage_offset}, size {size}, stride {stride}) "
                          f"reaches past its storage of {array.size} elements")
  view = np.lib.stride_tricks.as_strided(
      array[storage_offset:], shape=size, strides=[s * array.itemsize for s in stride],
      writeable=False)
  return np.array(view)


def _rebuild_parameter(data, requires_grad=None, backward_hooks=None, state=None) -> np.ndarray:
  """Stand-in for ``torch._utils._rebuild_parameter[_with_state]``: the data itself."""
  del requires_grad, backward_hooks, state
  if not isinstance(data, np.ndarray):
    raise UnsafePickleError(f"a parameter wraps a {type(data).__name__}, not a tensor")
  return data


# ---- numpy values (plain attributes such as FullyConnectedLayer.weight_gain) ----

def _numpy_scalar(dtype, data=None):
  if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
    raise UnsafePickleError("refusing a numpy object scalar")
  return np.frombuffer(data, dtype=dtype, count=1)[0]


def _numpy_reconstruct(cls, shape, typecode):
  if cls is not np.ndarray:
    raise UnsafePickleError(f"refusing to rebuild an array of type {cls!r}")
  return np.ndarray(shape, dtype=typecode)


def _numpy_frombuffer(buffer, dtype, shape, order):
  # Protocol 5 pickles (Python 3.14's default) store arrays as _frombuffer(bytes, ...).
  if not isinstance(dtype, np.dtype) or dtype.hasobject or order not in ("C", "F"):
    raise UnsafePickleError("refusing a numpy array of object dtype or unknown order")
  return np.frombuffer(bytes(buffer), dtype=dtype).reshape(shape, order=order).copy()


def _codecs_encode(text, encoding="utf-8"):
  # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, 'latin1').
  if not isinstance(text, str) or encoding != "latin1":
    raise UnsafePickleError("refusing _codecs.encode other than of a str to latin1")
  return text.encode("latin1")


def _reconstruct_persistent_obj(source: str) -> Callable[[dict], PersistentObject]:
  def reconstruct(meta) -> PersistentObject:
    if (not isinstance(meta, dict) or meta.get("type") != "class"
        or not isinstance(meta.get("class_name"), str) or not isinstance(meta.get("state"), dict)):
      raise ConversionError(f"{source}: a persistent object's metadata is not a class record "
                            f"(keys {sorted(meta) if isinstance(meta, dict) else type(meta)})")
    # meta["module_src"] is the pickled source code: deliberately neither kept nor run.
    return PersistentObject(meta["class_name"], dict(meta["state"]), meta.get("version"))
  return reconstruct


class _Call:
  """An allow-listed function as the unpickler hands it out: callable, but a BUILD opcode
  cannot change it (``__setstate__`` refuses), so one pickle cannot alter the table."""
  __slots__ = ("name", "fn")

  def __init__(self, name: str, fn: Callable):
    self.name, self.fn = name, fn

  def __call__(self, *args):
    return self.fn(*args)

  def __setstate__(self, state):
    raise UnsafePickleError(f"refusing a pickle that modifies {self.name}")


class _SnapshotUnpickler(pickle.Unpickler):
  """Unpickler whose globals come only from the table in ``_allowed``."""

  def __init__(self, file, source: str):
    super().__init__(file)
    self.source = source
    self.allowed = _allowed(source)

  def find_class(self, module, name):
    module = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)
    found = self.allowed.get(f"{module}.{name}")
    if found is not None:
      return found
    hint = ""
    if module.startswith("dnnlib.tflib"):
      hint = " (a TensorFlow StyleGAN pickle: not supported)"
    raise UnsafePickleError(
        f"refusing to load {self.source}: the pickle references {module}.{name}, which is not "
        f"on the allow-list of an NVIDIA network pickle{hint}; nothing was executed")

  def persistent_load(self, pid):
    raise UnsafePickleError(f"refusing to load {self.source}: unexpected persistent id "
                            f"{pid!r:.80}")


def _allowed(source: str) -> dict[str, Any]:
  functions = {
      "torch_utils.persistence._reconstruct_persistent_obj": _reconstruct_persistent_obj(source),
      "torch.storage._load_from_bytes": _load_storage_bytes(source),
      "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
      "torch._utils._rebuild_tensor": _rebuild_tensor,
      "torch._utils._rebuild_parameter": _rebuild_parameter,
      "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
      "_codecs.encode": _codecs_encode,
  }
  for numpy_core in ("numpy.core", "numpy._core"):
    functions[f"{numpy_core}.multiarray.scalar"] = _numpy_scalar
    functions[f"{numpy_core}.multiarray._reconstruct"] = _numpy_reconstruct
    functions[f"{numpy_core}.numeric._frombuffer"] = _numpy_frombuffer
  table: dict[str, Any] = {name: _Call(name, fn) for name, fn in functions.items()}
  # Classes: NEWOBJ needs real types. C types cannot be altered by BUILD; _EasyDict guards itself.
  table.update({
      "dnnlib.util.EasyDict": _EasyDict,
      "dnnlib.EasyDict": _EasyDict,
      "collections.OrderedDict": collections.OrderedDict,
      "builtins.set": set,
      "builtins.frozenset": frozenset,
      "numpy.dtype": np.dtype,
      "numpy.ndarray": np.ndarray,
  })
  return table


def load(path: str | os.PathLike) -> Any:
  """Reads an NVIDIA network pickle without executing any of it.

  Returns the pickled object with every network as a :class:`PersistentObject` and every tensor
  as a numpy array (a snapshot is a dict with ``G``, ``D``, ``G_ema``, ``augment_pipe``,
  ``training_set_kwargs``).

  Raises:
    FileNotFoundError: ``path`` does not exist.
    UnsafePickleError: the pickle references a global outside the allow-list (named).
    ConversionError: the file is not a readable pickle of this kind.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"network pickle not found: {path}")
  with open(path, "rb") as f:
    try:
      obj = _SnapshotUnpickler(f, path).load()
    except ConversionError:
      raise
    except Exception as e:  # truncated / corrupt streams: EOFError, UnpicklingError, ...
      raise ConversionError(f"could not read {path} as an NVIDIA network pickle: "
                            f"{type(e).__name__}: {e}") from e
  return dict(obj) if isinstance(obj, _EasyDict) else obj


def state_dict(obj: PersistentObject) -> dict[str, np.ndarray]:
  """Flattens a persistent module tree to ``{"mapping.fc0.weight": array, ...}``.

  Same names and order as ``torch.nn.Module.state_dict()``: a module's parameters, then its
  buffers, then its children's entries under ``child.``.
  """
  out: dict[str, np.ndarray] = {}

  def visit(node: PersistentObject, prefix: str) -> None:
    for group in ("_parameters", "_buffers"):
      for name, value in (node.state.get(group) or {}).items():
        if value is None:
          continue
        if not isinstance(value, np.ndarray):
          raise ConversionError(f"{prefix}{name} is a {type(value).__name__}, not a tensor")
        out[prefix + name] = value
    for name, child in (node.state.get("_modules") or {}).items():
      if child is None:
        continue
      if not isinstance(child, PersistentObject):
        raise ConversionError(f"{prefix}{name} is a {type(child).__name__}, not a persistent "
                              "module")
      visit(child, f"{prefix}{name}.")

  visit(obj, "")
  return out


def load_network(path: str | os.PathLike, key: str = "G_ema"
                 ) -> tuple[PersistentObject, dict[str, np.ndarray], dict]:
  """One network of a snapshot: ``(object tree, flat state dict, init kwargs)``.

  ``key`` picks the snapshot entry (``G_ema``, ``G``, ``D``); a pickle holding a bare network
  is returned as is.
  """
  obj = load(path)
  if isinstance(obj, dict):
    if key not in obj:
      raise ConversionError(f"{path} has no {key!r} entry (entries: {sorted(obj)})")
    obj = obj[key]
  if not isinstance(obj, PersistentObject):
    raise ConversionError(f"{path}[{key}] is a {type(obj).__name__}, not a network")
  return obj, state_dict(obj), obj.init_kwargs
