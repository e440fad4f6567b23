"""NVIDIA StyleGAN2-ADA network pickles: the safe reader, the converter and parity with the
official code.

Fixtures (made outside the repo with NVlabs/stylegan2-ada-pytorch on CPU):
  nvidia_stylegan2_small.pkl: a snapshot ``{training_set_kwargs, G, D, G_ema, augment_pipe}``
    written by ``pickle.dump`` as the training loop writes it, of a 32 px generator (z_dim =
    w_dim = 64, 2 mapping layers, widths 32/32/32/16, conv_clamp 256) with random weights, noise
    strengths, biases and w_avg, one channel of b16.conv1 saturating the clamp; each persistent
    class's pickled module source replaced by a one-line placeholder.
  nvidia_stylegan2_small_io.npz: the official G_ema's ws and images (noise_mode='const') for
    three z at truncation_psi 1 and 0.7.
"""

import copy
import os
import pickle
import re

import jax
import numpy as np
import pytest

from difai_jax import pretrained
from difai_jax.models import stylegan2
from weights_conversion import nvidia_pickle
from weights_conversion import nvidia_stylegan2
from weights_conversion import stylegan2 as convert
from weights_conversion.torch_io import ConversionError
from tests.conftest import fixture_path, nchw_to_nhwc

TOL = 1e-4
PKL = fixture_path("nvidia_stylegan2_small.pkl")


@pytest.fixture(scope="module")
def io():
  return dict(np.load(fixture_path("nvidia_stylegan2_small_io.npz")))


@pytest.fixture(scope="module")
def snapshot():
  return nvidia_pickle.load(PKL)


def _generator(config):
  """Jitted ``(variables, z, psi) -> (image, ws)`` of the Generator of ``config``."""
  module = stylegan2.from_config(config)
  return jax.jit(lambda v, z, psi: module.apply(v, [z], truncation=psi, return_latents=True),
                 static_argnums=2)


@pytest.fixture(scope="module")
def converted():
  """(config, variables, generator) of the fixture's G_ema, converted once."""
  config, variables = nvidia_stylegan2.convert_pickle(PKL)
  return config, variables, _generator(config)


def test_reader_flattens_snapshot(snapshot, io):
  assert sorted(snapshot) == ["D", "G", "G_ema", "augment_pipe", "training_set_kwargs"]
  assert snapshot["training_set_kwargs"]["resolution"] == 32
  g = snapshot["G_ema"]
  assert g.class_name == "Generator" and sorted(g.modules) == ["mapping", "synthesis"]
  sd = nvidia_pickle.state_dict(g)
  assert len(sd) == 75 and list(sd)[0] == "synthesis.b4.const"
  assert sd["mapping.fc0.weight"].shape == (64, 64) and sd["mapping.fc0.weight"].dtype == np.float32
  assert sd["synthesis.b4.conv1.noise_strength"].shape == ()
  np.testing.assert_array_equal(sd["mapping.w_avg"], io["w_avg"])
  kwargs = g.init_kwargs
  assert type(kwargs["synthesis_kwargs"]) is dict   # EasyDict stand-ins come back as dicts
  assert kwargs["z_dim"] == 64 and kwargs["mapping_kwargs"] == {"num_layers": 2}
  assert kwargs["synthesis_kwargs"]["conv_clamp"] == 256
  assert nvidia_pickle.state_dict(snapshot["D"])["b32.fromrgb.weight"].shape == (8, 3, 1, 1)
  assert snapshot["augment_pipe"].class_name == "AugmentPipe"


def test_fixture_holds_no_source_code():
  data = open(PKL, "rb").read()
  assert b"_reconstruct_persistent_obj" in data and b"module_src" in data
  for line in (b"import torch", b"def forward", b"def modulated_conv2d", b"Copyright"):
    assert line not in data


@pytest.mark.parametrize("psi,tag", [(1.0, "psi1"), (0.7, "psi07")])
def test_parity_with_official_generator(converted, io, psi, tag):
  config, variables, run = converted
  assert config["conv_clamp"] == 256 and config["lr_mlp"] == 0.01
  image, ws = run(variables, io["z"], psi)   # psi < 1: centred on the stored w_avg
  err_ws = np.abs(ws - io[f"ws_{tag}"]).max()
  err = np.abs(image - nchw_to_nhwc(io[f"image_{tag}"])).max()
  print(f"nvidia stylegan2 parity psi={psi}: image {err:.3g}, ws {err_ws:.3g}")
  assert err_ws <= TOL and err <= TOL


def test_conv_clamp_is_exercised(converted, io):
  """The fixture saturates the clamp: without it the images are far from NVIDIA's."""
  config, variables, _ = converted
  image, _ = _generator({**config, "conv_clamp": None})(variables, io["z"], 1.0)
  assert np.abs(image - nchw_to_nhwc(io["image_psi1"])).max() > 0.1


# ---- refusing foreign globals ----

def _arg(value) -> bytes:
  return pickle.dumps(value, protocol=3)[2:-1]      # the value's opcodes, no PROTO / STOP


def _call(module: str, name: str, *args: bytes) -> bytes:
  """Opcodes of ``module.name(*args)``: GLOBAL, MARK, args, TUPLE, REDUCE."""
  return b"c" + f"{module}\n{name}\n".encode() + b"(" + b"".join(args) + b"tR"


def _dict(**items: bytes) -> bytes:
  """Opcodes of a dict: EMPTY_DICT, MARK, key / value pairs, SETITEMS."""
  return b"}(" + b"".join(_arg(k) + v for k, v in items.items()) + b"u"


class _Reduces:
  """An object whose pickle calls os.system (as an attacker's class would)."""

  def __init__(self, command):
    self.command = command

  def __reduce__(self):
    return (os.system, (self.command,))


def _payloads(sentinel: str) -> dict[str, tuple[bytes, str]]:
  """name -> (pickle bytes, the global the refusal must name)."""
  touch = _arg(f"touch {sentinel}")
  storage_bytes = (pickle.dumps(nvidia_pickle._LEGACY_MAGIC, 2) + pickle.dumps(1001, 2)
                   + pickle.dumps({"little_endian": True}, 2)
                   + b"\x80\x02" + _call("os", "system", touch) + b".")
  meta = _dict(type=_arg("class"), version=_arg(6), module_src=_arg("# none"),
               class_name=_arg("Generator"),
               state=_dict(z_dim=_call("subprocess", "check_call",
                                       _arg(["touch", sentinel]))))
  return {
      "os.system": (_call("os", "system", touch), "os.system"),
      "builtins.eval": (_call("builtins", "eval", _arg(f"open({sentinel!r}, 'w')")),
                        "builtins.eval"),
      "in a snapshot": (_dict(G_ema=_call("os", "system", touch)), "os.system"),
      "in a persistent state": (
          _call("torch_utils.persistence", "_reconstruct_persistent_obj", meta),
          "subprocess.check_call"),
      "in storage bytes": (_call("torch.storage", "_load_from_bytes", _arg(storage_bytes)),
                           "os.system"),
  }


@pytest.mark.parametrize("case", ["os.system", "builtins.eval", "in a snapshot",
                                  "in a persistent state", "in storage bytes", "__reduce__"])
def test_refuses_foreign_globals(tmp_path, case):
  sentinel = str(tmp_path / "pwned")
  if case == "__reduce__":
    data = pickle.dumps({"G_ema": _Reduces(f"touch {sentinel}")})
    name = f"{os.system.__module__}.system"   # posix.system on Linux
  else:
    body, name = _payloads(sentinel)[case]
    data = b"\x80\x03" + body + b"."
  path = tmp_path / "evil.pkl"
  path.write_bytes(data)
  with pytest.raises(nvidia_pickle.UnsafePickleError, match=rf"references? {re.escape(name)},"):
    nvidia_pickle.load(path)
  assert not os.path.exists(sentinel)
  # The CLI says so in one line and exits 1.
  assert convert.main([str(path), str(tmp_path / "out")]) == 1
  assert not os.path.exists(sentinel) and not os.path.exists(tmp_path / "out")


def test_payload_runs_under_plain_pickle_but_not_here(tmp_path):
  """Control: the same kind of bytes really execute under ``pickle.loads``."""
  sentinel = tmp_path / "created"
  data = b"\x80\x03" + _call("builtins", "open", _arg(str(sentinel)), _arg("w")) + b"."
  (tmp_path / "evil.pkl").write_bytes(data)
  with pytest.raises(nvidia_pickle.UnsafePickleError, match="builtins.open"):
    nvidia_pickle.load(tmp_path / "evil.pkl")
  assert not sentinel.exists()
  pickle.loads(data).close()
  assert sentinel.exists()


# ---- unsupported generators ----

def _modified(snapshot, edit):
  g = copy.deepcopy(snapshot["G_ema"])
  edit(g)
  return g


@pytest.mark.parametrize("edit,message", [
    (lambda g: g.state.update(c_dim=10), "conditional"),
    (lambda g: g.modules["synthesis"].modules["b8"].state.update(architecture="resnet"),
     "'resnet'"),
    (lambda g: g.modules["synthesis"].modules["b8"].state.update(architecture="orig"), "'orig'"),
    (lambda g: g.modules["synthesis"].state.update(_modules={
        "input": nvidia_pickle.PersistentObject("SynthesisInput", {}),
        "L0_36_64": nvidia_pickle.PersistentObject("SynthesisLayer", {})}), "StyleGAN3"),
    (lambda g: g.state.update(z_dim=32), "z_dim 32 != w_dim 64"),
])
def test_refuses_unsupported_generators(snapshot, edit, message):
  with pytest.raises(ConversionError, match=message):
    nvidia_stylegan2.convert_generator(_modified(snapshot, edit), check=False)


def test_discriminator_not_converted():
  with pytest.raises(ConversionError, match="discriminator"):
    nvidia_stylegan2.convert_pickle(PKL, "d")


# ---- CLI ----

def test_cli_writes_a_loadable_directory(tmp_path, converted, capsys):
  config, variables, _ = converted
  dst = tmp_path / "nv"
  assert convert.main([PKL, str(dst)]) == 0
  assert "conv_clamp 256.0" in capsys.readouterr().out
  module, restored = pretrained.load(dst)
  assert isinstance(module, stylegan2.Generator) and module.conv_clamp == 256
  assert pretrained.read_config(dst) == {"kind": "stylegan2", **config}
  jax.tree.map(np.testing.assert_array_equal, restored, variables)


def test_tensor_layouts_match_torch(tmp_path):
  """Tensors as plain ``pickle.dump`` writes them: dtypes, channels-last strides, shared storage
  with offsets, 0-d, empty; read back bit for bit (bfloat16 widened to float32)."""
  import torch  # pylint: disable=import-outside-toplevel
  gen = torch.Generator().manual_seed(0)
  base = torch.randn(6, 5, generator=gen)
  tensors = {
      "half": torch.randn(3, 4, generator=gen).half(),
      "bf16": torch.randn(7, generator=gen).bfloat16(),
      "long": torch.arange(5),
      "bool": torch.tensor([True, False]),
      "channels_last": torch.randn(2, 3, 4, 5, generator=gen).to(
          memory_format=torch.channels_last),
      "column": base[1:, 2],          # offset 7, stride 5, same storage as "transposed"
      "transposed": base.t(),
      "scalar": torch.tensor(1.5),
      "empty": torch.zeros(0, 3),
      "param": torch.nn.Parameter(torch.randn(2, 2, generator=gen)),
  }
  path = tmp_path / "tensors.pkl"
  path.write_bytes(pickle.dumps(tensors))
  got = nvidia_pickle.load(path)
  for name, t in tensors.items():
    want = t.detach().float().numpy() if name == "bf16" else t.detach().numpy()
    assert got[name].dtype == want.dtype and got[name].shape == want.shape, name
    np.testing.assert_array_equal(got[name], want, err_msg=name)
