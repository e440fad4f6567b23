"""VGG-19 features and their converter against torchvision's vgg19 (random weights)."""

import os
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

from difai_jax import pretrained
from difai_jax.models import vgg
from weights_conversion import torch_io
from weights_conversion import vgg19 as vgg19_conversion

# Every layer kind, the first and last of each block, the loss taps and the end of the network.
ALL_TAPS = vgg.DEFAULT_TAPS + ("conv1_1", "relu1_2", "pool1", "relu3_4", "pool4", "conv5_4",
                               "relu5_4", "pool5")


@pytest.fixture(scope="module")
def torch_vgg():
  torch.manual_seed(0)
  model = torchvision.models.vgg19(weights=None).eval()
  with torch.no_grad():  # torchvision initialises biases to 0: make the bias mapping visible.
    for layer in model.features:
      if isinstance(layer, torch.nn.Conv2d):
        layer.bias.normal_(0.0, 0.1)
  return model


@pytest.fixture(scope="module")
def state_dict(torch_vgg):
  return {k: v.numpy() for k, v in torch_vgg.state_dict().items()}


@pytest.fixture(scope="module")
def converted(state_dict):
  return vgg19_conversion.convert(state_dict)


@pytest.fixture(scope="module")
def images():
  return np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)


def _torch_taps(model, images_nhwc, taps):
  """Runs torchvision's features on [-1, 1] NHWC images, normalised as torchvision expects."""
  x = torch.from_numpy(images_nhwc.transpose(0, 3, 1, 2).copy())
  mean = torch.tensor(vgg.IMAGENET_MEAN).view(1, 3, 1, 1)
  std = torch.tensor(vgg.IMAGENET_STD).view(1, 3, 1, 1)
  x = ((x + 1) / 2 - mean) / std
  wanted = {vgg.TORCHVISION_INDEX[t]: t for t in taps}
  out = {}
  with torch.no_grad():
    for i, layer in enumerate(model.features):
      x = layer(x)
      if i in wanted:
        out[wanted[i]] = x.numpy().transpose(0, 2, 3, 1).copy()  # ReLUs are in-place
      if len(out) == len(wanted):
        break
  return out


def test_layer_table_matches_torchvision(torch_vgg):
  for name, index, width in vgg.LAYERS:
    layer = torch_vgg.features[index]
    kind = {"conv": torch.nn.Conv2d, "relu": torch.nn.ReLU, "pool": torch.nn.MaxPool2d}[name[:4]]
    assert isinstance(layer, kind), (name, index, layer)
    if width is not None:
      assert layer.out_channels == width
  assert len(vgg.LAYERS) == len(torch_vgg.features) == 37


def test_parity_every_tap(torch_vgg, converted, images):
  _, variables = converted
  module = vgg.VGG19Features(taps=ALL_TAPS)
  with jax.default_matmul_precision("highest"):
    ours = jax.jit(module.apply)(variables, jnp.asarray(images))
  theirs = _torch_taps(torch_vgg, images, ALL_TAPS)
  assert set(ours) == set(ALL_TAPS)
  for tap in ALL_TAPS:
    assert ours[tap].shape == theirs[tap].shape, tap
    err = float(np.max(np.abs(np.asarray(ours[tap]) - theirs[tap])))
    assert err <= 1e-4, (tap, err, float(np.abs(theirs[tap]).max()))
    assert float(np.abs(theirs[tap]).max()) > 1e-2, tap  # not a vacuous comparison


def test_builds_only_layers_up_to_deepest_tap():
  shapes = jax.eval_shape(vgg.VGG19Features(taps=("relu2_1",)).init, jax.random.key(0),
                          jnp.zeros((1, 32, 32, 3)))
  assert sorted(shapes["params"]) == ["conv1_1", "conv1_2", "conv2_1"]
  shapes = jax.eval_shape(vgg.VGG19Features().init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  assert len(shapes["params"]) == 13 and "conv5_1" in shapes["params"]
  assert shapes["params"]["conv3_1"]["kernel"].shape == (3, 3, 128, 256)


def test_bad_taps_are_named():
  with pytest.raises(ValueError, match="relu6_1"):
    vgg.check_taps(("relu1_1", "relu6_1"))
  with pytest.raises(ValueError, match="empty"):
    vgg.check_taps(())
  with pytest.raises(ValueError, match="unknown vgg19 config"):
    vgg.from_config({"taps": ["relu1_1"], "depth": 19})


def test_converter_errors_name_keys(state_dict):
  bad = dict(state_dict)
  del bad["features.10.weight"]
  with pytest.raises(torch_io.ConversionError, match=r"features\.10\.weight"):
    vgg19_conversion.convert(bad)
  bad = dict(state_dict)
  bad["features.5.bias"] = np.zeros((64,), np.float32)
  with pytest.raises(torch_io.ConversionError, match=r"features\.5\.bias.*\(64,\).*\(128,\)"):
    vgg19_conversion.convert(bad)
  bad = dict(state_dict)
  bad["features.37.weight"] = np.zeros((3,), np.float32)
  with pytest.raises(torch_io.ConversionError, match=r"features\.37\.weight"):
    vgg19_conversion.convert(bad)
  bad = dict(state_dict)
  bad["features.1.running_mean"] = np.zeros((64,), np.float32)
  with pytest.raises(torch_io.ConversionError, match="vgg19_bn"):
    vgg19_conversion.convert(bad)


def test_converter_uses_all_convs_and_ignores_classifier(state_dict, converted):
  config, variables = converted
  assert config == {"taps": list(vgg.DEFAULT_TAPS), "dtype": "float32"}
  assert sorted(variables["params"]) == sorted(vgg.CONV_WIDTHS)
  assert any(k.startswith("classifier.") for k in state_dict)
  np.testing.assert_array_equal(variables["params"]["conv5_4"]["kernel"],
                                state_dict["features.34.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(variables["params"]["conv2_1"]["bias"],
                                state_dict["features.5.bias"])


def test_cli_end_to_end(tmp_path, torch_vgg, converted, images, capsys):
  # The classifier is ignored, so small stand-ins keep the file small (same key names).
  sd = {k: v for k, v in torch_vgg.state_dict().items() if k.startswith("features.")}
  sd.update({k: torch.zeros(2, 2) for k in ("classifier.0.weight", "classifier.6.weight")})
  src = tmp_path / "vgg19.pth"
  torch.save(sd, src)
  dst = tmp_path / "vgg19_jax"
  assert vgg19_conversion.main([str(src), str(dst)]) == 0
  assert capsys.readouterr().out == (f"wrote {dst}: vgg19, 20,024,384 parameters, "
                                     f"taps {list(vgg.DEFAULT_TAPS)}\n")
  module, variables = pretrained.load(dst)
  assert isinstance(module, vgg.VGG19Features) and module.taps == vgg.DEFAULT_TAPS
  _, expected = converted
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, variables), expected)
  out = module.apply(variables, jnp.asarray(images[:1, :32, :32]))
  theirs = _torch_taps(torch_vgg, images[:1, :32, :32], vgg.DEFAULT_TAPS)
  for tap in vgg.DEFAULT_TAPS:
    np.testing.assert_allclose(np.asarray(out[tap]), theirs[tap], rtol=0, atol=1e-4)
  assert vgg19_conversion.main([str(src), str(dst)]) == 1     # never overwrites a model


def test_vgg19_and_mlgn_converters_refuse_a_bad_file_in_one_line(tmp_path, capsys):
  from weights_conversion import mlgn  # pylint: disable=import-outside-toplevel
  garbage = tmp_path / "garbage.pth"
  garbage.write_bytes(b"not a checkpoint at all" * 10)
  wrong = tmp_path / "wrong.pth"
  torch.save({"features.0.weight": torch.zeros(3, 3)}, wrong)
  for convert in (vgg19_conversion.main, mlgn.main):
    for src in (garbage, wrong, tmp_path / "missing.pth"):
      assert convert([str(src), str(tmp_path / "out")]) == 1
      err = capsys.readouterr().err
      assert err.startswith("error: ") and err.count("\n") == 1, err
      assert "Traceback" not in err and "weights_only=False" not in err
  assert not os.path.exists(tmp_path / "out" / "config.json")
