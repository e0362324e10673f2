"""RunConfig: one vocabulary, validated once, and what a resume must share."""

from __future__ import annotations

import numpy as np
import pytest

from bptdask.errors import ConfigurationError
from bptdask.outer.run_config import CHUNKS_PER_WORKER_PER_ROUND, RunConfig, describe_run


def test_the_defaults_are_the_estimators():
    from bptdask import BPTClassifier

    estimator = BPTClassifier().get_params()
    config = RunConfig()
    shared = set(estimator) & set(RunConfig.__dataclass_fields__)
    assert shared >= {"epochs", "lr", "update", "merge_weight", "staleness_decay", "max_staleness", "worker_timeout"}
    assert {name: getattr(config, name) for name in shared} == {name: estimator[name] for name in shared}


def test_values_are_normalised_to_plain_types():
    config = RunConfig(epochs=np.int64(3), dtype=np.float64, max_staleness=np.int32(2))
    assert (type(config.epochs), config.dtype, type(config.max_staleness)) == (int, "float64", int)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epochs": True}, "epochs must be an integer >= 1, got True"),
        ({"seed": -1}, "seed must be an integer >= 0, got -1"),
        ({"chunks_per_round": 0}, "chunks_per_round must be an integer >= 1, got 0"),
        ({"call_timeout": float("nan")}, "call_timeout must be a finite number > 0"),
        ({"balance": "greedy"}, "balance must be one of 'power', 'even', got 'greedy'"),
        ({"nesterov": "yes"}, "nesterov must be True or False, got 'yes'"),
        ({"nesterov": True, "momentum": 0.0}, "nesterov=True needs momentum > 0"),
        ({"max_invalid": 0}, "max_invalid must be an integer >= 1, got 0"),
    ],
)
def test_bad_values_are_refused_at_construction(options, message):
    with pytest.raises(ConfigurationError, match=message):
        RunConfig(**options)
    with pytest.raises(ConfigurationError, match=message):
        RunConfig().replace(**options)


def test_the_learning_rate_follows_the_schedule():
    config = RunConfig(epochs=4, lr=0.1)
    assert [round(config.optimizer(epoch).lr, 6) for epoch in range(4)] == [0.1, 0.085355, 0.05, 0.014645]
    assert config.optimizer(3, schedule=False).lr == 0.1
    assert RunConfig(lr_schedule="constant").optimizer(5).lr == 0.05


def test_the_round_size_is_four_chunks_per_worker_unless_given():
    assert RunConfig().round_size(3) == 3 * CHUNKS_PER_WORKER_PER_ROUND
    assert RunConfig(chunks_per_round=5).round_size(3) == 5


def test_a_resume_must_share_the_training_and_the_merge_rule_but_not_the_timeouts():
    base = describe_run(RunConfig(), {"layers": []}, [10, 10])
    same = RunConfig(device="cpu", worker_timeout=5.0, checkpoint_every=3, max_staleness=2, balance="even")
    assert describe_run(same, {"layers": []}, [10, 10]) == base
    for changed in ({"lr": 0.1}, {"update": "sgwu"}, {"staleness_decay": 0.9}, {"epochs": 11}, {"seed": 9}):
        assert describe_run(RunConfig(**changed), {"layers": []}, [10, 10]) != base


def test_a_resume_must_share_a_fixed_seed_and_the_data_but_not_a_drawn_seed():
    drawn = describe_run(RunConfig(seed=3), {"layers": []}, [10], mean=[0.5], std=[0.25], seed_fixed=False)
    assert describe_run(RunConfig(seed=9), {"layers": []}, [10], mean=[0.5], std=[0.25], seed_fixed=False) == drawn
    assert describe_run(RunConfig(seed=3), {"layers": []}, [10], mean=[0.5], std=[0.25])["seed"] == 3
    other_data = describe_run(RunConfig(seed=3), {"layers": []}, [10], mean=[0.4], std=[0.25], seed_fixed=False)
    assert other_data["data"] != drawn["data"]
