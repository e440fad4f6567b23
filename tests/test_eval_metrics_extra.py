"""The metrics the inpainting literature reports beside DiFAI's, each against a public reference.

* P-IDS / U-IDS: numbers produced by MAT's own ``metrics/inception_discriminative_score.py``
  (``compute_ids``, run outside this repository on the seeded features rebuilt below; the result
  is ``tests/fixtures/ids_mat_reference.json``, no code of theirs is here);
* precision / recall / density / coverage: the ``prdc`` package (Naeem et al.);
* clean-fid's resizing: the ``clean-fid`` package's ``make_resizer("PIL", False, "bicubic")``;
* LPIPS restricted to the hole: the ``lpips`` package's ``spatial=True`` map averaged over the
  hole (random AlexNet backbone, the package's linear layers; nothing downloaded);
* PSNR: scikit-image.
"""

import hashlib
import json
import os

import jax
import jax.numpy as jnp
import lpips
import numpy as np
import prdc as prdc_ref
import pytest
import torch
from cleanfid import resize as cleanfid_resize
from skimage import metrics as skimage_metrics

from difai_jax.evaluation.metrics import clean_resize
from difai_jax.evaluation.metrics import fid as fid_lib
from difai_jax.evaluation.metrics import ids
from difai_jax.evaluation.metrics import lpips as lpips_jax
from difai_jax.evaluation.metrics import prdc
from difai_jax.evaluation.metrics import psnr as psnr_lib
from weights_conversion import lpips as lpips_conv

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def _ids_features(case):
  """The seeded features MAT's script was run on (the recipe is the fixture's ``case``)."""
  rng = np.random.default_rng(case["seed"])
  real = rng.standard_normal((case["n_real"], case["dim"])).astype(np.float32)
  fake = rng.standard_normal((case["n_fake"], case["dim"])) * case["scale"] + case["shift"]
  return real, fake.astype(np.float32)


def test_p_ids_u_ids_equal_mats_script():
  with open(os.path.join(FIXTURES, "ids_mat_reference.json"), encoding="utf-8") as f:
    reference = json.load(f)
  assert len(reference["cases"]) == 3
  for entry in reference["cases"]:
    real, fake = _ids_features(entry["case"])
    assert hashlib.sha256(real.tobytes() + fake.tobytes()).hexdigest() == \
        entry["features_sha256"], "the fixture's features could not be rebuilt"
    got = ids.discriminative_scores(real, fake)
    assert got["p_ids"] == pytest.approx(entry["p_ids"], abs=1e-12), entry
    assert got["u_ids"] == pytest.approx(entry["u_ids"], abs=1e-12), entry
  # Identical sets are indistinguishable: U-IDS 0.5 at most, no fake scores above its real.
  real, _ = _ids_features(reference["cases"][0]["case"])
  same = ids.discriminative_scores(real, real)
  assert same["p_ids"] == 0.0 and same["u_ids"] >= 0.4
  with pytest.raises(ValueError, match="paired"):
    ids.discriminative_scores(real, real[:-1])


@pytest.mark.parametrize("n_real,n_fake,dim,shift,k", [(120, 120, 16, 0.3, 5),
                                                      (90, 150, 8, 0.8, 3)])
def test_prdc_equals_the_prdc_package(n_real, n_fake, dim, shift, k):
  rng = np.random.default_rng(dim)
  real = rng.standard_normal((n_real, dim)).astype(np.float32)
  fake = (rng.standard_normal((n_fake, dim)) * 1.2 + shift).astype(np.float32)
  expected = prdc_ref.compute_prdc(real, fake, nearest_k=k)
  got = prdc.prdc(real, fake, k=k)
  assert set(got) == {"precision", "recall", "density", "coverage"}
  for name, value in expected.items():
    assert got[name] == pytest.approx(float(value), abs=1e-12), name
  assert 0.0 < got["precision"] < 1.0 and 0.0 < got["coverage"] < 1.0   # not a trivial case
  with pytest.raises(ValueError, match="more than 5"):
    prdc.prdc(real[:5], fake)


@pytest.mark.parametrize("height,width", [(32, 32), (64, 48), (512, 400), (300, 299)])
def test_clean_fid_resize_equals_clean_fid(height, width):
  image = np.random.default_rng(height + width).integers(0, 256, (height, width, 3), np.uint8)
  expected = cleanfid_resize.make_resizer("PIL", False, "bicubic", (299, 299))(image)
  got = np.asarray(clean_resize.resize_levels(jnp.asarray(image[None], jnp.float32)))[0]
  assert got.shape == expected.shape == (299, 299, 3)
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3)   # 8-bit levels (float32 sums)
  # Not pytorch-fid's bilinear resize: the two differ by whole levels.
  bilinear = np.asarray(fid_lib.resize_bilinear(jnp.asarray(image[None], jnp.float32),
                                                (299, 299)))[0]
  assert np.abs(bilinear - expected).max() > 1.0


def test_clean_fid_input_quantises_then_resizes():
  image = np.random.default_rng(0).uniform(-1, 1, (1, 40, 40, 3)).astype(np.float32)
  levels = np.round((image[0] + 1) * 127.5).astype(np.uint8)
  expected = cleanfid_resize.make_resizer("PIL", False, "bicubic", (299, 299))(levels)
  got = np.asarray(clean_resize.clean_fid_input(jnp.asarray(image)))[0]
  np.testing.assert_allclose((got + 1) * 127.5, expected, rtol=0, atol=2e-3)
  rows = clean_resize.pil_bicubic_matrix(512, 299)
  np.testing.assert_allclose(rows.sum(axis=1), 1.0, atol=1e-12)
  assert (rows != 0).sum(axis=1).max() > 4      # shrinking widens the filter (antialiasing)


@pytest.fixture(scope="module")
def lpips_pair(tmp_path_factory):
  torch.manual_seed(0)
  ref = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, spatial=True, verbose=False)
  tmp = tmp_path_factory.mktemp("lpips_hole")
  state = ref.state_dict()
  backbone = {}
  for key, value in state.items():
    if key.startswith("net.slice"):
      _, _, index, kind = key.split(".")
      backbone[f"features.{index}.{kind}"] = value.clone()
  torch.save(backbone, tmp / "backbone.pth")
  torch.save({k: v for k, v in state.items() if k.startswith("lin") and not
              k.startswith("lins.")}, tmp / "linear.pth")
  variables = lpips_conv.convert(str(tmp / "backbone.pth"), str(tmp / "linear.pth"), "alex")
  module = lpips_jax.LPIPS(net="alex")
  return ref, jax.jit(module.apply), variables


def test_hole_lpips_is_the_spatial_map_averaged_over_the_hole(lpips_pair):
  ref, apply, variables = lpips_pair
  rng = np.random.default_rng(3)
  x = rng.uniform(-1, 1, (2, 48, 48, 3)).astype(np.float32)
  y = np.clip(x + rng.normal(0, 0.4, x.shape), -1, 1).astype(np.float32)
  hole = np.zeros((2, 48, 48, 1), np.float32)
  hole[0, 10:30, 5:40] = 1
  hole[1, 20:44, 20:30] = 1
  to_t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2)
  with torch.no_grad():
    spatial = ref(to_t(x), to_t(y)).numpy()[:, 0]                     # (N, H, W)
  expected = (spatial * hole[..., 0]).sum(axis=(1, 2)) / hole.sum(axis=(1, 2, 3))
  got = np.asarray(apply(variables, x, y, hole))
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  ref.spatial = False                                                  # the package's LPIPS
  with torch.no_grad():
    expected_whole = ref(to_t(x), to_t(y)).numpy().reshape(-1)
  ref.spatial = True
  whole = np.asarray(apply(variables, x, y))
  np.testing.assert_allclose(whole, expected_whole, rtol=1e-5)
  assert not np.allclose(got, whole, rtol=1e-3)                       # the hole is a subset


def test_psnr_equals_scikit_image():
  rng = np.random.default_rng(4)
  x = rng.uniform(0, 1, (3, 16, 16, 3)).astype(np.float32)
  y = np.clip(x + rng.normal(0, [0.02, 0.1, 0.3], (16, 16, 3, 3)).transpose(3, 0, 1, 2), 0, 1)
  y = y.astype(np.float32)
  got = np.asarray(psnr_lib.psnr(jnp.asarray(x), jnp.asarray(y), data_range=1.0))
  expected = [skimage_metrics.peak_signal_noise_ratio(x[i], y[i], data_range=1.0)
              for i in range(3)]
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  assert got[0] > got[1] > got[2]
  same = np.asarray(psnr_lib.psnr(jnp.asarray(x), jnp.asarray(x)))
  np.testing.assert_allclose(same, 100.0)                             # capped, never inf
