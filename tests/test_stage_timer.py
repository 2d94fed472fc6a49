"""StageTimer and the stage marks: exclusive times, nesting, decorators, and no effect when off."""

import time

import pytest
import torch

from meshrecon.utils.stage_timer import StageTimer, stage


def _busy(seconds: float) -> None:
    # Sleep rather than spin: the machine may be shared, and wall time is what is measured.
    time.sleep(seconds)


def test_nested_stages_are_timed_exclusively():
    with StageTimer() as timer:
        with timer.measure("outer"):
            _busy(0.01)
            with stage("inner"):
                _busy(0.2)
            _busy(0.01)
    # Sleeps last at least their time; a loaded machine may stretch them, not shorten them.
    assert timer.totals["inner"] >= 0.2
    # The outer stage holds only its own 0.02 s: with the inner one's it would be >= 0.22 s.
    assert 0.02 <= timer.totals["outer"] < 0.15


def test_stage_totals_sum_to_the_wall_time():
    start = time.perf_counter()
    with StageTimer() as timer:
        with timer.measure("a"):
            _busy(0.01)
            with stage("b"):
                _busy(0.01)
                with stage("a"):  # the same name nested: counted once
                    _busy(0.01)
        with timer.measure("c"):
            _busy(0.01)
    wall = time.perf_counter() - start
    assert sum(timer.totals.values()) == pytest.approx(wall, abs=0.02)
    assert set(timer.totals) == {"a", "b", "c"}


def test_decorated_function_is_a_stage_each_call_and_keeps_its_result():
    @stage("losses")
    def loss(x, depth=0):
        _busy(0.1)
        # Recursion: every call opens a fresh mark.
        return x if depth == 2 else loss(x + 1, depth + 1)

    assert loss.__name__ == "loss"
    with StageTimer() as timer:
        with timer.measure("heads"):
            assert loss(1) == 3
    assert timer.totals["losses"] >= 0.3
    assert timer.totals["heads"] < 0.1


def test_marks_do_nothing_without_an_active_timer():
    timer = StageTimer()
    with stage("backbone"):
        pass
    assert dict(timer.totals) == {}
    with timer:
        with stage("backbone"):
            pass
    assert set(timer.totals) == {"backbone"}
    timer.reset()
    assert dict(timer.totals) == {}


def test_timers_do_not_nest_and_names_must_be_given():
    with StageTimer():
        with pytest.raises(RuntimeError, match="already active"):
            with StageTimer():
                pass
    with pytest.raises(ValueError, match="stage name"):
        stage("")


def test_a_stage_left_open_when_the_timer_closes_is_harmless():
    timer = StageTimer()
    mark = stage("late")
    with timer:
        mark.__enter__()
    mark.__exit__(None, None, None)
    assert timer.totals["late"] >= 0.0


def test_marks_show_in_a_profiler_trace():
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        with stage("backbone"):
            torch.ones(4).sum()
    names = {e.key for e in prof.key_averages()}
    assert "meshrecon.backbone" in names
