"""Only UNAVAILABLE is retried, with capped exponential backoff and jitter."""

from __future__ import annotations

import grpc
import pytest

import orchestrator_client as oc
from orchestrator_client._retry import call_with_retry


class Recorder:
    """A sleep that records instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class Script:
    """A call that raises the scripted errors, then answers ``"ok"``."""

    def __init__(self, *errors: oc.RPCError) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_delay_grows_exponentially_up_to_the_maximum() -> None:
    policy = oc.RetryPolicy(initial=0.1, multiplier=2.0, maximum=0.5, jitter=0.0)
    assert [policy.delay(n) for n in range(5)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


def test_jitter_shortens_by_up_to_its_fraction() -> None:
    policy = oc.RetryPolicy(initial=1.0, jitter=0.5)
    assert policy.delay(0, rng=lambda: 0.0) == pytest.approx(1.0)
    assert policy.delay(0, rng=lambda: 1.0) == pytest.approx(0.5)
    assert policy.delay(0, rng=lambda: 0.5) == pytest.approx(0.75)


@pytest.mark.parametrize(
    "kwargs",
    [{"retries": -1}, {"multiplier": 0.5}, {"jitter": 1.5}, {"initial": -1.0}],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        oc.RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_only_unavailable_is_retryable() -> None:
    policy = oc.RetryPolicy(retries=3)
    assert policy.should_retry(oc.Unavailable("down"), 0)
    assert not policy.should_retry(oc.Unavailable("down"), 3)
    for error in (
        oc.NotFound(),
        oc.DeadlineExceeded(),
        oc.Internal(),
        oc.ResourceExhausted(),
        oc.RPCError(code=grpc.StatusCode.CANCELLED),
    ):
        assert not policy.should_retry(error, 0), error


async def test_unavailable_is_retried_until_success() -> None:
    sleep, call = Recorder(), Script(oc.Unavailable("a"), oc.Unavailable("b"))
    policy = oc.RetryPolicy(retries=3, initial=0.1, multiplier=2.0, jitter=0.5)
    result = await call_with_retry(call, policy, sleep=sleep, rng=lambda: 0.0)
    assert result == "ok"
    assert call.calls == 3
    assert sleep.delays == pytest.approx([0.1, 0.2])


async def test_gives_up_after_the_retries_with_the_last_error() -> None:
    errors = [oc.Unavailable(str(n)) for n in range(4)]
    sleep, call = Recorder(), Script(*errors)
    with pytest.raises(oc.Unavailable) as caught:
        await call_with_retry(call, oc.RetryPolicy(retries=2), sleep=sleep, rng=lambda: 0.0)
    assert caught.value is errors[2]
    assert call.calls == 3
    assert len(sleep.delays) == 2


@pytest.mark.parametrize(
    "error",
    [oc.NotFound("x"), oc.InvalidArgument("x"), oc.DeadlineExceeded("x"), oc.Internal("x")],
)
async def test_other_errors_are_raised_at_once(error: oc.RPCError) -> None:
    sleep, call = Recorder(), Script(error)
    with pytest.raises(type(error)):
        await call_with_retry(call, oc.RetryPolicy(retries=5), sleep=sleep)
    assert call.calls == 1
    assert sleep.delays == []


async def test_zero_retries_means_one_attempt() -> None:
    sleep, call = Recorder(), Script(oc.Unavailable())
    with pytest.raises(oc.Unavailable):
        await call_with_retry(call, oc.RetryPolicy(retries=0), sleep=sleep)
    assert call.calls == 1
