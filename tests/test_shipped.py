"""The networks shipped in difai_jax/assets/toy load by short name and give pinned outputs on
fixed inputs (values recorded when they were exported; a changed file, layer or converter shows
up here), and the shipped DiFAI inpaints a toy face keeping every known pixel."""

import os
import shutil
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import toy_coarse, toy_difai, toy_psp, toy_recognizer, toy_stylegan2
from difai_jax import pipeline
from difai_jax import pretrained
from difai_jax.data import image_io
from difai_jax.data import toy_faces
from difai_jax.nn import fingerprint
from difai_jax.training import checkpoints
from difai_jax.training import export
from difai_jax.training.stages import psp as psp_stage
from difai_jax.training.stages import recognizer as recognizer_stage
from difai_jax.training.stages import stylegan2 as stylegan2_stage
from tests import test_evaluate


def _faces(n=2):
  return image_io.uint8_to_float(np.stack([toy_faces.render_face(0, 28000 + i, 64)
                                           for i in range(n)]))


def test_toy_stylegan2_pinned():
  module, variables = pretrained.load("toy-stylegan2")
  assert (module.size, module.style_dim) == (64, 64)
  z = jnp.asarray(np.random.default_rng(0).standard_normal((2, 64)), jnp.float32)
  images = np.asarray(module.apply(variables, [z]))
  np.testing.assert_allclose(images[0, 32, 32], [0.4376416, 0.23317452, 0.05215167], atol=1e-4)
  np.testing.assert_allclose(images[1, 10, 50], [0.55485547, 0.4723214, -0.1564225], atol=1e-4)
  assert images.mean() == pytest.approx(0.053397607, abs=1e-5)


def test_toy_psp_pinned_and_reconstructs():
  module, variables = pretrained.load("toy-psp")
  faces = _faces()
  w_plus = np.asarray(jax.jit(lambda v, x: module.apply(v, x, method="encode"))(
      variables, jnp.asarray(faces)))
  assert w_plus.shape == (2, 10, 128)               # the wide toy StyleGAN2's W+
  assert module.restyle_iterations == 3             # since phase 12: three ReStyle passes
  np.testing.assert_allclose(w_plus[0, 0, :3], [0.21496947, 0.49404824, 1.31492070], atol=1e-4)
  recon = jax.jit(module.apply)(variables, jnp.asarray(faces))
  recon = np.asarray(recon[0] if isinstance(recon, tuple) else recon)
  error = float(np.abs(recon - faces).mean())
  print(f"toy pSp mean |reconstruction - face| on 2 test faces: {error:.4f}")
  assert error == pytest.approx(0.05932686, abs=1e-4)
  # A reconstruction is closer to its own face than to the other one.
  other = float(np.abs(recon - faces[::-1]).mean())
  assert error < other


DIFAI_STEP = 700       # the shipped generator's step (configs/toy_difai.py)
PSP_COARSE_PIN = [0.53668475, -0.23960812, 1.06141420]   # w_plus[0, 0, :3]
PSP_COARSE_ERROR = 0.071698


def test_toy_psp_coarse_shares_the_decoder_and_is_pinned_on_a_coarse_completion():
  """toy-psp-coarse (the pSp toy-difai pairs with) reads the coarse net's completion of a masked
  face. Its decoder is toy-psp's, weight for weight (the same W+ space: the shipped SeFa
  directions apply to both); its codes and its reconstruction error are pinned."""
  inference = checkpoints.load_difai("toy-difai")
  faces, mask = jnp.asarray(_faces()), np.ones((2, 64, 64, 1), np.float32)
  mask[:, 20:44, 16:48] = 0.0
  coarse = jax.jit(lambda v, x, m: pipeline.coarse_completion(inference.models.coarse, v, x * m,
                                                              m))(
      inference.variables["coarse"], faces, jnp.asarray(mask))
  module, variables = pretrained.load("toy-psp-coarse")
  shipped = pretrained.load("toy-psp")[1]
  same = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), variables["params"]["decoder"],
                      shipped["params"]["decoder"])
  assert all(jax.tree.leaves(same))
  assert not np.array_equal(*(jax.tree.leaves(v["params"]["encoder"])[0]
                              for v in (variables, shipped)))
  assert module.restyle_iterations == 3
  recon, w_plus = jax.jit(module.apply)(variables, coarse)      # decode(encode(x)) and its W+
  error = float(jnp.abs(recon - faces).mean())
  print(f"toy-psp-coarse: mean |reconstruction from the coarse completion - face|: {error:.6f}")
  np.testing.assert_allclose(np.asarray(w_plus)[0, 0, :3], PSP_COARSE_PIN, atol=1e-4)
  assert error == pytest.approx(PSP_COARSE_ERROR, abs=1e-4)


def test_toy_difai_records_the_shipped_psp():
  """The shipped run trained against toy-psp-coarse as shipped (its record says so, by the name
  the exported copy gave the run's local directory), so loading it checks the pSp and stays
  silent."""
  meta = checkpoints.latest_meta(os.path.join(pretrained.resolve("toy-difai"), "difai"))
  record = meta["provenance"]
  variables = pretrained.load("toy-psp-coarse")[1]
  assert record["psp"] == "toy-psp-coarse" == meta["config"]["pretrained"]["psp"]
  assert record == checkpoints.psp_provenance("toy-psp-coarse", variables)
  assert "psp_trained_with" not in meta          # it trained against these very weights
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    checkpoints.load_difai("toy-difai")


def test_toy_difai_inpaints_keeping_known_pixels():
  inference = checkpoints.load_difai("toy-difai")
  assert inference.config.image_size == 64 and inference.step == DIFAI_STEP
  faces = _faces()
  mask = np.ones((2, 64, 64, 1), np.float32)
  mask[:, 36:54, 18:46] = 0.0
  k = 3
  components = jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32), (2, k))
  degrees = jnp.broadcast_to(jnp.asarray([4.0, -4.0, 6.0]), (2, k))
  out = jax.jit(lambda v, f, m, c, d: pipeline.inpaint(inference.models, v, f, m, c, d))(
      inference.variables, jnp.asarray(faces), jnp.asarray(mask), components, degrees)
  completions = np.asarray(out["completions"])             # (K + 1, N, 64, 64, 3)
  assert completions.shape == (k + 1, 2, 64, 64, 3)
  known = np.broadcast_to(mask > 0, completions.shape[1:])
  for c in completions:
    np.testing.assert_array_equal(c[known], (faces * mask)[known])
  hole = ~known
  spread = float(np.mean([np.abs(completions[0][hole] - c[hole]).mean() for c in completions[1:]]))
  print(f"toy DiFAI: mean |completion j - completion 0| in the hole: {spread:.4f}")
  assert spread > 0.01                                      # the completions differ
  # Pins (recorded at export, configs/toy_difai.py): the coarse net's and each completion's
  # pixel (45, 32) in the hole of both faces, and each completion's hole error.
  np.testing.assert_allclose(np.asarray(out["i_coarse"])[:, 45, 32],
                             [[-0.20274, -0.46591, -0.62963], [0.58922, 0.25696, 0.08955]],
                             atol=2e-4)
  np.testing.assert_allclose(completions[:, :, 45, 32], [
      [[-0.09260, -0.48340, -0.57448], [0.65119, 0.40677, 0.12083]],
      [[0.00610, -0.85950, -0.67938], [0.79307, 0.50200, 0.23634]],
      [[-0.15719, -0.48060, -0.59028], [0.60527, 0.32139, 0.18838]],
      [[0.26137, -0.60516, -0.60198], [0.65014, 0.03804, -0.49448]]], atol=2e-4)
  hole_error = [float(np.abs(c - faces)[hole].mean()) for c in completions]
  np.testing.assert_allclose(hole_error, [0.087062, 0.114470, 0.204857, 0.277430], atol=1e-4)
  # Region statistics per image (stop 51): a face completes alike alone and beside another.
  alone = jax.jit(lambda v, f, m, c, d: pipeline.inpaint(inference.models, v, f, m, c, d))(
      inference.variables, jnp.asarray(faces[:1]), jnp.asarray(mask[:1]), components[:1],
      degrees[:1])
  np.testing.assert_allclose(np.asarray(alone["completions"])[:, 0], completions[:, 0],
                             atol=1e-5)


def _assert_same_weight_files(out: str, with_meta: bool) -> None:
  """Every file of the shipped toy-difai's stages is in ``out`` with the same bytes (the
  metadata item's files too when ``with_meta``)."""
  for stage in export.INFERENCE_STAGES:
    shipped_dir = os.path.join(pretrained.resolve("toy-difai"), stage)
    files = sorted(os.path.relpath(os.path.join(d, f), shipped_dir)
                   for d, _, names in os.walk(shipped_dir) for f in names)
    if not with_meta:
      files = [f for f in files if f"{os.sep}meta{os.sep}" not in f]
    assert any(f"{os.sep}state{os.sep}" in f for f in files), files
    for name in files:
      with open(os.path.join(shipped_dir, name), "rb") as a, \
          open(os.path.join(out, stage, name), "rb") as b:
        assert a.read() == b.read(), (stage, name)


def test_difai_run_exports_for_inference_only(tmp_path):
  out = str(tmp_path / "slim")
  written = export.export("toy-difai", out)                 # a short name, as on the CLI
  full, slim = checkpoints.load_difai("toy-difai"), checkpoints.load_difai(out)
  assert written["difai"] == slim.step == full.step and slim.config == full.config
  for part in ("coarse", "generator", "sefa"):
    same = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), full.variables[part],
                        slim.variables[part])
    assert all(jax.tree.leaves(same)), part
  # The shipped stages are inference-only copies already: exported again, the same files (a
  # re-serialised copy would add the same weights to the history in other bytes).
  _assert_same_weight_files(out, with_meta=True)
  # Only what inference reads: no optimizer state, critic or EMA copy.
  for stage in export.INFERENCE_STAGES:
    stage_dir = os.path.join(out, stage, "checkpoints")
    with checkpoints._manager(stage_dir) as manager:  # pylint: disable=protected-access
      tree = manager.item_metadata(manager.latest_step())["state"].tree
    assert sorted(tree) == ["collections", "params"], (stage, sorted(tree))
  with pytest.raises(FileExistsError, match="is not empty"):
    export.export(pretrained.resolve("toy-difai"), out)
  # --psp names another copy of the same pSp (a run moved to another machine): the copy's config
  # and record both name it, and nothing is "trained with" another pSp ...
  copy = str(tmp_path / "psp_copy")
  shutil.copytree(pretrained.resolve("toy-psp-coarse"), copy)
  moved = str(tmp_path / "moved")
  export.export(pretrained.resolve("toy-difai"), moved, psp=copy)
  assert checkpoints.load_difai(moved).config.pretrained.psp == copy
  _assert_same_weight_files(moved, with_meta=False)   # only the metadata was rewritten
  shipped_meta = checkpoints.latest_meta(os.path.join(pretrained.resolve("toy-difai"), "difai"))
  moved_meta = checkpoints.latest_meta(os.path.join(moved, "difai"))
  assert moved_meta["provenance"] == {**shipped_meta["provenance"], "psp": copy}
  assert "psp_trained_with" not in moved_meta and "psp_trained_with" not in shipped_meta
  # ... pairs the generator with another encoder on the same decoder, saying so ...
  config = pretrained.read_config(copy)
  kind = config.pop("kind")
  variables = jax.tree.map(np.asarray, pretrained.load(copy)[1])
  encoder = jax.tree.map(lambda a: a * 0.5, variables["params"]["encoder"])
  reencoded = str(tmp_path / "psp_encoder")
  pretrained.save(reencoded, kind, config,
                  {**variables, "params": {**variables["params"], "encoder": encoder}})
  paired = str(tmp_path / "paired")
  export.export(pretrained.resolve("toy-difai"), paired, psp=reencoded)
  trained_with = checkpoints.latest_meta(os.path.join(paired, "difai"))["psp_trained_with"]
  assert trained_with == "toy-psp-coarse (fingerprint {})".format(   # the generator's record
      shipped_meta["provenance"]["psp_fingerprint"])
  # A pSp its name loads no more (a directory updated in place) is known by its fingerprint:
  # pairing a copy of ``moved`` (trained with ``copy`` by its record) after ``copy`` changed
  # says what it trained with, though ``copy`` now loads other weights.
  unrecorded = str(tmp_path / "unrecorded")
  shutil.copytree(moved, unrecorded)
  meta_path = os.path.join(unrecorded, "difai")
  recorded_fingerprint = checkpoints.latest_meta(meta_path)["provenance"]["psp_fingerprint"]
  shutil.rmtree(copy)
  shutil.copytree(reencoded, copy)
  repaired = str(tmp_path / "repaired")
  export.export(unrecorded, repaired, psp=copy)
  repaired_meta = checkpoints.latest_meta(os.path.join(repaired, "difai"))
  assert repaired_meta["provenance"]["psp_fingerprint"] == fingerprint(
      pretrained.load(copy)[1]) != recorded_fingerprint
  # the copy's record names the encoder it is paired with, so it loads without a warning
  record = checkpoints.latest_meta(os.path.join(paired, "difai"))["provenance"]
  assert record["psp"] == reencoded
  assert record["psp_fingerprint"] == fingerprint(pretrained.load(reencoded)[1])
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    loaded = checkpoints.load_difai(paired).variables["psp"]["params"]["encoder"]
  assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), loaded,
                                          encoder)))
  # ... and refuses a pSp that decodes otherwise (here: another latent_avg).
  variables["constants"]["latent_avg"] = variables["constants"]["latent_avg"] + 1.0
  other = str(tmp_path / "psp_other")
  pretrained.save(other, kind, config, variables)
  with pytest.raises(ValueError, match="does not decode with the StyleGAN2 of the pSp the run "
                     r"was trained with \(toy-psp-coarse\)"):
    export.export(pretrained.resolve("toy-difai"), str(tmp_path / "wrong"), psp=other)


def _stored_config(name):
  config = pretrained.read_config(name)
  config.pop("kind")
  return config


def test_each_shipped_network_is_what_its_config_file_builds():
  """The architecture each shipped network was saved with is the one its configs/toy_*.py
  builds, with the overrides its docstring or the README lists (training lengths and learning
  rates are the run's, recorded in the checkpoint and the README table)."""
  wide = toy_stylegan2.get_config()
  assert _stored_config("toy-stylegan2-wide") == stylegan2_stage.generator_config(wide.stylegan2)
  discriminator = pretrained.read_config(os.path.join(pretrained.resolve("toy-stylegan2-wide"),
                                                      stylegan2_stage.DISCRIMINATOR_DIR))
  assert discriminator["channels"] == list(wide.stylegan2.d_channels)
  narrow = toy_stylegan2.get_config()     # README: the shipped toy-stylegan2's overrides
  narrow.stylegan2.channels = narrow.stylegan2.d_channels = (64, 64, 32, 16, 8)
  narrow.stylegan2.style_dim = 64
  assert _stored_config("toy-stylegan2") == stylegan2_stage.generator_config(narrow.stylegan2)

  psp_config = toy_psp.get_config()
  psp_config.psp.restyle_iterations = 3   # phase 12's override (configs/toy_psp.py)
  decoder = _stored_config(psp_config.pretrained.stylegan2)
  assert _stored_config("toy-psp") == psp_stage.psp_config(psp_config, decoder)
  # the same settings, trained on with psp_train.input="coarse" (configs/toy_psp.py)
  assert _stored_config("toy-psp-coarse") == psp_stage.psp_config(psp_config, decoder)

  assert _stored_config("toy-recognizer") == recognizer_stage.architecture(
      toy_recognizer.get_config())

  run = pretrained.resolve("toy-difai")
  for stage, module in (("coarse", toy_coarse), ("difai", toy_difai)):
    stored = checkpoints.latest_meta(os.path.join(run, stage))["architecture"]
    assert stored == checkpoints.architecture(module.get_config(), stage), stage


def test_export_pairs_a_run_with_another_coarse_net(tmp_path_factory, tmp_path):
  run = test_evaluate.trained_tiny_run(tmp_path_factory)
  with pytest.raises(ValueError, match="its coarse net completes 32 px images, the run's "
                     "generator 64 px"):
    export.export(pretrained.resolve("toy-difai"), str(tmp_path / "mixed"), coarse=run)
  with pytest.raises(ValueError, match="--psp and --coarse apply to DiFAI runs only"):
    export.export(pretrained.resolve("toy-stylegan2"), str(tmp_path / "sg"), coarse=run)
  # The tiny run completed by its own coarse stage named as --coarse: the same inference.
  export.export(run, str(tmp_path / "same"), coarse=run)
  a, b = checkpoints.load_difai(run), checkpoints.load_difai(str(tmp_path / "same"))
  assert a.models.coarse == b.models.coarse
  same = jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a.variables["coarse"],
                      b.variables["coarse"])
  assert all(jax.tree.leaves(same))


def test_a_difai_stage_runs_with_its_own_coarse_stage_else_the_configured_one(tmp_path):
  shipped = pretrained.resolve("toy-difai")
  difai_dir = tmp_path / "run" / "difai"
  difai_dir.mkdir(parents=True)
  config = checkpoints.load_difai("toy-difai").config
  config.pretrained.coarse_workdir = shipped            # a DiFAI-only run: the config's
  assert checkpoints.coarse_stage_dir(str(difai_dir), config) == os.path.join(shipped, "coarse")
  config.pretrained.coarse_workdir = "toy-difai"        # a short name means its directory
  assert checkpoints.coarse_stage_dir(str(difai_dir), config) == os.path.join(shipped, "coarse")
  shutil.copytree(os.path.join(shipped, "coarse"), tmp_path / "run" / "coarse")
  assert checkpoints.coarse_stage_dir(str(difai_dir), config) == str(tmp_path / "run" / "coarse")


def test_a_difai_stage_trains_against_the_coarse_net_of_a_whole_run(tmp_path):
  """``pretrained.coarse_workdir`` may name a run holding a coarse stage (toy-difai, runs/demo),
  not only the stage's own directory: training a new generator on the shipped coarse net."""
  from difai_jax.training.stages import inpainting
  frozen_of = inpainting._difai_frozen  # pylint: disable=protected-access
  config = checkpoints.load_difai("toy-difai").config
  coarse, _ = checkpoints.load_stage_params(os.path.join(pretrained.resolve("toy-difai"),
                                                         "coarse"))
  for name in ("toy-difai", pretrained.resolve("toy-difai")):
    config.pretrained.coarse_workdir = name
    frozen, module, _, _ = frozen_of(config, str(tmp_path / "difai"), {})
    same = jax.tree.map(np.array_equal, frozen["coarse"]["params"], coarse)
    assert all(jax.tree.leaves(same))
    assert module.floor_stride == 4          # the checkpoint's architecture, not config.coarse's
  config.coarse.floor_stride = 16            # a run configured otherwise trains against it too
  assert frozen_of(config, str(tmp_path / "difai"), {})[1].floor_stride == 4
  config.pretrained.coarse_workdir = str(tmp_path)
  with pytest.raises(FileNotFoundError, match="no finished 'coarse' checkpoint"):
    frozen_of(config, str(tmp_path / "difai"), {})
