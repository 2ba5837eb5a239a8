"""ssd_jax: the Single Shot MultiBox Detector (Liu et al., ECCV 2016) in JAX/Flax."""

from setuptools import find_packages, setup

setup(
    name="ssd_jax",
    version="0.1.0",
    description="SSD: Single Shot MultiBox Detector in JAX/Flax",
    packages=find_packages(include=["ssd_jax", "ssd_jax.*", "experiments", "experiments.*"]),
    python_requires=">=3.10",
    # Ranges here; exact pins for a reproducible environment live in requirements.txt.
    install_requires=[
        "jax>=0.10,<0.11",
        "jaxlib>=0.10,<0.11",
        "flax>=0.12,<0.13",
        "optax>=0.2.8",
        "orbax-checkpoint>=0.12",
        "tensorflow-datasets>=4.9",
        "tensorflow-cpu>=2.20",
        "numpy>=2.0",
        "absl-py>=2.0",
        "ml-collections>=1.0",
        "clu>=0.0.12",
        "pycocotools>=2.0.8",
        "matplotlib>=3.8",
        "pillow>=10.0",
        "pyyaml>=6.0",
        "tqdm>=4.60",
        "tensorboard>=2.15",
        "scipy>=1.11",
    ],
    extras_require={
        # Only for benchmarks/compare_torchvision.py and importing torchvision .pth weights.
        "torch": ["torch==2.14.1", "torchvision==0.29.1"],
        "test": ["pytest>=8", "pytest-xdist>=3.5", "nbclient>=0.10", "nbformat>=5.10", "ipykernel>=6"],
    },
)
