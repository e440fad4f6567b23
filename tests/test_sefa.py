"""SeFa against the fixture's genforce and rosinality factorizations, and the edited image."""

import jax.numpy as jnp
import numpy as np
import pytest

from difai_jax import sefa
from tests.conftest import fixture_path, nchw_to_nhwc


@pytest.fixture(scope="module")
def ref():
  return dict(np.load(fixture_path("sefa_small.npz")))


def _abs_cos(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.abs(np.sum(a * b, -1)) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_layer_sets_match_fixture_keys(stylegan2_small, ref):
  _, variables, _ = stylegan2_small
  conv = list(sefa.modulation_weights(variables["params"], "conv"))
  ros = list(sefa.modulation_weights(variables["params"], "rosinality"))
  assert len(conv) == len(ref["genforce_keys"]) == 9
  assert len(ros) == len(ref["rosinality_keys"]) == 10
  assert "to_rgb1" in ros and "to_rgb1" not in conv


def test_genforce_form(stylegan2_small, ref):
  _, variables, _ = stylegan2_small
  f = sefa.factorize(variables["params"], "genforce", "conv")   # the fixture's layer set
  assert np.all(np.diff(np.asarray(f.values)) <= 1e-6)          # descending
  np.testing.assert_allclose(f.values, ref["genforce_eigenvalues"], rtol=1e-4, atol=1e-4)
  cos = _abs_cos(f.directions[:5], ref["genforce_directions"][:5])
  print("sefa genforce |cos| of leading 5:", np.round(cos, 7))
  assert cos.min() >= 0.9999
  np.testing.assert_allclose(np.linalg.norm(f.directions, axis=1), 1.0, atol=1e-5)


def test_genforce_default_is_its_all_set_with_the_last_to_rgb(stylegan2_small):
  """genforce's factorize_weight(layer_idx='all') takes every conv layer and the last ToRGB
  ('output{idx // 2}' for idx = num_layers - 1); recomputed here from the torch tensors."""
  from weights_conversion import torch_io
  _, variables, _ = stylegan2_small
  names = list(sefa.modulation_weights(variables["params"], "all"))
  assert names == ["conv1"] + [f"convs_{i}" for i in range(8)] + ["to_rgbs_3"]
  assert names == list(sefa.modulation_weights(variables["params"], "conv1,convs_0,convs_1,"
                                               "convs_2,convs_3,convs_4,convs_5,convs_6,"
                                               "convs_7,to_rgbs_3"))
  g = torch_io.load_checkpoint(fixture_path("stylegan2_small.pt"))["g_ema"]
  keys = (["conv1.conv.modulation.weight"] + [f"convs.{i}.conv.modulation.weight"
                                              for i in range(8)]
          + ["to_rgbs.3.conv.modulation.weight"])
  w = np.concatenate([np.asarray(g[k]).T for k in keys], axis=1).astype(np.float64)
  w /= np.linalg.norm(w, axis=0, keepdims=True)
  values, vectors = np.linalg.eigh(w @ w.T)
  order = np.argsort(-values)
  f = sefa.factorize(variables["params"])                    # genforce, default layers
  assert f.layers == tuple(names)
  np.testing.assert_allclose(f.values, values[order], rtol=1e-4, atol=1e-4)
  cos = _abs_cos(f.directions[:5], vectors[:, order[:5]].T)
  print("sefa genforce 'all' |cos| of leading 5:", np.round(cos, 7))
  assert cos.min() >= 0.9999
  with pytest.raises(ValueError, match="to_rgbs_9"):
    sefa.modulation_weights(variables["params"], "conv1,to_rgbs_9")


def test_rosinality_form(stylegan2_small, ref):
  _, variables, _ = stylegan2_small
  f = sefa.factorize(variables["params"], "rosinality")
  np.testing.assert_allclose(f.values, ref["rosinality_singular_values"], rtol=1e-4)
  cos = _abs_cos(f.directions[:5], ref["rosinality_eigvec"][:, :5].T)   # columns of V
  print("sefa rosinality |cos| of leading 5:", np.round(cos, 7))
  assert cos.min() >= 0.9999


def test_edited_image_matches(stylegan2_small, ref):
  module, variables, _ = stylegan2_small
  f = sefa.factorize(variables["params"], "rosinality")
  index, degree = int(ref["edit_index"]), float(ref["edit_degree"])
  direction = f.directions[index]
  # Directions are defined up to sign: align with the fixture's before editing.
  direction = direction * np.sign(np.dot(direction, ref["rosinality_eigvec"][:, index]))
  latent = sefa.move(jnp.asarray(ref["edit_latent"]), direction, degree)
  image = module.apply(variables, [latent], input_is_latent=True,
                       truncation=float(ref["edit_truncation"]),
                       truncation_latent=ref["edit_truncation_latent"])
  err = np.abs(image - nchw_to_nhwc(ref["edit_image"])).max()
  print(f"sefa edited image max abs error {err:.3g}")
  assert err <= 1e-4


def test_move_on_chosen_layers():
  latent = jnp.zeros((2, 4))
  direction = jnp.array([1.0, 0, 0, 0])
  out = sefa.move(latent, direction, jnp.array([1.0, -2.0]), layers=[1, 3], n_latent=5)
  assert out.shape == (2, 5, 4)
  want = np.zeros((2, 5, 4))
  want[0, [1, 3], 0] = 1.0
  want[1, [1, 3], 0] = -2.0
  np.testing.assert_array_equal(out, want)
  # all layers of a W+ code, scalar degree
  out = sefa.move(jnp.ones((1, 3, 4)), direction, 3.0)
  np.testing.assert_array_equal(out[0, :, 0], 4.0)
  with pytest.raises(ValueError, match="n_latent"):
    sefa.move(latent, direction, 1.0, layers=[0])


def test_cache_roundtrip_and_method_mismatch(stylegan2_small, tmp_path):
  _, variables, _ = stylegan2_small
  path = tmp_path / "sefa.npz"
  a = sefa.cached(path, variables["params"], "genforce")
  b = sefa.cached(path, variables["params"], "genforce")
  np.testing.assert_array_equal(a.directions, b.directions)
  assert b.layers == a.layers and b.method == "genforce"
  with pytest.raises(ValueError, match="rosinality"):
    sefa.cached(path, variables["params"], "rosinality")
  with pytest.raises(ValueError, match="unknown modulated layers"):
    sefa.factorize(variables["params"], layers=["conv1", "nope"])
