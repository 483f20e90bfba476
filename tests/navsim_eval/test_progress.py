"""Progress lines: count, rate and time left; redrawn in place on a terminal, plain lines now and then elsewhere."""

from __future__ import annotations

import io

from navsim_eval.progress import NON_TTY_INTERVAL_S, Progress, format_duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_durations_read_naturally() -> None:
    assert [format_duration(s) for s in (0, 45.4, 185, 7620, float("inf"))] == ["0s", "45s", "3m05s", "2h07m", "?"]


def test_plain_lines_every_interval_with_rate_and_time_left() -> None:
    clock, stream = FakeClock(), io.StringIO()
    with Progress(100, "cache", stream=stream, clock=clock) as progress:
        for _ in range(100):
            clock.now += NON_TTY_INTERVAL_S / 10  # 10 scenes per interval: 1 scene/s
            progress.update()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and "\r" not in stream.getvalue()
    assert lines[0] == "cache: 10/100 scenes (10%), 1.0 scenes/s, 1m30s left"
    assert lines[-1].startswith("cache: 100/100 scenes (100%)")


def test_short_runs_stay_quiet_off_a_terminal() -> None:
    clock, stream = FakeClock(), io.StringIO()
    with Progress(5, "cache", stream=stream, clock=clock) as progress:
        for _ in range(5):
            clock.now += 0.5
            progress.update()
    assert stream.getvalue() == ""


def test_terminal_line_is_redrawn_in_place_and_ended() -> None:
    clock, stream = FakeClock(), Terminal()
    with Progress(None, "cache", stream=stream, clock=clock) as progress:
        for _ in range(3):
            clock.now += 1.0
            progress.update()
    text = stream.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n") and text.count("\n") == 1
    assert "cache: 3 scenes, 1.0 scenes/s" in text.splitlines()[-1]
