"""difai-jax: DiFAI (Diverse Facial Inpainting using StyleGAN Inversion) in JAX/Flax."""

from setuptools import find_packages, setup

# Lower bounds are the versions this code was tested with (Python 3.11, CPU).
INSTALL_REQUIRES = [
    "jax>=0.10.2",
    "flax>=0.12.8",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12.8",
    "ml-collections>=1.1.0",
    "clu>=0.0.12",
    "grain>=0.2.18",
    "numpy>=2.0",
    "pillow>=11.0",
    "absl-py>=2.0",
    "scipy>=1.11",          # matrix square root of the Frechet (FID) distance
    "scikit-learn>=1.3",    # P-IDS / U-IDS' linear SVM (evaluation)
]

EXTRAS = {
    # Reading PyTorch .pt/.pth checkpoints (weights_conversion/).
    "convert": ["torch>=2.13.0"],
    # Training needs nothing beyond the base install: difai_jax.tensorboard_writer writes
    # TensorBoard event files without TensorFlow (clu's own writer would need ~1.3 GB of it).
    # Kept so that `pip install ".[train]"` keeps working; `pip install tensorboard` to view.
    "train": [],
    # Optional CelebA-HQ source through tensorflow-datasets.
    "tfds": ["tensorflow-datasets>=4.9.10"],
    # The browser demo (python -m difai_jax.app). gradio 6.31 pins pillow < 13, so this extra
    # may move Pillow back to 12.x.
    "app": ["gradio>=6.31.0"],
    # benchmarks/toy_inpainting.py's non-learned baseline (OpenCV Telea); never a runtime need.
    "bench": ["opencv-python-headless>=4.8"],
}
EXTRAS["test"] = sorted(set(
    EXTRAS["convert"] + EXTRAS["train"] + EXTRAS["tfds"] + EXTRAS["bench"] + EXTRAS["app"] + [
        "pytest>=8.0",
        "selenium>=4.51",         # tests/test_browser_app.py (Debian's chromedriver, no download)
        "tensorboard>=2.21",      # reads back the event files in test_tensorboard_writer
        "tensorflow-cpu>=2.21",   # tfds.testing.mock_data (test_data_sources) needs it
        "pytest-xdist>=3.5",
        "torch==2.14.1",          # on local disk; CUDA build, runs on CPU
        "torchvision==0.29.1",    # vgg19 / alexnet references
        "lpips>=0.1.4",
        "pytorch-fid>=0.3.0",
        "pytorch-msssim>=1.0.0",
        "scikit-image>=0.22",
        "scipy>=1.11",
        "prdc>=0.2",              # precision / recall / density / coverage reference
        "clean-fid>=0.1.35",      # clean-fid's resizing reference
    ]))

setup(
    name="difai-jax",
    version="0.1.0",
    description="DiFAI diverse facial inpainting (StyleGAN inversion + SeFa + SPARN) in JAX/Flax",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["difai_jax", "difai_jax.*", "configs", "weights_conversion",
                                    "weights_conversion.*"]),
    # The networks trained on the toy faces (difai_jax/assets/toy/*: converted directories and
    # the DiFAI workdir), loadable by short name (pretrained.SHORT_NAMES).
    package_data={"difai_jax": ["assets/**/*"]},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    license="Apache-2.0",
)
