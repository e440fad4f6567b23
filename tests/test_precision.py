"""One precision policy: no network hard-codes a matmul precision, so the training config's
policy ("default": the fastest float32 of each backend) reaches every conv and dot, and the
parity policy ("highest") reaches them too. Checked in each network's lowered HLO."""

import jax
import jax.numpy as jnp
import pytest

from configs import celebahq
from difai_jax.training import checkpoints
from difai_jax.nn import precision
from difai_jax.evaluation.metrics import fid
from difai_jax.evaluation.metrics import lpips
from difai_jax.evaluation.metrics import toy
from difai_jax.models import coarse as coarse_lib
from difai_jax.models import critic as critic_lib
from difai_jax.models import sparn as sparn_lib
from difai_jax.models import stylegan2
from difai_jax.models import vgg
from tests import tiny_config


def _networks():
  tiny = tiny_config.get_config()
  img = lambda s: jnp.zeros((1, s, s, 3))
  mask = jnp.ones((1, 32, 32, 1))
  psp, _ = checkpoints.random_psp(tiny, 0)
  return {
      "stylegan2": (stylegan2.Generator(size=16, style_dim=16, n_mlp=1, channels=(16, 16, 16)),
                    ([jnp.zeros((1, 16))],)),
      "stylegan2_discriminator": (stylegan2.Discriminator(size=16, channels=(16, 16, 16)),
                                  (img(16),)),
      "psp": (psp, (img(32),)),
      "vgg19": (vgg.VGG19Features(width_divisor=16), (img(32),)),
      "coarse": (coarse_lib.from_config(tiny.coarse), (img(32), mask)),
      "generator": (sparn_lib.from_config(tiny.generator), (img(32), img(32), mask)),
      "critic": (critic_lib.from_config(tiny.critic), (img(32),)),
      "lpips": (lpips.LPIPS(net="alex"), (img(32), img(32))),
      "inception": (fid.FIDInceptionV3(), (img(75),)),
  }


NETWORKS = _networks()


def _hlo(name, policy):
  module, inputs = NETWORKS[name]
  with precision.scope(policy):
    variables = jax.eval_shape(module.init, jax.random.key(0), *inputs)
    return jax.jit(lambda v, *x: module.apply(v, *x)).lower(variables, *inputs).as_text()


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_policy_reaches_every_conv_and_dot(name):
  training = celebahq.get_config().precision
  assert training == "default"
  fast = _hlo(name, training)
  exact = _hlo(name, "highest")
  assert "convolution" in fast or "dot_general" in fast
  assert "HIGHEST" not in fast, f"{name}: a hard-coded HIGHEST precision is left"
  assert "HIGHEST" in exact, f"{name}: the highest policy does not reach it"


def test_unknown_policy_is_refused():
  with pytest.raises(ValueError, match="precision must be one of"):
    precision.scope("fp8")


# ---- compute dtypes of the frozen networks ----

def _image(size):
  return jnp.zeros((1, size, size, 3))


def _conv_dtypes(module, inputs):
  """(number of convolutions, how many compute in bfloat16) in the lowered forward."""
  variables = jax.eval_shape(module.init, jax.random.key(0), *inputs)
  text = jax.jit(lambda v, *x: module.apply(v, *x)).lower(variables, *inputs).as_text()
  convs = [line for line in text.splitlines() if "convolution" in line]
  return len(convs), sum("xbf16>" in line for line in convs)


def test_frozen_networks_compute_in_the_config_dtype():
  config = tiny_config.get_config()
  assert config.pretrained.dtype.to_dict() == {"psp": "float32", "vgg19": "float32"}
  config.pretrained.psp = "toy-psp"          # the shipped one: restored, not initialised
  config.pretrained.dtype.psp = "bfloat16"
  config.pretrained.dtype.vgg19 = "bfloat16"
  psp, psp_vars = checkpoints.load_pretrained(config, "psp")
  vgg, _ = checkpoints.load_pretrained(config, "vgg19")
  # every conv of pSp's encoder and StyleGAN2 decoder, and of VGG-19, computes in bfloat16
  assert psp.encoder.dtype == psp.decoder.dtype == vgg.dtype == jnp.bfloat16
  for module in (psp, vgg):
    n_convs, n_bf16 = _conv_dtypes(module, (_image(64),))
    assert n_convs > 0 and n_bf16 == n_convs, (module.__class__.__name__, n_convs, n_bf16)
  # the weights stay float32; the W+ codes come back in float32, close to float32's
  f32 = precision.with_dtype(psp, "float32")
  assert f32.encoder.dtype == f32.decoder.dtype == jnp.float32
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(psp_vars))
  face = jnp.asarray(toy.toy_test_faces(2, size=64)[0])
  encode = jax.jit(lambda v, x, m: m.apply(v, x, method="encode"), static_argnums=2)
  w16, w32 = encode(psp_vars, face, psp), encode(psp_vars, face, f32)
  assert w16.dtype == jnp.float32
  err = float(jnp.max(jnp.abs(w16 - w32)))
  spread = float(jnp.max(jnp.abs(w32 - psp_vars["constants"]["latent_avg"])))
  assert 0.0 < err < 0.05 * spread, (err, spread)


def test_unknown_dtype_is_refused():
  with pytest.raises(ValueError, match="compute dtype must be one of"):
    precision.with_dtype(vgg.VGG19Features(), "fp8")
