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
    torch._utils._rebuild_tensor_v2, _rebuild_parameter   a read-only numpy view of the storage,
                                                          its layout checked first
    torch.FloatStorage, torch.HalfStorage, ...            dtype markers (inside storage bytes)
    dnnlib.util.EasyDict, collections.OrderedDict,        dict / set (the copying calls charged
      builtins.set, builtins.frozenset                    to the load's budget)
    numpy scalar / dtype / ndarray reconstruction         numpy values of numeric dtypes only:
                                                          object, structured and text dtypes
                                                          are refused by name, the real
                                                          ``np.dtype`` / ``ndarray.__setstate__``
                                                          never see the pickle's arguments

Any other global stops the load before anything is called, with its name:
``refusing to load X.pkl: the pickle references os.system ...``. torch is not needed (nor jax:
this module imports only numpy, so it can be fuzzed in a small child process).

What a small hostile file can make the reader do is bounded (``torch_io``'s helpers):

* every pickle (the file and each storage's bytes) is first scanned without building anything
  (``scan_pickle``): lengths or frames past the data, memo indices far past the opcodes,
  unknown opcodes, tuples nested deeper than ``MAX_TUPLE_DEPTH`` are refused, and the memory
  its objects will take is charged to the load's budget (3 x the file size + 16 MB);
* a tensor's size / stride / offset are checked against its storage before a view is made
  (``check_layout``): no overlapping (stride-0) view, nothing past the storage, no tensor above
  ``MAX_TENSOR_BYTES``; storages are views into the file's bytes (bfloat16 widened: 2 x);
* the calls that copy (``set``, ``_codecs.encode``, persistent objects, bfloat16 storages) and
  the final copy of the object graph (``GraphCopy``: memoised, cycles and nesting deeper than
  ``MAX_DEPTH`` refused) are charged to the same budget;
* every error, whatever its kind, becomes one ``ConversionError`` naming the file.

So reading holds the file's bytes once, the bfloat16 storages widened, and the containers and
small objects the budget allows: at most 3 x the file size + 16 MB.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import pickle
import re
import struct
from typing import Any, Callable

import numpy as np

from weights_conversion import torch_io
from weights_conversion.torch_io import Budget, ConversionError, brief, describe


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
    return f"PersistentObject({self.class_name}, children={list(self.modules)[:20]})"


class _EasyDict(dict):
  """Stand-in for ``dnnlib.util.EasyDict`` (a dict with attribute access; data only here).

  Pickles make it with NEWOBJ (``dict.__new__`` ignores arguments) and fill it with SETITEMS;
  called with arguments (a copy of another dict, over and over) it refuses.
  """

  def __init__(self):  # pylint: disable=super-init-not-called
    dict.__init__(self)

  def __setstate__(self, state):
    # A pickle's BUILD on this class itself (not an instance) fails here, so it cannot be
    # altered; an instance's (empty) attribute dict is ignored.
    del state


def plain(value: Any) -> Any:
  """Turns EasyDict / OrderedDict into dict throughout (other values unchanged).

  Memoised: shared references are copied once; cycles and nesting past ``MAX_DEPTH`` refused.
  """
  return torch_io.GraphCopy("a network's values", lambda v, copy: v)(value)


# ---- numpy values: numeric dtypes only, built here from bytes ----

# numpy's pickled dtype names (``np.dtype('f4').__reduce__()[1][0]``) that are plain numbers.
_NUMERIC_DTYPE = re.compile(r"b1|[iu][1248]|f[248]|c(8|16)")


class _DtypeSpec:
  """Stand-in for ``numpy.dtype(code, align, copy)`` plus its BUILD state (the byte order).

  Only numeric codes are accepted; the state may only set the byte order (no fields, names or
  sub-arrays), so an object or structured dtype can never be made.
  """

  def __init__(self, code, align=False, copy=True):
    del align, copy
    if not isinstance(code, str) or not _NUMERIC_DTYPE.fullmatch(code):
      kind = "an object" if isinstance(code, str) and code.startswith("O") else "a"
      raise UnsafePickleError(f"the pickle asks for {kind} numpy dtype {describe(code)}; only "
                              "numeric dtypes are read (object, structured and text dtypes are "
                              "refused; nothing was executed)")
    self.code, self.order = code, "="

  def __setstate__(self, state):
    if (not isinstance(state, tuple) or len(state) not in (8, 9)
        or state[1] not in ("<", ">", "|", "=") or any(v is not None for v in state[2:5])):
      raise UnsafePickleError(f"refusing numpy dtype state {describe(state)}: only a byte "
                              "order is read (no fields, names or sub-arrays)")
    self.order = state[1] if state[1] in "<>" else "="

  @property
  def dtype(self) -> np.dtype:
    return np.dtype(self.code).newbyteorder(self.order)


def _dtype(spec) -> np.dtype:
  if not isinstance(spec, _DtypeSpec):
    raise UnsafePickleError(f"a numpy value's dtype is a {type(spec).__name__}, not a dtype")
  return spec.dtype


def _shape(shape) -> tuple[int, ...]:
  if (not isinstance(shape, tuple) or len(shape) > torch_io.MAX_DIMS
      or not all(isinstance(n, int) and n >= 0 for n in shape)):
    raise ConversionError(f"a numpy array has an invalid shape {describe(shape)}")
  return shape


def _array_from_bytes(raw, dtype: np.dtype, shape, order: str) -> np.ndarray:
  """A read-only view of ``raw`` as ``shape``; its length must be exactly what it claims."""
  shape = _shape(shape)
  if not isinstance(raw, (bytes, bytearray)):
    raise UnsafePickleError(f"a numpy array's data is a {type(raw).__name__}, not bytes "
                            "(object arrays are refused)")
  if len(raw) != dtype.itemsize * math.prod(shape):
    raise ConversionError(f"a numpy array of shape {shape} and dtype {dtype} has "
                          f"{len(raw)} bytes of data")
  array = np.frombuffer(raw, dtype).reshape(shape, order=order)
  array.flags.writeable = False
  return array


class _ArraySpec:
  """Stand-in for ``numpy.core.multiarray._reconstruct(ndarray, ...)``; BUILD gives the data."""

  def __init__(self):
    self.array: np.ndarray | None = None

  def __setstate__(self, state):
    # (version, shape, dtype, is_fortran, data), as ndarray.__reduce__ writes it.
    if not isinstance(state, tuple) or len(state) != 5 or not isinstance(state[3], bool):
      raise UnsafePickleError(f"refusing numpy array state {describe(state)}")
    _, shape, dtype, fortran, raw = state
    self.array = _array_from_bytes(raw, _dtype(dtype), shape, "F" if fortran else "C")


def _numpy_reconstruct(cls, shape, typecode):
  del shape, typecode
  if cls is not _NDARRAY:
    raise UnsafePickleError(f"refusing to rebuild an array of type {describe(cls)}")
  return _ArraySpec()


def _numpy_scalar(dtype, data=None):
  dtype = _dtype(dtype)
  if not isinstance(data, bytes) or len(data) != dtype.itemsize:
    raise UnsafePickleError("refusing a numpy scalar without its bytes")
  return np.frombuffer(data, dtype=dtype, count=1)[0]


def _numpy_frombuffer(buffer, dtype, shape, order):
  # Protocol 5 pickles (Python 3.14's default) store arrays as _frombuffer(bytes, ...).
  if order not in ("C", "F"):
    raise UnsafePickleError(f"refusing a numpy array of order {describe(order)}")
  return _array_from_bytes(buffer, _dtype(dtype), shape, order)


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

  def __setstate__(self, state):
    raise UnsafePickleError("refusing a pickle that modifies a torch storage type")

  @property
  def itemsize(self) -> int:
    dtype = _STORAGE_DTYPES[self.name]
    return 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize

  def decode(self, data: bytes, offset: int, numel: int, budget: Budget) -> np.ndarray:
    """The storage's elements: a read-only view into ``data`` (bfloat16: a float32 copy)."""
    dtype = _STORAGE_DTYPES[self.name]
    if dtype == "bfloat16":   # the upper half of a float32
      budget.charge(4 * numel, "widening a bfloat16 storage")
      array = np.empty(numel, np.uint32)    # one allocation, no temporaries
      array[:] = np.frombuffer(data, "<u2", numel, offset)
      array <<= 16
      array = array.view(np.float32)
    else:
      array = np.frombuffer(data, dtype, numel, offset)
      if not array.dtype.isnative:
        budget.charge(array.nbytes, "a storage in foreign byte order")
        array = array.astype(array.dtype.newbyteorder("="))
    array.flags.writeable = False
    return array


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
                            f"{module[:100]}.{name[:100]}, which is not a torch storage "
                            "type; nothing was executed")

  def persistent_load(self, pid):
    # ('storage', storage_type, key, location, numel[, view_metadata])
    if (not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != "storage"
        or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str)
        or not isinstance(pid[4], int) or pid[4] < 0):
      raise UnsafePickleError(f"refusing to load {self.source}: unexpected persistent id in a "
                              f"tensor's storage bytes: {describe(pid)}")
    if len(pid) == 6 and pid[5] is not None:
      raise ConversionError(f"{self.source}: storage views (pre-1.0 torch serialization) are "
                            "not supported")
    storage = self.storages.setdefault(pid[2], _Storage(pid[1], pid[4]))
    if (storage.type, storage.numel) != (pid[1], pid[4]):
      raise ConversionError(f"{self.source}: storage {describe(pid[2])} is declared twice")
    return storage


def _load_storage_bytes(source: str, budget: Budget) -> Callable[[bytes], _Storage]:
  """Stand-in for ``torch.storage._load_from_bytes``: parses the legacy ``torch.save`` layout.

  Layout: pickles of the magic number, the protocol version and a sys-info dict; the pickled
  object (here a storage, by persistent id); the list of storage keys; then per key an int64
  little-endian element count followed by the raw little-endian data. Each pickle is scanned
  before it is read; each storage's size is checked against the bytes left before its view is
  made.
  """
  def load(data) -> _Storage:
    if not isinstance(data, bytes):
      raise UnsafePickleError(f"refusing to load {source}: _load_from_bytes got a "
                              f"{type(data).__name__}, not bytes")
    budget.charge(512, "a tensor storage")
    f = io.BytesIO(data)
    storages: dict[str, _Storage] = {}

    def read():
      start = f.tell()
      torch_io.scan_pickle(f, source, len(data), budget)
      f.seek(start)
      return _StorageUnpickler(f, source, storages).load()

    if read() != _LEGACY_MAGIC or read() != _LEGACY_PROTOCOL:
      raise ConversionError(f"{source}: a tensor's storage bytes are not in the legacy "
                            "torch.save layout")
    sys_info = read()
    if not isinstance(sys_info, dict) or sys_info.get("little_endian", True) is not True:
      raise ConversionError(f"{source}: tensor storages written on a big-endian machine are not "
                            "supported")
    obj = read()
    keys = read()
    if not isinstance(obj, _Storage) or not isinstance(keys, list):
      raise ConversionError(f"{source}: a tensor's storage bytes do not hold one storage")
    _fill_storages(f, data, [storages.get(k) if isinstance(k, str) else None for k in keys],
                   source, budget)
    if obj.array is None:
      raise ConversionError(f"{source}: a storage's data is missing from its bytes")
    return obj
  return load


def _fill_storages(f: io.BytesIO, data: bytes, storages: list, source: str,
                   budget: Budget) -> None:
  """Reads each storage's element count and data, in order, from ``f`` (over ``data``).

  The count must match the storage's declaration and its bytes must be left in ``data``
  before a view of them is made.
  """
  for storage in storages:
    if storage is None or storage.array is not None:
      raise ConversionError(f"{source}: storage bytes list an unknown or repeated key")
    header = f.read(8)
    if len(header) != 8 or struct.unpack("<q", header)[0] != storage.numel:
      raise ConversionError(f"{source}: a storage is truncated or has the wrong size")
    nbytes = storage.numel * storage.type.itemsize
    if nbytes > len(data) - f.tell():
      raise ConversionError(f"{source}: a storage claims {nbytes:,} bytes; "
                            f"{len(data) - f.tell():,} are left")
    storage.array = storage.type.decode(data, f.tell(), storage.numel, budget)
    f.seek(nbytes, io.SEEK_CUR)


def _rebuild_tensor(budget: Budget) -> Callable[..., np.ndarray]:
  """Stand-in for ``torch._utils._rebuild_tensor_v2``: a read-only view of the storage.

  The layout is checked (``torch_io.check_layout``) before the view is made: it lies inside the
  storage and its elements do not overlap, so the view is never bigger than the storage.
  """
  def rebuild(storage, storage_offset, size, stride, *unused) -> np.ndarray:
    del unused
    if not isinstance(storage, _Storage) or storage.array is None:
      raise UnsafePickleError(f"a tensor is built from a {type(storage).__name__}, not a "
                              "storage")
    array = storage.array
    budget.charge(256, "a tensor")
    numel = torch_io.check_layout(size, stride, storage_offset, array.size, array.itemsize,
                                  "a tensor")
    size = tuple(int(n) for n in size)
    if numel == 0:
      return np.zeros(size, array.dtype)
    strides = [int(s) * array.itemsize if n > 1 else 0 for n, s in zip(size, stride)]
    return np.lib.stride_tricks.as_strided(array[int(storage_offset):], shape=size,
                                           strides=strides, writeable=False)
  return rebuild


def _rebuild_parameter(data, requires_grad=None, backward_hooks=None, state=None) -> np.ndarray:
  """Stand-in for ``torch._utils._rebuild_parameter[_with_state]``: the data itself."""
  del requires_grad, backward_hooks, state
  if not isinstance(data, np.ndarray):
    raise UnsafePickleError(f"a parameter wraps a {type(data).__name__}, not a tensor")
  return data


# ---- containers and persistent objects: calls that copy are charged ----

def _copying(kind: Callable, budget: Budget, what: str) -> Callable:
  """``set`` / ``frozenset`` of a list or tuple, charged by its length."""
  def make(items=()):
    if not isinstance(items, (list, tuple)):
      raise UnsafePickleError(f"refusing {what} of a {type(items).__name__}")
    budget.charge(64 + 128 * len(items), what)   # a set over-allocates up to 4 x
    return kind(items)
  return make


def _ordered_dict(*args):
  # OrderedDict.__reduce__ calls it without arguments and fills it with SETITEMS.
  if args:
    raise UnsafePickleError("refusing OrderedDict(...) with arguments")
  return {}


def _codecs_encode(budget: Budget) -> Callable[..., bytes]:
  def encode(text, encoding="utf-8"):
    # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, 'latin1').
    if not isinstance(text, str) or encoding != "latin1":
      raise UnsafePickleError("refusing _codecs.encode other than of a str to latin1")
    budget.charge(64 + len(text), "_codecs.encode")
    return text.encode("latin1")
  return encode


def _reconstruct_persistent_obj(source: str, budget: Budget) -> Callable[[dict], PersistentObject]:
  def reconstruct(meta) -> PersistentObject:
    if (not isinstance(meta, dict) or meta.get("type") != "class"
        or not isinstance(meta.get("class_name"), str) or len(meta["class_name"]) > 200
        or not isinstance(meta.get("state"), dict)):
      raise ConversionError(f"{source}: a persistent object's metadata is not a class record "
                            f"({describe(meta)})")
    budget.charge(256 + 64 * len(meta["state"]), "a persistent object")
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


def _refuse_call(*args):
  del args
  raise UnsafePickleError("refusing to call numpy.ndarray")


_NDARRAY = _Call("numpy.ndarray", _refuse_call)   # only an argument of _reconstruct


class _SnapshotUnpickler(pickle.Unpickler):
  """Unpickler whose globals come only from the table in ``_allowed``."""

  def __init__(self, file, source: str, budget: Budget):
    super().__init__(file)
    self.source = source
    self.allowed = _allowed(source, budget)

  def find_class(self, module, name):
    module = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)
    found = self.allowed.get(f"{module}.{name}")
    if found is not None:
      return found
    hint = ""
    if module.startswith("dnnlib.tflib"):
      hint = " (a TensorFlow StyleGAN pickle: not supported)"
    raise UnsafePickleError(
        f"refusing to load {self.source}: the pickle references {module[:100]}.{name[:100]}, "
        f"which is not on the allow-list of an NVIDIA network pickle{hint}; nothing was "
        "executed")

  def persistent_load(self, pid):
    raise UnsafePickleError(f"refusing to load {self.source}: unexpected persistent id "
                            f"{describe(pid)}")


def _allowed(source: str, budget: Budget) -> dict[str, Any]:
  functions = {
      "torch_utils.persistence._reconstruct_persistent_obj":
          _reconstruct_persistent_obj(source, budget),
      "torch.storage._load_from_bytes": _load_storage_bytes(source, budget),
      "torch._utils._rebuild_tensor_v2": _rebuild_tensor(budget),
      "torch._utils._rebuild_tensor": _rebuild_tensor(budget),
      "torch._utils._rebuild_parameter": _rebuild_parameter,
      "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
      "_codecs.encode": _codecs_encode(budget),
      "collections.OrderedDict": _ordered_dict,
      "builtins.set": _copying(set, budget, "set(...)"),
      "builtins.frozenset": _copying(frozenset, budget, "frozenset(...)"),
      "numpy.dtype": _DtypeSpec,
  }
  for numpy_core in ("numpy.core", "numpy._core"):
    functions[f"{numpy_core}.multiarray.scalar"] = _numpy_scalar
    functions[f"{numpy_core}.multiarray._reconstruct"] = _numpy_reconstruct
    functions[f"{numpy_core}.numeric._frombuffer"] = _numpy_frombuffer
  table: dict[str, Any] = {name: _Call(name, fn) for name, fn in functions.items()}
  # NEWOBJ needs a real type: only _EasyDict, which guards itself.
  table.update({"dnnlib.util.EasyDict": _EasyDict, "dnnlib.EasyDict": _EasyDict,
                "numpy.ndarray": _NDARRAY})
  return table


def _finish(raw: Any, source: str, budget: Budget) -> Any:
  """The unpickled graph with the stand-ins replaced (arrays, dtypes, dicts), copied once."""
  def leaf(value, copy):
    if isinstance(value, PersistentObject):   # a BUILD may have replaced its fields
      if not isinstance(value.class_name, str) or not isinstance(value.state, dict):
        raise UnsafePickleError(f"refusing to load {source}: a persistent object was altered")
      return PersistentObject(value.class_name, copy(value.state), copy(value.version))
    if isinstance(value, _ArraySpec):
      if value.array is None:
        raise ConversionError(f"{source}: a numpy array without its data")
      return value.array
    if isinstance(value, _DtypeSpec):
      return value.dtype
    if isinstance(value, (np.ndarray, np.generic, bytearray)):
      return value
    name = value.name if isinstance(value, _Call) else type(value).__name__
    raise UnsafePickleError(f"refusing to load {source}: it leaves a {name} among its values, "
                            "where only data may be")
  return torch_io.GraphCopy(source, leaf, budget)(raw)


def load(path: str | os.PathLike) -> Any:
  """Reads an NVIDIA network pickle without executing any of it.

  Returns the pickled object with every network as a :class:`PersistentObject`, every tensor
  as a read-only numpy array and every EasyDict / OrderedDict as a dict (a snapshot is a dict
  with ``G``, ``D``, ``G_ema``, ``augment_pipe``, ``training_set_kwargs``).

  Raises:
    FileNotFoundError: ``path`` does not exist.
    UnsafePickleError: the pickle references a global outside the allow-list (named), or a
      numpy object / structured dtype.
    ConversionError: anything else: the file is not a readable pickle of this kind, or it asks
      for more than its size allows (see the module docstring).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"network pickle not found: {path}")
  budget = Budget.for_file(path)
  try:
    with open(path, "rb") as f:
      size = os.fstat(f.fileno()).st_size
      torch_io.scan_pickle(f, path, size, budget)
      f.seek(0)
      raw = _SnapshotUnpickler(torch_io.Bounded(f, size), path, budget).load()
    return _finish(raw, path, budget)
  except ConversionError as e:   # UnsafePickleError included: keeps its kind, names the file
    message = str(e)
    raise type(e)(message if path in message else f"refusing to load {path}: {message}"
                  ) from None
  except MemoryError:
    raise ConversionError(f"refusing to load {path}: it asks for more memory than there is "
                          "(MemoryError)") from None
  except Exception as e:  # pylint: disable=broad-except  # a hostile file can raise anything
    raise ConversionError(f"could not read {path} as an NVIDIA network pickle: "
                          f"{brief(e)}") from None


def state_dict(obj: PersistentObject) -> dict[str, np.ndarray]:
  """Flattens a persistent module tree to ``{"mapping.fc0.weight": array, ...}``.

  Same names and order as ``torch.nn.Module.state_dict()``: a module's parameters, then its
  buffers, then its children's entries under ``child.``. A module reached twice (shared, or a
  cycle) and trees deeper than ``MAX_DEPTH`` are refused.
  """
  out: dict[str, np.ndarray] = {}
  seen: set[int] = set()

  def visit(node: PersistentObject, prefix: str, depth: int) -> None:
    where = prefix[:-1] or "the network"
    if id(node) in seen:
      raise ConversionError(f"module {where} is reached twice (a shared module or a cycle); "
                            "not a module tree")
    if depth > torch_io.MAX_DEPTH:
      raise ConversionError(f"module {where} is nested more than {torch_io.MAX_DEPTH} deep")
    seen.add(id(node))
    for group in ("_parameters", "_buffers"):
      for name, value in _entries(node, group, prefix):
        if value is None:
          continue
        if not isinstance(value, np.ndarray):
          raise ConversionError(f"{prefix}{name} is a {type(value).__name__}, not a tensor")
        out[prefix + name] = value
    for name, child in _entries(node, "_modules", prefix):
      if child is None:
        continue
      if not isinstance(child, PersistentObject):
        raise ConversionError(f"{prefix}{name} is a {type(child).__name__}, not a persistent "
                              "module")
      visit(child, f"{prefix}{name}.", depth + 1)

  visit(obj, "", 0)
  return out


def _entries(node: PersistentObject, group: str, prefix: str) -> list:
  """``node.state[group]`` as ``(name, value)`` pairs; names must be strings."""
  entries = node.state.get(group) or {}
  if not isinstance(entries, dict) or not all(isinstance(k, str) for k in entries):
    raise ConversionError(f"{prefix}{group} of a {node.class_name} is not a dict of names")
  return list(entries.items())


def load_network(path: str | os.PathLike, key: str = "G_ema"
                 ) -> tuple[PersistentObject, dict[str, np.ndarray], dict]:
  """One network of a snapshot: ``(object tree, flat state dict, init kwargs)``.

  ``key`` picks the snapshot entry (``G_ema``, ``G``, ``D``); a pickle holding a bare network
  is returned as is.
  """
  obj = load(path)
  if isinstance(obj, dict):
    if key not in obj:
      names = sorted(k for k in obj if isinstance(k, str))[:20]
      raise ConversionError(f"{path} has no {key!r} entry (entries: {names})")
    obj = obj[key]
  if not isinstance(obj, PersistentObject):
    raise ConversionError(f"{path}[{key}] is a {type(obj).__name__}, not a network")
  try:
    return obj, state_dict(obj), obj.init_kwargs
  except ConversionError as e:
    raise ConversionError(f"{path}[{key}]: {e}") from None
