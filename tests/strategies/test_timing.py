"""check_timings: each inequality, with the sentence that names it."""

from __future__ import annotations

import pytest

from harmony.strategies import Params, strategy_for
from harmony.strategies.absolute import AbsoluteConsistency
from harmony.strategies.timing import (
    UnsafeTimings,
    check_timings,
    require_safe_timings,
    worst_case_takeover,
)

# config.py defaults at the time of writing: lease_ttl 6.0, renew 1.5, margin 1.0, grace 2.0
CONFIG_DEFAULTS = (6.0, 1.5, 1.0, 2.0, 0.5)
RECOMMENDED = (8.0, 1.0, 2.5, 1.5, 0.5)


def test_recommended_defaults_are_safe_and_meet_the_failover_target() -> None:
    assert check_timings(*RECOMMENDED, failover_target=10.0, election_time=9.0) == []
    p = Params()
    assert (p.lease_ttl, p.renew_interval, p.fence_margin, p.stop_grace) == RECOMMENDED[:4]
    assert p.timing_problems() == []


def test_config_defaults_are_unsafe_and_the_message_names_the_inequality() -> None:
    problems = check_timings(*CONFIG_DEFAULTS, fence_slack=0.0, clock_drift=0.0)
    assert problems == [
        "fence deadline (lease_ttl - fence_margin = 5 s) + stop_grace (2 s) must be < "
        "lease_ttl (6 s): the old holder could still run when the lease expires; use "
        "fence_margin > 2 s"
    ]


@pytest.mark.parametrize(
    ("args", "options", "needle"),
    [
        # fence completes too late: margin must exceed grace + slack + clock allowance
        ((8.0, 1.0, 2.0, 1.5, 0.5), {}, "fence deadline (lease_ttl - fence_margin = 6 s)"),
        ((8.0, 1.0, 2.5, 1.5, 0.5), {"clock_skew": 0.5}, "clock allowance"),
        ((8.0, 1.0, 2.5, 1.5, 0.5), {"fence_slack": 1.0}, "fence_slack (1 s)"),
        # not enough renew attempts before the fence deadline (3 x 2.0 = 6 >= 5.5)
        ((8.0, 2.0, 2.5, 1.5, 0.5), {}, "allows only 2 renew attempt(s)"),
        ((8.0, 1.0, 2.5, 1.5, 0.5), {"min_renew_attempts": 6}, "need 6"),
        ((8.0, 1.0, 8.0, 1.5, 0.5), {}, "fence_margin (8 s) must be < lease_ttl (8 s)"),
        ((8.0, 1.0, 2.5, 1.5, 0.5), {"request_timeout": 1.0}, "request_timeout (1 s)"),
        ((8.0, 1.0, 2.5, 1.5, 4.0), {}, "peer silence detection"),
        ((8.0, 1.0, 2.5, 1.5, 0.5), {"failover_target": 9.0}, "worst-case takeover"),
        ((0.0, 1.0, 2.5, 1.5, 0.5), {}, "lease_ttl (0.0 s) must be a positive"),
        ((8.0, 1.0, 2.5, 1.5, 0.5), {"clock_drift": -1.0}, "clock_drift (-1.0) must be >= 0"),
    ],
)
def test_each_inequality_is_reported(
    args: tuple[float, float, float, float, float], options: dict[str, float], needle: str
) -> None:
    problems = check_timings(*args, **options)  # type: ignore[arg-type]
    assert any(needle in p for p in problems), problems


def test_only_violated_inequalities_are_reported() -> None:
    problems = check_timings(8.0, 2.0, 2.5, 1.5, 0.5)
    assert len(problems) == 1 and "renew attempt" in problems[0]


def test_require_safe_timings_raises_with_all_problems() -> None:
    with pytest.raises(UnsafeTimings) as err:
        require_safe_timings(6.0, 3.0, 1.0, 2.0, 0.5)
    assert len(err.value.problems) == 2
    assert "fence deadline" in str(err.value) and "renew attempt" in str(err.value)


def test_absolute_consistency_refuses_unsafe_timings_and_split_brain_does_not() -> None:
    unsafe = Params(lease_ttl=6.0, renew_interval=1.5, fence_margin=1.0, stop_grace=2.0)
    with pytest.raises(UnsafeTimings):
        AbsoluteConsistency(unsafe)
    with pytest.raises(ValueError, match="fence deadline"):
        strategy_for("absolute-consistency", unsafe)
    assert strategy_for("split-brain-allowed", unsafe).params is unsafe
    AbsoluteConsistency(unsafe, check=False)  # explicit opt-out, for tests of the check itself


def test_worst_case_takeover_is_ttl_plus_lag_or_the_election() -> None:
    assert worst_case_takeover(8.0, expiry_lag=0.25) == 8.25
    assert worst_case_takeover(6.0, expiry_lag=0.25, election_time=9.0) == 9.0
