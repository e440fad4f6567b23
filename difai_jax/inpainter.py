"""``difai_jax.inpainter.Inpainter``, where earlier releases had it: the class lives in
:mod:`difai_jax.inference.inpainter`."""

from difai_jax.inference.inpainter import Inpainter

__all__ = ["Inpainter"]
