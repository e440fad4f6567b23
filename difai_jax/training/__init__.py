"""Training: the loop (``loop``), the stages it runs (``stage``, ``stages/``), their pure steps
(``steps``), checkpoints and workdirs (``checkpoints``), the export of a trained stage
(``export``) and the TensorFlow-free event writer (``tensorboard_writer``)."""

# Before anything here imports clu: clu's metric writers then import without TensorFlow
# (tensorboard_writer's docstring says why).
from difai_jax.training import tensorboard_writer

__all__ = ["tensorboard_writer"]
