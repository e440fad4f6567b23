"""Stage ``psp``: the step lowers its loss, a run resumes bit-identically, and the exported
directory loads as a pSp that reconstructs exactly as the stage does.

Everything runs against a tiny random StyleGAN2 (32 px, width 16) saved as a converted
directory, with a tiny IR-SE encoder; one stage (one compiled step) is shared by the tests.
"""

import functools
import os
import tarfile

from absl import flags
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import ml_collections
import numpy as np
import pytest

from difai_jax.training import checkpoints
from difai_jax.training import export
from difai_jax import pretrained
from difai_jax.training import stages
from difai_jax.training import steps
from difai_jax import mesh as mesh_lib
from difai_jax.training import loop as train
from difai_jax.data import config as data_config
from difai_jax.data import loader as data_pipeline
from difai_jax.models import psp as psp_lib
from difai_jax.models import stylegan2
from difai_jax.nn import fingerprint
from difai_jax.training.stages import psp as psp_stage
from tests.conftest import fixture_path

SIZE = 32


def _tiny_config(stylegan2_dir: str, perceptual: str = "") -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.stages = ("psp",)
  config.seed = 0
  config.image_size = SIZE
  config.data = data_config.default_data_config()
  config.data.verify_files = False
  config.data.read_threads = 1
  config.pretrained = ml_collections.ConfigDict({"stylegan2": stylegan2_dir, "init_from": ""})
  config.psp = psp_stage.config_defaults()
  config.psp.unit_counts = (1, 1, 1, 1)
  config.psp.widths = (16, 16, 16, 16)    # >= 16: SE reduction 16
  config.psp.input_width = 8
  config.psp.block_width = 8
  config.psp_train = psp_stage.train_defaults()
  config.psp_train.lr = 3e-3
  config.psp_train.perceptual = perceptual
  config.psp_train.latent_avg_samples = 2000
  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 4
  config.train.num_steps = ml_collections.ConfigDict({"psp": 4})
  config.train.ema_decay = 0.0
  config.train.log_every = 1
  config.train.sample_every = 4           # the preview grid (input | reconstruction) at the end
  config.train.checkpoint_every = 2
  config.train.keep_checkpoints = 3
  return config


def _random_stylegan2(directory: str, seed: int = 3) -> None:
  """A random 32 px StyleGAN2 as a converted directory, filled as rosinality initialises it
  (weights N(0, 1) under equalized lr, biases 0, modulation biases 1) without compiling init."""
  config = {"size": SIZE, "style_dim": 16, "n_mlp": 2, "channels": [16] * 4, "lr_mlp": 0.01}
  generator = stylegan2.from_config(config)
  shapes = jax.eval_shape(generator.init, jax.random.key(0), [jnp.zeros((1, 16))])
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if "modulation']['bias" in name:
      return np.ones(leaf.shape, np.float32)
    if name.endswith("['bias']"):
      return np.zeros(leaf.shape, np.float32)
    scale = 0.1 if "noise_weight" in name else 1.0
    return (scale * rng.standard_normal(leaf.shape)).astype(np.float32)

  pretrained.save(directory, "stylegan2", config,
                  jax.tree_util.tree_map_with_path(fill, shapes))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  """The stage built on a tiny random StyleGAN2, its step jitted as train.py jits it, and a
  fixed batch."""
  flags.FLAGS.mark_as_parsed()
  root = tmp_path_factory.mktemp("psp_stage")
  sg_dir = str(root / "stylegan2")
  _random_stylegan2(sg_dir)
  config = _tiny_config(sg_dir)
  stage = stages.build("psp", config, str(root / "unused"), {})
  batch = next(data_pipeline.make_train_iterator(
      config.data, image_size=SIZE, global_batch_size=4, seed=0, process_index=0,
      process_count=1, verbose=False, with_masks=False))
  # Shardings as train.train_stage uses them, so that its runs find these executables cached.
  mesh = mesh_lib.make_mesh()
  replicated, batch_sharding = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  state_sharding = jax.tree.map(lambda _: replicated,
                                jax.eval_shape(stage.init, steps.prng_key(0)))
  init = jax.jit(stage.init, out_shardings=state_sharding)
  step = jax.jit(stage.step, in_shardings=(state_sharding, batch_sharding, replicated,
                                           replicated),
                 out_shardings=(state_sharding, replicated), donate_argnums=(0,))
  return {"root": root, "config": config, "stage": stage, "init": init, "step": step,
          "batch": {k: jax.device_put(np.asarray(v), batch_sharding) for k, v in batch.items()},
          "frozen": jax.device_put(stage.frozen, replicated)}


def test_step_lowers_its_loss_and_leaves_the_decoder_alone(setup):
  stage = setup["stage"]
  state = setup["init"](steps.prng_key(0))
  assert set(state.collections) == {"batch_stats"}   # the frozen decoder is not in the state
  assert stage.architecture["psp"]["encoder"]["n_styles"] == 8
  losses = []
  for _ in range(25):   # one batch, one noise draw: a fixed objective
    state, metrics = setup["step"](state, setup["batch"], setup["frozen"], steps.prng_key(1))
    losses.append(float(metrics["g/loss"]))
  print("psp loss first/last:", losses[:3], losses[-3:])
  assert np.all(np.isfinite(losses))
  assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3])
  assert int(state.step) == 25
  avg = np.asarray(stage.frozen["psp"]["constants"]["latent_avg"])
  assert avg.shape == (8, 16) and np.all(avg == avg[0])   # one mean w for every style


def _run(config, workdir, num_steps):
  config = ml_collections.ConfigDict(config.to_dict())
  config.train.num_steps = ml_collections.ConfigDict({"psp": num_steps})
  return train.run(config, workdir)


def test_resume_is_bit_identical_and_export_loads(setup):
  config, root = setup["config"], setup["root"]
  straight, resumed = str(root / "straight"), str(root / "resumed")
  _run(config, straight, 4)
  _run(config, resumed, 2)
  _run(config, resumed, 4)
  a_params, a_cols = checkpoints.load_stage_params(straight)
  b_params, b_cols = checkpoints.load_stage_params(resumed)
  jax.tree.map(np.testing.assert_array_equal, (a_params, a_cols), (b_params, b_cols))
  assert checkpoints.latest_meta(resumed)["step"] == 4
  assert os.path.isfile(os.path.join(straight, "samples", "psp_0000004.png"))
  # The checkpoint records its decoder's fingerprint: resuming against another is refused.
  other = str(root / "other_stylegan2")
  _random_stylegan2(other, seed=4)
  with pytest.raises(checkpoints.WorkdirMismatchError, match="stylegan2_sha256"):
    _run(_tiny_config(other), resumed, 6)

  # The exported directory is a kind-psp model: encode gives W+, reconstruction as the stage's.
  out = str(root / "exported")
  written = export.export(straight, out)
  assert written["kind"] == "psp" and written["pool_size"] == SIZE
  module, variables = pretrained.load(out)
  images = setup["batch"]["image"]
  w_plus = jax.jit(functools.partial(module.apply, method="encode"))(variables, images)
  assert w_plus.shape == (4, 8, 16) and np.all(np.isfinite(w_plus))
  recon = psp_stage.reconstruct(module, variables, images)
  # The stage's own forward (its preview's) on the checkpoint's variables.
  own = psp_stage.reconstruct(psp_lib.from_config(setup["stage"].architecture["psp"]),
                              psp_stage.psp_variables(a_params, a_cols,
                                                      setup["stage"].frozen["psp"]), images)
  np.testing.assert_array_equal(np.asarray(recon), np.asarray(own))
  np.testing.assert_array_equal(variables["constants"]["latent_avg"],
                                setup["stage"].frozen["psp"]["constants"]["latent_avg"])

  quality = psp_stage.reconstruction_quality(module, variables, data_config=config.data,
                                             num_images=8, batch_size=4)
  assert quality["num_images"] == 8 and quality["l2"] > 0 and np.isfinite(quality["psnr"])

  # init_from: a new run's encoder (weights and running statistics) starts from the trained one,
  # from the export or the workdir alike, while the frozen decoder is this config's own.
  for source in (out, straight):
    warm_config = _tiny_config(other)
    warm_config.pretrained.init_from = source
    warm_stage = stages.build("psp", warm_config, str(root / "warm"), {})
    warm = warm_stage.init(steps.prng_key(7))
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(warm.params), a_params)
    jax.tree.map(np.testing.assert_array_equal,
                 jax.device_get(warm.collections["batch_stats"]),
                 a_cols["batch_stats"])
    other_decoder = pretrained.load(other)[1]["params"]
    jax.tree.map(np.testing.assert_array_equal, warm_stage.frozen["psp"]["params"]["decoder"],
                 other_decoder)
  cold = stages.build("psp", _tiny_config(other), str(root / "cold"), {}).init(
      steps.prng_key(7))
  assert not np.array_equal(jax.tree.leaves(cold.params)[0], jax.tree.leaves(a_params)[0])
  wider = _tiny_config(other)
  wider.psp.block_width = 16
  wider.pretrained.init_from = out
  with pytest.raises(ValueError, match="its encoder does not have this config's architecture"):
    stages.build("psp", wider, str(root / "wider"), {}).init(steps.prng_key(7))
  not_psp = _tiny_config(other)
  not_psp.pretrained.init_from = other
  with pytest.raises(ValueError, match="'stylegan2' model, not a psp encoder"):
    stages.build("psp", not_psp, str(root / "not_psp"), {})


def test_workdir_of_eb09f1e_resumes_and_exports(setup, tmp_path):
  """``fixtures/workdir_psp_eb09f1e.tar.gz``: a 2-step run of this module's config written by
  commit eb09f1e, when the pSp stage kept its frozen decoder inside a GAN-shaped train state
  (``g_params``, ``g_collections["frozen_params"]``, empty ``d_*``). It exports as it is and
  resumes into the one-network state, the decoder coming from the config again."""
  with tarfile.open(fixture_path("workdir_psp_eb09f1e.tar.gz")) as tar:
    tar.extractall(tmp_path, filter="data")
  workdir = str(tmp_path / "psp")
  params, collections = checkpoints.load_stage_params(workdir)
  assert psp_stage.LEGACY_FROZEN_PARAMS in collections
  decoder = pretrained.load(str(setup["root"] / "stylegan2"))[1]["params"]

  written = export.export(workdir, str(tmp_path / "exported"))
  assert written["kind"] == "psp"
  _, variables = pretrained.load(str(tmp_path / "exported"))
  jax.tree.map(np.testing.assert_array_equal, variables["params"]["encoder"], params)
  jax.tree.map(np.testing.assert_array_equal, variables["params"]["decoder"], decoder)

  config = ml_collections.ConfigDict(setup["config"].to_dict())
  config.train.sample_every = 0
  _run(config, workdir, 3)
  assert checkpoints.latest_meta(workdir)["step"] == 3
  state = checkpoints.load_stage_state(workdir)
  assert {"params", "collections", "opt_state"} <= set(state), sorted(state)
  assert not [k for k in state if k.startswith(("g_", "d_"))], sorted(state)
  assert sorted(state["collections"]) == ["batch_stats"] and int(state["step"]) == 3
  moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(state["params"]),
                                                     jax.tree.leaves(params))]
  assert any(moved)


def test_restyle_run_trains_both_encoders_exports_and_warm_starts(setup, tmp_path):
  """``psp.restyle_iterations``: the state holds the encoder and a ``restyle`` encoder (started
  from it, its own learning rate); the export carries both and reconstructs as the stage does;
  ``init_from`` continues both, and refuses a ReStyle pSp for a single-pass config."""
  config = ml_collections.ConfigDict(setup["config"].to_dict())
  config.psp.restyle_iterations = 2
  config.psp_train.lr = 1e-4
  config.psp_train.restyle_lr = 3e-3
  config.train.sample_every = 0
  workdir = str(tmp_path / "restyle")
  _run(config, workdir, 3)
  params, cols = checkpoints.load_stage_params(workdir)
  assert sorted(params) == ["encoder", "restyle"] and sorted(cols["batch_stats"]) == sorted(params)
  linear = params["restyle"]["styles_0"]["linear"]["kernel"]
  # Adam moves each weight by about its learning rate per step: 3 steps at 3e-3 (restyle).
  assert 3e-3 < np.abs(linear).max() <= 3 * 3e-3 * 1.01
  stage = stages.build("psp", config, workdir, {})
  fresh = stage.init(steps.prng_key(0))
  moved = np.abs(params["encoder"]["styles_0"]["linear"]["kernel"]
                 - np.asarray(fresh.params["encoder"]["styles_0"]["linear"]["kernel"])).max()
  assert 1e-5 < moved <= 3 * 1e-4 * 1.01   # the encoder at its own, smaller rate

  out = str(tmp_path / "exported")
  assert export.export(workdir, out)["restyle_iterations"] == 2
  module, variables = pretrained.load(out)
  assert module.restyle_iterations == 2
  images = setup["batch"]["image"]
  own = psp_stage.reconstruct(psp_lib.from_config(stage.architecture["psp"]),
                              psp_stage.psp_variables(params, cols, stage.frozen["psp"]), images)
  np.testing.assert_array_equal(np.asarray(psp_stage.reconstruct(module, variables, images)),
                                np.asarray(own))

  quality = psp_stage.reconstruction_quality(module, variables, data_config=config.data,
                                             num_images=4, batch_size=4)
  assert len(quality["psnr_passes"]) == 3 and quality["psnr_passes"][-1] == quality["psnr"]

  config.pretrained.init_from = out
  warm = stages.build("psp", config, str(tmp_path / "warm"), {}).init(steps.prng_key(7))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(warm.params), params)
  single = ml_collections.ConfigDict(config.to_dict())
  single.psp.restyle_iterations = 0
  with pytest.raises(ValueError, match="has ReStyle passes"):
    stages.build("psp", single, str(tmp_path / "single"), {}).init(steps.prng_key(7))


def test_coarse_input_encodes_what_difai_inverts(setup, tmp_path_factory):
  """psp_train.input="coarse": the encoder reads the coarse net's completion of the masked face
  (known pixels exact, the hole the coarse net's), the loss still compares with the face."""
  from tests.test_evaluate import trained_tiny_run  # pylint: disable=import-outside-toplevel
  config = ml_collections.ConfigDict(setup["config"].to_dict())
  config.psp_train.input = "coarse"
  with pytest.raises(ValueError, match="set pretrained.coarse_workdir"):
    stages.build("psp", config, "", {})
  config.pretrained.coarse_workdir = trained_tiny_run(tmp_path_factory)   # 32 px coarse stage
  stage = stages.build("psp", config, "", {})
  assert stage.architecture["input"] == "coarse" and "input" not in setup["stage"].architecture
  # The run records which coarse net it inverts (a resume against another one is reported).
  assert stage.provenance == {"coarse": config.pretrained.coarse_workdir,
                              "coarse_fingerprint": fingerprint(psp_stage.load_coarse(config)[1])}
  assert setup["stage"].provenance is None
  batch = next(stage.batches(0))
  assert set(batch) == {"image", "mask"}
  mask = np.asarray(batch["mask"])
  assert 0 < mask.mean() < 1
  coarse, coarse_vars = psp_stage.load_coarse(config)
  inputs = np.asarray(jax.jit(functools.partial(psp_stage.coarse_inputs, coarse))(coarse_vars,
                                                                                 batch))
  known = np.broadcast_to(mask > 0.5, inputs.shape)
  np.testing.assert_array_equal(inputs[known], np.asarray(batch["image"])[known])
  assert np.abs(inputs - np.asarray(batch["image"]))[~known].mean() > 0.05
  # The step's loss is pSp's loss of the coarse inputs' reconstructions against the faces.
  state = jax.jit(stage.init)(steps.prng_key(0))
  _, metrics = jax.jit(stage.step)(state, batch, stage.frozen, steps.prng_key(1))
  variables = psp_stage.psp_variables(state.params, state.collections, stage.frozen["psp"])
  recipe = psp_stage.Recipe(lambda_wnorm=float(config.psp_train.lambda_wnorm))
  perceptual = psp_stage.Perceptual(kind="none", distance=None)

  @jax.jit
  def loss(x):
    return psp_stage.loss_terms(
        psp_lib.from_config(stage.architecture["psp"]), variables, batch["image"],
        steps.prng_key(1), perceptual=perceptual, perceptual_variables={}, recipe=recipe,
        inputs=x)[0]
  assert float(metrics["g/loss"]) == pytest.approx(float(loss(inputs)), rel=1e-5)
  assert float(metrics["g/loss"]) != pytest.approx(float(loss(batch["image"])), rel=1e-3)
  config.psp_train.input = "mask"
  with pytest.raises(ValueError, match="psp_train.input must be 'image' or 'coarse'"):
    stages.build("psp", config, "", {})
