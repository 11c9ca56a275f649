"""Benchmarks (``python -m bench.<name>``): measured numbers go to docs/benchmarks.md."""
import os as _os

_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
