"""Training: the loop (``loop``), the stages it runs (``stage``, ``stages/``), their pure steps
(``steps``), checkpoints and workdirs (``checkpoints``), the export of a trained stage
(``export``) and the TensorFlow-free event writer (``tensorboard_writer``)."""
