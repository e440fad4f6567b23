"""FID Inception against pytorch-fid's InceptionV3 (random weights), the converter, and the
Frechet distance / statistics against pytorch-fid's numpy code.

pytorch-fid's ``fid_inception_v3`` downloads its weights through ``load_state_dict_from_url``;
the fixture patches that name to return a random state dict of the same layout (nothing is
downloaded), with randomised BatchNorm running statistics so that a converter dropping them fails.
"""

import os

import jax
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_fid import fid_score
from pytorch_fid import inception as pfid_inception

from difai_jax import pretrained
from difai_jax.evaluation.metrics import fid
from weights_conversion import inception as inception_conv
from weights_conversion import torch_io


def _random_fid_state_dict(seed=0):
  torch.manual_seed(seed)
  net = pfid_inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)
  sd = net.state_dict()
  g = torch.Generator().manual_seed(seed + 1)
  with torch.no_grad():
    for key, value in sd.items():
      if key.endswith("bn.running_mean"):
        value.copy_(0.2 * torch.randn(value.shape, generator=g))
      elif key.endswith("bn.running_var"):
        value.copy_(0.5 + torch.rand(value.shape, generator=g))
      elif key.endswith("bn.weight"):
        value.copy_(0.5 + torch.rand(value.shape, generator=g))
      elif key.endswith("bn.bias"):
        value.copy_(0.1 * torch.randn(value.shape, generator=g))
  return sd


def _images():
  """Two 64x64 images in [-1, 1]: uniform noise and a smooth pattern with a sharp disc."""
  rng = np.random.default_rng(0)
  noise = rng.uniform(-1, 1, (64, 64, 3))
  yy, xx = np.meshgrid(np.linspace(-1, 1, 64), np.linspace(-1, 1, 64), indexing="ij")
  pattern = np.stack([xx, np.sin(4 * yy), np.where(xx ** 2 + yy ** 2 < 0.4, 0.9, -0.7)], -1)
  return np.stack([noise, pattern]).astype(np.float32)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  """Reference features, the state dict file, converted variables and one jitted apply."""
  sd = _random_fid_state_dict()
  mp = pytest.MonkeyPatch()
  mp.setattr(pfid_inception, "load_state_dict_from_url", lambda *args, **kwargs: sd)
  try:
    ref_net = pfid_inception.InceptionV3([3]).eval()
  finally:
    mp.undo()
  images = _images()
  with torch.no_grad():  # pytorch-fid takes [0, 1] NCHW
    expected = ref_net(torch.from_numpy((images + 1) / 2).permute(0, 3, 1, 2))[0]
  path = os.path.join(tmp_path_factory.mktemp("inception"), "pt_inception-random.pth")
  torch.save(sd, path)
  variables = inception_conv.convert(path)
  apply = jax.jit(fid.FIDInceptionV3().apply)
  return {"expected": expected.numpy().reshape(2, -1), "images": images, "path": path,
          "variables": variables, "apply": apply, "state_dict": sd}


def _assert_features_close(got, expected):
  assert got.shape == (2, 2048)
  scale = np.abs(expected).max()
  assert scale > 1e-2  # the random net propagates a signal to pool3
  err = np.abs(got - expected).max() / scale
  assert err <= 1e-4, f"pool3 features differ: max |err| / max |ref| = {err:.3g}"


def test_pool_features_match_pytorch_fid(setup):
  got = np.asarray(setup["apply"](setup["variables"], setup["images"]))
  _assert_features_close(got, setup["expected"])


def test_converter_cli_roundtrip(setup, tmp_path):
  inception_conv.main([setup["path"], str(tmp_path / "inception")])
  module, variables = pretrained.load(tmp_path / "inception")
  assert isinstance(module, fid.FIDInceptionV3) and module.resize_input
  got = np.asarray(setup["apply"](variables, setup["images"]))  # same structure: no recompile
  _assert_features_close(got, setup["expected"])


def test_converter_needs_running_statistics(setup):
  tensors = {k: v.numpy() for k, v in setup["state_dict"].items()}
  del tensors["Mixed_6c.branch7x7_2.bn.running_var"]
  with pytest.raises(torch_io.ConversionError, match="Mixed_6c.branch7x7_2.bn.running_var"):
    inception_conv.convert_state_dict(tensors)
  tensors = {k: v.numpy() for k, v in setup["state_dict"].items()}
  tensors["AuxLogits.fc.weight"] = np.zeros((1000, 768), np.float32)
  with pytest.raises(torch_io.ConversionError, match="AuxLogits"):
    inception_conv.convert_state_dict(tensors)
  # The converted running statistics are the file's, not Flax's init (0 / 1).
  np.testing.assert_array_equal(
      setup["variables"]["batch_stats"]["Mixed_7c"]["branch_pool"]["bn"]["var"],
      setup["state_dict"]["Mixed_7c.branch_pool.bn.running_var"].numpy())


@pytest.mark.parametrize("in_size,out_size", [(64, 299), (37, 299), (512, 299), (299, 299),
                                              (7, 3)])
def test_resize_matches_torch_interpolate(in_size, out_size):
  rng = np.random.default_rng(in_size)
  x = rng.normal(size=(1, in_size, in_size + 5, 2)).astype(np.float32)
  expected = F.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=(out_size, out_size + 1),
                           mode="bilinear", align_corners=False).permute(0, 2, 3, 1).numpy()
  got = np.asarray(fid.resize_bilinear(x, (out_size, out_size + 1),
                                       precision=jax.lax.Precision.HIGHEST))
  np.testing.assert_allclose(got, expected, atol=2e-6, rtol=0)


# ---- statistics and the Frechet distance ----


def _fixed_statistics(n, dim, seed):
  rng = np.random.default_rng(seed)
  mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim)
  feats = rng.normal(size=(n, dim)) @ mixing + rng.normal(size=dim)
  return fid.compute_statistics(feats)


@pytest.mark.parametrize("n", [400, 40])  # 40 < dim: singular covariances
def test_frechet_distance_matches_pytorch_fid(n):
  mu1, sigma1 = _fixed_statistics(n, 64, seed=1)
  mu2, sigma2 = _fixed_statistics(n, 64, seed=2)
  expected = fid_score.calculate_frechet_distance(mu1, sigma1, mu2, sigma2)
  got = fid.frechet_distance(mu1, sigma1, mu2, sigma2)
  assert isinstance(got, float)
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_frechet_distance_closed_forms():
  rng = np.random.default_rng(3)
  mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
  sigma = np.diag(rng.uniform(0.5, 2.0, size=8))
  # Equal covariances: only the mean term is left.
  np.testing.assert_allclose(fid.frechet_distance(mu1, sigma, mu2, sigma),
                             np.sum((mu1 - mu2) ** 2), rtol=1e-10, atol=1e-10)
  # Diagonal covariances: sum of (sqrt(s1) - sqrt(s2))^2 per dimension.
  sigma2 = np.diag(rng.uniform(0.5, 2.0, size=8))
  expected = np.sum((mu1 - mu2) ** 2) + np.sum(
      (np.sqrt(np.diag(sigma)) - np.sqrt(np.diag(sigma2))) ** 2)
  np.testing.assert_allclose(fid.frechet_distance(mu1, sigma, mu2, sigma2), expected, rtol=1e-10)
  with pytest.raises(ValueError, match="mean vectors"):
    fid.frechet_distance(mu1, sigma, mu2[:4], sigma2[:4, :4])


def test_statistics_accumulate_save_and_reuse(tmp_path):
  rng = np.random.default_rng(4)
  feats = rng.normal(size=(50, 16)).astype(np.float32) + 3.0
  mu, sigma = fid.compute_statistics(feats)
  assert mu.dtype == np.float64 and sigma.dtype == np.float64
  np.testing.assert_allclose(mu, feats.astype(np.float64).mean(0), rtol=1e-12)
  np.testing.assert_allclose(sigma, np.cov(feats.astype(np.float64), rowvar=False), rtol=1e-12,
                             atol=1e-14)
  acc = fid.StatisticsAccumulator(dim=16)
  for batch in (feats[:7], feats[7:30], feats[30:]):
    acc.update(batch)
  streamed = acc.result()
  assert streamed.n == 50
  np.testing.assert_allclose(streamed.mu, mu, rtol=1e-12)
  np.testing.assert_allclose(streamed.sigma, sigma, rtol=1e-10, atol=1e-12)

  path = tmp_path / "stats" / "real.npz"
  calls = []

  def compute():
    calls.append(1)
    return streamed

  first = fid.reference_statistics(path, compute)
  second = fid.reference_statistics(path, compute)
  assert len(calls) == 1  # computed once, then read back
  assert second.n == 50
  np.testing.assert_array_equal(second.mu, first.mu)
  np.testing.assert_array_equal(second.sigma, first.sigma)
  # pytorch-fid's own .npz (mu, sigma only) loads too.
  np.savez(tmp_path / "pfid.npz", mu=mu, sigma=sigma)
  loaded = fid.load_statistics(tmp_path / "pfid.npz")
  assert loaded.n is None
  np.testing.assert_array_equal(loaded.sigma, sigma)
  with pytest.raises(FileNotFoundError, match="missing.npz"):
    fid.load_statistics(tmp_path / "missing.npz")
