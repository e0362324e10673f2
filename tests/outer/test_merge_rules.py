"""AGWU's merge rules: weights positive, bounded, monotone in staleness; what a round adds up to."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bptdask.errors import ConfigurationError
from bptdask.outer.merge_rules import MERGE_RULES, merge_alpha, round_weight
from bptdask.outer.run_config import RunConfig

RULES = st.sampled_from(MERGE_RULES)
WEIGHTS = st.floats(0.01, 1.0)
DECAYS = st.floats(0.05, 1.0)


def alpha(rule, staleness, *, n_workers=4, share=1.0, merge_weight=1.0, staleness_decay=0.5):
    return merge_alpha(
        rule,
        merge_weight=merge_weight,
        share=share,
        staleness=staleness,
        n_workers=n_workers,
        staleness_decay=staleness_decay,
    )


@given(
    rule=RULES,
    staleness=st.integers(0, 500),
    n_workers=st.integers(1, 64),
    share=st.floats(0.01, 8.0),
    merge_weight=WEIGHTS,
    decay=DECAYS,
)
def test_weights_are_positive_and_never_exceed_the_share_or_a_whole_delta(
    rule, staleness, n_workers, share, merge_weight, decay
):
    weight = alpha(rule, staleness, n_workers=n_workers, share=share, merge_weight=merge_weight, staleness_decay=decay)
    assert 0 < weight <= min(1.0, merge_weight * share * (1 + 1e-12)) or (decay**staleness == 0 and weight == 0)


@pytest.mark.parametrize("rule", MERGE_RULES)
def test_a_fresh_push_of_a_large_part_applies_its_delta_once(rule):
    assert alpha(rule, 0, n_workers=1, share=2.5) == 1.0


@given(rule=RULES, staleness=st.integers(0, 200), n_workers=st.integers(1, 64), decay=DECAYS)
def test_a_staler_push_never_weighs_more(rule, staleness, n_workers, decay):
    now = alpha(rule, staleness, n_workers=n_workers, staleness_decay=decay)
    later = alpha(rule, staleness + 1, n_workers=n_workers, staleness_decay=decay)
    assert later <= now * (1 + 1e-12)


@pytest.mark.parametrize("n_workers", [1, 2, 4, 8, 16, 64])
@pytest.mark.parametrize("rule", ["concurrency", "inverse"])
def test_a_round_adds_one_update_whatever_the_number_of_workers(rule, n_workers):
    assert round_weight(rule, merge_weight=1.0, n_workers=n_workers, staleness_decay=0.5) == pytest.approx(1)


@pytest.mark.parametrize("n_workers", [1, 2, 4, 8, 16, 64])
def test_the_concurrency_rule_damps_only_staleness_beyond_the_other_workers(n_workers):
    on_time = alpha("concurrency", n_workers - 1, n_workers=n_workers)
    assert on_time == pytest.approx(1 / n_workers), "overtaken only by the others' merges: on time"
    assert alpha("concurrency", n_workers + 2, n_workers=n_workers) == pytest.approx(on_time * 0.5**3)


def test_the_inverse_rule_counts_a_pushs_own_merge_as_zhang_et_al():
    assert alpha("inverse", 0) == 1.0, "a push with no merge since its pull is a plain SGD step"
    assert alpha("inverse", 3, n_workers=4) == pytest.approx(1 / 4)
    assert alpha("inverse", 9, n_workers=4) == pytest.approx(1 / 10), "beyond the concurrency: 1/τ, not γ^s"


def test_the_papers_rule_vanishes_as_workers_grow_and_the_others_do_not():
    papers = [round_weight("exponential", merge_weight=1.0, n_workers=m, staleness_decay=0.5) for m in (2, 8, 16)]
    assert papers[0] == pytest.approx(1.0) and papers[1] == pytest.approx(8 * 0.5**7)
    assert papers[2] < 1e-3, "at 16 workers a round adds a thousandth of an update: learning stops"
    for rule in ("concurrency", "inverse", "polynomial"):
        assert round_weight(rule, merge_weight=1.0, n_workers=16, staleness_decay=0.5) >= 1.0


def test_the_rule_is_chosen_by_name():
    assert RunConfig().merge_rule == "inverse"
    with pytest.raises(ConfigurationError, match="merge_rule must be one of 'inverse', 'concurrency'"):
        RunConfig(merge_rule="downpour")
    with pytest.raises(ValueError, match="unknown merge rule"):
        alpha("downpour", 0)
