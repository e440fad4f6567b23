"""The StyleGAN2 stage: rosinality's recipe as one pure step, through the shared training loop.

A tiny generator / discriminator (32 px, widths 16-32) on toy faces: the discriminator's loss
falls on a fixed batch, the lazy regularisers run on their steps only, DiffAugment keeps shapes
and gradients, a run resumes bit-identically, and the exported generator loads and reproduces
the EMA weights' images.
"""

import functools
import json
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from difai_jax.training import checkpoints
from difai_jax.training import export
from difai_jax import pretrained
from difai_jax.training import steps
from difai_jax.training import loop as train
from difai_jax.training.stages import stylegan2 as stage_lib
from configs import toy_stylegan2


def _tiny_config(num_steps=4):
  config = toy_stylegan2.get_config()
  config.image_size = 32
  c = config.stylegan2
  c.size, c.style_dim, c.n_mlp = 32, 16, 2
  c.channels = (32, 32, 16, 16)
  c.d_channels = (32, 32, 16, 16)
  # Both lazy regularisers fire every other step: two compiled phases (both, none) instead of
  # three for distinct intervals. That the two intervals are independent is checked on a
  # recipe of its own (step_phase is plain Python).
  c.d_reg_every, c.g_reg_every = 2, 2
  config.train.batch_size = 4
  config.train.num_steps = ml_collections.ConfigDict({"stylegan2": num_steps})
  config.train.log_every = 1
  config.train.sample_every = 0
  config.train.checkpoint_every = 2
  return config


@pytest.fixture(scope="module")
def built():
  """(config, stage, batch, state, step_for): ``step_for(phase)`` is the jitted step of one
  phase, compiled once for the module (what the training loop runs)."""
  config = _tiny_config()
  stage = stage_lib.build(config, "", {})
  batch = next(stage.batches(0))
  state = jax.jit(stage.init)(steps.prng_key(0))
  step_for = functools.cache(lambda phase: jax.jit(functools.partial(stage.step, phase=phase)))
  return config, stage, batch, state, step_for


def test_discriminator_loss_falls_on_a_fixed_batch_and_regularisers_run_lazily(built):
  _, stage, batch, state, step_for = built
  history = []
  for i in range(12):
    step = step_for(stage.step_phase(i))
    state, metrics = step(state, batch, {}, jax.random.fold_in(steps.prng_key(1), i))
    history.append(jax.device_get(metrics))
  d_loss = [float(h["d/loss"]) for h in history]
  print("stylegan2 d/loss first/last:", d_loss[:3], d_loss[-3:])
  assert np.mean(d_loss[-3:]) < np.mean(d_loss[:3])
  r1 = [float(h["d/r1_weighted"]) for h in history]
  path = [float(h["g/path_length"]) for h in history]
  assert all(v > 0 for v in r1[::2]) and all(v == 0 for v in r1[1::2])
  assert all(v > 0 for v in path[::2]) and all(v == 0 for v in path[1::2])
  assert float(history[-1]["g/mean_path_length"]) > 0
  assert int(state.step) == 12
  # The EMA generator moved, by less than the trained one.
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.g_params))


def test_lazy_adam_and_ema_follow_rosinality():
  # c = 16 / 17 for D: lr 0.002 * c, betas (0, 0.99 ** c).
  tx = stage_lib.lazy_adam(0.002, 16)
  params = {"w": jnp.ones(3)}
  opt = tx.init(params)
  updates, _ = tx.update({"w": jnp.full(3, 0.5)}, opt, params)
  # First Adam step with b1 = 0: update = -lr * g / (|g| + eps) = -lr * c.
  np.testing.assert_allclose(np.asarray(updates["w"]), -0.002 * 16 / 17, rtol=1e-5)
  assert stage_lib.ema_decay(32, 10.0) == pytest.approx(0.5 ** (32 / 10_000))


def test_diff_augment_keeps_shapes_and_gradients():
  x = jax.random.uniform(jax.random.key(0), (4, 16, 16, 3), minval=-1, maxval=1)
  policy = ("color", "translation", "cutout")
  y = stage_lib.diff_augment(x, jax.random.key(1), policy)
  assert y.shape == x.shape and not np.allclose(np.asarray(x), np.asarray(y))
  grad = jax.grad(lambda v: stage_lib.diff_augment(v, jax.random.key(1), policy).sum())(x)
  assert np.isfinite(np.asarray(grad)).all() and float(jnp.abs(grad).sum()) > 0
  # translation alone only moves pixels: every output value comes from the input or is 0.
  t = np.asarray(stage_lib.diff_augment(x, jax.random.key(2), ("translation",)))
  assert np.isin(np.round(t, 6), np.append(np.round(np.asarray(x), 6), 0.0)).all()


def test_static_phases_compute_what_the_run_time_branch_computes(built):
  # The loop compiles one step per phase; with no phase the step decides inside (lax.cond).
  # Both run the same update / skip functions through stylegan2._lazy: check that helper's two
  # modes numerically, and that the step's program holds the two conds (R1, path length) only
  # without a phase. (Compiling the conditional step costs more than all of this module.)
  _, stage, batch, state, _ = built
  update = lambda args: (args[0] * 2.0, args[1] + 1.0)
  skip = lambda args: args
  args = (jnp.arange(3.0), jnp.ones(()))
  for flag in (True, False):
    static = stage_lib._lazy(flag, None, update, skip, args)
    traced = jax.jit(lambda f: stage_lib._lazy(None, f, update, skip, args))(jnp.asarray(flag))
    for x, y in zip(static, traced):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  for s in range(4):
    assert stage.step_phase(s) == stage_lib.Phase(r1=s % 2 == 0, path=s % 2 == 0)
    recipe = stage_lib.Recipe(batch_size=4, d_reg_every=4, g_reg_every=2)
    assert stage_lib.step_phase(recipe, s) == stage_lib.Phase(r1=s % 4 == 0, path=s % 2 == 0)

  def conds(phase):
    step = functools.partial(stage.step, phase=phase)
    jaxpr = jax.make_jaxpr(step)(state, batch, {}, jax.random.key(0))
    return str(jaxpr).count(" cond[")
  assert conds(None) == 2
  assert conds(stage.step_phase(0)) == 0


def _check_export(run, out):
  """The export of ``run`` at ``out``: its generator reproduces the EMA weights' images, D and
  the training record lie beside it, and a second export there is refused."""
  written = export.export(str(run), str(out))
  assert written["kind"] == "stylegan2" and written["size"] == 32
  module, variables = pretrained.load(str(out))
  ema, collections = checkpoints.load_stage_params(str(run))
  z = jax.random.normal(jax.random.key(3), (2, 16))
  np.testing.assert_array_equal(
      np.asarray(module.apply(variables, [z])),
      np.asarray(module.apply({"params": ema, **collections}, [z])))
  with pytest.raises(FileExistsError):
    export.export(str(run), str(out))
  state = checkpoints.load_stage_state(str(run))
  _, d_vars = pretrained.load(str(out / stage_lib.DISCRIMINATOR_DIR))
  for x, y in zip(jax.tree.leaves(d_vars["params"]), jax.tree.leaves(state["d_params"])):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  return state, json.loads((out / stage_lib.TRAINING_FILE).read_text())


def test_a_run_exports_continues_from_its_export_and_resumes_exactly(tmp_path):
  # One test, four short runs (a module fixture would be trained on both xdist workers).
  train.run(_tiny_config(4), str(tmp_path / "first"))
  out = tmp_path / "exported"
  state, info = _check_export(tmp_path / "first", out)
  assert info["step"] == 4 and info["mean_path_length"] > 0
  assert info["kimg_total"] == info["kimg"] == pytest.approx(4 * 4 / 1000)
  assert "continued_from" not in info
  # A new run from the export: G and its EMA from the exported (EMA) generator, D and the
  # path-length mean from beside it, fresh optimizers.
  config = _tiny_config(6)
  config.pretrained.init_from = str(out)
  warm = jax.jit(stage_lib.build(config, "", {}).init)(steps.prng_key(0))
  for x, y, z in zip(jax.tree.leaves(warm.g_params), jax.tree.leaves(warm.ema_params),
                     jax.tree.leaves(state["ema_params"])):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(z))
    np.testing.assert_array_equal(np.asarray(y), np.asarray(z))
  for x, y in zip(jax.tree.leaves(warm.d_params), jax.tree.leaves(state["d_params"])):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert float(warm.aux["mean_path_length"]) == pytest.approx(info["mean_path_length"])
  train.run(config, str(tmp_path / "straight"))
  # The same continuation stopped at step 3 and resumed to 6 ends bit-identical to it (both
  # lazy regularisers fire on even steps, so each part runs both phases). Between its two
  # parts the source's record is replaced (a later export over the asset it was copied from):
  # the resume keeps the record read at the first start.
  config.train.num_steps.stylegan2 = 3
  train.run(config, str(tmp_path / "resumed"))
  (out / stage_lib.TRAINING_FILE).write_text(json.dumps({**info, "kimg_total": 99.0}))
  config.train.num_steps.stylegan2 = 6
  train.run(config, str(tmp_path / "resumed"))
  a = checkpoints.load_stage_params(str(tmp_path / "straight"), use_ema=False)[0]
  b = checkpoints.load_stage_params(str(tmp_path / "resumed"), use_ema=False)[0]
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  # Its export counts the images of both runs.
  _, info2 = _check_export(tmp_path / "resumed", tmp_path / "exported2")
  assert info2["step"] == 6 and info2["kimg"] == pytest.approx(6 * 4 / 1000)
  assert info2["kimg_total"] == pytest.approx((6 + 4) * 4 / 1000)
  assert info2["continued_from"] == {"init_from": str(out), "kimg_total": info["kimg_total"]}
  assert checkpoints.latest_meta(str(tmp_path / "resumed"))["provenance"] == info2[
      "continued_from"]
  # Another architecture is refused by name, while tracing (the eager init took 18 s).
  config.stylegan2.d_channels = (32, 32, 16, 8)
  with pytest.raises(ValueError, match="discriminator does not have"):
    jax.eval_shape(stage_lib.build(config, "", {}).init, steps.prng_key(0))


def test_feature_critic_trains_beside_d_and_reaches_g_only_through_its_weight():
  # stylegan2.feature_d: an MLP on the frozen toy recognizer's embedding. One step (no lazy
  # regulariser) moves its head; with weight 0 the generator's update is the plain recipe's.
  phase = stage_lib.Phase(r1=False, path=False)
  outputs = {}
  for name, feature_d, weight in (("plain", "", 1.0), ("off", "toy-recognizer", 0.0),
                                  ("on", "toy-recognizer", 1.0)):
    config = _tiny_config()
    config.stylegan2.feature_d, config.stylegan2.feature_d_weight = feature_d, weight
    stage = stage_lib.build(config, "", {})
    state = jax.jit(stage.init)(steps.prng_key(0))
    batch = next(stage.batches(0))
    new, metrics = jax.jit(functools.partial(stage.step, phase=phase))(
        state, batch, stage.frozen, steps.prng_key(1))
    outputs[name] = (state, new, jax.device_get(metrics), stage)
  state, new, metrics, stage = outputs["on"]
  assert "toy-recognizer" in stage.describe(state)
  assert set(state.aux) == {"mean_path_length", "feature_d", "feature_d_opt"}
  moved = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(state.aux["feature_d"]),
                                                  jax.tree.leaves(new.aux["feature_d"]))]
  assert all(moved)
  assert all(np.isfinite(float(metrics[k])) and float(metrics[k]) > 0
             for k in ("fd/loss", "g/feature_loss"))
  leaves = lambda name: jax.tree.leaves(outputs[name][1].g_params)
  for a, b in zip(leaves("plain"), leaves("off")):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
  assert any(not np.allclose(a, b, rtol=1e-4, atol=1e-6)
             for a, b in zip(leaves("plain"), leaves("on")))


def test_feature_critic_refuses_the_judge_other_networks_and_bad_attribute_settings():
  config = _tiny_config()
  config.stylegan2.feature_d = "toy-judge"
  with pytest.raises(ValueError, match="judge"):
    stage_lib.build(config, "", {})
  config.stylegan2.feature_d = "toy-stylegan2-wide"
  with pytest.raises(ValueError, match="toy_recognizer"):
    stage_lib.build(config, "", {})
  config.stylegan2.feature_d = "toy-recognizer"
  for temperature, decay in ((-0.5, 0.98), (0.0, 1.0), (1.0, -0.1)):
    config.stylegan2.feature_d_attribute_temperature = temperature
    config.stylegan2.feature_d_attribute_decay = decay
    with pytest.raises(ValueError, match="temperature must be >= 0"):
      stage_lib.build(config, "", {})


def test_attribute_gap_and_its_surrogate():
  target = {"beard": jnp.asarray([1.0, 0.0]), "hair": jnp.asarray([0.2, 0.3, 0.5])}
  # Half the batch sure of each beard class, hair exactly as the target: beard's mean is
  # (0.5, 0.5), gap 0.25 + 0.25.
  logits = {"beard": jnp.asarray([[50.0, 0.0], [0.0, 50.0]]),
            "hair": jnp.log(jnp.asarray([[0.2, 0.3, 0.5]] * 2))}
  means = stage_lib.mean_softmax(logits)
  np.testing.assert_allclose(means["beard"], [0.5, 0.5], atol=1e-6)
  assert float(stage_lib.attribute_gap(means, target)) == pytest.approx(0.5, abs=1e-6)
  assert float(stage_lib.attribute_gap(stage_lib.mean_softmax(
      {"beard": jnp.asarray([[50.0, 0.0]]), "hair": logits["hair"][:1]}), target)) < 1e-9
  # The surrogate's gradient in the batch means is the squared gap's at the running means.
  running = {"beard": jnp.asarray([0.7, 0.3]), "hair": jnp.asarray([0.3, 0.3, 0.4])}
  surrogate = jax.grad(lambda m: stage_lib.attribute_surrogate(m, running, target))(means)
  exact = jax.grad(lambda m: stage_lib.attribute_gap(m, target))(running)
  for name in target:
    np.testing.assert_allclose(surrogate[name], exact[name], atol=1e-6)


def test_balanced_class_weights_make_the_gap_a_chi_square_over_the_class_count():
  target = {"hair": jnp.asarray([0.05, 0.45, 0.5]), "flat": jnp.asarray([0.25] * 4)}
  weights = stage_lib.balanced_class_weights(target)
  np.testing.assert_allclose(np.asarray(weights["flat"]), 1.0, rtol=1e-6)   # uniform: all 1
  means = {"hair": jnp.asarray([0.03, 0.47, 0.5]), "flat": jnp.asarray([0.3, 0.2, 0.25, 0.25])}
  chi2 = lambda m, p: float(np.sum((np.asarray(m) - np.asarray(p)) ** 2 / np.asarray(p)))
  expected = chi2(means["hair"], target["hair"]) / 3 + chi2(means["flat"], target["flat"]) / 4
  gap = stage_lib.attribute_gap(means, target, weights)
  assert float(gap) == pytest.approx(expected, rel=1e-5)
  # The rare class's 2-point shortfall now pulls 9x harder than the common class's 2 points.
  grad = jax.grad(lambda m: stage_lib.attribute_surrogate(m, means, target, weights))(means)
  assert float(grad["hair"][0] / grad["hair"][1]) == pytest.approx(-9.0, rel=1e-5)
  plain = jax.grad(lambda m: stage_lib.attribute_surrogate(m, means, target))(means)
  assert float(plain["hair"][0] / plain["hair"][1]) == pytest.approx(-1.0, rel=1e-5)
  # A class the faces never show still gets a finite weight.
  assert np.isfinite(np.asarray(stage_lib.balanced_class_weights(
      {"a": jnp.asarray([0.0, 1.0])})["a"])).all()


def test_balanced_option_gives_the_step_its_class_weights():
  for balanced in (False, True):
    config = _tiny_config()
    c = config.stylegan2
    c.feature_d, c.feature_d_attributes, c.feature_d_attribute_faces = "toy-recognizer", 1.0, 8
    c.feature_d_attribute_balanced = balanced
    frozen = stage_lib.build(config, "", {}).frozen
    assert ("attribute_class_weights" in frozen) == balanced
  expected = stage_lib.balanced_class_weights(frozen["attribute_targets"])
  for name, w in frozen["attribute_class_weights"].items():
    np.testing.assert_allclose(np.asarray(w), np.asarray(expected[name]), rtol=1e-6)
  # The step's surrogate reads them: the same batch, another gradient.
  critic = types.SimpleNamespace(recognize=lambda frozen, x: {"embedding": x, "logits": x},
                                 score=lambda params, e: jnp.zeros(len(e)))
  targets = {"a": jnp.asarray([0.1, 0.9])}
  running = {"a": jnp.asarray([0.05, 0.95])}
  recipe = stage_lib.Recipe(batch_size=2, attribute_weight=1.0)
  grads = [jax.grad(lambda x: stage_lib._recognizer_terms(
      {"a": x}, critic, f, {}, running, recipe)[1])(jnp.zeros((2, 2)))
      for f in ({"attribute_targets": targets},
                {"attribute_targets": targets,
                 "attribute_class_weights": stage_lib.balanced_class_weights(targets)})]
  assert not np.allclose(np.asarray(grads[0]), np.asarray(grads[1]))


def test_attribute_frequencies_average_the_recognizers_softmax_over_train_faces():
  config = _tiny_config()
  module, variables = pretrained.load("toy-recognizer")
  freqs = stage_lib.attribute_frequencies(module, variables, config.data, 32, 10, batch_size=4)
  from difai_jax.data import image_io, sources
  source = sources.make_source(config.data, "train", 32, verbose=False)
  images = np.stack([image_io.uint8_to_float(source[i]) for i in range(10)])
  logits = module.apply(variables, jnp.asarray(images))["logits"]
  assert set(freqs) == set(logits)
  for name, value in freqs.items():
    expected = np.asarray(jax.nn.softmax(logits[name], axis=-1)).mean(axis=0)
    np.testing.assert_allclose(np.asarray(value), expected, rtol=1e-5, atol=1e-6)
    assert float(np.sum(value)) == pytest.approx(1.0, abs=1e-5)
  # A temperature divides the logits: as it falls the means go to the argmax frequencies.
  sharp = stage_lib.attribute_frequencies(module, variables, config.data, 32, 10, batch_size=4,
                                          temperature=0.5)
  labels = lambda name: np.bincount(np.argmax(logits[name], -1), minlength=logits[name].shape[1])
  for name, value in sharp.items():
    np.testing.assert_allclose(np.asarray(value), np.asarray(
        jax.nn.softmax(logits[name] / 0.5, axis=-1)).mean(axis=0), rtol=1e-5, atol=1e-6)
    cold = stage_lib.mean_softmax({name: logits[name]}, temperature=1e-3)[name]
    np.testing.assert_allclose(np.asarray(cold), labels(name) / 10, atol=1e-4)
  # Temperature 0 counts the predicted labels exactly.
  counted = stage_lib.attribute_frequencies(module, variables, config.data, 32, 10, batch_size=4,
                                            temperature=0.0)
  for name, value in counted.items():
    np.testing.assert_allclose(np.asarray(value), labels(name) / 10, rtol=1e-6)


def test_label_mode_reads_the_gap_from_labels_and_descends_it_along_the_softmax():
  # Temperature 0: the running means move by the batch's label frequencies, while G's gradient
  # is the surrogate's through the mean softmax at temperature 1.
  critic = types.SimpleNamespace(recognize=lambda frozen, x: {"embedding": x, "logits": {"a": x}},
                                 score=lambda params, e: jnp.zeros(len(e)))
  frozen = {"attribute_targets": {"a": jnp.asarray([0.2, 0.5, 0.3])}}
  running = {"a": jnp.asarray([0.6, 0.2, 0.2])}
  logits = jnp.asarray([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.5, 0.0, 0.4], [1.0, 0.0, 0.0]])
  recipe = stage_lib.Recipe(batch_size=4, attribute_weight=1.0, attribute_temperature=0.0)
  terms = lambda x: stage_lib._recognizer_terms(x, critic, frozen, {}, running, recipe)
  _, _, observed = terms(logits)
  np.testing.assert_array_equal(np.asarray(observed["a"]), [0.75, 0.25, 0.0])
  grad = jax.grad(lambda x: terms(x)[1])(logits)
  soft = jax.grad(lambda x: stage_lib.attribute_surrogate(
      stage_lib.mean_softmax({"a": x}), running, frozen["attribute_targets"]))(logits)
  np.testing.assert_allclose(np.asarray(grad), np.asarray(soft), rtol=1e-6)
  assert float(jnp.abs(grad).sum()) > 0


def test_attribute_term_on_ema_takes_its_gradient_at_the_ema_generator():
  # feature_d_attribute_on_ema: G's update reads the EMA generator's weights (the term's
  # gradient is taken there); without it G's update never reads them.
  phase = stage_lib.Phase(r1=False, path=False)
  for on_ema in (False, True):
    config = _tiny_config()
    c = config.stylegan2
    c.feature_d, c.feature_d_weight = "toy-recognizer", 0.0
    c.feature_d_attributes, c.feature_d_attribute_faces = 1.0, 8
    c.feature_d_attribute_temperature, c.feature_d_attribute_on_ema = 0.0, on_ema
    stage = stage_lib.build(config, "", {})
    state = jax.jit(stage.init)(steps.prng_key(0))
    uniform = jax.tree.map(lambda t: jnp.full_like(t, 1.0 / t.shape[-1]),
                           state.aux["attribute_running"])         # a gap from the first step
    state = state.replace(aux={**state.aux, "attribute_running": uniform})
    batch, step = next(stage.batches(0)), jax.jit(functools.partial(stage.step, phase=phase))
    after = []
    for scale in (0.9, 1.1):                 # two EMA generators, the same G
      ema = jax.tree.map(lambda t, s=scale: t * s, state.ema_params)
      new, metrics = step(state.replace(ema_params=ema), batch, stage.frozen, steps.prng_key(1))
      assert float(metrics["g/attribute_gap"]) > 0
      after.append(jax.tree.leaves(new.g_params))
    differ = any(not np.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(*after))
    assert differ == on_ema, on_ema


def test_attribute_term_reaches_g_only_through_its_weight():
  phase = stage_lib.Phase(r1=False, path=False)
  g_params, metrics = {}, {}
  for name, weight in (("off", 0.0), ("on", 1.0)):
    config = _tiny_config()
    c = config.stylegan2
    c.feature_d, c.feature_d_weight = "toy-recognizer", 0.0
    c.feature_d_attributes, c.feature_d_attribute_faces = weight, 8
    # Labels (temperature 0): "on" is then the program the on-EMA test compiles without
    # on_ema, and "off" the feature-critic test's: the run's compilation cache serves both.
    c.feature_d_attribute_temperature = 0.0
    stage = stage_lib.build(config, "", {})
    state = jax.jit(stage.init)(steps.prng_key(0))
    step, batches = jax.jit(functools.partial(stage.step, phase=phase)), stage.batches(0)
    # Step 1 starts from running means equal to the targets (no gradient yet); step 2 has one.
    for i in range(2):
      state, out = step(state, next(batches), stage.frozen, steps.prng_key(1 + i))
    g_params[name], metrics[name] = jax.tree.leaves(state.g_params), jax.device_get(out)
  assert "g/attribute_gap" not in metrics["off"]
  gap = float(metrics["on"]["g/attribute_gap"])
  assert np.isfinite(gap) and gap > 0       # the samples moved the running means
  assert any(not np.allclose(a, b, rtol=1e-4, atol=1e-6)
             for a, b in zip(g_params["off"], g_params["on"]))
  config = _tiny_config()
  config.stylegan2.feature_d_attributes = 1.0
  with pytest.raises(ValueError, match="needs stylegan2.feature_d"):
    stage_lib.build(config, "", {})
