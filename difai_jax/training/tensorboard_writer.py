"""TensorBoard event files without TensorFlow, behind clu's ``MetricWriter`` interface.

clu's own TensorBoard writer (``clu.metric_writers.SummaryWriter``) goes through
``tf.summary``, so logging a few scalars would need TensorFlow (~1.3 GB installed). TensorBoard
itself only reads files, in a simple format, which this module writes directly:

  * a file ``events.out.tfevents.<time>.<host>.<pid>.<n>`` of TFRecords, each
    ``uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)``
    (little endian; masked = rotate right by 15 bits, plus 0xa282ead8);
  * each record an ``Event`` protobuf (tensorflow/core/util/event.proto): the first one holds
    ``file_version = "brain.Event:2"``, the others a ``Summary`` of values at a step:
    ``simple_value`` scalars, PNG ``image``s, ``histo`` histograms and string tensors for text
    (the text plugin's metadata). The few protobuf fields are encoded by hand below.

:func:`create_default_writer` mirrors ``clu.metric_writers.create_default_writer``: a
``LoggingWriter`` plus this writer, asynchronous by default.

clu's ``metric_writers/__init__.py`` imports its TensorFlow writer eagerly: without TensorFlow
even ``clu.periodic_actions`` fails to import, and with it every training process pays
TensorFlow's import (4-6 s on 2 CPU cores) for a writer it never uses. So importing this module
registers :class:`TensorBoardWriter` as ``clu.metric_writers.summary_writer.SummaryWriter``
first, whether TensorFlow is installed or not: clu imports without TensorFlow, and its
``create_default_writer`` writes these files too. A process that imported clu's metric writers
before this module keeps clu's own.
"""

from __future__ import annotations

import io
import os
import socket
import struct
import sys
import threading
import time
import types
from typing import Any, Mapping, Optional

import numpy as np
from PIL import Image

_CLU_SUMMARY_WRITER = "clu.metric_writers.summary_writer"


def _summary_writer(logdir: str) -> "TensorBoardWriter":
  """What clu's ``create_default_writer`` calls for its TensorBoard writer, without TensorFlow."""
  return TensorBoardWriter(logdir)


def _clu_without_tensorflow() -> None:
  if _CLU_SUMMARY_WRITER in sys.modules:
    return
  stand_in = types.ModuleType(_CLU_SUMMARY_WRITER, "TensorFlow-free stand-in registered by "
                              "difai_jax.training.tensorboard_writer.")
  stand_in.SummaryWriter = _summary_writer
  sys.modules[_CLU_SUMMARY_WRITER] = stand_in


_clu_without_tensorflow()

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import logging
from clu.metric_writers import async_writer
from clu.metric_writers import interface
from clu.metric_writers import logging_writer
from clu.metric_writers import multi_writer
# pylint: enable=g-import-not-at-top,wrong-import-position

FILE_VERSION = "brain.Event:2"
DEFAULT_HISTOGRAM_BUCKETS = 30   # TensorBoard's default
_DTYPES = {np.dtype(np.float32): 1, np.dtype(np.float64): 2, np.dtype(np.int32): 3,
           np.dtype(np.int64): 9, np.dtype(np.bool_): 10}   # tensorflow DataType enum
_DT_STRING = 7

# ----------------------------------------------------------------------------------------------
# TFRecord framing: CRC-32C (Castagnoli), masked
# ----------------------------------------------------------------------------------------------


def _crc32c_table() -> list[int]:
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    table.append(crc)
  return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  """CRC-32C of ``data`` (the checksum TFRecords use); crc32c(b"123456789") == 0xE3069283."""
  crc = 0xFFFFFFFF
  table = _CRC_TABLE
  for byte in data:
    crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
  """One TFRecord: length, its masked CRC, the data, its masked CRC."""
  length = struct.pack("<Q", len(data))
  return (length + struct.pack("<I", masked_crc32c(length)) + data
          + struct.pack("<I", masked_crc32c(data)))


# ----------------------------------------------------------------------------------------------
# Protobuf wire format, for the few messages TensorBoard reads
# ----------------------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
  n &= (1 << 64) - 1          # int64: negative numbers as 10-byte two's complement
  out = bytearray()
  while True:
    low, n = n & 0x7F, n >> 7
    if n:
      out.append(low | 0x80)
    else:
      out.append(low)
      return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
  return _varint(field << 3 | wire_type)


def _int(field: int, n: int) -> bytes:
  return _key(field, 0) + _varint(int(n))


def _double(field: int, x: float) -> bytes:
  return _key(field, 1) + struct.pack("<d", float(x))


def _float(field: int, x: float) -> bytes:
  return _key(field, 5) + struct.pack("<f", float(x))


def _bytes(field: int, payload: bytes | str) -> bytes:
  if isinstance(payload, str):
    payload = payload.encode("utf-8")
  return _key(field, 2) + _varint(len(payload)) + payload


def _packed_doubles(field: int, values) -> bytes:
  return _bytes(field, np.asarray(values, "<f8").tobytes())


def event(step: int, *, wall_time: float | None = None, summary_values: list[bytes] = (),
          file_version: str | None = None) -> bytes:
  """An ``Event``: wall_time (1), step (2), file_version (3) or a Summary (5) of values (1)."""
  out = _double(1, time.time() if wall_time is None else wall_time) + _int(2, step)
  if file_version is not None:
    out += _bytes(3, file_version)
  else:
    out += _bytes(5, b"".join(_bytes(1, value) for value in summary_values))
  return out


def scalar_value(tag: str, value: float) -> bytes:
  """``Summary.Value`` with tag (1) and simple_value (2)."""
  return _bytes(1, tag) + _float(2, value)


def image_value(tag: str, image: np.ndarray) -> bytes:
  """``Summary.Value`` with tag (1) and image (4): height, width, colorspace, PNG bytes.

  ``image`` (H, W, C), C in {1, 3, 4}: uint8, or float in [0, 1] (as ``tf.summary.image``).
  """
  arr = np.asarray(image)
  if arr.dtype != np.uint8:
    arr = np.clip(np.round(np.asarray(arr, np.float64) * 255.0), 0, 255).astype(np.uint8)
  if arr.ndim == 2:
    arr = arr[..., None]
  if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
    raise ValueError(f"an image must be (H, W, C) with C in 1, 3, 4; got {np.shape(image)}")
  buffer = io.BytesIO()
  Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(buffer, format="PNG")
  h, w, c = arr.shape
  encoded = _int(1, h) + _int(2, w) + _int(3, c) + _bytes(4, buffer.getvalue())
  return _bytes(1, tag) + _bytes(4, encoded)


def histogram_value(tag: str, values: np.ndarray, num_buckets: int | None = None) -> bytes:
  """``Summary.Value`` with tag (1) and histo (5): min, max, num, sum, sum_squares, bucket
  right edges (6) and counts (7), as TensorFlow's legacy histogram summaries."""
  arr = np.asarray(values, np.float64).ravel()
  if arr.size == 0:
    raise ValueError(f"histogram {tag!r} of an empty array")
  lo, hi = float(arr.min()), float(arr.max())
  if lo == hi:
    counts, edges = np.asarray([arr.size]), np.asarray([lo - 0.5, hi + 0.5])
  else:
    counts, edges = np.histogram(arr, bins=max(2, num_buckets or DEFAULT_HISTOGRAM_BUCKETS),
                                 range=(lo, hi))
  histo = (_double(1, lo) + _double(2, hi) + _double(3, arr.size) + _double(4, arr.sum())
           + _double(5, np.square(arr).sum()) + _packed_doubles(6, edges[1:])
           + _packed_doubles(7, counts))
  return _bytes(1, tag) + _bytes(5, histo)


def _plugin_metadata(plugin_name: str) -> bytes:
  """``SummaryMetadata`` with plugin_data (1) {plugin_name (1)}."""
  return _bytes(1, _bytes(1, plugin_name))


def tensor_value(tag: str, tensor: Any, metadata: bytes | None = None) -> bytes:
  """``Summary.Value`` with tag (1), tensor (8) and optional serialized metadata (9).

  A ``TensorProto``: dtype (1), shape (2: one dim (2) {size (1)} per axis), raw little-endian
  content (4) for numbers, string_val (8) for strings.
  """
  if isinstance(tensor, (str, bytes)):
    proto = _int(1, _DT_STRING) + _bytes(2, b"") + _bytes(8, tensor)
  else:
    arr = np.asarray(tensor)
    if arr.dtype not in _DTYPES:
      arr = arr.astype(np.float32)
    shape = b"".join(_bytes(2, _int(1, d)) for d in arr.shape)
    proto = (_int(1, _DTYPES[arr.dtype]) + _bytes(2, shape)
             + _bytes(4, arr.astype(arr.dtype.newbyteorder("<")).tobytes()))
  out = _bytes(1, tag) + _bytes(8, proto)
  if metadata is not None:
    out += _bytes(9, metadata)
  return out


def text_value(tag: str, text: str) -> bytes:
  """A string tensor tagged for TensorBoard's text plugin."""
  return tensor_value(tag, text, metadata=_plugin_metadata("text"))


# ----------------------------------------------------------------------------------------------
# The writer
# ----------------------------------------------------------------------------------------------

_FILE_COUNTER = 0
_FILE_COUNTER_LOCK = threading.Lock()


def _event_file_name() -> str:
  global _FILE_COUNTER
  with _FILE_COUNTER_LOCK:
    _FILE_COUNTER += 1
    n = _FILE_COUNTER
  return f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{n}"


class TensorBoardWriter(interface.MetricWriter):
  """Writes one TensorBoard event file in ``logdir``; no TensorFlow needed.

  Scalars, images (one PNG per image: tag ``key`` for one, ``key/i`` for a batch), histograms,
  texts and hparams (a text table) are written; videos and audios are skipped with a warning.
  """

  def __init__(self, logdir: str | os.PathLike):
    self.logdir = os.fspath(logdir)
    os.makedirs(self.logdir, exist_ok=True)
    self.path = os.path.join(self.logdir, _event_file_name())
    self._lock = threading.Lock()
    self._file = open(self.path, "wb")  # pylint: disable=consider-using-with
    self._write_event(event(0, file_version=FILE_VERSION))
    self.flush()

  def _write_event(self, data: bytes) -> None:
    with self._lock:
      self._file.write(tfrecord(data))

  def _write_values(self, step: int, values: list[bytes]) -> None:
    if values:
      self._write_event(event(int(step), summary_values=values))

  def write_summaries(self, step: int, values: Mapping[str, Any],
                      metadata: Optional[Mapping[str, Any]] = None):
    metadata = metadata or {}
    out = []
    for key, value in values.items():
      meta = metadata.get(key)
      if meta is not None and not isinstance(meta, bytes):
        meta = meta.SerializeToString()   # a SummaryMetadata proto
      out.append(tensor_value(key, np.asarray(value), meta))
    self._write_values(step, out)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    self._write_values(step, [scalar_value(k, float(np.asarray(v)))
                              for k, v in scalars.items()])

  def write_images(self, step: int, images: Mapping[str, Any]):
    out = []
    for key, value in images.items():
      arr = np.asarray(value)
      if arr.ndim == 3:
        out.append(image_value(key, arr))
      elif arr.ndim == 4:
        out.extend(image_value(key if len(arr) == 1 else f"{key}/{i}", im)
                   for i, im in enumerate(arr))
      else:
        raise ValueError(f"image {key!r} must be (H, W, C) or (N, H, W, C); got {arr.shape}")
    self._write_values(step, out)

  def write_videos(self, step: int, videos: Mapping[str, Any]):
    logging.log_first_n(logging.WARNING, "TensorBoardWriter: videos are not written (%s)", 1,
                        sorted(videos))

  def write_audios(self, step: int, audios: Mapping[str, Any], *, sample_rate: int):
    logging.log_first_n(logging.WARNING, "TensorBoardWriter: audios are not written (%s)", 1,
                        sorted(audios))

  def write_texts(self, step: int, texts: Mapping[str, str]):
    self._write_values(step, [text_value(k, v) for k, v in texts.items()])

  def write_histograms(self, step: int, arrays: Mapping[str, Any],
                       num_buckets: Optional[Mapping[str, int]] = None):
    num_buckets = num_buckets or {}
    self._write_values(step, [histogram_value(k, v, num_buckets.get(k))
                              for k, v in arrays.items() if np.size(v)])

  def write_hparams(self, hparams: Mapping[str, Any]):
    rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(hparams.items()))
    self.write_texts(0, {"hparams": "| name | value |\n|---|---|\n" + rows})

  def flush(self):
    with self._lock:
      if not self._file.closed:
        self._file.flush()

  def close(self):
    with self._lock:
      if not self._file.closed:
        self._file.close()


def create_default_writer(logdir: str | os.PathLike | None = None, *, just_logging: bool = False,
                          asynchronous: bool = True,
                          collection: str | None = None) -> multi_writer.MultiWriter:
  """clu's ``create_default_writer`` with :class:`TensorBoardWriter` in place of TensorFlow's.

  Args:
    logdir: folder of the event file (None: logging only).
    just_logging: only the logging writer (e.g. on hosts other than the first).
    asynchronous: write from a background thread (``AsyncMultiWriter``).
    collection: a name shown in the log lines and a subfolder of ``logdir``.
  """
  writers: list[interface.MetricWriter] = [logging_writer.LoggingWriter(collection=collection)]
  if not just_logging and logdir is not None:
    logdir = os.fspath(logdir)
    writers.append(TensorBoardWriter(os.path.join(logdir, collection) if collection else logdir))
  if asynchronous:
    return async_writer.AsyncMultiWriter(writers)
  return multi_writer.MultiWriter(writers)
