"""The seeded train/test split (pure functions) and reading into the array backend."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bptdask.backend import array_namespace, to_numpy
from bptdask.data import ingest
from bptdask.data.split import draw_test_mask, num_test_samples
from bptdask.errors import ConfigurationError


@given(num_samples=st.integers(1, 10_000), fraction=st.floats(0, 0.99), seed=st.integers(0, 2**32))
def test_fraction_split_leaves_training_samples_and_is_seeded(num_samples, fraction, seed):
    try:
        count = num_test_samples(num_samples, fraction)
    except ConfigurationError:
        assert round(fraction * num_samples) >= num_samples
        return
    assert count == round(fraction * num_samples) and 0 <= count < num_samples
    mask = draw_test_mask(num_samples, count, seed)
    assert mask.dtype == bool and mask.sum() == count
    assert np.array_equal(mask, draw_test_mask(num_samples, count, seed))


def test_counts_and_bad_sizes():
    assert num_test_samples(10, 3) == 3 and num_test_samples(10, 0) == 0 and num_test_samples(10, 0.25) == 2
    for bad in (10, -1, 1.0, -0.1, True, "0.2", None):
        with pytest.raises(ConfigurationError, match="test_size"):
            num_test_samples(10, bad)
    with pytest.raises(ConfigurationError, match=r"seed must be an integer >= 0, got -3"):
        draw_test_mask(10, 2, -3)


def test_read_moves_chunks_to_the_backend(xp, tmp_path, small):
    images, labels = small
    dataset = ingest(images, labels, tmp_path / "d.zarr", chunk_size=64)
    got_images, got_labels = dataset.read(1, 3, xp=xp)
    assert array_namespace(got_images) is xp and array_namespace(got_labels) is xp
    np.testing.assert_array_equal(to_numpy(got_images), images[64:192])
    np.testing.assert_array_equal(to_numpy(got_labels), labels[64:192])
