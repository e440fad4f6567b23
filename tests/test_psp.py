"""Parity of the pSp encoder / wrapper and its converter with pixel2style2pixel.

Fixtures (tests/fixtures, see /work/shared/fixtures/README.md): ``psp_small.pt`` is a pSp
checkpoint with reduced widths (IR-SE 3/4/14/3 units, widths 16/24/28/32, 10 styles of 32, a
64 px decoder) and randomised BatchNorm statistics, PReLU slopes and biases;
``psp_small_io.npz`` holds what the original PyTorch code computes from it.
``keys_psp_ffhq_encode.json`` / ``keys_ir_se50_backbone.json`` list the names and shapes of the
real public checkpoints.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from difai_jax import pretrained
from difai_jax.models import psp
from weights_conversion import psp as psp_conversion
from weights_conversion import torch_io

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
CODES_ATOL = 1e-4
IMAGE_ATOL = 1e-3


def _nhwc(x):
  return np.transpose(x, (0, 2, 3, 1))


@pytest.fixture(scope="module", autouse=True)
def _highest_precision():
  with jax.default_matmul_precision("highest"):
    yield


@pytest.fixture(scope="module")
def io():
  return dict(np.load(os.path.join(FIXTURES, "psp_small_io.npz")))


@pytest.fixture(scope="module")
def checkpoint():
  return torch_io.load_checkpoint(os.path.join(FIXTURES, "psp_small.pt"))


@pytest.fixture(scope="module")
def converted(checkpoint):
  config, variables = psp_conversion.convert_psp(checkpoint, source="psp_small.pt")
  return config, variables, psp.from_config(config)


@pytest.fixture(scope="module")
def encode_fn(converted):
  module = converted[2]
  return jax.jit(lambda v, x, add: module.apply(v, x, method="encode", add_latent_avg=add),
                 static_argnums=2)


@pytest.fixture(scope="module")
def forward_fn(converted):
  module = converted[2]
  return jax.jit(lambda v, x, resize: module.apply(v, x, resize=resize, return_latents=True),
                 static_argnums=2)


def test_inferred_config(converted):
  config = converted[0]
  assert config["encoder"]["unit_counts"] == [3, 4, 14, 3]
  assert config["encoder"]["widths"] == [16, 24, 28, 32]
  assert config["encoder"]["mode"] == "ir_se"
  assert config["encoder"]["n_styles"] == 10 and config["encoder"]["style_dim"] == 32
  assert config["input_size"] == 256 and config["decoder"]["size"] == 64
  assert config["start_from_latent_avg"] is True
  assert [psp.n_styles_for_size(s) for s in (1024, 256, 64)] == [18, 14, 10]


def test_raw_codes_match_pytorch(converted, encode_fn, io):
  codes = np.asarray(encode_fn(converted[1], _nhwc(io["input"]), False))
  err = np.abs(codes - io["codes_raw"]).max()
  print(f"pSp raw codes max abs error {err:.3g}")
  assert codes.shape == (1, 10, 32)
  assert err <= CODES_ATOL


def test_codes_with_latent_avg_match_pytorch(converted, encode_fn, io):
  codes = np.asarray(encode_fn(converted[1], _nhwc(io["input"]), True))
  err = np.abs(codes - io["codes"]).max()
  print(f"pSp codes + latent_avg max abs error {err:.3g}")
  assert err <= CODES_ATOL
  np.testing.assert_array_equal(converted[1]["constants"]["latent_avg"], io["latent_avg"])


@pytest.mark.parametrize("resize", [False, True])
def test_images_match_pytorch(converted, forward_fn, io, resize):
  image, latents = forward_fn(converted[1], _nhwc(io["input"]), resize)
  want = _nhwc(io["image_resized"] if resize else io["image"])
  assert image.shape == want.shape
  err = np.abs(np.asarray(image) - want).max()
  print(f"pSp image (resize={resize}) max abs error {err:.3g}")
  assert err <= IMAGE_ATOL
  assert np.abs(np.asarray(latents) - io["returned_latent"]).max() <= CODES_ATOL


def test_random_noise_needs_rng_and_changes_image(converted, io):
  module, variables = converted[2], converted[1]
  codes = jnp.asarray(io["codes"])
  fn = jax.jit(lambda v, c, key: module.apply(v, c, method="decode", randomize_noise=True,
                                              resize=False, return_latents=False,
                                              rngs={"noise": key}))
  a = fn(variables, codes, jax.random.key(0))
  b = fn(variables, codes, jax.random.key(1))
  stored = _nhwc(io["image"])
  assert np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-3
  assert np.abs(np.asarray(a) - stored).max() > 1e-3


# ---- resampling helpers against torch ----

@pytest.mark.parametrize("n_in,n_out", [(16, 32), (32, 64), (5, 11), (7, 3), (1, 4)])
def test_upsample_matches_torch_align_corners(n_in, n_out):
  x = np.random.RandomState(0).randn(2, 3, n_in, n_in + 1).astype(np.float32)
  want = F.interpolate(torch.from_numpy(x), size=(n_out, n_out + 2), mode="bilinear",
                       align_corners=True).numpy()
  got = psp.upsample_bilinear_align_corners(jnp.asarray(_nhwc(x)), n_out, n_out + 2)
  np.testing.assert_allclose(np.asarray(got), _nhwc(want), atol=1e-5)


@pytest.mark.parametrize("n_in,n_out", [(64, 256), (1024, 256), (10, 4), (7, 3), (5, 5)])
def test_face_pool_matches_torch_adaptive_avg_pool(n_in, n_out):
  x = np.random.RandomState(1).randn(1, 3, n_in, n_in).astype(np.float32)
  want = F.adaptive_avg_pool2d(torch.from_numpy(x), (n_out, n_out)).numpy()
  got = psp.adaptive_avg_pool(jnp.asarray(_nhwc(x)), n_out, n_out)
  np.testing.assert_allclose(np.asarray(got), _nhwc(want), atol=1e-5)


# ---- IR (no SE) mode and train-mode BatchNorm ----

def test_ir_mode_equals_ir_se_with_constant_gate(checkpoint, io):
  """With SE fc1 = 0 the gate is sigmoid(0) = 1/2, so an IR-SE unit equals an IR unit whose
  last BatchNorm has half the scale and bias. Exercises the IR path and its detection."""
  tensors = {k: v for k, v in checkpoint["state_dict"].items() if k.startswith("encoder.")}
  se_sd = {k: np.zeros_like(v) if ".res_layer.5.fc1." in k else v for k, v in tensors.items()}
  ir_sd = {k: v for k, v in tensors.items() if ".res_layer.5." not in k}
  halved = {k: 0.5 * v if k.endswith((".res_layer.4.weight", ".res_layer.4.bias")) else v
            for k, v in ir_sd.items()}
  x = _nhwc(io["input"])
  outputs, apply_fns = {}, {}
  for name, sd in (("ir_se", se_sd), ("ir_halved", halved), ("ir_full", ir_sd)):
    cfg, variables, _ = psp_conversion.convert_encoder(
        torch_io.StateDict(sd, ignore=("*.num_batches_tracked",)))
    assert cfg["mode"] == ("ir_se" if name == "ir_se" else "ir")
    module = psp.encoder_from_config(cfg)
    fn = apply_fns.setdefault(cfg["mode"], jax.jit(module.apply))
    outputs[name] = np.asarray(fn(variables, x))
  err = np.abs(outputs["ir_halved"] - outputs["ir_se"]).max()
  print(f"IR vs IR-SE with a constant gate: max abs difference {err:.3g}")
  assert err <= 2e-5
  # Without the halving the residual branches are twice as strong: the comparison can fail.
  assert np.abs(outputs["ir_full"] - outputs["ir_se"]).max() > 1e-3


def test_train_mode_uses_batch_statistics_and_updates_running_stats(converted, io):
  module = converted[2].encoder
  params = converted[1]["params"]["encoder"]
  stats = converted[1]["batch_stats"]["encoder"]
  x = np.concatenate([_nhwc(io["input"]), -_nhwc(io["input"])[:, ::-1]], axis=0)

  def run(p, s, x):
    return module.apply({"params": p, "batch_stats": s}, x, True, mutable=["batch_stats"],
                        capture_intermediates=lambda mdl, _: mdl.name in ("input_conv",
                                                                          "input_bn"))
  codes, updated = jax.jit(run)(params, stats, x)
  inter = updated["intermediates"]["backbone"]
  conv_out = np.asarray(inter["input_conv"]["__call__"][0], np.float64)
  bn_out = np.asarray(inter["input_bn"]["__call__"][0], np.float64)
  mean, var = conv_out.mean((0, 1, 2)), conv_out.var((0, 1, 2))
  bn_p = params["backbone"]["input_bn"]
  want = (conv_out - mean) / np.sqrt(var + 1e-5) * bn_p["scale"] + bn_p["bias"]
  np.testing.assert_allclose(bn_out, want, atol=1e-4)
  old = stats["backbone"]["input_bn"]
  new = updated["batch_stats"]["backbone"]["input_bn"]
  np.testing.assert_allclose(new["mean"], 0.9 * old["mean"] + 0.1 * mean, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(new["var"], 0.9 * old["var"] + 0.1 * var, rtol=1e-4, atol=1e-5)
  assert codes.shape == (2, 10, 32)


# ---- converter: files, layouts, errors ----

def test_cli_writes_a_directory_that_pretrained_loads(tmp_path, converted, encode_fn, io):
  dst = tmp_path / "psp"
  assert psp_conversion.main([os.path.join(FIXTURES, "psp_small.pt"), str(dst)]) == 0
  module, variables = pretrained.load(dst)
  assert isinstance(module, psp.PSP)
  assert module == converted[2]
  codes = np.asarray(encode_fn(variables, _nhwc(io["input"]), True))
  assert np.abs(codes - io["codes"]).max() <= CODES_ATOL
  assert psp_conversion.main([os.path.join(FIXTURES, "psp_small.pt"), str(dst)]) == 1


def test_single_vector_latent_avg_is_broadcast(checkpoint, io):
  ck = dict(checkpoint, latent_avg=io["latent_avg"][3])
  _, variables = psp_conversion.convert_psp(ck, check=False)
  want = np.broadcast_to(io["latent_avg"][3], (10, 32))
  np.testing.assert_array_equal(variables["constants"]["latent_avg"], want)
  with pytest.raises(torch_io.ConversionError, match="latent_avg has shape"):
    psp_conversion.convert_psp(dict(checkpoint, latent_avg=np.zeros((7, 32))), check=False)


def test_converter_errors_name_the_problem(checkpoint):
  sd = dict(checkpoint["state_dict"])
  sd["encoder.extra.weight"] = np.zeros(3)
  with pytest.raises(torch_io.ConversionError, match="encoder.extra.weight"):
    psp_conversion.convert_psp(dict(checkpoint, state_dict=sd), check=False)
  sd = {k: v for k, v in checkpoint["state_dict"].items() if "styles.9." not in k}
  with pytest.raises(torch_io.ConversionError, match="9 styles"):
    psp_conversion.convert_psp(dict(checkpoint, state_dict=sd), check=False)
  opts = dict(checkpoint["opts"], encoder_type="BackboneEncoderUsingLastLayerIntoW")
  with pytest.raises(torch_io.ConversionError, match="encoder_type"):
    psp_conversion.convert_psp(dict(checkpoint, opts=opts), check=False)
  with pytest.raises(torch_io.ConversionError, match="not a pSp checkpoint"):
    psp_conversion.convert_psp({"g_ema": {}})


def test_backbone_file_converts_and_seeds_the_encoder(tmp_path, checkpoint, converted,
                                                      encode_fn, io):
  """A model_ir_se50.pth-layout file (input_layer / body / output_layer) -> kind
  ir_se_backbone; merged into an encoder whose backbone was wiped, it restores the codes."""
  backbone = {k[len("encoder."):]: torch.from_numpy(np.array(v))
              for k, v in checkpoint["state_dict"].items()
              if k.startswith(("encoder.input_layer.", "encoder.body."))}
  backbone["output_layer.3.weight"] = torch.zeros(4, 8)  # the recognition head: ignored
  src = tmp_path / "model_ir_se50.pth"
  torch.save(backbone, src)
  dst = tmp_path / "backbone"
  assert psp_conversion.main([str(src), str(dst)]) == 0
  assert pretrained.read_config(dst)["kind"] == "ir_se_backbone"
  if "ir_se_backbone" not in pretrained._BUILDERS:  # pylint: disable=protected-access
    pretrained.register("ir_se_backbone", "difai_jax.models.psp:backbone_from_config")
  module, backbone_vars = pretrained.load(dst)
  assert isinstance(module, psp.IRBackbone) and module.widths == (16, 24, 28, 32)
  variables = converted[1]
  wiped = dict(variables)
  for col in ("params", "batch_stats"):
    encoder = dict(variables[col]["encoder"],
                   backbone=jax.tree.map(np.zeros_like, variables[col]["encoder"]["backbone"]))
    wiped[col] = dict(variables[col], encoder=encoder)
  wrong = encode_fn(wiped, _nhwc(io["input"]), False)
  # (The fixture's codes lean on the style blocks' biases; a wiped backbone moves them ~7e-3.)
  assert np.abs(np.asarray(wrong) - io["codes_raw"]).max() > 1e-3
  merged = psp.init_encoder_from_backbone(wiped, backbone_vars)
  codes = np.asarray(encode_fn(merged, _nhwc(io["input"]), False))
  assert np.abs(codes - io["codes_raw"]).max() <= CODES_ATOL


# ---- full-size layouts of the public checkpoints (names and shapes only) ----

def _shape_only_state_dict(shapes):
  """Zero-stride views (a full pSp state dict without allocating its ~1.2 GB), except the fixed
  [1, 3, 3, 1] FIR buffers of the decoder (x4 gain for the x2 upsamplers), which are checked."""
  fir = np.outer([1, 3, 3, 1], [1, 3, 3, 1]).astype(np.float32) / 64 * 4
  return {k: fir if k.endswith(("blur.kernel", "upsample.kernel"))
          else np.broadcast_to(np.float32(0), tuple(s)) for k, s in shapes.items()}


@pytest.fixture
def lazy_layout_changes(monkeypatch):
  """Keeps the converted full-size arrays as views (the real transposes are exercised by the
  parity tests above)."""
  def conv_kernel(w):
    assert w.ndim == 4
    return np.transpose(w, (2, 3, 1, 0))

  def dense_kernel(w):
    assert w.ndim == 2
    return w.T
  monkeypatch.setattr(torch_io, "conv_kernel", conv_kernel)
  monkeypatch.setattr(torch_io, "dense_kernel", dense_kernel)


def test_key_map_covers_full_psp_ffhq_checkpoint(lazy_layout_changes):
  with open(os.path.join(FIXTURES, "keys_psp_ffhq_encode.json"), encoding="utf-8") as f:
    layout = json.load(f)
  ck = {"state_dict": _shape_only_state_dict(layout["state_dict"]),
        "latent_avg": np.zeros(layout["latent_avg"], np.float32),
        "opts": {"output_size": 1024, "encoder_type": "GradualStyleEncoder", "input_nc": 3,
                 "label_nc": 0, "start_from_latent_avg": True, "learn_in_w": False}}
  # check=True: every tensor used once (num_batches_tracked aside), and the result has exactly
  # the names and shapes of jax.eval_shape(PSP(full IR-SE50 encoder, 1024 px decoder).init).
  config, variables = psp_conversion.convert_psp(ck, source="psp_ffhq_encode layout")
  enc = config["encoder"]
  assert enc["unit_counts"] == [3, 4, 14, 3] and enc["widths"] == [64, 128, 256, 512]
  assert enc["mode"] == "ir_se" and enc["se_reduction"] == 16 and enc["input_width"] == 64
  assert enc["n_styles"] == 18 and enc["style_dim"] == 512
  assert config["decoder"]["size"] == 1024 and config["input_size"] == 256
  module = psp.from_config(config)
  assert module.encoder == psp.GradualStyleEncoder()  # the defaults are IR-SE50
  assert module.encoder.taps == (6, 20, 23)
  n_tensors = sum(1 for k in layout["state_dict"] if not k.endswith("num_batches_tracked"))
  n_leaves = len(jax.tree.leaves(variables))
  # Flax leaves = torch tensors, minus the FIR kernels (checked, not stored), plus latent_avg.
  n_fir = sum(1 for k in layout["state_dict"] if k.endswith((".blur.kernel", "upsample.kernel")))
  assert n_leaves == n_tensors - n_fir + 1


def test_key_map_covers_ir_se50_backbone(lazy_layout_changes):
  with open(os.path.join(FIXTURES, "keys_ir_se50_backbone.json"), encoding="utf-8") as f:
    layout = json.load(f)
  config, variables = psp_conversion.convert_backbone(
      _shape_only_state_dict(layout["state_dict"]), source="model_ir_se50 layout")
  assert config == {"unit_counts": [3, 4, 14, 3], "widths": [64, 128, 256, 512],
                    "input_width": 64, "mode": "ir_se", "se_reduction": 16}
  # The converted backbone fits the full-width encoder of pSp exactly.
  full = jax.eval_shape(psp.GradualStyleEncoder().init, jax.random.key(0),
                        jax.ShapeDtypeStruct((1, 256, 256, 3), jnp.float32))
  for col in ("params", "batch_stats"):
    torch_io.check_shapes(variables[col], full[col]["backbone"])


# ---- ReStyle passes (this project's extension; converted pSps have none) ----

def test_restyle_starts_at_the_encoder_and_adds_residuals_of_the_reconstruction(converted, io):
  """``restyle_from_encoder`` makes a refiner whose first features are the encoder's features of
  (image - reconstruction) and whose residual codes are exactly zero, so the passes start where
  pSp stops; with non-zero heads, every pass adds restyle([image, previous reconstruction])."""
  config, variables, module = converted
  refined = psp.from_config({**config, "restyle_iterations": 2})
  restyle = psp.restyle_from_encoder(variables["params"]["encoder"],
                                     variables["batch_stats"]["encoder"])
  with_restyle = {**variables, "params": {**variables["params"], "restyle": restyle[0]},
                  "batch_stats": {**variables["batch_stats"], "restyle": restyle[1]}}
  x = jnp.asarray(_nhwc(io["input"]))
  encode = jax.jit(lambda m, v: m.apply(v, x, method="encode"), static_argnums=0)
  np.testing.assert_array_equal(np.asarray(encode(refined, with_restyle)),
                                np.asarray(encode(module, variables)))

  y = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, x.shape), jnp.float32)
  backbone = psp.IRBackbone(module.encoder.unit_counts, module.encoder.widths,
                            module.encoder.input_width, module.encoder.mode)
  feats = jax.jit(lambda part, inp: backbone.apply(
      {"params": with_restyle["params"][part]["backbone"],
       "batch_stats": with_restyle["batch_stats"][part]["backbone"]}, inp)[-1],
                  static_argnums=0)
  np.testing.assert_allclose(np.asarray(feats("restyle", jnp.concatenate([x, y], -1))),
                             np.asarray(feats("encoder", x - y)), atol=1e-4)

  rng = np.random.default_rng(1)   # non-zero style linears: the passes move
  heads = {k: dict(v, linear=jax.tree.map(
      lambda a: jnp.asarray(0.1 * rng.standard_normal(a.shape), jnp.float32), v["linear"]))
           if k.startswith("styles_") else v for k, v in restyle[0].items()}
  moved = {**with_restyle, "params": {**with_restyle["params"], "restyle": heads}}
  codes, recons = jax.jit(lambda v: refined.apply(v, x, method="encode_passes"))(moved)
  assert len(codes) == 3 and len(recons) == 2 and recons[0].shape == x.shape
  alone = psp.GradualStyleEncoder(**{f: getattr(module.encoder, f) for f in psp._ENCODER_FIELDS})
  avg = variables["constants"]["latent_avg"][None]
  decode = jax.jit(lambda v, w: module.apply(v, w, method="decode", return_latents=False))
  for t in range(2):
    recon = decode(variables, codes[t] + avg)
    np.testing.assert_allclose(np.asarray(recons[t]), np.asarray(recon), atol=1e-5)
    step = jax.jit(alone.apply)({"params": heads, "batch_stats": restyle[1]},
                                jnp.concatenate([x, recon], -1))
    np.testing.assert_allclose(np.asarray(codes[t + 1] - codes[t]), np.asarray(step), atol=1e-4)
    assert np.abs(np.asarray(step)).max() > 1e-2
  np.testing.assert_allclose(np.asarray(encode(refined, moved)), np.asarray(codes[-1] + avg),
                             atol=1e-6)
  # Same decoder, same meaning of W+: DiFAI checkpoints and SeFa directions keep applying.
  assert psp.decoder_fingerprint(moved) == psp.decoder_fingerprint(variables)
  with pytest.raises(ValueError, match="restyle_iterations must be >= 0"):
    psp.from_config({**config, "restyle_iterations": -1}).apply(variables, x, method="encode")
