"""Safe reading of PyTorch checkpoints and the bookkeeping every converter shares.

Checkpoints are read with ``torch.load(weights_only=True)``: no arbitrary object is ever
unpickled. The only non-tensor global we allow is ``argparse.Namespace``, which rosinality's
training checkpoints store under ``"args"``.

Files are untrusted, so what a small file can make us do is bounded before torch or numpy
allocates anything (the same helpers guard ``nvidia_pickle``):

* ``scan_pickle`` walks a pickle's opcodes without building anything: a length or frame that
  runs past the end of the data or a memo index far beyond the opcodes (the C unpickler
  allocates either first), tuples nested deeper than ``MAX_TUPLE_DEPTH`` (hashing them recurses
  in C and crashes) are refused, and the memory its objects will take is charged to a
  ``Budget`` of 3 x the file size + ``BUDGET_SLACK``;
* ``check_layout`` refuses a tensor whose size / stride / offset reach outside its storage or
  whose elements overlap (stride 0, ``expand``): no view is ever materialised into more memory
  than its storage holds, and no tensor above ``MAX_TENSOR_BYTES`` is built;
* ``GraphCopy`` copies the loaded object graph once per object (shared references stay
  shared), refusing cycles, nesting deeper than ``MAX_DEPTH`` and copies past the budget;
* a zip checkpoint's records must be stored uncompressed, their sizes within the file.

A converter is a table: it asks a :class:`StateDict` for tensors by PyTorch name (``take``),
places them at Flax paths, and finally calls :meth:`StateDict.check_all_used`, so that a tensor
that was not converted, a missing one or one of the wrong shape stops the conversion with a
message naming the key and both shapes.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import math
import os
import pickletools
import re
import reprlib
import sys
import zipfile
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

MAX_TUPLE_DEPTH = 32          # tuples in tuples; real checkpoints need 3
MAX_DEPTH = 64                # containers in containers; a StyleGAN2 snapshot needs ~25
MAX_DIMS = 16                 # tensor dimensions
MAX_TENSOR_BYTES = 4 << 30    # one tensor; the largest in a 1024 px StyleGAN2 is 9.4 MB
BUDGET_SLACK = 16 << 20       # bytes every load may spend beyond 3 x its file size


class ConversionError(ValueError):
  """A checkpoint does not match what the converter expects."""


_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlevel = 60, 60, 3


def describe(value: Any) -> str:
  """A short repr of an untrusted value for an error message (bounded, whatever it holds)."""
  try:
    return _SHORT.repr(value)
  except Exception:  # pylint: disable=broad-except  # a value whose repr fails
    return f"<{type(value).__name__}>"


def brief(error: BaseException) -> str:
  """``Type: message`` of an exception on one line, at most about 200 characters."""
  text = " ".join(str(error).split())
  return f"{type(error).__name__}: {text[:200]}{'...' if len(text) > 200 else ''}"


# ---- bounds checked before anything is allocated ----

class Budget:
  """The memory a load may spend, in (estimated) bytes.

  Charged: the objects a pickle builds (estimated from its opcodes before it is read), the
  calls that copy (sets, persistent objects, bfloat16 storages widened, float16 tensors made
  float32) and the final copy of the object graph.

  Args:
    limit: bytes allowed (None: unlimited); loaders use 3 x the file size + ``BUDGET_SLACK``.
    source: the file, for the message.
  """

  def __init__(self, limit: int | None, source: str):
    self.limit, self.source, self.spent = limit, source, 0

  def charge(self, nbytes: int, what: str) -> None:
    self.spent += int(nbytes)
    if self.limit is not None and self.spent > self.limit:
      raise ConversionError(
          f"refusing to load {self.source}: {what} takes it past its memory budget of "
          f"{self.limit:,} bytes (3 x the file size + {BUDGET_SLACK >> 20} MB: a file that small "
          "cannot hold that much data)")

  @classmethod
  def for_file(cls, path: str) -> "Budget":
    return cls(3 * os.path.getsize(path) + BUDGET_SLACK, path)


_TUPLE_OPS = ("TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "FROZENSET")
# Bytes of memory an item costs in the container an opcode builds (CPython, 64 bit, with
# over-allocation); every other object an opcode pushes is counted at 64 bytes + its text.
_ITEM_BYTES = {"APPEND": 16, "APPENDS": 16, "LIST": 16, "TUPLE": 8, "TUPLE1": 8, "TUPLE2": 8,
               "TUPLE3": 8, "SETITEM": 48, "SETITEMS": 48, "DICT": 48, "ADDITEMS": 64,
               "FROZENSET": 64}
_MEMO_OPS = ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT")
_MEMO_SLACK = 1 << 16   # memo indices beyond the opcodes read (pickles count them up from 0)


class _PickleScan:
  """The unpickler's stack machine with a number per stack entry: how deep tuples nest in it;
  and an estimate of the memory the objects it builds take (``bytes``)."""

  def __init__(self, source: str):
    self.source = source
    self.stack: list[int] = []
    self.marks: list[list[int]] = []
    self.memo: dict[Any, int] = {}
    self.bytes = 0
    self.count = 0

  def _top(self) -> int:
    return self.stack[-1] if self.stack else 0

  def _pop(self, n: int) -> list[int]:
    popped = self.stack[len(self.stack) - n:] if n else []
    del self.stack[len(self.stack) - len(popped):]
    return popped

  def _refuse(self, why: str) -> None:
    raise ConversionError(f"refusing to load {self.source}: {why}")

  def step(self, op: pickletools.OpcodeInfo, arg: Any, left: int) -> None:
    """One opcode; ``left``: the bytes after it (a FRAME may not claim more)."""
    name = op.name
    self.count += 1
    if name == "MARK":
      self.marks.append(self.stack)
      self.stack = []
    elif name in _MEMO_OPS:
      index = len(self.memo) if name == "MEMOIZE" else int(arg)
      if not 0 <= index <= self.count + _MEMO_SLACK:   # the C unpickler's memo table is
        self._refuse(f"memo index {index} after {self.count} opcodes")   # as long as its index
      self.memo[index] = self._top()
      self.bytes += 16
    elif name in ("GET", "BINGET", "LONG_BINGET"):
      self.stack.append(self.memo.get(int(arg), 0))
    elif name == "DUP":
      self.stack.append(self._top())
    else:
      if name == "FRAME" and arg > left:
        self._refuse(f"a frame claims {arg:,} bytes; {left:,} are left")
      self._build(op, arg)

  def _build(self, op: pickletools.OpcodeInfo, arg: Any) -> None:
    name, items, before = op.name, [], op.stack_before
    if pickletools.markobject in before:
      items, self.stack = self.stack, (self.marks.pop() if self.marks else [])
      before = before[:before.index(pickletools.markobject)]
    popped = self._pop(len(before))
    depth = 0
    if name in _TUPLE_OPS:
      depth = 1 + max(items + popped, default=0)
    elif name == "EMPTY_TUPLE":
      depth = 1
    elif name == "BUILD" and popped:
      depth = popped[0]
    if depth > MAX_TUPLE_DEPTH:
      self._refuse(f"tuples nested more than {MAX_TUPLE_DEPTH} deep")
    moved = len(items) + (len(popped) if name in ("APPEND", "SETITEM") or "TUPLE" in name else 0)
    self.bytes += _ITEM_BYTES.get(name, 0) * moved + 64 * len(op.stack_after)
    if isinstance(arg, (str, bytes, bytearray)):
      self.bytes += len(arg) * (4 if isinstance(arg, str) and not arg.isascii() else 1)
    self.stack.extend([depth] * len(op.stack_after))


class Bounded:
  """A binary file of ``size`` bytes whose ``read(n)`` never asks for more than the bytes left
  (a file object's ``read(n)`` allocates ``n`` bytes first, whatever the file holds)."""

  def __init__(self, f, size: int):
    self.f, self.size = f, size

  def read(self, n: int = -1) -> bytes:
    left = max(self.size - self.f.tell(), 0)
    return self.f.read(left if n is None or n < 0 else min(n, left))

  def readline(self) -> bytes:
    return self.f.readline()

  def tell(self) -> int:
    return self.f.tell()


def scan_pickle(f, source: str, size: int, budget: Budget | None = None) -> int:
  """Walks one pickle in ``f`` (from its position to its STOP) without building anything.

  ``f`` is a binary file (or BytesIO) of ``size`` bytes; its reads are bounded by what is left
  (a file object's ``read(n)`` would allocate a claimed length first). The memory the objects
  of the pickle will take is estimated and charged to ``budget``. Returns the number of
  opcodes. Raises ConversionError for an unknown opcode, data that ends early, a length or
  frame that runs past the end of the data, a memo index beyond the opcodes read (the C
  unpickler sizes its memo table by it), tuples nested deeper than ``MAX_TUPLE_DEPTH``, or a
  pickle that would take more memory than ``budget`` allows.
  """
  scan = _PickleScan(source)
  bounded = Bounded(f, size)
  try:
    for op, arg, _ in pickletools.genops(bounded):
      scan.step(op, arg, size - bounded.tell())
      if budget is not None and scan.count % 4096 == 0:
        budget.charge(scan.bytes, "the objects of its pickle")
        scan.bytes = 0
  except ConversionError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # genops: ValueError and friends
    raise ConversionError(f"refusing to load {source}: not a well-formed pickle "
                          f"({brief(e)})") from None
  if budget is not None:
    budget.charge(scan.bytes, "the objects of its pickle")
  return scan.count


def _is_index(value: Any) -> bool:
  return isinstance(value, (int, np.integer)) and value >= 0


def check_layout(size, stride, offset, storage_numel: int, itemsize: int, what: str) -> int:
  """Checks a strided tensor layout on its numbers alone; returns its element count.

  Refused: malformed numbers, more than ``MAX_DIMS`` dimensions, elements that overlap (a
  stride 0 / ``expand`` / any stride smaller than the span of the faster dimensions), an extent
  past the storage's ``storage_numel`` elements, more than ``MAX_TENSOR_BYTES``. A layout that
  passes maps its elements one-to-one into the storage, so its data is never bigger than it.
  """
  if not (isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list))
          and len(size) == len(stride) and len(size) <= MAX_DIMS and _is_index(offset)
          and all(map(_is_index, size)) and all(map(_is_index, stride))):
    raise ConversionError(f"{what} has an invalid layout (offset {describe(offset)}, size "
                          f"{describe(size)}, stride {describe(stride)})")
  numel = math.prod(int(n) for n in size)
  if numel == 0:
    return 0
  extent = 1   # elements spanned by the dimensions checked so far
  for s, n in sorted((int(s), int(n)) for n, s in zip(size, stride) if n > 1):
    if s < extent:
      raise ConversionError(f"{what} (size {tuple(size)}, stride {tuple(stride)}) has "
                            "overlapping elements (a stride-0 or expanded view); refused, "
                            "never expanded")
    extent += s * (n - 1)
  if offset + extent > storage_numel:
    raise ConversionError(f"{what} (offset {offset}, size {tuple(size)}, stride "
                          f"{tuple(stride)}) reaches past its storage of {storage_numel} "
                          "elements")
  if numel * itemsize > MAX_TENSOR_BYTES:
    raise ConversionError(f"{what} holds {numel * itemsize:,} bytes, above the "
                          f"{MAX_TENSOR_BYTES:,}-byte ceiling for one tensor")
  return numel


_ATOMS = (str, bytes, int, float, complex, bool, type(None))


class GraphCopy:
  """Copies a loaded object graph: dicts (any subclass) become dicts, lists and tuples stay.

  Each object is copied once (memoised by identity: shared references are copied once and stay
  shared, so a graph of shared references cannot blow up); a cycle, nesting deeper than
  ``MAX_DEPTH`` or work past ``budget`` is refused. Other values go to ``leaf(value, copy)``,
  which may copy their parts with ``copy``.
  """

  def __init__(self, source: str, leaf: Callable[[Any, Callable], Any],
               budget: Budget | None = None):
    self.source, self.leaf = source, leaf
    self.budget = budget or Budget(None, source)
    self.done: dict[int, tuple[Any, Any]] = {}   # id -> (original, copy)
    self.active: set[int] = set()

  def __call__(self, value: Any, depth: int = 0) -> Any:
    if isinstance(value, _ATOMS):
      return value
    key = id(value)
    if key in self.done:
      return self.done[key][1]
    if key in self.active:
      raise ConversionError(f"refusing to load {self.source}: its data contains a cycle (a "
                            f"{type(value).__name__} that contains itself)")
    if depth >= MAX_DEPTH:
      raise ConversionError(f"refusing to load {self.source}: its data is nested more than "
                            f"{MAX_DEPTH} levels deep")
    self.active.add(key)
    try:
      result = self._copy(value, lambda v: self(v, depth + 1))
    finally:
      self.active.discard(key)
    self.done[key] = (value, result)
    return result

  def _copy(self, value: Any, copy: Callable[[Any], Any]) -> Any:
    if isinstance(value, (dict, set, frozenset)):
      self.budget.charge(64 + 64 * len(value), "copying its containers")
    elif isinstance(value, (list, tuple)):
      self.budget.charge(64 + 16 * len(value), "copying its containers")
    if isinstance(value, dict):
      out = {}
      for k, v in value.items():
        k, v = copy(k), copy(v)
        try:
          out[k] = v
        except TypeError:
          raise ConversionError(f"refusing to load {self.source}: a dict key is a "
                                f"{type(k).__name__}") from None
      return out
    if isinstance(value, list):
      return [copy(v) for v in value]
    if isinstance(value, tuple):
      return tuple(copy(v) for v in value)
    if isinstance(value, (set, frozenset)):
      items = [copy(v) for v in value]
      try:
        return frozenset(items) if isinstance(value, frozenset) else set(items)
      except TypeError:
        raise ConversionError(f"refusing to load {self.source}: a set holds an unhashable "
                              "value") from None
    return self.leaf(value, copy)


def _import_torch():
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "Reading PyTorch checkpoints needs torch: pip install 'difai-jax[convert]'") from e
  return torch


def _tensor_to_numpy(t, budget: Budget, what: str) -> np.ndarray:
  """One tensor as numpy: float32 (other float types converted), ints / bools as they are.

  Its layout is checked against its storage first: an expanded (stride-0) half tensor of a
  few bytes would otherwise become gigabytes on ``.float()``.
  """
  torch = _import_torch()
  t = t.detach()
  if t.layout != torch.strided or t.is_quantized or t.device.type != "cpu":
    raise ConversionError(f"{what} is a {t.layout} / quantized / {t.device.type} tensor; only "
                          "plain CPU tensors are read")
  itemsize = t.element_size()
  check_layout(tuple(t.shape), tuple(t.stride()), t.storage_offset(),
               t.untyped_storage().nbytes() // itemsize, itemsize, what)
  if t.is_floating_point() and t.dtype != torch.float32:
    budget.charge(4 * t.numel(), f"{what} converted to float32")
    t = t.float()
  return t.numpy()


def to_numpy(tree: Any, budget: Budget | None = None, source: str = "checkpoint") -> Any:
  """Turns torch tensors into float32/int numpy arrays (other leaves unchanged).

  Dicts (and ``argparse.Namespace``) become dicts; the traversal is a :class:`GraphCopy`:
  shared references copied once, cycles and deep nesting refused, float conversions charged to
  ``budget``.
  """
  torch = _import_torch()
  budget = budget or Budget(None, source)

  def leaf(value, copy):
    if isinstance(value, torch.Tensor):
      return _tensor_to_numpy(value, budget, f"a tensor in {source}")
    if isinstance(value, argparse.Namespace):
      return copy(vars(value))
    return value

  return GraphCopy(source, leaf, budget)(tree)


def _check_zip(path: str, size: int) -> None:
  """A zip checkpoint: stored (uncompressed) records within the file; its pickle scanned."""
  try:
    with zipfile.ZipFile(path) as archive:
      infos = archive.infolist()
      if any(i.compress_type != zipfile.ZIP_STORED for i in infos):
        raise ConversionError(f"refusing to load {path}: it holds compressed records "
                              "(torch.save never compresses; a compressed record can expand "
                              "far beyond the file)")
      if sum(i.file_size for i in infos) > size:
        raise ConversionError(f"refusing to load {path}: its records claim more bytes than "
                              "the file holds")
      pickles = [i for i in infos if i.filename.endswith("data.pkl")]
      if len(pickles) != 1:
        raise ConversionError(f"refusing to load {path}: a zip that is not a torch.save "
                              f"checkpoint ({len(pickles)} data.pkl records)")
      with archive.open(pickles[0]) as f:
        scan_pickle(f, path, pickles[0].file_size, Budget.for_file(path))
  except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as e:
    raise ConversionError(f"refusing to load {path}: not a readable zip checkpoint "
                          f"({brief(e)})") from None


def _check_legacy(path: str) -> None:
  """A legacy (pre-1.6) ``torch.save`` file: its leading pickles scanned (magic number,
  protocol, system info, the object, the storage keys); torch checks each storage's size
  against the bytes left before reading it."""
  size, budget = os.path.getsize(path), Budget.for_file(path)
  with open(path, "rb") as f:
    for _ in range(5):
      if f.tell() >= size:
        break
      scan_pickle(f, path, size, budget)


# Lines of torch's refusal that give advice about trusting the file: never shown to a user.
_ADVICE = re.compile(r"weights_only|weights only|safe_globals|trust|torch\.load|documentation|"
                     r"file an issue", re.IGNORECASE)


def _refusal(path: str, error: Exception) -> str:
  """torch.load's error as a one-line refusal that never suggests loading the file unsafely."""
  lines = [line.strip() for line in str(error).splitlines()]
  reasons = [line for line in lines if line and not _ADVICE.search(line)]
  reason = reasons[0][:200] if reasons else "no reason given"
  return (f"refusing to load {path}: the file is untrusted or not a plain checkpoint of tensors "
          f"({type(error).__name__}: {reason}); nothing in it was executed. Only "
          "tensors, numbers, strings, lists, dicts and argparse.Namespace are read")


def load_checkpoint(path: str | os.PathLike) -> dict:
  """Loads a ``.pt``/``.pth`` file safely and returns its content with numpy arrays.

  Before torch reads it: a zip's records must be stored and fit the file, the pickle is scanned
  (``scan_pickle``). After: every tensor's layout is checked against its storage and the
  content copied by ``to_numpy`` within a memory budget of 3 x the file size + 16 MB.

  Raises FileNotFoundError with the path when it does not exist, and ConversionError (one
  line, never advising to load the file unsafely) for anything else.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"checkpoint file not found: {path}")
  if zipfile.is_zipfile(path):
    _check_zip(path, os.path.getsize(path))
  else:
    _check_legacy(path)
  torch = _import_torch()
  try:
    with torch.serialization.safe_globals([argparse.Namespace]):
      obj = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pylint: disable=broad-except  # torch raises many kinds
    raise ConversionError(_refusal(path, e)) from None
  if isinstance(obj, argparse.Namespace):
    obj = vars(obj)
  if not isinstance(obj, Mapping):
    raise ConversionError(f"{path} holds a {type(obj).__name__}, expected a dict of tensors")
  try:
    return to_numpy(dict(obj), Budget.for_file(path), path)
  except ConversionError:
    raise
  except (TypeError, ValueError, RuntimeError, RecursionError, MemoryError) as e:
    raise ConversionError(f"refusing to load {path}: {brief(e)}") from None


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


@dataclasses.dataclass(frozen=True)
class Converter:
  """A single-network converter and its command, ``python -m weights_conversion.<module> SRC DST``.

  Made by decorating a converter module's ``convert`` function with :func:`converter_command`;
  calling it calls that function (``convert(state_dict, source=SRC)`` -> ``(config,
  variables)``). The command writes the result as a ``difai_jax.pretrained`` directory of
  ``kind``; its description is the first line of the module's docstring.
  """
  convert: Callable[..., tuple]
  kind: str
  src_help: str

  def __call__(self, state_dict: Mapping[str, Any], **kwargs) -> tuple:
    return self.convert(state_dict, **kwargs)

  def main(self, argv: Sequence[str] | None = None) -> int:
    """Parses ``SRC DST``, converts and writes, then prints one line naming the kind, the
    parameter count and the config; a refused file is one ``error:`` line and exit code 1 (DST
    is never overwritten)."""
    # The package is imported here, not at the top: torch_io itself serves numpy-only readers.
    from difai_jax import pretrained  # pylint: disable=import-outside-toplevel
    from difai_jax.nn import parameter_count  # pylint: disable=import-outside-toplevel
    module = sys.modules[self.convert.__module__]
    name = module.__spec__.name if module.__spec__ else module.__name__   # "__main__" under -m
    parser = converter_parser(name.rsplit(".", 1)[-1],
                              (module.__doc__ or "").strip().splitlines()[0], self.src_help)
    args = parser.parse_args(argv)
    try:
      config, variables = self.convert(load_checkpoint(args.src), source=args.src)
      pretrained.save(args.dst, self.kind, config, variables)
    except (ConversionError, FileNotFoundError, FileExistsError) as e:
      print(f"error: {e}", file=sys.stderr)
      return 1
    settings = ", ".join(f"{key} {value}" for key, value in config.items() if key != "dtype")
    print(f"wrote {args.dst}: {self.kind}, {parameter_count(variables):,} parameters, {settings}")
    return 0


def converter_command(*, kind: str, src_help: str) -> Callable[[Callable[..., tuple]], Converter]:
  """Decorator: makes a module's ``convert`` function a :class:`Converter` writing ``kind``."""
  return lambda convert: Converter(convert=convert, kind=kind, src_help=src_help)


def converter_parser(module: str, description: str, src_help: str) -> argparse.ArgumentParser:
  """The command line every converter starts from: ``python -m weights_conversion.MODULE SRC
  DST`` (DST: a new model directory)."""
  parser = argparse.ArgumentParser(prog=f"python -m weights_conversion.{module}",
                                   description=description)
  parser.add_argument("src", help=src_help)
  parser.add_argument("dst", help="output directory (must not hold a converted model yet)")
  return parser
