"""Training to accuracy floors on real data (the judged numbers of the foundation)."""

from __future__ import annotations

import pytest

from bptdask import BPTClassifier, datasets


@pytest.mark.slow
def test_lenet5_on_mnist_sample_reaches_97_percent():
    (X, y), (X_test, y_test) = datasets.split(*datasets.mnist_sample(random_state=0), test_size=1000, train_size=4000)
    clf = BPTClassifier("lenet5", epochs=10, batch_size=64, lr=0.05, random_state=0)
    clf.fit(X, y)
    assert clf.score(X_test, y_test) >= 0.97
