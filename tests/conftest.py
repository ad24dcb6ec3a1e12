"""Shared pytest fixtures.

``tiny_stream``: the small synthetic stream of the strategy tests.

``default_config_stream``: a synthetic stream big enough for every registered
strategy's DEFAULT config, so a test can run each strategy as a user gets it.

``gtsrb_arrays``: the real GTSRB arrays (``gtsrb32.npz``), loaded once per test
session through ``datasets.load_gtsrb()``, which looks in ``$CL_DATA_DIR`` and
``./data``. Tests that use it are marked ``realdata``. When the file is absent
they are skipped, except when ``CL_REQUIRE_REAL_DATA=1`` (CI): a skipped real-data
test must not be mistaken for a passing one there, so it fails instead. A file
that is present but broken always fails (that is a real problem, not absence).
"""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def gtsrb_arrays():
    from datasets import DataNotFoundError, load_gtsrb

    try:
        return load_gtsrb()
    except DataNotFoundError as exc:
        if os.environ.get("CL_REQUIRE_REAL_DATA") == "1":
            pytest.fail(f"CL_REQUIRE_REAL_DATA=1 but {exc}")
        pytest.skip(f"real GTSRB data not available ({exc})")


@pytest.fixture(scope="session")
def tiny_stream():
    """6 synthetic 8x8 classes in 3 tasks of 2, 20 % validation: the strategy tests' stream."""
    from datasets import build_stream, make_synthetic

    arrays = make_synthetic(num_classes=6, train_per_class=40, test_per_class=10, image_size=8, seed=0)
    return build_stream(arrays, num_tasks=3, val_fraction=0.2, seed=0)


@pytest.fixture(scope="session")
def default_config_stream():
    """6 synthetic 8x8 classes in 3 tasks of 2, 20 % validation, with 270 training
    images: more than the largest default memory (200 images for replay, iCaRL,
    GEM and GDumb; DER keeps 10 per class), which every strategy refuses to be
    larger than the stream. A strategy whose default needs more fails its
    ``validate_against`` with a one-line message naming the memory."""
    from datasets import build_stream, make_synthetic

    arrays = make_synthetic(num_classes=6, train_per_class=60, test_per_class=10, image_size=8, seed=0)
    return build_stream(arrays, num_tasks=3, val_fraction=0.2, seed=0)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tests run tiny models: one thread is faster than two (thread start-up and
    contention dominate), and keeps results independent of the machine's load."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
