"""LPIPS (AlexNet / VGG-16) against the ``lpips`` package, the converter, and the diversity score.

Reference nets: ``lpips.LPIPS(net=..., pretrained=True, pnet_rand=True)``: a randomly initialised
torchvision backbone (nothing is downloaded) with the package's shipped v0.1 linear layers.
"""

import os

import jax.numpy as jnp
import lpips
import numpy as np
import pytest
import torch

from difai_jax import pretrained
from difai_jax.evaluation.metrics import diversity
from difai_jax.evaluation.metrics import lpips as lpips_jax
from weights_conversion import lpips as lpips_conv
from weights_conversion import torch_io

RTOL = 1e-5


def _torchvision_backbone(torch_lpips):
  """The lpips module's ``net.slice{k}.{i}.*`` tensors renamed to torchvision ``features.{i}.*``."""
  out = {}
  for key, value in torch_lpips.state_dict().items():
    if key.startswith("net.slice"):
      _, _, index, kind = key.split(".")
      out[f"features.{index}.{kind}"] = value.clone()
  return out


def _structured_pair(n, size):
  """Smooth gradients, a disc and stripes; y is x shifted and with a brighter disc."""
  yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
  imgs = []
  for k in range(n):
    r = xx * (0.5 + 0.2 * k)
    g = yy
    b = np.where(xx ** 2 + yy ** 2 < 0.3 + 0.1 * k, 0.8, -0.6)
    stripes = 0.3 * np.sign(np.sin(8 * np.pi * (xx + yy) / (2 + k)))
    imgs.append(np.stack([r + stripes, g, b], -1))
  x = np.clip(np.stack(imgs), -1, 1).astype(np.float32)
  y = np.roll(x, 3, axis=2).copy()
  y[..., 2] = np.clip(y[..., 2] + 0.3, -1, 1)
  return x, y


def _torch_distance(torch_lpips, x, y):
  to_t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2)
  with torch.no_grad():
    return torch_lpips(to_t(x), to_t(y)).numpy().reshape(-1)


@pytest.fixture(scope="module", params=["alex", "vgg"])
def nets(request, tmp_path_factory):
  """(torch lpips module, jitted JAX distance fn, paths) per backbone, converted once."""
  net = request.param
  torch.manual_seed(0)
  ref = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
  tmp = tmp_path_factory.mktemp(f"lpips_{net}")
  backbone = os.path.join(tmp, f"{net}_backbone.pth")
  torch.save(_torchvision_backbone(ref), backbone)
  if net == "alex":  # through the CLI, with --linear defaulting to the package's file
    lpips_conv.main(["--net", net, "--backbone", backbone, os.path.join(tmp, "converted")])
    module, variables = pretrained.load(os.path.join(tmp, "converted"))
  else:  # through the API, with the linear layers saved from the torch module
    linear = os.path.join(tmp, f"{net}_linear.pth")
    torch.save({k: v for k, v in ref.state_dict().items() if k.startswith("lin")
                and not k.startswith("lins.")}, linear)
    module, variables = lpips_jax.LPIPS(net=net), lpips_conv.convert(backbone, linear, net)
  assert isinstance(module, lpips_jax.LPIPS) and module.net == net
  return ref, lpips_jax.lpips_distance_fn(module, variables), backbone


def test_parity_random_images(nets):
  ref, fn, _ = nets
  rng = np.random.default_rng(1)
  x = rng.uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
  y = rng.uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
  expected = _torch_distance(ref, x, y)
  np.testing.assert_allclose(np.asarray(fn(x, y)), expected, rtol=RTOL, atol=0)


def test_parity_structured_images(nets):
  ref, fn, _ = nets
  x, y = _structured_pair(2, 64)
  expected = _torch_distance(ref, x, y)
  assert np.all(expected > 1e-3)  # a real difference to compare
  np.testing.assert_allclose(np.asarray(fn(x, y)), expected, rtol=RTOL, atol=0)


def test_identity_and_symmetry(nets):
  _, fn, _ = nets
  x, y = _structured_pair(2, 64)
  # 0 up to rounding (~1e-15 under XLA; the distances compared above are ~0.1).
  np.testing.assert_allclose(np.asarray(fn(x, x)), 0.0, atol=1e-12)
  np.testing.assert_allclose(np.asarray(fn(x, y)), np.asarray(fn(y, x)), rtol=1e-6)


def test_converter_rejects_wrong_backbone(nets, tmp_path):
  _, _, backbone = nets
  alex_file = "alex_backbone" in os.path.basename(backbone)
  other = "vgg" if alex_file else "alex"
  with pytest.raises(torch_io.ConversionError, match="features"):
    lpips_conv.convert(backbone, lpips_conv.default_linear_path(other), other)
  # An extra tensor (not classifier.*) is reported, not silently dropped.
  tensors = torch.load(backbone, weights_only=True)
  tensors["features.99.weight"] = torch.zeros(1)
  torch.save(tensors, tmp_path / "extra.pth")
  net = "alex" if alex_file else "vgg"
  with pytest.raises(torch_io.ConversionError, match="features.99.weight"):
    lpips_conv.convert(tmp_path / "extra.pth", lpips_conv.default_linear_path(net), net)


def test_from_config_rejects_unknown():
  with pytest.raises(ValueError, match="unknown LPIPS backbone"):
    lpips_jax.from_config({"net": "squeeze"})
  with pytest.raises(ValueError, match="unknown LPIPS config"):
    lpips_jax.from_config({"net": "alex", "depth": 3})


# ---- diversity ----


def _mean_abs(x, y):
  return jnp.mean(jnp.abs(x - y), axis=(1, 2, 3))


def test_diversity_hand_made():
  # K = 3 constant completions of N = 2 inputs; with the mean-|x - y| distance the pairwise
  # distances are the value gaps: input 0: values 0, 0.2, 0.6 -> (0.2 + 0.6 + 0.4) / 3 = 0.4;
  # input 1: values 0.5, 0.5, 0.5 -> 0.
  values = np.array([[0.0, 0.5], [0.2, 0.5], [0.6, 0.5]], np.float32)  # (K, N)
  completions = np.broadcast_to(values[:, :, None, None, None], (3, 2, 4, 4, 3))
  per = diversity.diversity_lpips(_mean_abs, completions, per_input=True)
  np.testing.assert_allclose(np.asarray(per), [0.4, 0.0], atol=1e-6)
  np.testing.assert_allclose(float(diversity.diversity_lpips(_mean_abs, completions)), 0.2,
                             atol=1e-6)
  # Chosen pairs (the paper's disjoint-pairs protocol): only (0, 2) -> 0.6 and 0.
  one = diversity.diversity_lpips(_mean_abs, completions, pairs=[(0, 2)], per_input=True)
  np.testing.assert_allclose(np.asarray(one), [0.6, 0.0], atol=1e-6)
  with pytest.raises(ValueError, match="pair"):
    diversity.diversity_lpips(_mean_abs, completions, pairs=[(1, 1)])
  with pytest.raises(ValueError, match="at least 2"):
    diversity.diversity_lpips(_mean_abs, completions[:1])


def test_diversity_with_lpips(nets):
  _, fn, _ = nets
  x, y = _structured_pair(2, 64)
  rng = np.random.default_rng(2)
  z = np.clip(x + rng.normal(0, 0.3, x.shape), -1, 1).astype(np.float32)
  same = np.stack([x, x, x])
  assert abs(float(diversity.diversity_lpips(fn, same))) < 1e-12
  completions = np.stack([x, y, z])
  score = float(diversity.diversity_lpips(fn, completions))
  permuted = float(diversity.diversity_lpips(fn, completions[::-1]))
  expected = np.mean([np.asarray(fn(a, b)) for a, b in ((x, y), (x, z), (y, z))])
  assert score > 0
  np.testing.assert_allclose(permuted, score, rtol=1e-6)
  np.testing.assert_allclose(score, expected, rtol=1e-6)
