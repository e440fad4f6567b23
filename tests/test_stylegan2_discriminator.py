"""Parity of the Flax StyleGAN2 Discriminator with rosinality's (golden fixtures), its converter.

``stylegan2_small_d_io.npz`` comes from rosinality/stylegan2-pytorch at commit bef283a
(``model.py``; ``op/`` on its CPU paths: native upfirdn2d, leaky-ReLU fallback), run outside
this repo on CPU in float32, eval mode, no autograd: ``Discriminator(64, channel_multiplier=2)``
with the channel table divided by 8 (as the fixture's ``d``), loaded strictly from
``stylegan2_small.pt["d"]``. Contents (NCHW, as the other fixtures):

- ``images`` (8, 3, 64, 64): ``tanh(1.5 * bilinear_upsample(N(0, 1) at 16x16))`` (torch seed
  1234), rounded to float16 and stored as float16, so float32 inputs are exact;
- ``logits_n{8,4,3,1}`` (N, 1): ``d(images[:N])``, i.e. minibatch-stddev groups of 4, 4, 3, 1
  (rosinality raises for N = 5..7);
- for N = 8: ``convs_n8`` (8, 64, 4, 4) the map entering the minibatch stddev, ``stddev_n8``
  (8,) the appended stddev channel, ``final_conv_n8`` (8, 64, 4, 4) the output of final_conv.
A second run of the reference gave bit-identical logits.
"""

import json
import os
import subprocess
import sys
import textwrap

import flax.serialization
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
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def io():
  return dict(np.load(fixture_path("stylegan2_small_d_io.npz")))


@pytest.fixture(scope="module")
def images(io):
  return jnp.asarray(nchw_to_nhwc(io["images"]).astype(np.float32))


@pytest.fixture(scope="module")
def disc():
  """(module, variables, config, jitted apply) of the fixture's ``d``, converted once."""
  checkpoint = torch_io.load_checkpoint(fixture_path("stylegan2_small.pt"))
  sd = torch_io.StateDict(checkpoint["d"], source="stylegan2_small.pt[d]")
  config, variables = convert.convert_discriminator(sd)
  module = stylegan2.discriminator_from_config(config)
  return module, variables, config, jax.jit(module.apply)


def _report(name, err):
  print(f"stylegan2 discriminator parity {name}: max abs error {err:.3g}")
  assert err <= TOL, f"{name}: max abs error {err} > {TOL}"


def test_inferred_architecture(disc):
  module, _, config, _ = disc
  assert config["size"] == 64 and list(config["channels"]) == [64] * 5
  assert config["stddev_group"] == 4 and config["stddev_feat"] == 1
  assert module.widths == (64,) * 5


def test_intermediates_batch_of_8(disc, io, images):
  module, variables, _, _ = disc
  fn = jax.jit(lambda v, x: module.apply(v, x, capture_intermediates=True))
  logits, state = fn(variables, images)
  inter = state["intermediates"]
  convs = inter["convs_4"]["__call__"][0]                          # (8, 4, 4, 64)
  _report("n=8 map before minibatch stddev",
          np.abs(convs - nchw_to_nhwc(io["convs_n8"])).max())
  stddev = stylegan2.minibatch_stddev(convs)[:, 0, 0, -1]
  _report("n=8 minibatch stddev feature", np.abs(stddev - io["stddev_n8"]).max())
  _report("n=8 final_conv", np.abs(inter["final_conv"]["__call__"][0]
                                   - nchw_to_nhwc(io["final_conv_n8"])).max())
  _report("n=8 logits", np.abs(logits - io["logits_n8"]).max())


@pytest.mark.parametrize("n", [4, 3, 1])
def test_logits_batch_sizes(disc, io, images, n):
  """Groups of min(N, 4): 4 | 3 (not divisible by 4: one group of 3) | 1."""
  _, variables, _, apply = disc
  logits = apply(variables, images[:n])
  assert logits.shape == (n, 1) and logits.dtype == jnp.float32
  _report(f"n={n} logits", np.abs(logits - io[f"logits_n{n}"]).max())


def test_minibatch_stddev_groups_are_strided():
  """rosinality's view(group, -1, ...): sample i is in group i % (N / group)."""
  x = np.random.default_rng(0).normal(size=(8, 2, 2, 3)).astype(np.float32)
  out = jax.jit(stylegan2.minibatch_stddev)(x)
  np.testing.assert_array_equal(out[..., :3], x)
  got = out[:, :, :, -1]
  for j in range(2):
    members = x[j::2]                                          # samples j, j+2, j+4, j+6
    want = np.mean(np.sqrt(np.var(members, axis=0) + 1e-8))
    np.testing.assert_allclose(got[j::2], want, rtol=1e-6)
  with pytest.raises(ValueError, match="batch size 6 is not a multiple of the group size 4"):
    stylegan2.minibatch_stddev(jnp.zeros((6, 4, 4, 8)))


def test_batch_not_divisible_by_group_says_what_to_do(disc):
  module, variables, _, _ = disc
  apply = lambda x: jax.eval_shape(module.apply, variables, x)   # traced, nothing computed
  with pytest.raises(ValueError, match="batch size <= 4 or a multiple of 4"):
    apply(jax.ShapeDtypeStruct((6, 64, 64, 3), jnp.float32))
  with pytest.raises(ValueError, match=r"images must be \(N, 64, 64, 3\)"):
    apply(jax.ShapeDtypeStruct((2, 3, 64, 64), jnp.float32))
  assert apply(jax.ShapeDtypeStruct((12, 64, 64, 3), jnp.float32)).shape == (12, 1)


def test_cli_and_pretrained_load_roundtrip(tmp_path, capsys, disc, io, images):
  module, _, _, apply = disc
  dst = tmp_path / "d"
  argv = [fixture_path("stylegan2_small.pt"), str(dst), "--which", "d"]
  assert convert.main(argv) == 0
  assert "size 64" in capsys.readouterr().out
  config = json.loads((dst / "config.json").read_text())
  assert config["kind"] == "stylegan2_discriminator" and config["size"] == 64
  loaded, variables = pretrained.load(dst)
  assert loaded == module                       # same architecture: reuse the compiled apply
  logits = apply(variables, images[:4])
  _report("n=4 logits after CLI + load", np.abs(logits - io["logits_n4"]).max())
  assert convert.main(argv) == 1                # never overwrites a converted model
  assert "already holds" in capsys.readouterr().err


def _fake_state_dict(shapes):
  # Zero-strided arrays: a 1024 px state dict without allocating its memory.
  fake = {k: np.broadcast_to(np.float32(0), v) for k, v in shapes.items()}
  for k in fake:
    if k.endswith(".0.kernel"):                            # the [1, 3, 3, 1] blur buffers
      fake[k] = stylegan2_common.fir_kernel((1, 3, 3, 1), 1.0)
  return fake


def _config_f_d_keys():
  with open(fixture_path("keys_stylegan2_config_f_1024.json")) as f:
    entry = json.load(f)["d"]
  if isinstance(entry, dict) and "shapes" in entry:
    entry = entry["shapes"]
  return {k: tuple(v) for k, v in entry.items()}


def test_config_f_1024_key_map_covers_every_tensor():
  shapes = _config_f_d_keys()
  assert len(shapes) == 64
  sd = torch_io.StateDict(_fake_state_dict(shapes), "config-f d keys")
  config, variables = convert.convert_discriminator(sd, check=False)
  assert config["size"] == 1024
  assert tuple(config["channels"]) == stylegan2.rosinality_channels(1024, 2)
  assert sd.unused() == []                                     # every tensor used exactly once
  convert.check_discriminator_against_module(config, variables)  # every Flax variable filled


def test_final_linear_rows_follow_nhwc_order():
  """Row (h, w, c) of the Flax kernel is column c*16 + h*4 + w of rosinality's weight."""
  shapes = _config_f_d_keys()
  fake = _fake_state_dict(shapes)
  out, cin = shapes["final_linear.0.weight"]
  fake["final_linear.0.weight"] = np.arange(out * cin, dtype=np.float32).reshape(out, cin)
  _, variables = convert.convert_discriminator(torch_io.StateDict(fake, "d"), check=False)
  kernel = variables["params"]["final_linear_0"]["kernel"]       # (16 * 512, 512)
  c4 = cin // 16
  h, w, c, o = 2, 1, 7, 5
  assert kernel[(h * 4 + w) * c4 + c, o] == fake["final_linear.0.weight"][o, c * 16 + h * 4 + w]


def test_converter_errors_name_key_and_shapes():
  fake = _fake_state_dict(_config_f_d_keys())
  bad = dict(fake)
  bad["convs.2.conv2.0.kernel"] = np.ones((4, 4), np.float32)
  with pytest.raises(torch_io.ConversionError, match=r"convs\.2\.conv2\.0\.kernel.*\[1, 3, 3, 1\]"):
    convert.convert_discriminator(torch_io.StateDict(bad, "bad"), check=False)
  bad = dict(fake)
  bad["final_linear.1.bias"] = np.zeros((2,), np.float32)
  with pytest.raises(torch_io.ConversionError, match=r"final_linear\.1\.bias.*\(2,\).*\(1,\)"):
    convert.convert_discriminator(torch_io.StateDict(bad, "bad"), check=False)
  missing = dict(fake)
  del missing["convs.3.skip.1.weight"]
  with pytest.raises(torch_io.ConversionError, match=r"convs\.3\.skip\.1\.weight"):
    convert.convert_discriminator(torch_io.StateDict(missing, "missing"), check=False)
  extra = dict(fake)
  extra["convs.3.skip.1.bias"] = np.zeros((2,), np.float32)
  with pytest.raises(torch_io.ConversionError, match=r"convs\.3\.skip\.1\.bias \(2,\)"):
    convert.convert_discriminator(torch_io.StateDict(extra, "extra"))
  with pytest.raises(torch_io.ConversionError, match="not a rosinality StyleGAN2 discriminator"):
    convert.convert_discriminator(torch_io.StateDict({"input.input": np.zeros(1)}, "g"))
  with pytest.raises(torch_io.ConversionError, match="no 'd' entry"):
    convert.select_discriminator({"g_ema": {}})


_SHARDED = textwrap.dedent("""
    import sys
    import flax.serialization, jax, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    jax.config.update("jax_default_matmul_precision", "highest")
    from difai_jax.models import stylegan2
    module = stylegan2.Discriminator(64, channels=(64,) * 5)
    with open(sys.argv[1], "rb") as f:
      variables = flax.serialization.msgpack_restore(f.read())
    io = np.load("tests/fixtures/stylegan2_small_d_io.npz")
    images = np.transpose(io["images"].astype(np.float32), (0, 2, 3, 1))
    def run(axis_type, set_mesh):
      mesh = jax.make_mesh((2,), ("data",), devices=jax.devices()[:2], axis_types=(axis_type,))
      batch = NamedSharding(mesh, P("data"))
      replicated = NamedSharding(mesh, P())
      fn = jax.jit(module.apply, in_shardings=(replicated, batch), out_shardings=batch)
      args = (jax.device_put(variables, replicated), jax.device_put(images, batch))
      if set_mesh:
        with jax.set_mesh(mesh):
          logits = fn(*args).block_until_ready()
      else:
        logits = fn(*args).block_until_ready()
      assert len(logits.sharding.device_set) == 2
      return float(np.abs(np.asarray(logits) - io["logits_n8"]).max())
    print("ERR", max(run(jax.sharding.AxisType.Auto, False),
                     run(jax.sharding.AxisType.Explicit, True)))
""")


def test_sharded_batch_under_jit(disc, tmp_path):
  """Batch of 8 split over 2 devices (Auto axes as train.py, and Explicit axes): the stddev
  groups span both shards, the logits are unchanged."""
  env = dict(os.environ)
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  flags = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
  flags += ["--xla_force_host_platform_device_count=4",
            "--xla_cpu_collective_call_terminate_timeout_seconds=20"]
  env["XLA_FLAGS"] = " ".join(flags)
  env["TF_CPP_MIN_LOG_LEVEL"] = "3"
  # The converted variables travel as msgpack: the subprocess needs no torch.
  path = tmp_path / "d.msgpack"
  path.write_bytes(flax.serialization.msgpack_serialize(jax.tree.map(np.asarray, disc[1])))
  proc = subprocess.run([sys.executable, "-c", _SHARDED, str(path)], capture_output=True,
                        text=True, env=env, cwd=ROOT, timeout=120)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  err = float(proc.stdout.split("ERR")[-1])
  _report("n=8 logits, batch sharded over 2 devices", err)
