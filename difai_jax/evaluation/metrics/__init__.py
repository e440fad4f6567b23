"""Image-quality and diversity metrics (paper Sec. 4: SSIM, MS-SSIM, LPIPS, FID, diversity).

One module per metric; import the one you need (``from difai_jax.evaluation.metrics import ssim``),
so that
e.g. SSIM never pulls in the Inception network of FID.
"""
