"""Inference on your own images: ``Inpainter`` (``inpainter``: complete, edit, walk on arrays),
the inputs and outputs at any size (``inputs``, ``outputs``), the trained run (``model``) and
photo alignment (``face/``)."""
