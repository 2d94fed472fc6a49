import math

import numpy as np
import pytest

from meshrecon.engine import detect_plateau


def _its(n, period=100):
    return [period * (k + 1) - 1 for k in range(n)]


def test_rising_curve_is_not_flat():
    # F1 climbing 3 points per evaluation: the last fifth gains far more than one point.
    values = [10 + 3 * k for k in range(20)]
    r = detect_plateau(_its(20), values, mode="max", window_frac=0.2, min_delta=1.0)
    assert r.decided and not r.plateaued
    # Best of the window (iterations > 1599: 67 at 1999) minus best before (55 at 1599).
    assert r.improvement == pytest.approx(values[-1] - values[15])


def test_flat_and_noisy_flat_curves_are_flat():
    flat = [40.0] * 20
    r = detect_plateau(_its(20), flat, window_frac=0.2, min_delta=1.0)
    assert r.decided and r.plateaued and r.improvement == 0.0
    rng = np.random.default_rng(0)
    rising_then_noisy = [10 + 3 * k for k in range(10)] + list(40 + rng.uniform(-0.4, 0.4, 10))
    r = detect_plateau(_its(20), rising_then_noisy, window_frac=0.2, min_delta=1.0)
    assert r.plateaued and abs(r.improvement) < 0.8


def test_slow_rise_just_under_and_over_the_threshold():
    # 0.2 points per evaluation: the window (4 evaluations) gains 0.8 < 1, then 1.6 >= 1 with
    # twice the slope.
    slow = [30 + 0.2 * k for k in range(20)]
    assert detect_plateau(_its(20), slow, min_delta=1.0).plateaued
    faster = [30 + 0.4 * k for k in range(20)]
    assert not detect_plateau(_its(20), faster, min_delta=1.0).plateaued


def test_rising_then_falling_is_flat_and_min_mode_mirrors_max():
    peak = [10, 20, 30, 40, 50, 45, 40, 35, 30, 25]
    r = detect_plateau(_its(10), peak, mode="max", window_frac=0.2)
    assert r.plateaued and r.improvement < 0
    # A Chamfer-like metric (lower is better) falling 0.3 per evaluation: the window gains 0.6,
    # flat at a threshold of 1, not at 0.1 (thresholds are in the metric's units); the mirror
    # of the peak (falling then rising): flat.
    falling = [5.0 - 0.3 * k for k in range(10)]
    assert detect_plateau(_its(10), falling, mode="min", min_delta=1.0).plateaued
    r = detect_plateau(_its(10), falling, mode="min", min_delta=0.1)
    assert not r.plateaued and r.improvement == pytest.approx(0.6)
    assert detect_plateau(_its(10), [-v for v in peak], mode="min").plateaued


def test_undecided_without_enough_evaluations_and_nan_ignored():
    r = detect_plateau([99], [5.0])
    assert not r.decided and not r.plateaued and math.isnan(r.improvement)
    # Only one evaluation inside the window (min_points=2 by default): undecided.
    r = detect_plateau([99, 199, 299, 399, 499], [1, 2, 3, 3, 3], window_frac=0.2)
    assert not r.decided
    # NaN entries are skipped, not taken as the best or the worst.
    values = [10, 20, 30] + [40] * 14 + [float("nan"), 40.2, float("nan")]
    r = detect_plateau(_its(20), values)
    assert r.plateaued and r.improvement == pytest.approx(0.2)
    assert not detect_plateau([], []).decided


def test_last_iter_widens_the_window_to_the_planned_end():
    # Evaluated up to 999 of a 2000-iteration run: the window is (1600, 2000], empty: undecided.
    r = detect_plateau(_its(10), [1.0] * 10, last_iter=1999)
    assert not r.decided


def test_a_max_curve_at_zero_is_undecided():
    # A score at its floor has not started: no plateau, however long it stays there.
    r = detect_plateau(_its(20), [0.0] * 20, mode="max", window_frac=0.2, min_delta=0.01)
    assert not r.decided and not r.plateaued and "has not left 0" in r.reason
    # Once it moves it is judged as usual; a loss (mode "min") at 0 is a flat curve.
    r = detect_plateau(_its(20), [0.0] * 19 + [0.02], mode="max", min_delta=0.01)
    assert r.decided and not r.plateaued
    assert detect_plateau(_its(20), [0.0] * 20, mode="min").plateaued


def test_start_iter_leaves_a_first_phase_out():
    # Flat at 30 through a first phase (iterations 99-999: the voxel-only steps), then rising
    # 2 points per evaluation, then flat at 48 from 1899 on.
    its = _its(25)
    values = [30.0] * 10 + [30 + 2 * k for k in range(1, 10)] + [48.0] * 6
    # Judged at iteration 999 on the whole curve: flat, although the model has not trained yet.
    r = detect_plateau(its[:10], values[:10], window_frac=0.2, min_delta=1.0)
    assert r.decided and r.plateaued
    # From the end of the phase on: undecided at 999 (nothing after 999) ...
    r = detect_plateau(its[:10], values[:10], window_frac=0.2, min_delta=1.0, start_iter=999)
    assert not r.decided and not r.plateaued and "after iteration 999" in r.reason
    # ... then rising (1599: the window holds 1299-1599, the earlier best is 34 at 1199) ...
    r = detect_plateau(its[:16], values[:16], window_frac=0.2, min_delta=1.0, start_iter=999)
    assert r.decided and not r.plateaued and r.improvement == pytest.approx(42 - 34)
    # ... and flat once the rise is over (2499: window 2099-2499 at 48, 48 at 1999 before).
    r = detect_plateau(its, values, window_frac=0.2, min_delta=1.0, start_iter=999)
    assert r.decided and r.plateaued and r.improvement == 0.0
    # Points at or before start_iter are not in "before" either: a high first phase (a
    # curve that dips when the second phase begins) does not count against the second.
    dip = [60.0] * 10 + values[10:]
    assert detect_plateau(its, dip, start_iter=0).improvement < 0
    assert detect_plateau(its, dip, start_iter=999).improvement == 0.0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"mode": "up"}, "mode"),
        ({"window_frac": 0.0}, "PLATEAU_WINDOW_FRAC"),
        ({"window_frac": 1.0}, "PLATEAU_WINDOW_FRAC"),
        ({"min_delta": -1.0}, "PLATEAU_MIN_DELTA"),
        ({"start_iter": -1}, "PLATEAU_START_ITER"),
    ],
)
def test_bad_arguments_name_the_key(kwargs, match):
    with pytest.raises(ValueError, match=match):
        detect_plateau([1, 2], [1.0, 2.0], **kwargs)


def test_length_mismatch_and_unsorted_iterations_are_errors():
    with pytest.raises(ValueError, match="length"):
        detect_plateau([1, 2], [1.0])
    with pytest.raises(ValueError, match="increasing"):
        detect_plateau([2, 1], [1.0, 2.0])
