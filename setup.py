"""Install meshrecon: ``pip install .`` (or ``-e .`` in a clone; add ``[dev]`` for the test and lint
tools). It installs the ``meshrecon`` command."""

from pathlib import Path

from setuptools import find_namespace_packages, setup


def _version() -> str:
    init = Path(__file__).parent / "meshrecon" / "__init__.py"
    for line in init.read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=")[1].strip().strip('"')
    raise RuntimeError("meshrecon/__init__.py defines no __version__")


setup(
    name="meshrecon",
    version=_version(),
    description="Learning 3D shape from images, mesh first: six methods in one PyTorch framework",
    long_description=Path(__file__).with_name("README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # Namespace discovery: the folders that hold only data (the shipped configs, the viewer's
    # static files) are packages too, so their files install with package_data below.
    packages=find_namespace_packages(
        include=["meshrecon", "meshrecon.*"], exclude=["*.__pycache__"]
    ),
    include_package_data=True,
    package_data={
        "meshrecon.model_zoo": ["configs/**/*.yaml"],
        # The 3D viewer's scripts and the pinned three.js files it needs, with its licence.
        "meshrecon.apps.viewer3d": [
            "static/*.js",
            "static/*.css",
            "static/three/LICENSE",
            "static/three/README.md",
            "static/three/build/*.js",
            "static/three/examples/jsm/*/*.js",
        ],
    },
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "fvcore>=0.1.5",
        "iopath>=0.1.9",
        "numpy>=1.23",
        "scipy>=1.10",
        "h5py>=3.8",
        "Pillow>=9.0",
        "trimesh>=4.0",
        "pycocotools>=2.0.6",
        "tqdm>=4.60",
        "tensorboard>=2.12",
        "matplotlib>=3.6",
    ],
    # `meshrecon SUBCOMMAND` (also `python -m meshrecon`); subcommands: meshrecon/cli.
    entry_points={"console_scripts": ["meshrecon = meshrecon.cli:main"]},
    extras_require={
        # playwright drives the system's Chromium in the report's browser test (no browser
        # download: the test passes the Chromium it finds as executable_path).
        # wandb (the optional W&B writer) and onnx / onnxscript / onnxruntime (ONNX export and
        # its numerical check) are optional at run time; the tests of those paths need them.
        "dev": [
            "pytest>=7.4",
            "pytest-timeout>=2.2",
            "mypy>=1.10",
            "ruff==0.17.6",
            "playwright>=1.40",
            "wandb>=0.17",
            "onnx>=1.16",
            "onnxscript>=0.1",
            "onnxruntime>=1.18",
        ],
    },
)
