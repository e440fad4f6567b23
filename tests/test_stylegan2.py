"""Parity of the Flax StyleGAN2 with rosinality's Generator (golden fixtures), and the converter."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difai_jax import pretrained
from difai_jax.models import stylegan2
from weights_conversion import stylegan2 as convert
from weights_conversion import stylegan2_common
from weights_conversion import torch_io
from tests.conftest import fixture_path, nchw_to_nhwc

TOL = 1e-4


@pytest.fixture(scope="module")
def io():
  return dict(np.load(fixture_path("stylegan2_small_io.npz")))


def _report(name, err):
  print(f"stylegan2 parity {name}: max abs error {err:.3g}")
  assert err <= TOL, f"{name}: max abs error {err} > {TOL}"


def test_inferred_architecture(stylegan2_small):
  module, _, config = stylegan2_small
  assert config["size"] == 64 and config["style_dim"] == 64 and config["n_mlp"] == 2
  assert list(config["channels"]) == [64] * 5
  assert module.n_latent == 10 and module.num_layers == 9


def test_z_with_explicit_noise(stylegan2_small, io):
  module, variables, _ = stylegan2_small
  noise = [nchw_to_nhwc(io[f"a_noise_{i}"]) for i in range(9)]
  image, latent = module.apply(variables, [io["a_z"]], noise=noise, return_latents=True)
  _report("a image", np.abs(image - nchw_to_nhwc(io["a_image"])).max())
  _report("a latent", np.abs(latent - io["a_latent"]).max())


def test_wplus_with_stored_noise(stylegan2_small, io):
  module, variables, _ = stylegan2_small
  image = module.apply(variables, [io["b_wplus"]], input_is_latent=True)
  _report("b image (W+)", np.abs(image - nchw_to_nhwc(io["b_image"])).max())


def test_truncation(stylegan2_small, io):
  module, variables, _ = stylegan2_small
  image = module.apply(variables, [io["c_z"]], truncation=0.7,
                       truncation_latent=io["c_truncation_latent"])
  _report("c image (truncation)", np.abs(image - nchw_to_nhwc(io["c_image"])).max())


def test_style_mixing(stylegan2_small, io):
  module, variables, _ = stylegan2_small
  image, latent = module.apply(variables, [io["d_z1"], io["d_z2"]], inject_index=3,
                               return_latents=True)
  _report("d image (mixing)", np.abs(image - nchw_to_nhwc(io["d_image"])).max())
  _report("d latent (mixing)", np.abs(latent - io["d_latent"]).max())


def test_mapping(stylegan2_small, io):
  module, variables, _ = stylegan2_small
  w = module.apply(variables, io["e_z"], method="mapping")
  _report("e mapping", np.abs(w - io["e_w"]).max())


def test_random_noise_needs_and_uses_rng(stylegan2_small, io):
  module, variables, _ = stylegan2_small
  z = io["a_z"]
  a = module.apply(variables, [z], randomize_noise=True, rngs={"noise": jax.random.key(1)})
  b = module.apply(variables, [z], randomize_noise=True, rngs={"noise": jax.random.key(2)})
  c = module.apply(variables, [z], randomize_noise=True, rngs={"noise": jax.random.key(1)})
  assert np.abs(a - b).max() > 1e-3
  np.testing.assert_array_equal(a, c)
  with pytest.raises(Exception, match="noise"):
    module.apply(variables, [z], randomize_noise=True)


def test_mean_latent_is_mean_of_mapping(stylegan2_small):
  module, variables, _ = stylegan2_small
  key = jax.random.key(3)
  mean = module.apply(variables, 256, rng=key, method="mean_latent")
  z = jax.random.normal(key, (256, 64))
  w = module.apply(variables, z, method="mapping")
  np.testing.assert_allclose(mean[0], w.mean(0), atol=1e-5)


def test_bad_inputs(stylegan2_small, io):
  module, variables, _ = stylegan2_small
  with pytest.raises(ValueError, match="truncation_latent"):
    module.apply(variables, [io["a_z"]], truncation=0.5)
  with pytest.raises(ValueError, match="10"):
    module.apply(variables, [io["b_wplus"][:, :5]], input_is_latent=True)
  without_noise = {"params": variables["params"]}
  with pytest.raises(ValueError, match="noise buffer"):
    module.apply(without_noise, [io["a_z"]])


def test_cli_and_pretrained_load_roundtrip(tmp_path, io):
  dst = tmp_path / "sg2"
  proc = subprocess.run([sys.executable, "-m", "weights_conversion.stylegan2",
                         fixture_path("stylegan2_small.pt"), str(dst)],
                        capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr
  config = json.loads((dst / "config.json").read_text())
  assert config["kind"] == "stylegan2" and config["size"] == 64
  module, variables = pretrained.load(dst)
  image = module.apply(variables, [io["b_wplus"]], input_is_latent=True)
  _report("b image after CLI + load", np.abs(image - nchw_to_nhwc(io["b_image"])).max())
  # Never overwrite an existing model directory.
  proc = subprocess.run([sys.executable, "-m", "weights_conversion.stylegan2",
                         fixture_path("stylegan2_small.pt"), str(dst)],
                        capture_output=True, text=True)
  assert proc.returncode == 1 and "already holds" in proc.stderr


def test_which_g_differs_from_g_ema():
  checkpoint = torch_io.load_checkpoint(fixture_path("stylegan2_small.pt"))
  sd = convert.select_generator(checkpoint, "g")
  _, variables = convert.convert_generator(torch_io.StateDict(sd, "g"))
  _, ema = convert.convert_generator(torch_io.StateDict(checkpoint["g_ema"], "g_ema"))
  assert not np.allclose(variables["params"]["input"], ema["params"]["input"])
  with pytest.raises(torch_io.ConversionError, match="no 'g_ema' entry"):
    convert.select_generator({"g": sd, "d": {}}, "g_ema")


def _fake_state_dict(shapes):
  # Zero-strided arrays: a 1024 px state dict without allocating its memory.
  return {k: np.broadcast_to(np.float32(0), v) for k, v in shapes.items()}


def _config_f_keys():
  with open(fixture_path("keys_stylegan2_config_f_1024.json")) as f:
    entry = json.load(f)["g_ema"]
  if isinstance(entry, dict) and "shapes" in entry:
    entry = entry["shapes"]
  return {k: tuple(v) for k, v in entry.items()}


def test_config_f_1024_key_map_covers_every_tensor():
  shapes = _config_f_keys()
  assert len(shapes) == 171
  fake = _fake_state_dict(shapes)
  # FIR buffers must hold the real filter for the converter's check.
  for k in fake:
    if k.endswith("blur.kernel") or k.endswith("upsample.kernel"):
      fake[k] = stylegan2_common.fir_kernel((1, 3, 3, 1), 4.0)
  sd = torch_io.StateDict(fake, "config-f keys")
  config, variables = convert.convert_generator(sd, check=False)
  assert config["size"] == 1024 and config["style_dim"] == 512 and config["n_mlp"] == 8
  assert tuple(config["channels"]) == stylegan2.rosinality_channels(1024, 2)
  assert sd.unused() == []                       # every tensor converted exactly once
  convert.check_against_module(config, variables)  # every Flax variable filled, shapes equal


def test_converter_errors_name_key_and_shapes():
  shapes = _config_f_keys()
  fake = _fake_state_dict(shapes)
  for k in fake:
    if k.endswith("blur.kernel") or k.endswith("upsample.kernel"):
      fake[k] = stylegan2_common.fir_kernel((1, 3, 3, 1), 4.0)
  bad = dict(fake)
  bad["to_rgb1.bias"] = np.zeros((1, 4, 1, 1), np.float32)
  with pytest.raises(torch_io.ConversionError,
                     match=r"to_rgb1\.bias.*\(1, 4, 1, 1\).*\(1, 3, 1, 1\)"):
    convert.convert_generator(torch_io.StateDict(bad, "bad"), check=False)
  missing = dict(fake)
  del missing["convs.3.noise.weight"]
  with pytest.raises(torch_io.ConversionError, match=r"convs\.3\.noise\.weight"):
    convert.convert_generator(torch_io.StateDict(missing, "missing"), check=False)
  extra = dict(fake)
  extra["convs.3.extra.weight"] = np.zeros((2, 2), np.float32)
  sd = torch_io.StateDict(extra, "extra")
  convert.convert_generator(sd, check=False)
  with pytest.raises(torch_io.ConversionError, match=r"convs\.3\.extra\.weight \(2, 2\)"):
    sd.check_all_used()


def test_jit_compiles_once_for_fixed_shapes(stylegan2_small, io):
  module, variables, _ = stylegan2_small
  fn = jax.jit(lambda v, w: module.apply(v, [w], input_is_latent=True))
  a = fn(variables, jnp.asarray(io["b_wplus"]))
  np.testing.assert_allclose(a, nchw_to_nhwc(io["b_image"]), atol=TOL)


def test_stop_at_returns_the_skip_image_of_the_full_forward(stylegan2_small, io):
  module, variables, _ = stylegan2_small
  full, state = module.apply(variables, [io["b_wplus"]], input_is_latent=True,
                             capture_intermediates=lambda mdl, _: isinstance(mdl, stylegan2.ToRGB))
  skips = state["intermediates"]
  # to_rgb1 gives the 4 px skip image, to_rgbs_{b} the 8 * 2^b px one.
  for stop_at, name in ((4, "to_rgb1"), (16, "to_rgbs_1"), (32, "to_rgbs_2")):
    image = module.apply(variables, [io["b_wplus"]], input_is_latent=True, stop_at=stop_at)
    expected = skips[name]["__call__"][0]
    assert image.shape == (io["b_wplus"].shape[0], stop_at, stop_at, 3)
    np.testing.assert_array_equal(np.asarray(image), np.asarray(expected))
  top = module.apply(variables, [io["b_wplus"]], input_is_latent=True, stop_at=64)
  np.testing.assert_array_equal(np.asarray(top), np.asarray(full))
  for bad in (2, 24, 128):
    with pytest.raises(ValueError, match="stop_at must be a power of two"):
      module.apply(variables, [io["b_wplus"]], input_is_latent=True, stop_at=bad)
