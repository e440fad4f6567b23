"""P-IDS / U-IDS: the paired and unpaired Inception discriminative scores (Zhao et al., ICLR 2021,
"Large Scale Image Completion via Co-Modulated Generative Adversarial Networks").

As co-mod-gan's ``metrics/inception_discriminative_score.py`` and MAT's (Li et al., CVPR 2022)
compute them: a linear SVM (scikit-learn's ``LinearSVC(dual=False)``, its defaults otherwise) is
fitted to tell real features (label 1) from fake ones (label 0), on all of them;

* **U-IDS** = its misclassification rate on those same features (1 - training accuracy): 0.5 when
  fakes are indistinguishable by a linear probe, 0 when they are fully separable;
* **P-IDS** = the share of pairs (real i, fake i: the ground truth and the completion of the same
  masked image) whose fake scores higher than its real on the SVM's decision function; up to
  ~0.5 for a perfect method.

The published numbers use Inception pool3 features (the FID network); on the toy domain the
toy recognizer's features stand in (labelled as such by the evaluation report). Pairs need one
fake per real, in order.
"""

from __future__ import annotations

import numpy as np
import sklearn.svm


def discriminative_scores(real_features, fake_features) -> dict[str, float]:
  """``{"p_ids", "u_ids"}`` of (N, D) real and (N, D) fake features, fake i paired with real i.

  Raises:
    ValueError: the two sets differ in shape or have fewer than 2 rows.
  """
  real = np.asarray(real_features, np.float32)
  fake = np.asarray(fake_features, np.float32)
  if real.ndim != 2 or real.shape != fake.shape or real.shape[0] < 2:
    raise ValueError("P-IDS / U-IDS need paired (N >= 2, D) real and fake features of one shape; "
                     f"got {real.shape} and {fake.shape}")
  inputs = np.concatenate([real, fake])
  labels = np.concatenate([np.ones(len(real), np.int64), np.zeros(len(fake), np.int64)])
  svm = sklearn.svm.LinearSVC(dual=False)
  svm.fit(inputs, labels)
  u_ids = 1.0 - svm.score(inputs, labels)
  p_ids = np.mean(svm.decision_function(fake) > svm.decision_function(real))
  return {"p_ids": float(p_ids), "u_ids": float(u_ids)}
