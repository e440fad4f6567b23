"""Sample a StyleGAN2 generator: a grid of random faces and a SeFa strip.

    python -m difai_jax.sample --checkpoint DST_DIR --num 8 --truncation 0.7 --out grid.png

``DST_DIR`` is a directory written by ``python -m weights_conversion.stylegan2``. Without
``--checkpoint`` a randomly initialised generator of ``--random_size`` px is sampled (for smoke
tests: the faces are noise). Besides the grid, ``--sefa_out`` (default ``<out>_sefa.png``) shows
each of the first ``--num`` samples moved along SeFa direction ``--direction`` by degrees
evenly spaced in ``[-max_degree, max_degree]`` (one row per sample).
"""

from __future__ import annotations

import os

from absl import app
from absl import flags
import numpy as np

# JAX and the models are imported where they are used, so that a wrong flag or output path is
# refused in a second, before those imports.
from difai_jax import cli
from difai_jax.data import image_io

SEFA_METHODS = ("genforce", "rosinality")   # difai_jax.sefa.METHODS, without importing JAX
RANDOM_STYLE_DIM = 64

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "converted StyleGAN2 directory")
_RANDOM_SIZE = flags.DEFINE_integer("random_size", 64,
                                    "size of the random generator used without --checkpoint")
_NUM = flags.DEFINE_integer("num", 8, "number of samples", lower_bound=1)
_TRUNCATION = flags.DEFINE_float("truncation", 0.7, "truncation psi (1 = none)")
_SEED = flags.DEFINE_integer("seed", 0, "random seed")
_OUT = flags.DEFINE_string("out", "grid.png", "output PNG of the sample grid")
_SEFA_OUT = flags.DEFINE_string("sefa_out", None, "output PNG of the SeFa strip "
                                "(default: <out>_sefa.png; 'none' to skip)")
_DIRECTION = flags.DEFINE_integer("direction", 0, "SeFa direction index (0 = strongest)")
_MAX_DEGREE = flags.DEFINE_float("max_degree", 5.0, "SeFa strip spans [-max, max]")
_STEPS = flags.DEFINE_integer("steps", 11, "images per SeFa row", lower_bound=2)
_SEFA_METHOD = flags.DEFINE_enum("sefa_method", "genforce", SEFA_METHODS, "SeFa form")
cli.define_cache_flag()


def load_generator(checkpoint: str | None, random_size: int, seed: int):
  """(module, variables) from a converted directory, or a random small generator."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from difai_jax import pretrained  # pylint: disable=import-outside-toplevel
  from difai_jax.models import stylegan2  # pylint: disable=import-outside-toplevel
  if checkpoint:
    module, variables = pretrained.load(checkpoint)
    if not isinstance(module, stylegan2.Generator):
      raise app.UsageError(f"{checkpoint} holds a {type(module).__name__}, not a StyleGAN2 "
                           "generator")
    return module, variables
  n_resolutions = int(np.log2(random_size)) - 1
  module = stylegan2.Generator(size=random_size, style_dim=RANDOM_STYLE_DIM, n_mlp=2,
                               channels=(64,) * n_resolutions)
  variables = module.init(jax.random.key(seed), [jnp.zeros((1, RANDOM_STYLE_DIM))])
  return module, variables


def check_args(checkpoint: str | None, random_size: int, direction: int) -> None:
  """What can be checked without the weights: the directory's kind, sizes, the direction."""
  if checkpoint:
    from difai_jax import pretrained  # pylint: disable=import-outside-toplevel
    config = pretrained.read_config(checkpoint)
    if config["kind"] != "stylegan2":
      raise cli.CliError(f"--checkpoint {checkpoint} holds a {config['kind']!r} model, not a "
                         "StyleGAN2 generator (python -m weights_conversion.stylegan2)")
    n_directions = int(config["style_dim"])
  else:
    if random_size < 8 or random_size & (random_size - 1):
      raise cli.CliError(f"--random_size {random_size}: a power of two >= 8")
    n_directions = RANDOM_STYLE_DIM
  if not 0 <= direction < n_directions:
    raise cli.CliError(f"--direction {direction} out of range: the generator has {n_directions} "
                       f"SeFa directions (0..{n_directions - 1})")


def sample_images(module, variables, num: int, truncation: float, seed: int,
                  direction: int, max_degree: float, steps: int, method: str):
  """Returns (grid images (num, H, W, 3), SeFa strip images (num * steps, H, W, 3))."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from difai_jax import sefa  # pylint: disable=import-outside-toplevel
  key_z, key_mean = jax.random.split(jax.random.key(seed))
  z = jax.random.normal(key_z, (num, module.style_dim))
  # The truncation centre: the stored one (NVIDIA's w_avg, converted pickles) when present,
  # else the mean of 4096 mapped z.
  mean = variables.get("constants", {}).get("latent_avg")
  if mean is None:
    mean = module.apply(variables, 4096, rng=key_mean, method="mean_latent")

  @jax.jit
  def synthesize(w):
    return module.apply(variables, [w], input_is_latent=True, truncation=truncation,
                        truncation_latent=mean)

  w = module.apply(variables, z, method="mapping")
  images = synthesize(w)
  factors = sefa.factorize(variables["params"], method)
  if not 0 <= direction < factors.directions.shape[0]:
    raise app.UsageError(f"--direction must be in [0, {factors.directions.shape[0]})")
  degrees = jnp.linspace(-max_degree, max_degree, steps)
  # (num, steps, D): every sample moved by every degree
  moved = w[:, None] + degrees[None, :, None] * factors.directions[direction]
  strip = jnp.concatenate([synthesize(row) for row in moved], axis=0)
  return np.asarray(images), np.asarray(strip)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  cli.check_output_file(_OUT.value, "--out")
  sefa_out = _SEFA_OUT.value or os.path.splitext(_OUT.value)[0] + "_sefa.png"
  if sefa_out.lower() != "none":
    cli.check_output_file(sefa_out, "--sefa_out")
  check_args(_CHECKPOINT.value, _RANDOM_SIZE.value, _DIRECTION.value)
  cli.enable_compilation_cache(flags.FLAGS.compilation_cache)
  module, variables = load_generator(_CHECKPOINT.value, _RANDOM_SIZE.value, _SEED.value)
  if not _CHECKPOINT.value:
    print(f"note: no --checkpoint given: sampling a randomly initialised {module.size} px "
          "generator (convert a real one with python -m weights_conversion.stylegan2)")
  images, strip = sample_images(module, variables, _NUM.value, _TRUNCATION.value, _SEED.value,
                                _DIRECTION.value, _MAX_DEGREE.value, _STEPS.value,
                                _SEFA_METHOD.value)
  out = _OUT.value
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  image_io.save_png(out, image_io.make_grid(images, ncol=min(8, len(images))))
  print(f"wrote {out} ({len(images)} samples, truncation {_TRUNCATION.value})")
  if sefa_out.lower() != "none":
    image_io.save_png(sefa_out, image_io.make_grid(strip, ncol=_STEPS.value))
    print(f"wrote {sefa_out} (SeFa direction {_DIRECTION.value}, degrees "
          f"-{_MAX_DEGREE.value}..{_MAX_DEGREE.value}, one row per sample)")


if __name__ == "__main__":
  cli.run(main, user_errors=(ValueError, FileNotFoundError))
