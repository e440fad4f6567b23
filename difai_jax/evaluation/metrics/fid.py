"""FID: the Frechet Inception Distance (Heusel et al., NeurIPS 2017) as pytorch-fid computes it.

The DiFAI paper reports FID (Table 1). FID numbers are only comparable when made with the same
network, so this module re-expresses pytorch-fid's ``InceptionV3`` in its FID configuration (the
TensorFlow ``inception-2015-12-05`` graph, *not* torchvision's Inception-v3):

* input resized to 299x299 by bilinear interpolation with ``align_corners=False`` and no
  antialiasing (``F.interpolate`` semantics, also when shrinking), then mapped to [-1, 1];
* torchvision's Inception-v3 stem and blocks with ``BasicConv2d`` = conv (no bias), BatchNorm with
  eps 0.001, ReLU; the FID patches: the average-pool branches of the A, C and E blocks exclude the
  zero padding from the mean (``count_include_pad=False``, as TensorFlow), and the last E block
  (``Mixed_7c``) pools with a 3x3 *max* pool;
* output: the 2048-d global average pool after ``Mixed_7c`` ("pool3"); the 1008-way ``fc`` is not
  part of the metric.

The statistics (mean and covariance of pool3 features, float64) and the Frechet distance follow
pytorch-fid's ``calculate_activation_statistics`` / ``calculate_frechet_distance``, including its
handling of a singular covariance product. Real-image statistics are computed once and stored as
``.npz`` (``mu``, ``sigma``, ``n``; pytorch-fid's own ``.npz`` files, without ``n``, load too).

Weights: ``python -m weights_conversion.inception pt_inception-2015-12-05-6726825d.pth DST_DIR``;
load with ``difai_jax.pretrained.load(DST_DIR)`` (kind ``"inception"``).
"""

from __future__ import annotations

import os
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

FID_SIZE = 299
BN_EPS = 1e-3  # torchvision BasicConv2d
POOL3_DIM = 2048


def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
  """(out_size, in_size) matrix of torch bilinear resizing with ``align_corners=False``.

  Source coordinate of output pixel i: ``(i + 0.5) * in/out - 0.5``, clamped below at 0; the two
  neighbouring input pixels (the upper one clamped to the last pixel) get linear weights. No
  antialiasing, also when shrinking (``F.interpolate``'s default). Rounding as PyTorch's CPU
  kernel: float32 ``scale``, and ``scale * (i + 0.5) - 0.5`` rounded once to float32 (a fused
  multiply-add; the product of two float32 numbers is exact in float64). This reproduces its
  weights bit for bit; plain float32 or float64 arithmetic moves some by up to ~2e-5.
  """
  f32 = np.float32
  scale = np.float64(f32(in_size) / f32(out_size))
  src = (scale * (np.arange(out_size, dtype=np.float64) + 0.5) - 0.5).astype(f32)
  src = np.maximum(src, f32(0))
  lo = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
  hi = np.minimum(lo + 1, in_size - 1)
  frac = np.clip(src - lo.astype(f32), f32(0), f32(1))
  m = np.zeros((out_size, in_size), np.float64)
  np.add.at(m, (np.arange(out_size), lo), f32(1) - frac)
  np.add.at(m, (np.arange(out_size), hi), frac)
  return m.astype(np.float32)


def resize_bilinear(x: jax.Array, size: tuple[int, int], precision=None) -> jax.Array:
  """(N, H, W, C) -> (N, size[0], size[1], C), torch ``F.interpolate(mode='bilinear')``."""
  mh = jnp.asarray(bilinear_matrix(x.shape[1], size[0]))
  mw = jnp.asarray(bilinear_matrix(x.shape[2], size[1]))
  x = jnp.einsum("oh,nhwc->nowc", mh, x, precision=precision)
  return jnp.einsum("pw,nowc->nopc", mw, x, precision=precision)


class BasicConv2d(nn.Module):
  """conv (no bias) -> BatchNorm (running statistics, eps 0.001) -> ReLU."""
  features: int
  kernel: tuple[int, int] = (1, 1)
  stride: int = 1
  padding: tuple[int, int] = (0, 0)
  dtype: Any = jnp.float32
  precision: Any = None   # None: the run's precision policy (difai_jax.nn.precision)

  @nn.compact
  def __call__(self, x):
    ph, pw = self.padding
    x = nn.Conv(self.features, self.kernel, strides=(self.stride, self.stride),
                padding=((ph, ph), (pw, pw)), use_bias=False, dtype=self.dtype,
                precision=self.precision, name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, momentum=0.9, dtype=self.dtype,
                     name="bn")(x)
    return nn.relu(x)


def _avg_pool_3x3(x):
  """3x3 stride-1 average pool whose border windows average only the real pixels (TF)."""
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                     count_include_pad=False)


def _max_pool_3x3_s2(x):
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class _Block(nn.Module):
  """Base: ``self.conv(name, features, kernel, stride, padding)`` builds a named BasicConv2d."""
  dtype: Any = jnp.float32
  precision: Any = None   # None: the run's precision policy (difai_jax.nn.precision)

  def conv(self, name, features, kernel=(1, 1), stride=1, padding=(0, 0)):
    if isinstance(kernel, int):
      kernel = (kernel, kernel)
    if isinstance(padding, int):
      padding = (padding, padding)
    return BasicConv2d(features, kernel, stride, padding, self.dtype, self.precision, name=name)


class InceptionA(_Block):
  """Mixed_5b/c/d (FIDInceptionA): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1."""
  pool_features: int = 32

  @nn.compact
  def __call__(self, x):
    b1 = self.conv("branch1x1", 64)(x)
    b5 = self.conv("branch5x5_1", 48)(x)
    b5 = self.conv("branch5x5_2", 64, 5, padding=2)(b5)
    b3 = self.conv("branch3x3dbl_1", 64)(x)
    b3 = self.conv("branch3x3dbl_2", 96, 3, padding=1)(b3)
    b3 = self.conv("branch3x3dbl_3", 96, 3, padding=1)(b3)
    bp = self.conv("branch_pool", self.pool_features)(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(_Block):
  """Mixed_6a: grid reduction 35 -> 17 (3x3 s2 | 1x1-3x3-3x3 s2 | maxpool)."""

  @nn.compact
  def __call__(self, x):
    b3 = self.conv("branch3x3", 384, 3, stride=2)(x)
    bd = self.conv("branch3x3dbl_1", 64)(x)
    bd = self.conv("branch3x3dbl_2", 96, 3, padding=1)(bd)
    bd = self.conv("branch3x3dbl_3", 96, 3, stride=2)(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(_Block):
  """Mixed_6b..e (FIDInceptionC): factorised 7x7 branches and an avgpool branch."""
  channels_7x7: int = 128

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    b1 = self.conv("branch1x1", 192)(x)
    b7 = self.conv("branch7x7_1", c7)(x)
    b7 = self.conv("branch7x7_2", c7, (1, 7), padding=(0, 3))(b7)
    b7 = self.conv("branch7x7_3", 192, (7, 1), padding=(3, 0))(b7)
    bd = self.conv("branch7x7dbl_1", c7)(x)
    bd = self.conv("branch7x7dbl_2", c7, (7, 1), padding=(3, 0))(bd)
    bd = self.conv("branch7x7dbl_3", c7, (1, 7), padding=(0, 3))(bd)
    bd = self.conv("branch7x7dbl_4", c7, (7, 1), padding=(3, 0))(bd)
    bd = self.conv("branch7x7dbl_5", 192, (1, 7), padding=(0, 3))(bd)
    bp = self.conv("branch_pool", 192)(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(_Block):
  """Mixed_7a: grid reduction 17 -> 8."""

  @nn.compact
  def __call__(self, x):
    b3 = self.conv("branch3x3_1", 192)(x)
    b3 = self.conv("branch3x3_2", 320, 3, stride=2)(b3)
    b7 = self.conv("branch7x7x3_1", 192)(x)
    b7 = self.conv("branch7x7x3_2", 192, (1, 7), padding=(0, 3))(b7)
    b7 = self.conv("branch7x7x3_3", 192, (7, 1), padding=(3, 0))(b7)
    b7 = self.conv("branch7x7x3_4", 192, 3, stride=2)(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(_Block):
  """Mixed_7b (FIDInceptionE_1, average pool) and Mixed_7c (FIDInceptionE_2, max pool)."""
  pool: str = "avg"

  @nn.compact
  def __call__(self, x):
    b1 = self.conv("branch1x1", 320)(x)
    b3 = self.conv("branch3x3_1", 384)(x)
    b3 = jnp.concatenate([self.conv("branch3x3_2a", 384, (1, 3), padding=(0, 1))(b3),
                          self.conv("branch3x3_2b", 384, (3, 1), padding=(1, 0))(b3)], axis=-1)
    bd = self.conv("branch3x3dbl_1", 448)(x)
    bd = self.conv("branch3x3dbl_2", 384, 3, padding=1)(bd)
    bd = jnp.concatenate([self.conv("branch3x3dbl_3a", 384, (1, 3), padding=(0, 1))(bd),
                          self.conv("branch3x3dbl_3b", 384, (3, 1), padding=(1, 0))(bd)], axis=-1)
    if self.pool == "avg":
      pooled = _avg_pool_3x3(x)
    else:  # pytorch-fid's patch of the TF graph: 3x3 stride-1 max pool, padding ignored
      pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
    bp = self.conv("branch_pool", 192)(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
  """pytorch-fid's FID Inception-v3 up to the 2048-d pool3 features.

  Submodule names are the PyTorch attribute names (``Conv2d_1a_3x3``, ``Mixed_5b``, ...,
  each conv unit with ``conv`` and ``bn``), so the converter is a renaming.

  Attributes:
    resize_input: resize to 299x299 first (pytorch-fid's default; leave on for FID).
    dtype: compute dtype (params and BatchNorm statistics stay float32).
    precision: conv precision; None follows the precision policy (``difai_jax.nn.precision``,
      ``highest`` in evaluate by default so numbers match pytorch-fid on every accelerator).
  """
  resize_input: bool = True
  dtype: Any = jnp.float32
  precision: Any = None   # None: the run's precision policy (difai_jax.nn.precision)

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    """Pool3 features.

    Args:
      images: (N, H, W, 3) float images in [-1, 1] (any H, W; resized to 299).

    Returns:
      (N, 2048) float32 features.
    """
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"FID Inception expects (N, H, W, 3) RGB images, got {images.shape}")
    # pytorch-fid takes [0, 1], resizes, then maps to [-1, 1]; ours arrive in [-1, 1].
    x = (images.astype(jnp.float32) + 1.0) / 2.0
    if self.resize_input:
      x = resize_bilinear(x, (FID_SIZE, FID_SIZE), precision=self.precision)
    x = (2.0 * x - 1.0).astype(self.dtype)
    kw = dict(dtype=self.dtype, precision=self.precision)
    conv = lambda name, f, k, s=1, p=0: BasicConv2d(f, (k, k), s, (p, p), name=name, **kw)
    x = conv("Conv2d_1a_3x3", 32, 3, s=2)(x)          # 299 -> 149
    x = conv("Conv2d_2a_3x3", 32, 3)(x)               # -> 147
    x = conv("Conv2d_2b_3x3", 64, 3, p=1)(x)
    x = _max_pool_3x3_s2(x)                           # -> 73
    x = conv("Conv2d_3b_1x1", 80, 1)(x)
    x = conv("Conv2d_4a_3x3", 192, 3)(x)              # -> 71
    x = _max_pool_3x3_s2(x)                           # -> 35
    x = InceptionA(pool_features=32, name="Mixed_5b", **kw)(x)   # (N, 35, 35, 256)
    x = InceptionA(pool_features=64, name="Mixed_5c", **kw)(x)   # 288
    x = InceptionA(pool_features=64, name="Mixed_5d", **kw)(x)   # 288
    x = InceptionB(name="Mixed_6a", **kw)(x)                     # (N, 17, 17, 768)
    x = InceptionC(channels_7x7=128, name="Mixed_6b", **kw)(x)
    x = InceptionC(channels_7x7=160, name="Mixed_6c", **kw)(x)
    x = InceptionC(channels_7x7=160, name="Mixed_6d", **kw)(x)
    x = InceptionC(channels_7x7=192, name="Mixed_6e", **kw)(x)
    x = InceptionD(name="Mixed_7a", **kw)(x)                     # (N, 8, 8, 1280)
    x = InceptionE(pool="avg", name="Mixed_7b", **kw)(x)         # 2048
    x = InceptionE(pool="max", name="Mixed_7c", **kw)(x)         # 2048
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))          # (N, 2048)


def from_config(config: dict) -> FIDInceptionV3:
  """Builds the module of a converted ``kind == "inception"`` directory."""
  config = dict(config)
  resize_input = bool(config.pop("resize_input", True))
  config.pop("source", None)
  if config:
    raise ValueError(f"unknown inception config fields {sorted(config)}")
  return FIDInceptionV3(resize_input=resize_input)


# ---------------------------------------------------------------------------------------------
# Statistics and the Frechet distance (float64, numpy / scipy, as pytorch-fid).


class FIDStatistics(NamedTuple):
  """Gaussian statistics of pool3 features: ``mu`` (D,), ``sigma`` (D, D), sample count ``n``."""
  mu: np.ndarray
  sigma: np.ndarray
  n: int | None


def compute_statistics(features) -> tuple[np.ndarray, np.ndarray]:
  """Mean and unbiased covariance (``np.cov(rowvar=False)``) of (N, D) features, in float64."""
  f = np.asarray(features, np.float64)
  if f.ndim != 2:
    raise ValueError(f"features must be (N, D), got shape {f.shape}")
  if f.shape[0] < 2:
    raise ValueError(f"a covariance needs at least 2 feature vectors, got {f.shape[0]}")
  return np.mean(f, axis=0), np.cov(f, rowvar=False)


class StatisticsAccumulator:
  """Streaming version of :func:`compute_statistics` (float64 sums), for batched evaluation.

  ``update(features)`` with (B, D) batches, then ``result()`` -> :class:`FIDStatistics`; equal to
  ``compute_statistics`` on the concatenated features up to float64 rounding.
  """

  def __init__(self, dim: int = POOL3_DIM):
    self.dim = dim
    self.n = 0
    self._shift = None  # first batch mean: keeps the sums well conditioned
    self._sum = np.zeros((dim,), np.float64)
    self._outer = np.zeros((dim, dim), np.float64)

  def update(self, features) -> None:
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[1] != self.dim:
      raise ValueError(f"expected features of shape (B, {self.dim}), got {f.shape}")
    if self._shift is None:
      self._shift = f.mean(axis=0)
    f = f - self._shift
    self.n += f.shape[0]
    self._sum += f.sum(axis=0)
    self._outer += f.T @ f

  def result(self) -> FIDStatistics:
    if self.n < 2:
      raise ValueError(f"a covariance needs at least 2 feature vectors, got {self.n}")
    mean = self._sum / self.n
    sigma = (self._outer - self.n * np.outer(mean, mean)) / (self.n - 1)
    return FIDStatistics(mean + self._shift, sigma, self.n)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
  """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), as pytorch-fid computes it.

  ``d^2 = ||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr(sqrtm(sigma1 sigma2))`` in float64 with
  ``scipy.linalg.sqrtm``. If the square root of the product is not finite (a singular product),
  ``eps`` is added to both diagonals and the root recomputed; a complex root whose diagonal has an
  imaginary part above 1e-3 raises ValueError, a smaller one is dropped.
  """
  from scipy import linalg  # pylint: disable=import-outside-toplevel

  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape:
    raise ValueError(f"mean vectors differ in length: {mu1.shape} vs {mu2.shape}")
  if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0],) * 2:
    raise ValueError(f"covariances {sigma1.shape}, {sigma2.shape} do not match means {mu1.shape}")
  diff = mu1 - mu2
  covmean = linalg.sqrtm(sigma1.dot(sigma2))
  if not np.isfinite(covmean).all():
    print(f"fid: singular covariance product; adding {eps} to the diagonal of both covariances")
    offset = np.eye(sigma1.shape[0]) * eps
    covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ValueError(f"sqrtm(sigma1 sigma2) has an imaginary component of "
                       f"{np.max(np.abs(covmean.imag))}; the statistics are not valid covariances")
    covmean = covmean.real
  return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid_from_features(features1, features2) -> float:
  """FID between two (N, D) feature sets."""
  return frechet_distance(*compute_statistics(features1), *compute_statistics(features2))


# ---- reference statistics on disk ----


def save_statistics(path: str | os.PathLike, mu, sigma, n: int | None = None) -> None:
  """Writes ``mu``, ``sigma`` (float64) and the sample count ``n`` to an ``.npz`` file."""
  path = os.fspath(path)
  mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
  if sigma.shape != (mu.shape[0], mu.shape[0]):
    raise ValueError(f"sigma {sigma.shape} does not match mu {mu.shape}")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp.npz"
  np.savez(tmp, mu=mu, sigma=sigma, n=np.int64(-1 if n is None else n))
  os.replace(tmp, path)  # never leave a half-written statistics file behind


def load_statistics(path: str | os.PathLike) -> FIDStatistics:
  """Reads an ``.npz`` written by :func:`save_statistics` (or by pytorch-fid: mu, sigma)."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"FID statistics file not found: {path}")
  with np.load(path, allow_pickle=False) as data:
    if "mu" not in data or "sigma" not in data:
      raise ValueError(f"{path} lacks 'mu' and/or 'sigma' (has {sorted(data.files)})")
    n = int(data["n"]) if "n" in data else -1
    return FIDStatistics(np.asarray(data["mu"], np.float64),
                         np.asarray(data["sigma"], np.float64), None if n < 0 else n)


def reference_statistics(path: str | os.PathLike,
                         compute: Callable[[], FIDStatistics | tuple]) -> FIDStatistics:
  """Loads the statistics at ``path``, or computes them once with ``compute()`` and saves them.

  ``compute`` returns a :class:`FIDStatistics` (e.g. ``StatisticsAccumulator.result()``) or a
  ``(mu, sigma)`` pair. Delete the file to force a recomputation (e.g. after changing the
  real-image set or its resolution).
  """
  if os.path.isfile(os.fspath(path)):
    return load_statistics(path)
  stats = compute()
  if not isinstance(stats, FIDStatistics):
    mu, sigma = stats
    stats = FIDStatistics(np.asarray(mu, np.float64), np.asarray(sigma, np.float64), None)
  save_statistics(path, stats.mu, stats.sigma, stats.n)
  return stats


def frechet_distance_eig(mu_real, sigma_real, mu_fake, sigma_fake, fake_features=None) -> float:
  """``||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr(sqrt(S1 S2))`` from eigenvalues (float64).

  ``S1 S2`` is similar to the PSD matrix ``S2^1/2 S1 S2^1/2``, so ``Tr sqrt(S1 S2)`` is the sum of
  the square roots of that matrix's eigenvalues. With the (n, D) ``fake_features`` behind
  ``sigma_fake`` and n <= D (few samples: a low-rank covariance) the same eigenvalues come from
  the n x n matrix ``Xc S1 Xc^T / (n - 1)`` (Xc: centred features), which is exact and cheap.
  """
  mu1, s1 = np.asarray(mu_real, np.float64), np.asarray(sigma_real, np.float64)
  mu2, s2 = np.asarray(mu_fake, np.float64), np.asarray(sigma_fake, np.float64)
  if fake_features is not None and len(fake_features) <= s1.shape[0]:
    x = np.asarray(fake_features, np.float64)
    xc = x - x.mean(axis=0)
    eig = np.linalg.eigvalsh(xc @ s1 @ xc.T / (x.shape[0] - 1))
  else:
    w, u = np.linalg.eigh(s2)
    root = (u * np.sqrt(np.clip(w, 0.0, None))) @ u.T
    eig = np.linalg.eigvalsh(root @ s1 @ root)
  trace_sqrt = float(np.sum(np.sqrt(np.clip(eig, 0.0, None))))
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt)
