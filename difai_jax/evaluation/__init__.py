"""Evaluation (the paper's section 3.3): the loop (``loop``), what it measures (``options``,
with the paper's numbers), the per-batch scores (``scoring``), the metric networks
(``metrics/``) and the reports (``report``)."""
