"""The project's benchmarks, run from the checkout's root as ``python -m bench.<name>`` (see bench/README.md)."""
