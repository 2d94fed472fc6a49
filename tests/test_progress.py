"""Progress bars: tqdm's live bar on a terminal, whole lines (no carriage returns) elsewhere."""

import io

import pytest
from tqdm import tqdm

from meshrecon.utils.progress import LineProgressBar, progress_bar, restart


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_file_gets_one_line_per_ten_percent():
    out = io.StringIO()
    # mininterval 0: every update reaches display(), as a slow loop's would.
    for _ in progress_bar(range(50), desc="inference", file=out, mininterval=0, miniters=1):
        pass
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert [line.split("%")[0].split()[-1] for line in lines] == [str(p) for p in range(0, 101, 10)]
    assert all(line.startswith("inference:") for line in lines)
    assert "50/50" in lines[-1]


def test_step_interval_reset_and_close():
    out = io.StringIO()
    bar = progress_bar(total=4, file=out, step_percent=50, mininterval=0, miniters=1)
    assert isinstance(bar, LineProgressBar)
    bar.update(1)  # 25%: same step as 0%, no line
    bar.update(1)  # 50%
    bar.reset(total=2)  # a new phase starts its lines again
    bar.update(1)
    bar.close()  # the final state (1/2) was written at 50%: not repeated
    lines = out.getvalue().splitlines()
    assert [line.split("|")[-1].split()[0] for line in lines] == ["0/4", "2/4", "0/2", "1/2"]
    # Without a total: the first state, then one line per interval, then the final state.
    out = io.StringIO()
    bar = progress_bar(file=out, interval=1e9, mininterval=0, miniters=1)
    for _ in range(5):
        bar.update(1)
    bar.close()
    assert out.getvalue().count("\n") == 2 and "5it" in out.getvalue().splitlines()[-1]
    with pytest.raises(ValueError, match="step_percent"):
        progress_bar(total=3, file=io.StringIO(), step_percent=0)


@pytest.mark.parametrize("terminal", [False, True])
def test_restart_resumes_a_count_without_counting_it_in_the_rate(terminal):
    # The benchmark's bar: training, a validation, then training again from iteration 1199.
    out = _Terminal() if terminal else io.StringIO()
    bar = progress_bar(total=4800, file=out, mininterval=0, miniters=1)
    bar.n = 1000
    bar.refresh()
    restart(bar, total=40, start=0)
    bar.update(20)
    restart(bar, total=4800, start=1199)
    # The 1199 iterations done before are not progress made since the restart: no rate yet
    # (not 1199 items in the microseconds since it), and no time left.
    assert bar.format_dict["initial"] == 1199 and bar.n == 1199
    assert "?it/s" in str(bar) and "<?" in str(bar)
    bar.update(1)
    assert bar.format_dict["elapsed"] < 60 and bar.format_dict["n"] - bar.initial == 1
    bar.close()
    if not terminal:
        lines = out.getvalue().splitlines()
        # A line at each phase's start, none for the interim zero of the phase resumed at 1199.
        assert [line.split("|")[-1].split()[0] for line in lines] == [
            "0/4800",
            "1000/4800",
            "0/40",
            "20/40",
            "1199/4800",
            "1200/4800",
        ]


def test_terminal_gets_tqdm_live_bar():
    out = _Terminal()
    bar = progress_bar(range(3), file=out, step_percent=20)
    assert type(bar) is tqdm
    list(bar)
    assert "\r" in out.getvalue()
