"""Parameter counts of DiFAI's trainable networks for a config.

    python -m difai_jax.summary --config configs/celebahq.py
    python -m difai_jax.summary --config configs/model_defaults.py

The config file's ``get_config()`` must return a ConfigDict with ``image_size`` and the sections
``coarse``, ``generator`` and ``critic`` (see configs/model_defaults.py). Shapes come from
``jax.eval_shape`` of each module's ``init``: nothing is allocated or computed, so the full 256 px
models summarise in seconds on a CPU.
"""

from __future__ import annotations

import functools
from typing import Any

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags

from difai_jax import cli
from difai_jax.models import coarse
from difai_jax.models import critic
from difai_jax.models import sparn
from difai_jax.nn import parameter_count


def variable_shapes(config: Any) -> dict[str, Any]:
  """Abstract variables (ShapeDtypeStructs) of the three models at config.image_size, batch 1."""
  size = int(config.image_size)
  image = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  mask = jax.ShapeDtypeStruct((1, size, size, 1), jnp.float32)
  rng = jax.random.key(0)
  models = {
      "coarse": (coarse.from_config(config.coarse), (image, mask), {}),
      "generator": (sparn.from_config(config.generator), (image, image, mask), {"train": False}),
      "critic": (critic.from_config(config.critic), (image,), {"train": False}),
  }
  return {name: jax.eval_shape(functools.partial(module.init, **kwargs), rng, *args)
          for name, (module, args, kwargs) in models.items()}


def parameter_table(config: Any) -> list[tuple[str, int, dict[str, int]]]:
  """Rows (model, number of params, {other collection: number of entries})."""
  rows = []
  for name, variables in variable_shapes(config).items():
    others = {k: parameter_count(v) for k, v in variables.items() if k != "params"}
    rows.append((name, parameter_count(variables.get("params", {})), others))
  return rows


def format_table(rows: list[tuple[str, int, dict[str, int]]], image_size: int) -> str:
  lines = [f"DiFAI trainable networks at {image_size} px",
           f"{'model':<10} {'params':>14} {'params (M)':>11}  other state"]
  for name, n, others in rows:
    other = ", ".join(f"{k}: {v:,}" for k, v in sorted(others.items())) or "-"
    lines.append(f"{name:<10} {n:>14,} {n / 1e6:>11.3f}  {other}")
  total = sum(n for _, n, _ in rows)
  lines.append(f"{'total':<10} {total:>14,} {total / 1e6:>11.3f}")
  return "\n".join(lines)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = flags.FLAGS.config
  if config is None:
    raise app.UsageError("--config is required, e.g. --config configs/model_defaults.py")
  for field in ("image_size", "coarse", "generator", "critic"):
    if field not in config:
      raise app.UsageError(f"config has no field {field!r}; it needs image_size, coarse, "
                           "generator and critic (see configs/model_defaults.py)")
  print(format_table(parameter_table(config), int(config.image_size)))


def define_flags() -> None:
  """Defines --config. Called only when run as a program, so that importing this module (tests,
  other entry points with their own --config) defines no absl flag."""
  config_flags.DEFINE_config_file(
      "config", None, "Config file whose get_config() has image_size, coarse, generator, critic.",
      lock_config=True)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
