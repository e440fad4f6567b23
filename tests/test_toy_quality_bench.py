"""benchmarks/toy_quality.py's pSp record: the refined-codes ceiling on the shipped toy pSp."""

import pytest

from benchmarks import toy_quality
from difai_jax import pretrained
from difai_jax.training.stages import psp as psp_stage


def test_refined_codes_reconstruct_the_test_faces_better_than_the_encoder():
  module, variables = pretrained.load("toy-psp")
  record = toy_quality.refined_reconstruction_quality(module, variables, steps=8, num=4)
  # The encoder's row is the pSp stage's own measure of the same faces.
  plain = psp_stage.reconstruction_quality(module, variables, num_images=4)
  assert record["psnr_encoder"] == pytest.approx(plain["psnr"], abs=1e-3)
  # Eight Adam steps on W+ already lower the error of the shipped encoder's codes.
  assert record["psnr_refined"] > record["psnr_encoder"] + 0.5, record
