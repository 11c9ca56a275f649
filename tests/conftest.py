"""Shared test fixtures. Tests may read the real challenge files from ../shared; the project never does."""
import os
import pathlib

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One BLAS thread: on 2 shared cores, threaded small SVDs are ~30x slower, not faster.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "qqbrowser2021"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The real challenge files (labels, tag list, stats, two real videos); skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real challenge files not found at {SHARED_DATA}")
    return SHARED_DATA
