"""K is ``num_completions`` everywhere; the names it had before (``--num`` on inpaint,
``Inpainter(...).complete(k=)``, ``config.sefa.num_edits`` = K - 1) still work for one release,
with a warning."""

import warnings

import ml_collections
import pytest

from configs import celebahq
from difai_jax import inpaint
from difai_jax import runtime
from difai_jax.inference.inpainter import Inpainter
from difai_jax.training.stages import inpainting
from tests.test_cli import run_cli


def test_deprecated_alias_warns_and_wins():
  with pytest.warns(DeprecationWarning, match="k is deprecated; use num_completions"):
    assert runtime.deprecated_alias(None, 5, "k", 4) == 5
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    assert runtime.deprecated_alias(3, None, "k", 4) == 3
    assert runtime.deprecated_alias(None, None, "k", 4) == 4
  with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="disagree"):
    runtime.deprecated_alias(3, 5, "k", 4)


def test_config_sefa_num_edits_is_k_minus_one():
  config = celebahq.get_config()
  assert config.sefa.num_completions == 3 and config.sefa.num_edits is None
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    assert inpainting.num_completions(config.sefa) == 3
  config.sefa.num_edits = 4
  with pytest.warns(DeprecationWarning, match="config.sefa.num_edits is deprecated"):
    assert inpainting.num_completions(config.sefa) == 5
  # A config stored by an earlier release (workdir metadata) has num_edits alone.
  old = ml_collections.ConfigDict({"num_edits": 2, "top_k": 8})
  with pytest.warns(DeprecationWarning):
    assert inpainting.num_completions(old) == 3
  assert inpainting.step_config(celebahq.get_config()).sefa.num_edits == 2


def test_inpainter_k_is_num_completions():
  inpainter = object.__new__(Inpainter)     # default_edits needs no model
  inpainter.n_directions, inpainter.degree, inpainter.sampling = 8, 5.0, (8, 2.0, 5.0)
  assert inpainter.default_edits(3) == ([0, 1], [5.0, -5.0])
  assert inpainter.default_edits(num_completions=3) == ([0, 1], [5.0, -5.0])
  with pytest.warns(DeprecationWarning, match="k is deprecated"):
    assert inpainter.default_edits(k=3) == ([0, 1], [5.0, -5.0])


def test_inpaint_num_is_a_deprecated_alias(tmp_path):
  missing = str(tmp_path / "missing.png")
  with pytest.warns(DeprecationWarning, match="num is deprecated; use num_completions"), \
      pytest.raises(ValueError, match="does not exist"):
    inpaint.run("toy-difai", missing, missing, str(tmp_path / "out"), num=3, verbose=False)
  proc = run_cli("difai_jax.inpaint", "--checkpoint", "toy-difai", "--image", missing,
                 "--mask", missing, "--out", str(tmp_path / "out"), "--num", "3")
  assert "warning: --num is deprecated; use --num_completions" in proc.stderr, proc.stderr
  assert proc.returncode == 1 and proc.jax_imported is False
  proc = run_cli("difai_jax.inpaint", "--checkpoint", "toy-difai", "--image", missing,
                 "--mask", missing, "--out", str(tmp_path / "out"), "--num_completions", "3")
  assert "deprecated" not in proc.stderr and proc.returncode == 1
