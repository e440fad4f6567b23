"""MTCNN face detection (Zhang et al. 2016) as facenet-pytorch runs it, in Flax and numpy.

Not a paper component. DiFAI (Yoon et al.) works on FFHQ-aligned face crops; to inpaint a face
in any photo we find it and its five landmarks first. This file re-expresses the three networks
and the cascade of facenet-pytorch 2.6 (``facenet_pytorch/models/mtcnn.py`` and
``models/utils/detect_face.py``, MIT licence), whose converted weights ship with the package
(``difai_jax/assets/mtcnn``, short name ``mtcnn``; ``python -m weights_conversion.mtcnn``).

The cascade, with facenet-pytorch's defaults (``min_face_size`` 20, ``thresholds``
(0.6, 0.7, 0.7), ``factor`` 0.709):

1. Image pyramid: scales 12 / min_face_size * factor^k while the short side stays >= 12 px;
   each level is an area-average resize to ``int(h * scale + 1)`` x ``int(w * scale + 1)``,
   normalised as ``(x - 127.5) / 128``.
2. PNet (fully convolutional, 12 px window, stride 2) gives a face score and a box offset per
   cell; cells scoring >= thresholds[0] become boxes, NMS (IoU 0.5) per level, NMS (IoU 0.7)
   over all levels, the offsets applied (relative to the box side) and each box squared.
3. RNet scores 24 x 24 area-resized crops of those boxes (crops are clipped to the image, not
   padded, as facenet-pytorch does); boxes scoring > thresholds[1] survive an NMS (IoU 0.7),
   take RNet's offsets (relative to side + 1) and are squared again.
4. ONet scores 48 x 48 crops: boxes scoring > thresholds[2] get five landmarks (relative to the
   box) and ONet's offsets, then an NMS by intersection over the smaller area (0.7).

Faces come back largest first (facenet-pytorch's ``select_largest``). Coordinates are pixels
with the centre of pixel (row i, column j) at (x, y) = (j, i); ``box`` is (x0, y0, x1, y1).
One deliberate difference: a box whose clipped crop is empty is dropped here, whereas
facenet-pytorch then pairs the remaining crops with the wrong boxes.

Networks take NHWC float images normalised as above; the box arithmetic runs in float32 numpy
in facenet-pytorch's order, so boxes, scores and landmarks match it to float rounding.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

MIN_FACE_SIZE = 20
THRESHOLDS = (0.6, 0.7, 0.7)
FACTOR = 0.709
SHORT_NAME = "mtcnn"   # the shipped weights (difai_jax.pretrained.SHORT_NAMES)


# ----------------------------------------------------------------------------------------------
# The networks
# ----------------------------------------------------------------------------------------------

class PReLU(nn.Module):
  """max(x, 0) + alpha * min(x, 0) with one learned ``alpha`` per channel (last axis)."""

  @nn.compact
  def __call__(self, x):
    alpha = self.param("alpha", nn.initializers.constant(0.25), (x.shape[-1],))
    return jnp.where(x >= 0, x, alpha * x)


def max_pool_ceil(x, window: int, stride: int):
  """Max pooling without padding whose last window may hang over the edge (PyTorch's
  ``ceil_mode=True``): (N, H, W, C) -> (N, ceil((H - window) / stride) + 1, ..., C)."""
  pads = []
  for size in x.shape[1:3]:
    out = -(-(size - window) // stride) + 1
    pads.append((0, (out - 1) * stride + window - size))
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1),
                               (1, stride, stride, 1), ((0, 0), *pads, (0, 0)))


def _conv(features: int, kernel: int, name: str):
  return nn.Conv(features, (kernel, kernel), padding="VALID", name=name)


def _flatten_like_torch(x):
  """(N, H, W, C) -> (N, W * H * C): facenet-pytorch flattens its NCHW maps as (W, H, C)."""
  return jnp.transpose(x, (0, 2, 1, 3)).reshape(x.shape[0], -1)


def _keep_first(x, rows, cols, fill: float):
  """``x`` (N, H, W, C) with every row >= ``rows`` (N,) and column >= ``cols`` (N,) of each
  image set to ``fill``."""
  valid = ((jnp.arange(x.shape[1])[None, :] < rows[:, None])[:, :, None]
           & (jnp.arange(x.shape[2])[None, :] < cols[:, None])[:, None, :])
  return jnp.where(valid[..., None], x, fill)


class PNet(nn.Module):
  """Proposal net: (N, H, W, 3) -> offsets (N, h, w, 4), probabilities (N, h, w, 2) with
  h = ceil((H - 4) / 2) - 3 (one cell per 12 px window, stride 2); channel 1 is "face".

  ``valid`` (N, 2), optional: each image's own (height, width) when the batch holds images of
  several sizes padded at the bottom and right (so that one compiled shape serves many sizes);
  the cells that only an image reaches are then exactly those of the unpadded image, the others
  are to be cropped off.
  """

  @nn.compact
  def __call__(self, x, valid=None):
    x = PReLU(name="prelu1")(_conv(10, 3, "conv1")(x))
    if valid is not None:   # the pool's last window may hang over the image, never the padding
      x = _keep_first(x, valid[:, 0] - 2, valid[:, 1] - 2, -jnp.inf)
    x = max_pool_ceil(x, 2, 2)
    if valid is not None:   # pooled cells: ceil((H - 2) / 2); beyond them no infinities
      x = _keep_first(x, (valid[:, 0] - 1) // 2, (valid[:, 1] - 1) // 2, 0.0)
    x = PReLU(name="prelu2")(_conv(16, 3, "conv2")(x))
    x = PReLU(name="prelu3")(_conv(32, 3, "conv3")(x))
    probs = jax.nn.softmax(_conv(2, 1, "conv4_1")(x), axis=-1)
    return _conv(4, 1, "conv4_2")(x), probs


class RNet(nn.Module):
  """Refinement net: (N, 24, 24, 3) -> offsets (N, 4), probabilities (N, 2)."""

  @nn.compact
  def __call__(self, x):
    x = max_pool_ceil(PReLU(name="prelu1")(_conv(28, 3, "conv1")(x)), 3, 2)   # -> 11 x 11
    x = max_pool_ceil(PReLU(name="prelu2")(_conv(48, 3, "conv2")(x)), 3, 2)   # -> 4 x 4
    x = PReLU(name="prelu3")(_conv(64, 2, "conv3")(x))                        # -> 3 x 3 x 64
    x = PReLU(name="prelu4")(nn.Dense(128, name="dense4")(_flatten_like_torch(x)))
    probs = jax.nn.softmax(nn.Dense(2, name="dense5_1")(x), axis=-1)
    return nn.Dense(4, name="dense5_2")(x), probs


class ONet(nn.Module):
  """Output net: (N, 48, 48, 3) -> offsets (N, 4), landmarks (N, 10) (x of the five points,
  then y, relative to the box), probabilities (N, 2)."""

  @nn.compact
  def __call__(self, x):
    x = max_pool_ceil(PReLU(name="prelu1")(_conv(32, 3, "conv1")(x)), 3, 2)   # -> 23 x 23
    x = max_pool_ceil(PReLU(name="prelu2")(_conv(64, 3, "conv2")(x)), 3, 2)   # -> 10 x 10
    x = max_pool_ceil(PReLU(name="prelu3")(_conv(64, 3, "conv3")(x)), 2, 2)   # -> 4 x 4
    x = PReLU(name="prelu4")(_conv(128, 2, "conv4")(x))                       # -> 3 x 3 x 128
    x = PReLU(name="prelu5")(nn.Dense(256, name="dense5")(_flatten_like_torch(x)))
    probs = jax.nn.softmax(nn.Dense(2, name="dense6_1")(x), axis=-1)
    return nn.Dense(4, name="dense6_2")(x), nn.Dense(10, name="dense6_3")(x), probs


class MTCNNNets(nn.Module):
  """The three networks under one set of variables (``params/{pnet,rnet,onet}``).

  ``apply(variables, x, method=run("pnet"))`` (or ``"rnet"``, ``"onet"``) runs one of them;
  ``__call__`` runs all three on their smallest inputs (used to initialise).
  """

  def setup(self):
    self.pnet = PNet()
    self.rnet = RNet()
    self.onet = ONet()

  def __call__(self, x12, x24, x48):
    return self.pnet(x12), self.rnet(x24), self.onet(x48)


def run(name: str):
  """The ``method`` argument of ``MTCNNNets.apply`` that runs net ``name`` alone."""
  if name not in ("pnet", "rnet", "onet"):
    raise ValueError(f"MTCNN has nets pnet, rnet and onet; got {name!r}")
  return lambda module, *args: getattr(module, name)(*args)


def init_shapes() -> tuple[jax.ShapeDtypeStruct, ...]:
  """Dummy inputs of :meth:`MTCNNNets.__call__` (for ``init`` / ``eval_shape``)."""
  return tuple(jax.ShapeDtypeStruct((1, s, s, 3), jnp.float32) for s in (12, 24, 48))


def from_config(config: dict) -> MTCNNNets:
  """Builder of kind ``"mtcnn"`` for :mod:`difai_jax.pretrained` (no architecture fields)."""
  if config:
    raise ValueError(f"an mtcnn config has no fields besides 'kind'; got {sorted(config)}")
  return MTCNNNets()


# ----------------------------------------------------------------------------------------------
# Pyramid, crops and boxes (float32, in facenet-pytorch's order of operations)
# ----------------------------------------------------------------------------------------------

def _area_bounds(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
  """PyTorch's area resize (adaptive average pooling): output i averages the inputs
  floor(i * in / out) .. ceil((i + 1) * in / out) - 1; returns (start, end) per output."""
  i = np.arange(out_size)
  return (i * in_size) // out_size, -((-(i + 1) * in_size) // out_size)


def _area_axis(x: np.ndarray, size: int, axis: int) -> np.ndarray:
  """``x`` (float64) area-resized to ``size`` along ``axis``, by differences of cumulative sums
  (linear in the input size, exact for the integer sums of uint8 pixels)."""
  start, end = _area_bounds(x.shape[axis], size)
  sums = np.cumsum(x, axis=axis)
  sums = np.concatenate([np.zeros_like(np.take(sums, [0], axis=axis)), sums], axis=axis)
  shape = [1] * x.ndim
  shape[axis] = size
  return ((np.take(sums, end, axis=axis) - np.take(sums, start, axis=axis))
          / (end - start).reshape(shape))


def area_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """(H, W, C) -> (height, width, C) float32, area-averaged (also when enlarging)."""
  rows = _area_axis(np.asarray(image, np.float64), height, 0)
  return _area_axis(rows, width, 1).astype(np.float32)


def normalize(pixels: np.ndarray) -> np.ndarray:
  """[0, 255] -> the networks' input range, (x - 127.5) / 128."""
  return ((pixels - np.float32(127.5)) * np.float32(0.0078125)).astype(np.float32)


def pyramid_scales(height: int, width: int, min_face_size: float = MIN_FACE_SIZE,
                   factor: float = FACTOR) -> list[float]:
  """Scales at which PNet's 12 px window sees faces of min_face_size px and larger."""
  scale = 12.0 / min_face_size
  short = min(height, width) * scale
  scales = []
  while short >= 12:
    scales.append(scale)
    scale *= factor
    short *= factor
  return scales


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, *, overlap: str = "union",
        plus_one: bool = False) -> np.ndarray:
  """Greedy non-maximum suppression: indices kept, best score first.

  A box is dropped when its overlap with a kept one exceeds ``threshold``; overlap is the
  intersection over the union (torchvision's ``nms``: ``plus_one=False``) or over the smaller
  box (facenet-pytorch's ``"Min"``, with its +1 pixel sides: ``plus_one=True``).
  """
  if overlap not in ("union", "min"):
    raise ValueError(f"overlap must be 'union' or 'min'; got {overlap!r}")
  if len(boxes) == 0:
    return np.zeros((0,), np.int64)
  boxes = boxes.astype(np.float32)
  one = np.float32(1 if plus_one else 0)
  x0, y0, x1, y1 = boxes.T
  areas = (x1 - x0 + one) * (y1 - y0 + one)
  order = np.argsort(-scores, kind="stable")
  keep = []
  while order.size:
    i = order[0]
    keep.append(i)
    rest = order[1:]
    w = np.maximum(np.float32(0), np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]) + one)
    h = np.maximum(np.float32(0), np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]) + one)
    inter = w * h
    with np.errstate(divide="ignore", invalid="ignore"):   # empty boxes: NaN, dropped
      if overlap == "min":
        ratio = inter / np.minimum(areas[i], areas[rest])
      else:
        ratio = inter / (areas[i] + areas[rest] - inter)
    order = rest[ratio <= threshold]
  return np.asarray(keep, np.int64)


def square(boxes: np.ndarray) -> np.ndarray:
  """Each (x0, y0, x1, y1) box grown to the square of its longer side, same centre."""
  boxes = boxes.copy()
  w = boxes[:, 2] - boxes[:, 0]
  h = boxes[:, 3] - boxes[:, 1]
  side = np.maximum(w, h)
  boxes[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
  boxes[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
  boxes[:, 2] = boxes[:, 0] + side
  boxes[:, 3] = boxes[:, 1] + side
  return boxes


def apply_offsets(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
  """RNet / ONet box regression: corners moved by offsets times the box's side + 1."""
  boxes = boxes.copy()
  w = boxes[:, 2] - boxes[:, 0] + 1
  h = boxes[:, 3] - boxes[:, 1] + 1
  moved = [boxes[:, 0] + offsets[:, 0] * w, boxes[:, 1] + offsets[:, 1] * h,
           boxes[:, 2] + offsets[:, 2] * w, boxes[:, 3] + offsets[:, 3] * h]
  boxes[:, :4] = np.stack(moved, axis=1)
  return boxes


def crops(image: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
  """(normalised (n, size, size, 3) crops, indices of the boxes they belong to).

  Boxes are truncated to integers and clipped to the image (1-based, inclusive: facenet-pytorch
  keeps MATLAB's convention); a box left empty by the clipping gets no crop.
  """
  h, w = image.shape[:2]
  b = np.trunc(boxes[:, :4]).astype(np.int64)
  x0, y0 = np.maximum(b[:, 0], 1), np.maximum(b[:, 1], 1)
  x1, y1 = np.minimum(b[:, 2], w), np.minimum(b[:, 3], h)
  out, kept = [], []
  for k in range(len(b)):
    if y1[k] > y0[k] - 1 and x1[k] > x0[k] - 1:
      out.append(area_resize(image[y0[k] - 1:y1[k], x0[k] - 1:x1[k]], size, size))
      kept.append(k)
  if not out:
    return np.zeros((0, size, size, 3), np.float32), np.zeros((0,), np.int64)
  return normalize(np.stack(out)), np.asarray(kept, np.int64)


# Batches of crops RNet / ONet run in (the last one padded): one compiled shape each.
CHUNKS = {"rnet": 128, "onet": 32}
# Pyramid levels up to this side run together, padded to this square, in batches of 8 (at
# most 8 levels of a pyramid are that small); larger ones alone (see pnet_size).
SMALL_LEVEL = 128
SMALL_BATCH = 8


def pnet_size(n: int) -> int:
  """Side of the square a pyramid level of longer side ``n`` > SMALL_LEVEL is padded to for
  PNet: the next of 128 * sqrt(2)^j.

  Levels shrink by the factor 0.709 ~ 1 / sqrt(2), so an image's levels fall into one size
  each, and other images reuse the same few compiled shapes.
  """
  size = float(SMALL_LEVEL)
  while int(size) < n:
    size *= math.sqrt(2)
  return int(size)


# ----------------------------------------------------------------------------------------------
# The cascade
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Face:
  """One detection: ``box`` (x0, y0, x1, y1), ``score`` (ONet's face probability) and
  ``landmarks`` (5, 2) as (x, y): left eye, right eye, nose, left and right mouth corners, left
  and right as seen in the image."""
  box: np.ndarray
  score: float
  landmarks: np.ndarray

  def describe(self) -> str:
    x0, y0, x1, y1 = (int(round(float(v))) for v in self.box)
    return f"box ({x0}, {y0}, {x1}, {y1}), {x1 - x0}x{y1 - y0} px, score {self.score:.3f}"


class Detector:
  """MTCNN with its variables; ``detect(image)`` -> faces, largest first.

  Args:
    module, variables: :class:`MTCNNNets` and its variables (see :func:`load_detector`).
    min_face_size, thresholds, factor: facenet-pytorch's ``MTCNN`` arguments.
  """

  def __init__(self, module: MTCNNNets, variables: Any, *, min_face_size: float = MIN_FACE_SIZE,
               thresholds: Sequence[float] = THRESHOLDS, factor: float = FACTOR):
    if len(thresholds) != 3:
      raise ValueError(f"MTCNN takes three thresholds (PNet, RNet, ONet); got {thresholds}")
    if not 0 < factor < 1:
      raise ValueError(f"the pyramid factor must lie in (0, 1); got {factor}")
    if min_face_size <= 0:
      raise ValueError(f"min_face_size must be positive; got {min_face_size}")
    self.variables = variables
    self.min_face_size = min_face_size
    self.thresholds = tuple(float(t) for t in thresholds)
    self.factor = factor
    # One jitted function per net; each compiles once per input shape.
    self._nets = {name: jax.jit(functools.partial(module.apply, method=run(name)))
                  for name in ("pnet", "rnet", "onet")}

  def run_net(self, name: str, x: np.ndarray) -> tuple[np.ndarray, ...]:
    """RNet or ONet on a batch of crops, in chunks of :data:`CHUNKS` (one compiled shape)."""
    n = len(x)
    chunk = CHUNKS[name]
    x = np.concatenate([x, np.zeros((-n % chunk, *x.shape[1:]), x.dtype)])
    parts = [self._nets[name](self.variables, x[i:i + chunk]) for i in range(0, n, chunk)]
    return tuple(np.concatenate([np.asarray(p[o]) for p in parts])[:n]
                 for o in range(len(parts[0])))

  def run_pnet(self, levels: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """PNet's (offsets, probabilities) of each (h, w, 3) pyramid level, each exactly as on
    the level alone; levels are padded to a few square shapes (compiled once each)."""
    small = [i for i, level in enumerate(levels) if max(level.shape[:2]) <= SMALL_LEVEL]
    groups = [[i] for i in range(len(levels)) if i not in small]
    groups += [small[i:i + SMALL_BATCH] for i in range(0, len(small), SMALL_BATCH)]
    out = [None] * len(levels)
    for group in groups:
      side = pnet_size(max(max(levels[i].shape[:2]) for i in group))
      batch = np.zeros((SMALL_BATCH if side == SMALL_LEVEL else 1, side, side, 3), np.float32)
      valid = np.full((len(batch), 2), side, np.int32)
      for b, i in enumerate(group):
        h, w = levels[i].shape[:2]
        batch[b, :h, :w] = levels[i]
        valid[b] = h, w
      offsets, probs = (np.asarray(o) for o in self._nets["pnet"](self.variables, batch, valid))
      for b, i in enumerate(group):
        h, w = valid[b]
        cells = (-(-h // 2) - 5, -(-w // 2) - 5)     # PNet's output size on the level alone
        out[i] = offsets[b, :cells[0], :cells[1]], probs[b, :cells[0], :cells[1]]
    return out

  def proposals(self, image: np.ndarray) -> np.ndarray:
    """Stage 1: (n, 5) squared boxes with PNet scores, before RNet."""
    h, w = image.shape[:2]
    t = self.thresholds[0]
    found = []
    scales = pyramid_scales(h, w, self.min_face_size, self.factor)
    levels = [normalize(area_resize(image, int(h * scale + 1), int(w * scale + 1)))
              for scale in scales]
    for scale, (offsets, probs) in zip(scales, self.run_pnet(levels)):
      ys, xs = np.nonzero(probs[:, :, 1] >= t)
      cells = np.stack([xs, ys], axis=1).astype(np.float32)
      s = np.float32(scale)
      boxes = np.concatenate([np.floor((2 * cells + 1) / s), np.floor((2 * cells + 12) / s),
                              probs[ys, xs, 1:2], offsets[ys, xs]], axis=1)
      found.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)])
    boxes = np.concatenate(found) if found else np.zeros((0, 9), np.float32)
    boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
    w_, h_ = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    moved = np.stack([boxes[:, 0] + boxes[:, 5] * w_, boxes[:, 1] + boxes[:, 6] * h_,
                      boxes[:, 2] + boxes[:, 7] * w_, boxes[:, 3] + boxes[:, 8] * h_,
                      boxes[:, 4]], axis=1)
    return square(moved)

  def refine(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Stage 2: RNet keeps and moves the proposals; (n, 5) squared boxes with RNet scores."""
    x, kept = crops(image, boxes, 24)
    if not len(kept):
      return np.zeros((0, 5), np.float32)
    offsets, probs = self.run_net("rnet", x)
    score = probs[:, 1]
    ok = score > self.thresholds[1]
    boxes = np.concatenate([boxes[kept[ok], :4], score[ok, None]], axis=1)
    pick = nms(boxes[:, :4], boxes[:, 4], 0.7)
    return square(apply_offsets(boxes[pick], offsets[ok][pick]))

  def output(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stage 3: ONet's final (n, 5) boxes with scores and (n, 5, 2) landmarks."""
    x, kept = crops(image, boxes, 48)
    if not len(kept):
      return np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)
    offsets, points, probs = self.run_net("onet", x)
    score = probs[:, 1]
    ok = score > self.thresholds[2]
    boxes = np.concatenate([boxes[kept[ok], :4], score[ok, None]], axis=1)
    points = points[ok]
    w = boxes[:, 2:3] - boxes[:, 0:1] + 1
    h = boxes[:, 3:4] - boxes[:, 1:2] + 1
    landmarks = np.stack([w * points[:, :5] + boxes[:, 0:1] - 1,
                          h * points[:, 5:] + boxes[:, 1:2] - 1], axis=-1)
    boxes = apply_offsets(boxes, offsets[ok])
    pick = nms(boxes[:, :4], boxes[:, 4], 0.7, overlap="min", plus_one=True)
    return boxes[pick], landmarks[pick]

  def detect(self, image: np.ndarray) -> list[Face]:
    """Faces in an (H, W, 3) uint8 RGB image, largest box first (none: an empty list)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
      raise ValueError(f"MTCNN takes an (H, W, 3) RGB image; got shape {image.shape}")
    image = image.astype(np.float32)
    boxes = self.proposals(image)
    if len(boxes):
      boxes = self.refine(image, boxes)
    if not len(boxes):
      return []
    boxes, landmarks = self.output(image, boxes)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = np.argsort(areas)[::-1]
    return [Face(boxes[i, :4].copy(), float(boxes[i, 4]), landmarks[i].copy()) for i in order]
