"""The weight server without a cluster: AGWU/SGWU rules, staleness, idempotence, copies."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, invariant, multiple, rule

from bptdask.errors import ConfigurationError, DataError, ProtocolError, ShapeError
from bptdask.outer.protocol import PartKey
from bptdask.outer.run_config import RunConfig
from bptdask.outer.weights import WeightServer

SHAPES = {"0.weight": (3, 2), "0.bias": (3,)}


def zeros(dtype="float64"):
    return {name: np.zeros(shape, dtype) for name, shape in SHAPES.items()}


def filled(value, dtype="float64"):
    return {name: np.full(shape, value, dtype) for name, shape in SHAPES.items()}


def server_of(params, **rule):
    """A weight server over ``params`` with the merge rule ``rule`` (RunConfig's names).

    The paper's exponential rule unless told otherwise: these tests check the server's
    mechanics (shares, staleness, idempotence, copies) by hand-computed weights.
    """
    return WeightServer(params, RunConfig(**{"merge_rule": "exponential", **rule}))


def push(server, worker, round_index, part_index, delta, **counts):
    options = {"base_version": 0, "n_samples": 30, "round_samples": 60, "n_workers": 2, "seconds": 1.5, **counts}
    return server.push(PartKey(worker, round_index, part_index), delta, **options)


# --- hand-computed examples ------------------------------------------------------------


def test_agwu_weighs_by_share_and_halves_per_version_of_staleness():
    server = server_of(zeros(), merge_weight=1.0, staleness_decay=0.5)
    first = push(server, "a", 0, 0, filled(1.0))  # share 30 * 2 / 60 = 1, fresh: alpha 1
    second = push(server, "b", 0, 1, filled(10.0))  # same share, one version stale: alpha 0.5
    assert (first.status, first.version, first.staleness, first.alpha) == ("merged", 1, 0, 1.0)
    assert (second.status, second.version, second.staleness, second.alpha) == ("merged", 2, 1, 0.5)
    weights, version = server.pull()
    assert version == 2 == server.version
    np.testing.assert_array_equal(weights["0.weight"], np.full((3, 2), 1.0 + 0.5 * 10.0))


def test_merge_weight_scales_a_larger_share():
    server = server_of(filled(2.0), merge_weight=0.5, staleness_decay=1.0)
    result = push(server, "a", 4, 0, filled(4.0), n_samples=45)  # 0.5 * (45 * 2 / 60) = 0.75
    assert result.alpha == 0.75
    np.testing.assert_array_equal(server.pull()[0]["0.bias"], np.full(3, 2.0 + 0.75 * 4.0))


def test_too_stale_pushes_are_rejected_and_may_be_retried_after_a_pull():
    server = server_of(zeros(), max_staleness=1)
    for part in range(2):
        push(server, "a", 0, part, filled(1.0), base_version=part)  # fresh: alpha 1
    stale = push(server, "b", 0, 2, filled(100.0))  # 2 versions behind
    assert (stale.status, stale.accepted, stale.staleness, stale.version) == ("stale", False, 2, 2)
    assert server.version == 2 and server.rejected == 1
    np.testing.assert_array_equal(server.pull()[0]["0.bias"], np.full(3, 2.0))
    assert server.push_result(PartKey("b", 0, 2)) is None
    retry = push(server, "b", 0, 2, filled(4.0), base_version=2)
    assert (retry.status, retry.alpha, retry.version) == ("merged", 1.0, 3)


def test_a_duplicate_push_returns_the_first_result_and_changes_nothing():
    server = server_of(zeros())
    first = push(server, "a", 1, 0, filled(1.0))
    again = push(server, "a", 1, 0, filled(50.0), base_version=1)
    assert again == first and server.version == 1 and server.push_result(PartKey("a", 1, 0)) == first
    np.testing.assert_array_equal(server.pull()[0]["0.weight"], np.ones((3, 2)))


def test_merge_records_describe_each_merge_on_the_runs_clock():
    clock = iter([10.0, 10.5, 11.25])
    server = WeightServer(zeros(), RunConfig(merge_rule="exponential"), clock=lambda: next(clock))
    for part in range(3):
        push(server, "w", 0, part, filled(1.0), base_version=0, n_samples=10 + part)
    log = server.merge_log()
    assert [r.version for r in log] == [1, 2, 3]
    last = log[-1]
    assert (last.worker, last.round_index, last.part_index, last.staleness, last.base_version) == ("w", 0, 2, 2, 0)
    assert (last.alpha, last.n_samples, last.seconds, last.merged_at) == (12 * 2 / 60 * 0.25, 12, 1.5, 11.25)
    assert log.since(2) == [last]


def test_every_merge_is_kept_however_long_the_run():
    server = server_of(zeros(), staleness_decay=1.0)
    for part in range(3000):
        push(server, f"w{part % 7}", part // 5, part, filled(1e-3), base_version=server.version)
    log = server.merge_log()
    assert len(log) == 3000 and log.column("version").tolist() == list(range(1, 3001))
    assert log[0].part_index == 0 and log[2999].worker == "w3"


def test_non_finite_deltas_are_rejected_as_invalid_without_touching_the_weights():
    server = server_of(zeros())
    bad = filled(1.0)
    bad["0.weight"][1, 0] = np.nan
    bad["0.bias"][0] = np.inf
    result = push(server, "a", 0, 0, bad)
    assert (result.status, result.accepted, result.alpha) == ("invalid", False, 0.0)
    huge = {**filled(1.0), "0.bias": np.full(3, 1e300)}  # finite in float64, inf once cast to float32
    small = server_of(zeros("float32"))
    assert push(small, "a", 0, 0, huge).status == "invalid" and small.invalid == 1
    assert server.version == 0 and server.invalid == 1 and server.push_result(PartKey("a", 0, 0)) is None
    np.testing.assert_array_equal(server.pull()[0]["0.weight"], np.zeros((3, 2)))
    assert push(server, "a", 0, 0, filled(1.0)).status == "merged"


def test_pushes_must_match_the_weights_and_the_version():
    server = server_of(zeros())
    with pytest.raises(DataError, match=r"names \['0.weight'\] but the server holds"):
        push(server, "a", 0, 0, {"0.weight": np.zeros((3, 2))})
    with pytest.raises(ShapeError, match=r"delta '0.bias' of push \('a', 0, 0\) has shape \(4,\), weight has \(3,\)"):
        push(server, "a", 0, 0, {**zeros(), "0.bias": np.zeros(4)})
    with pytest.raises(ConfigurationError, match=r"base_version=3 is outside 0..0"):
        push(server, "a", 0, 0, zeros(), base_version=3)
    with pytest.raises(ConfigurationError, match="n_samples=70 exceeds round_samples=60"):
        push(server, "a", 0, 0, zeros(), n_samples=70)
    with pytest.raises(ConfigurationError, match="n_workers must be an integer >= 1, got 0"):
        push(server, "a", 0, 0, zeros(), n_workers=0)
    assert server.version == 0


def test_initial_weights_are_checked():
    with pytest.raises(ConfigurationError, match="params is empty"):
        server_of({})
    with pytest.raises(ConfigurationError, match="weights must be floating point"):
        server_of({"w": np.arange(3)})
    with pytest.raises(DataError, match="initial weight 'w' holds NaN"):
        server_of({"w": np.array([np.nan])})


def test_arrays_are_copied_in_and_out():
    initial = zeros("float32")
    server = server_of(initial)
    initial["0.weight"][:] = 7
    pulled, _ = server.pull()
    pulled["0.bias"][:] = 9
    delta = filled(1.0, "float32")
    push(server, "a", 0, 0, delta)
    delta["0.weight"][:] = 100
    weights, _ = server.pull()
    np.testing.assert_array_equal(weights["0.weight"], np.ones((3, 2)))
    np.testing.assert_array_equal(weights["0.bias"], np.ones(3))
    assert weights["0.weight"].dtype == np.float32
    assert not np.shares_memory(weights["0.weight"], server.pull()[0]["0.weight"])


def test_sgwu_merges_a_round_once_with_the_data_share_average():
    server = server_of(zeros(), update="sgwu", merge_weight=0.1, staleness_decay=0.1)
    first = push(server, "a", 0, 0, filled(6.0), n_samples=10)
    assert (first.status, first.version, first.alpha) == ("pending", 0, 10 / 60)
    assert push(server, "b", 0, 1, filled(3.0), n_samples=20).status == "pending"
    assert server.version == 0 and len(server.merge_log()) == 0
    last = push(server, "c", 0, 2, filled(-1.0), n_samples=30)
    assert (last.status, last.version, last.alpha) == ("merged", 1, 0.5)
    expected = (10 * 6.0 + 20 * 3.0 - 30 * 1.0) / 60
    np.testing.assert_allclose(server.pull()[0]["0.bias"], np.full(3, expected))
    assert server.push_result(PartKey("a", 0, 0)).status == "merged"
    assert push(server, "a", 0, 0, filled(6.0), n_samples=10) == server.push_result(PartKey("a", 0, 0))
    assert [(r.worker, r.version) for r in server.merge_log()] == [("a", 1), ("b", 1), ("c", 1)]


def test_sgwu_holds_a_copy_of_each_pending_delta():
    server = server_of(zeros(), update="sgwu")
    delta = filled(2.0)
    push(server, "a", 0, 0, delta)
    delta["0.bias"][:] = 1000.0
    push(server, "b", 0, 1, filled(4.0))
    np.testing.assert_array_equal(server.pull()[0]["0.bias"], np.full(3, 3.0))


def test_sgwu_refuses_a_round_that_would_overflow():
    server = server_of(zeros(), update="sgwu")
    push(server, "a", 0, 0, filled(1.0), n_samples=40)
    with pytest.raises(ProtocolError, match="brings round 0 to 70 of its 60 samples"):
        push(server, "b", 0, 1, filled(1.0), n_samples=30)
    with pytest.raises(ProtocolError, match="earlier pushes said 60"):
        push(server, "b", 0, 1, filled(1.0), n_samples=20, round_samples=50)
    assert push(server, "b", 0, 1, filled(1.0), n_samples=20).version == 1


@settings(max_examples=30, deadline=None)
@given(
    counts=st.lists(st.integers(1, 20), min_size=1, max_size=5),
    seed=st.integers(0, 2**32),
    order_seed=st.randoms(use_true_random=False),
)
def test_sgwu_result_does_not_depend_on_arrival_order(counts, seed, order_seed):
    rng = np.random.default_rng(seed)
    deltas = [{name: rng.standard_normal(shape) for name, shape in SHAPES.items()} for _ in counts]
    results = []
    for shuffle in (False, True):
        server = server_of(zeros(), update="sgwu")
        order = list(range(len(counts)))
        if shuffle:
            order_seed.shuffle(order)
        for j in order:
            push(server, f"w{j}", 5, j, deltas[j], n_samples=counts[j], round_samples=sum(counts))
        assert server.version == 1
        results.append(server.pull()[0])
    expected = sum(n * d["0.weight"] for n, d in zip(counts, deltas, strict=True)) / sum(counts)
    np.testing.assert_array_equal(results[0]["0.weight"], results[1]["0.weight"])
    np.testing.assert_allclose(results[0]["0.weight"], expected, rtol=1e-12, atol=1e-12)


def test_concurrent_pushes_each_merge_once():
    server = server_of(zeros(), staleness_decay=1.0)

    def worker(name):
        for part in range(25):
            for _ in range(2):
                push(server, name, 0, part, filled(1.0), base_version=server.version, n_samples=6)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert server.version == 100
    np.testing.assert_allclose(server.pull()[0]["0.bias"], np.full(3, 100 * 6 * 2 / 60))


# --- stateful AGWU ---------------------------------------------------------------------


class AgwuServerMachine(RuleBasedStateMachine):
    """Random pulls, pushes (fresh, stale, duplicate) and mutations of the caller's arrays.

    The machine keeps its own reference of ``W`` from the AGWU rule, and re-derives ``W``
    a second way from the server's merge records and the deltas it pushed.
    """

    pulls = Bundle("pulls")
    accepted = Bundle("accepted")

    @initialize(
        rule=st.sampled_from(["exponential", "concurrency", "inverse"]),
        alpha0=st.sampled_from([1.0, 0.5, 0.25]),
        gamma=st.sampled_from([1.0, 0.5, 0.9]),
        max_staleness=st.one_of(st.none(), st.integers(0, 3)),
        seed=st.integers(0, 2**32),
    )
    def start(self, rule, alpha0, gamma, max_staleness, seed):
        self.rng = np.random.default_rng(seed)
        self.initial = {name: self.rng.standard_normal(shape) for name, shape in SHAPES.items()}
        config = RunConfig(merge_rule=rule, merge_weight=alpha0, staleness_decay=gamma, max_staleness=max_staleness)
        self.server = WeightServer(self.initial, config)
        self.rule, self.options = rule, (alpha0, gamma, max_staleness)
        self.reference = {name: value.copy() for name, value in self.initial.items()}
        self.version = 0
        self.last_seen_version = 0
        self.pushed = {}
        self.results = {}
        self.next_part = 0

    @rule(target=pulls)
    def pull(self):
        weights, version = self.server.pull()
        assert version == self.version
        for name, value in weights.items():
            np.testing.assert_allclose(value, self.reference[name], rtol=1e-12, atol=1e-12)
            value[...] = -1e6  # the caller scribbles on its copy
        return version

    @rule(
        target=accepted,
        base=pulls,
        worker=st.sampled_from(["a", "b", "c"]),
        n_samples=st.integers(1, 50),
        extra=st.integers(0, 50),
        n_workers=st.integers(1, 4),
    )
    def push(self, base, worker, n_samples, extra, n_workers):
        alpha0, gamma, max_staleness = self.options
        key = PartKey(worker, self.next_part // 3, self.next_part)
        self.next_part += 1
        delta = {name: self.rng.standard_normal(shape) for name, shape in SHAPES.items()}
        counts = {"n_samples": n_samples, "round_samples": n_samples + extra, "n_workers": n_workers}
        result = self.server.push(key, delta, base_version=base, seconds=0.1, **counts)
        staleness = self.version - base
        assert result.staleness == staleness
        if max_staleness is not None and staleness > max_staleness:
            assert result.status == "stale" and result.version == self.version
            return multiple()
        share = n_samples * n_workers / (n_samples + extra)
        if self.rule == "exponential":
            alpha = alpha0 * share * gamma**staleness
        elif self.rule == "inverse":
            alpha = alpha0 * share * (1 / (staleness + 1))
        else:  # only staleness beyond the other workers' merges is damped
            alpha = alpha0 * share / n_workers * gamma ** max(0, staleness - n_workers + 1)
        alpha = min(alpha, 1.0)  # never more than the whole delta
        assert result.status == "merged" and result.alpha == pytest.approx(alpha, rel=1e-12)
        self.version += 1
        assert result.version == self.version
        self.pushed[key] = {name: value.copy() for name, value in delta.items()}
        for name, value in delta.items():
            self.reference[name] = self.reference[name] + alpha * value
            value[...] = 1e6  # the caller reuses its buffer
        self.results[key] = result
        return key

    @rule(key=accepted, base=pulls, scale=st.floats(-3, 3))
    def push_again(self, key, base, scale):
        delta = {name: np.full(shape, scale) for name, shape in SHAPES.items()}
        again = self.server.push(key, delta, base_version=base, n_samples=1, round_samples=1, n_workers=1)
        assert again == self.results[key]

    @rule(key=consumes(accepted))
    def forget_a_key(self, key):
        """Let the bundle shrink so fresh keys keep being drawn."""

    @invariant()
    def versions_only_increase(self):
        assert self.server.version == self.version >= self.last_seen_version
        self.last_seen_version = self.server.version

    @invariant()
    def weights_follow_the_rule(self):
        weights, _ = self.server.pull()
        for name, value in weights.items():
            np.testing.assert_allclose(value, self.reference[name], rtol=1e-12, atol=1e-12)

    @invariant()
    def weights_follow_the_merge_records(self):
        records = list(self.server.merge_log())
        assert [r.version for r in records] == list(range(1, self.version + 1))
        rebuilt = {name: value.copy() for name, value in self.initial.items()}
        for record in records:
            key = PartKey(record.worker, record.round_index, record.part_index)
            assert record.version - 1 - record.base_version == record.staleness
            for name in rebuilt:
                rebuilt[name] = rebuilt[name] + record.alpha * self.pushed[key][name]
        weights, _ = self.server.pull()
        for name, value in weights.items():
            np.testing.assert_allclose(value, rebuilt[name], rtol=1e-12, atol=1e-12)


AgwuServerMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestAgwuServer = AgwuServerMachine.TestCase
