"""
Only the packages of the GPU machine: a Python started with this folder on PYTHONPATH (``bench/gpu_check.sh
--cpu-smoke``) can import the standard library, this checkout, the packages of the GPU machine's PyTorch image that
this project uses (``DEVICE`` below) and those copied along as wheels (``bench/gpu_wheels.sh``); any other top-level
import fails, as it would there. Versions are not simulated: the local ones are used.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys

# The GPU machine image's packages (top-level module names) that this project may import
DEVICE = {
    "PIL",
    "absl",
    "anyio",
    "certifi",
    "charset_normalizer",
    "click",
    "cloudpickle",
    "contourpy",
    "cv2",
    "cycler",
    "dateutil",
    "filelock",
    "fontTools",
    "fsspec",
    "functorch",
    "google",
    "h11",
    "httpcore",
    "httpx",
    "huggingface_hub",
    "idna",
    "jinja2",
    "kiwisolver",
    "markdown",
    "markdown_it",
    "markupsafe",
    "matplotlib",
    "mdurl",
    "mpl_toolkits",
    "mpmath",
    "networkx",
    "numpy",
    "packaging",
    "pandas",
    "psutil",
    "pygments",
    "pyparsing",
    "pytz",
    "requests",
    "rich",
    "scipy",
    "six",
    "sympy",
    "tensorboard",
    "torch",
    "torchgen",
    "tqdm",
    "triton",
    "typing_extensions",
    "tzdata",
    "urllib3",
    "werkzeug",
    "yaml",
    "_yaml",
}
# What the local huggingface_hub imports (the GPU machine's older one imports httpx instead)
LOCAL_ONLY = {"httpx2", "httpcore2", "truststore", "hf_xet"}
# Copied along as wheels by bench/gpu_wheels.sh
WHEELS = {
    "ale_py",
    "gymnasium",
    "farama_notifications",
    "stable_baselines3",
    "sb3_contrib",
    "rl_zoo3",
    "huggingface_sb3",
    "wasabi",
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "typing_inspection",
    "zstandard",
}
# This checkout (on PYTHONPATH, not installed there), the bench's modules, and pip/setuptools' hooks
OWN = {"breakout_sb3", "callbacks", "bench", "throughput", "breakdown", "learning_curve", "learning_run", "tests"}
ALLOWED = DEVICE | LOCAL_ONLY | WHEELS | OWN | set(sys.stdlib_module_names) | {"_distutils_hack", "sitecustomize"}


class Absent(importlib.abc.Loader):
    """Loads nothing: the module is installed here but not there."""

    def create_module(self, spec):
        raise ModuleNotFoundError(f"{spec.name!r} is not on the GPU machine (bench/device_sim)", name=spec.name)

    def exec_module(self, module):
        raise AssertionError("unreachable")


class DeviceImports(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        # Names starting with "_" are private modules of the interpreter or of an allowed package
        if path is not None or top in ALLOWED or top.startswith("_"):
            return None
        for finder in sys.meta_path:
            if finder is not self and getattr(finder, "find_spec", None) and finder.find_spec(name, path, target):
                return importlib.util.spec_from_loader(name, Absent())
        return None  # not installed here either: as absent as there


if os.environ.get("BREAKOUT_SB3_DEVICE_SIM") == "1":
    sys.meta_path.insert(0, DeviceImports())
