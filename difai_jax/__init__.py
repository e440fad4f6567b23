"""difai-jax: DiFAI (Yoon et al.) diverse facial inpainting in JAX/Flax.

Conventions used across the package (see README.md):
  * images are float32 in [-1, 1], NHWC;
  * masks are (N, H, W, 1) with 1 on known pixels and 0 in the hole (paper eq. 1);
  * models are pure flax.linen modules; variables are plain pytrees.
"""

__version__ = "0.1.0"
