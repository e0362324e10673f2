"""IDPA without a cluster: allocation by power, chunk order, work pulling, losses and joins."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bptdask.errors import ConfigurationError
from bptdask.outer.allocation import PowerEstimator, allocate_round
from bptdask.outer.partition import EpochPlan, chunk_order, chunk_sizes

NAMES = st.sampled_from(["a", "b", "c", "d", "e"])
POWERS = st.dictionaries(
    NAMES,
    st.one_of(st.none(), st.just(0.0), st.floats(0.01, 1000.0)),
    min_size=1,
    max_size=5,
).filter(lambda powers: any(p is None or p > 0 for p in powers.values()))


# --- hand-computed examples ------------------------------------------------------------


def test_powers_1_2_4_over_7_chunks_split_exactly():
    assert allocate_round(list(range(7)), {"c": 4.0, "a": 1.0, "b": 2.0}) == {"a": [0], "b": [1, 2], "c": [3, 4, 5, 6]}


def test_powers_1_2_4_over_10_chunks_round_by_largest_remainder():
    # quotas 10/7 = 1.43, 2.86, 5.71: floors 1, 2, 5 leave 2 chunks, for b (.86) and c (.71)
    assert allocate_round(list(range(10)), {"a": 1.0, "b": 2.0, "c": 4.0}) == {
        "a": [0],
        "b": [1, 2, 3],
        "c": [4, 5, 6, 7, 8, 9],
    }


def test_unmeasured_workers_split_equally_with_ties_to_the_first_name():
    assert allocate_round(list(range(7)), {"c": None, "b": None, "a": None}) == {
        "a": [0, 1, 2],
        "b": [3, 4],
        "c": [5, 6],
    }


def test_a_joining_worker_counts_as_the_mean_measured_power():
    # c is unmeasured and counts as (1 + 3) / 2 = 2: quotas 1, 3, 2 of 6
    assert allocate_round(list(range(6)), {"a": 1.0, "b": 3.0, "c": None}) == {"a": [0], "b": [1, 2, 3], "c": [4, 5]}


def test_a_zero_power_worker_gets_nothing():
    assert allocate_round([4, 2, 9], {"a": 0.0, "b": 5.0}) == {"a": [], "b": [4, 2, 9]}


@pytest.mark.parametrize(
    ("powers", "match"),
    [
        ({}, "no workers"),
        ({"a": 0.0, "b": 0.0}, "every power is 0"),
        ({"a": -1.0}, r"power of worker 'a' .* got -1.0"),
        ({"a": float("nan")}, "power of worker 'a'"),
        ({"a": float("inf")}, "power of worker 'a'"),
        ({"a": "fast"}, "power of worker 'a'"),
    ],
)
def test_allocation_errors_name_the_problem(powers, match):
    with pytest.raises(ConfigurationError, match=match):
        allocate_round([0, 1], powers)


def test_held_chunks_go_to_their_holders_within_the_counts():
    holdings = {"a": {3, 4, 5}, "b": {0}}
    assert allocate_round([0, 1, 2, 3, 4, 5], {"a": 1.0, "b": 1.0}, holdings) == {"a": [3, 4, 5], "b": [0, 1, 2]}
    # a holds four but its share is three: the chunk it does not keep goes to b, counts unchanged
    assert allocate_round([0, 1, 2, 3, 4, 5], {"a": 1.0, "b": 1.0}, {"a": {0, 1, 2, 3}}) == {
        "a": [0, 1, 2],
        "b": [3, 4, 5],
    }
    # a chunk both hold goes to the holder with more room left
    assert allocate_round([7, 8, 9], {"a": 1.0, "b": 4.0}, {"a": {7}, "b": {7}}) == {"a": [8], "b": [7, 9]}


@settings(max_examples=80, deadline=None)
@given(powers=POWERS, n_chunks=st.integers(0, 40), data=st.data())
def test_holdings_change_who_gets_which_chunk_never_how_many(powers, n_chunks, data):
    chunks = data.draw(st.permutations(range(n_chunks)))
    holdings = {worker: data.draw(st.sets(st.integers(0, max(n_chunks - 1, 0)))) for worker in powers}
    plain = allocate_round(chunks, powers)
    local = allocate_round(chunks, powers, holdings)
    assert sorted(c for share in local.values() for c in share) == list(range(n_chunks))
    assert {w: len(share) for w, share in local.items()} == {w: len(share) for w, share in plain.items()}
    owner = {chunk: worker for worker, held in holdings.items() for chunk in held}
    exclusive = all(sum(chunk in held for held in holdings.values()) == 1 for chunk in owner)
    fits = all(len(holdings[w] & set(chunks)) <= len(plain[w]) for w in powers)
    if exclusive and fits:
        assert all(set(holdings[w]) & set(chunks) <= set(local[w]) for w in powers), "every holder keeps its chunks"


def test_chunk_sizes_keep_a_short_last_chunk():
    assert chunk_sizes(2500, 1024) == [1024, 1024, 452]
    assert chunk_sizes(2048, 1024) == [1024, 1024]
    assert chunk_sizes(0, 1024) == []
    with pytest.raises(ConfigurationError, match="chunk_size must be an integer >= 1, got 0"):
        chunk_sizes(10, 0)


def test_power_is_an_ema_of_reported_rates():
    estimator = PowerEstimator(smoothing=0.5)
    assert estimator.power("a") is None
    assert estimator.report("a", samples=100, seconds=2.0) == 50.0
    assert estimator.report("a", samples=300, seconds=2.0) == 0.5 * 150.0 + 0.5 * 50.0
    assert estimator.powers(["a", "b"]) == {"a": 100.0, "b": None}


@pytest.mark.parametrize("smoothing", [0, 1.5, -0.1, "x"])
def test_power_estimator_rejects_bad_smoothing(smoothing):
    with pytest.raises(ConfigurationError, match=r"smoothing must be in \(0, 1\]"):
        PowerEstimator(smoothing=smoothing)


def test_power_estimator_rejects_empty_reports():
    estimator = PowerEstimator()
    with pytest.raises(ConfigurationError, match="seconds must be a finite time > 0, got 0"):
        estimator.report("a", samples=10, seconds=0)
    with pytest.raises(ConfigurationError, match="samples must be an integer >= 1"):
        estimator.report("a", samples=0, seconds=1.0)


def test_fast_worker_pulls_ahead_and_steals_the_slow_workers_share():
    plan = EpochPlan([10] * 8, ["a", "b"], epoch=0, seed=1, chunks_per_round=4)
    first_a, first_b = plan.next_part("a"), plan.next_part("b")
    assert (first_a.samples, first_b.samples, first_a.round_samples, first_a.n_workers) == (20, 20, 40, 2)
    assert plan.complete(first_a, seconds=1.0)  # a: 20 samples/s
    second_a = plan.next_part("a")  # opens round 1; b is unmeasured, counts as 20/s: 2 and 2 chunks
    assert (second_a.round_index, second_a.part_index, second_a.samples) == (1, 0, 20)
    assert plan.complete(first_b, seconds=4.0)  # b: 5 samples/s
    assert plan.complete(second_a, seconds=1.0)
    stolen = plan.next_part("a")  # b's 2 unstarted chunks split 20:5 -> 1.6 : 0.4 -> both to a
    assert (stolen.round_index, stolen.part_index, stolen.samples) == (1, 1, 20)
    assert plan.next_part("b") is None
    assert plan.complete(stolen, seconds=1.0) and plan.done
    first, second = plan.round_reports()
    assert first.busy == {"a": 1.0, "b": 4.0} and first.makespan == 4.0
    assert first.idle_fraction == 1 - 5.0 / (2 * 4.0)
    assert second.busy == {"a": 2.0} and second.samples == {"a": 40} and second.idle_fraction == 0.0


def test_the_even_baseline_ignores_power_and_never_steals():
    estimator = PowerEstimator()
    estimator.report("a", samples=40, seconds=1.0)
    estimator.report("b", samples=10, seconds=1.0)
    plan = EpochPlan([10] * 8, ["a", "b"], epoch=0, seed=1, chunks_per_round=4, estimator=estimator, balance="even")
    first_a, first_b = plan.next_part("a"), plan.next_part("b")
    assert len(first_a.chunks) == len(first_b.chunks) == 2
    assert plan.complete(first_a, seconds=0.5)
    second_a = plan.next_part("a")
    assert (second_a.round_index, len(second_a.chunks)) == (1, 2)
    assert plan.complete(second_a, seconds=0.5)
    assert plan.next_part("a") is None, "b's share of round 1 stays b's"
    assert len(plan.next_part("b").chunks) == 2


def test_a_lost_workers_part_goes_to_the_others_and_its_late_completion_is_ignored():
    plan = EpochPlan([5] * 4, ["a", "b"], epoch=2, seed=0, chunks_per_round=4)
    part_a, part_b = plan.next_part("a"), plan.next_part("b")
    assert plan.in_flight("b") == [part_b]
    assert plan.lose_worker("b") == [part_b]
    assert plan.lose_worker("b") == []
    assert plan.next_part("b") is None
    assert not plan.complete(part_b, seconds=1.0)
    redo = plan.next_part("a")
    assert redo.chunks == part_b.chunks and (redo.worker, redo.round_index, redo.part_index) == ("a", 0, 2)
    assert plan.complete(part_a, seconds=1.0) and plan.complete(redo, seconds=1.0)
    assert not plan.complete(redo, seconds=1.0)
    assert plan.done


def test_a_synchronous_loop_keeps_workers_inside_the_round():
    estimator = PowerEstimator()
    estimator.report("a", samples=30, seconds=1.0)
    estimator.report("b", samples=10, seconds=1.0)
    plan = EpochPlan([1] * 8, ["a", "b"], epoch=0, seed=0, chunks_per_round=4, estimator=estimator)
    part_a, part_b = plan.next_part("a", through_round=0), plan.next_part("b", through_round=0)
    assert (len(part_a.chunks), len(part_b.chunks), part_a.n_workers) == (3, 1, 2)
    assert plan.complete(part_a, seconds=0.1)
    assert plan.next_part("a", through_round=0) is None
    plan.lose_worker("b")
    redo = plan.next_part("a", through_round=0)
    assert (redo.round_index, redo.chunks) == (0, part_b.chunks)
    assert plan.complete(redo, seconds=0.1)
    assert plan.round_reports()[0].samples == {"a": 4}
    assert plan.next_part("a").round_index == 1


def test_chunks_wait_for_a_worker_when_all_are_lost():
    plan = EpochPlan([1] * 3, ["a"], epoch=0, seed=0, chunks_per_round=3)
    part = plan.next_part("a")
    plan.lose_worker("a")
    with pytest.raises(ConfigurationError, match="unknown worker 'z'"):
        plan.next_part("z")
    plan.add_worker("z")
    again = plan.next_part("z")
    assert sorted(again.chunks) == sorted(part.chunks)
    assert plan.complete(again, seconds=0.5) and plan.done


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"chunks_per_round": 0}, "chunks_per_round must be an integer >= 1, got 0"),
        ({"seed": -1}, "seed must be an integer >= 0, got -1"),
        ({"epoch": 1.5}, "epoch must be an integer >= 0"),
        ({"workers": "tcp://a:1"}, "got the string 'tcp://a:1'"),
        ({"balance": "fair"}, "balance must be 'power' \\(IDPA\\) or 'even', got 'fair'"),
    ],
)
def test_plan_options_are_checked(kwargs, match):
    options = {"workers": ["a"], "epoch": 0, "seed": 0, "chunks_per_round": 2, **kwargs}
    with pytest.raises(ConfigurationError, match=match):
        EpochPlan([3, 3], **options)


# --- properties of allocate_round and chunk_order ---------------------------------------


@given(powers=POWERS, n_chunks=st.integers(0, 60), data=st.data())
def test_allocation_covers_each_chunk_once_and_tracks_power(powers, n_chunks, data):
    chunk_ids = data.draw(st.permutations(range(n_chunks)))
    allocation = allocate_round(chunk_ids, powers)
    assert list(allocation) == sorted(powers)
    assert [c for worker in sorted(powers) for c in allocation[worker]] == list(chunk_ids)
    known = [Fraction(p) for p in powers.values() if p]
    mean = sum(known) / len(known) if known else Fraction(1)
    weights = {w: mean if p is None else Fraction(p) for w, p in powers.items()}
    for worker, weight in weights.items():
        exact = n_chunks * weight / sum(weights.values())
        assert abs(len(allocation[worker]) - exact) < 1
        if weight == 0:
            assert allocation[worker] == []
    for u in powers:
        for v in powers:
            if weights[u] > weights[v]:
                assert len(allocation[u]) >= len(allocation[v])


@given(powers=POWERS, n_chunks=st.integers(0, 60), seed=st.integers(0, 2**32))
def test_allocation_ignores_the_order_of_the_powers(powers, n_chunks, seed):
    items = list(powers.items())
    random.Random(seed).shuffle(items)
    assert allocate_round(range(n_chunks), dict(items)) == allocate_round(range(n_chunks), powers)


@given(names=st.sets(NAMES, min_size=1), n_chunks=st.integers(0, 60))
def test_first_round_splits_equally(names, n_chunks):
    counts = [len(chunks) for chunks in allocate_round(range(n_chunks), dict.fromkeys(names)).values()]
    assert max(counts) - min(counts) <= 1 and counts == sorted(counts, reverse=True)


@given(n_chunks=st.integers(0, 200), epoch=st.integers(0, 100), seed=st.integers(0, 2**32))
def test_chunk_order_is_a_seeded_permutation(n_chunks, epoch, seed):
    order = chunk_order(n_chunks, epoch=epoch, seed=seed)
    assert sorted(order) == list(range(n_chunks))
    assert order == chunk_order(n_chunks, epoch=epoch, seed=seed)


def test_chunk_order_changes_with_epoch_and_seed():
    base = chunk_order(50, epoch=0, seed=7)
    assert base != chunk_order(50, epoch=1, seed=7) and base != chunk_order(50, epoch=0, seed=8)


# --- EpochPlan under random work pulling, completions, losses and joins -------------------

OPS = st.lists(
    st.tuples(
        st.sampled_from(["ask", "ask", "ask_in_round", "complete", "complete", "lose", "add"]),
        NAMES,
        st.integers(0, 50),
        st.floats(0.05, 5.0),
    ),
    min_size=5,
    max_size=40,
)


def run_plan(sizes, workers, ops, *, seed, chunks_per_round):
    """Replay ``ops`` on a plan, then drain it; every event as plain data, plus the plan.

    ``ask`` and ``lose`` pick a worker by ``pick`` (asks include lost workers), ``add``
    uses the drawn name, ``complete`` picks an outstanding part.
    """
    plan = EpochPlan(sizes, workers, epoch=3, seed=seed, chunks_per_round=chunks_per_round)
    events, outstanding, lost = [], [], set()
    for op, name, pick, seconds in ops:
        askers = sorted({*plan.workers, *lost})
        if op.startswith("ask") and askers:
            worker = askers[pick % len(askers)]
            part = plan.next_part(worker, through_round=pick % 3 if op == "ask_in_round" else None)
            assert part is None or worker not in lost, "a lost worker got new work"
            assert part is None or op == "ask" or part.round_index <= pick % 3
            outstanding += [part] if part else []
            events.append(("part", part))
        elif op == "complete" and outstanding:
            part = outstanding.pop(pick % len(outstanding))
            events.append(("complete", part, plan.complete(part, seconds=seconds)))
        elif op == "lose" and plan.workers:
            worker = plan.workers[pick % len(plan.workers)]
            lost.add(worker)
            events.append(("lose", worker, tuple(plan.lose_worker(worker))))
        elif op == "add":
            lost.discard(name)
            plan.add_worker(name)
    if not plan.workers:
        plan.add_worker("z")
    for part in outstanding:
        events.append(("complete", part, plan.complete(part, seconds=1.0)))
    while not plan.done:
        parts = [plan.next_part(worker) for worker in plan.workers]
        assert any(parts), "live workers got nothing before the epoch was done"
        events += [("complete", p, plan.complete(p, seconds=p.samples / 10)) for p in parts if p]
    return plan, events


PLAN_CASES = st.fixed_dictionaries(
    {
        "sizes": st.lists(st.integers(1, 9), min_size=1, max_size=30),
        "workers": st.lists(NAMES, min_size=1, max_size=4, unique=True),
        "ops": OPS,
        "seed": st.integers(0, 2**16),
        "chunks_per_round": st.integers(1, 5),
    }
)


@settings(max_examples=150, deadline=None)
@given(case=PLAN_CASES)
def test_each_chunk_is_completed_exactly_once_despite_losses_and_joins(case):
    plan, events = run_plan(**case)
    done = [event[1] for event in events if event[0] == "complete" and event[2]]
    assert sorted(c for part in done for c in part.chunks) == list(range(len(case["sizes"])))
    order = chunk_order(len(case["sizes"]), epoch=3, seed=case["seed"])
    step = case["chunks_per_round"]
    handed = [event[1] for event in events if event[0] == "part" and event[1]] + done
    for part in handed:
        assert set(part.chunks) <= set(order[part.round_index * step : (part.round_index + 1) * step])
        assert part.samples == sum(case["sizes"][c] for c in part.chunks)
    assert len({(part.round_index, part.part_index) for part in done}) == len(done)
    assert sum(report.samples[w] for report in plan.round_reports() for w in report.samples) == sum(case["sizes"])
    for report in plan.round_reports():
        assert 0.0 <= report.idle_fraction < 1.0 and report.makespan == max(report.busy.values())


@settings(max_examples=40, deadline=None)
@given(case=PLAN_CASES)
def test_the_plan_is_deterministic_for_a_seed(case):
    assert run_plan(**case)[1] == run_plan(**case)[1]


@given(
    powers=st.dictionaries(NAMES, st.floats(0.5, 100.0), min_size=1, max_size=5),
    n_chunks=st.integers(1, 40),
    seed=st.integers(0, 2**16),
)
def test_the_first_parts_of_a_round_follow_the_measured_powers(powers, n_chunks, seed):
    estimator = PowerEstimator()
    for worker, power in powers.items():
        estimator.report(worker, samples=1000, seconds=1000 / power)
    plan = EpochPlan([1] * n_chunks, powers, epoch=0, seed=seed, chunks_per_round=n_chunks, estimator=estimator)
    expected = allocate_round(chunk_order(n_chunks, epoch=0, seed=seed), estimator.powers(powers))
    sharing = [worker for worker, chunks in expected.items() if chunks]
    for worker in sharing:
        part = plan.next_part(worker)
        assert part.chunks == tuple(expected[worker]) and part.round_index == 0
        assert (part.round_samples, part.n_workers) == (n_chunks, len(sharing))
