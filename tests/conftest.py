"""Shared test set-up: quiet TensorFlow, the benchmark data folder, a fresh Keras session."""
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
TEST_DATA = pathlib.Path(__file__).resolve().parent / "data"
"""Small fixtures committed with the tests."""


@pytest.fixture
def shared_data():
    """The benchmark images beside the repository (skips where they are absent)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("the benchmark data folder ../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    keras.utils.clear_session()
    yield
