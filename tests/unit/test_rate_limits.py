"""The rate limit's windows (server/access/rate_limits.py): Litestar's fixed window, kept as a count."""

from __future__ import annotations

from server.access.rate_limits import CountedLimit, WindowCounter


def test_a_window_admits_its_limit_then_refuses_until_it_resets() -> None:
    windows = CountedLimit(rate_limit=("minute", 3)).windows
    counts = []
    for _ in range(4):
        window = windows.counted("device:a", 1_000, 60, 3)
        counts.append(None if window is None else (window.count, window.reset))
    assert counts == [(1, 1_060), (2, 1_060), (3, 1_060), None]
    # A refused request is not counted, and other keys are not touched.
    assert windows.by_key["device:a"].count == 3
    assert windows.counted("device:b", 1_059, 60, 3) is not None
    assert windows.counted("device:a", 1_059, 60, 3) is None
    # The window opened by the key's first request ends a unit later: a new one opens.
    reopened = windows.counted("device:a", 1_060, 60, 3)
    assert reopened is not None
    assert (reopened.count, reopened.reset) == (1, 1_120)


def test_windows_of_keys_that_never_come_back_are_swept() -> None:
    windows = CountedLimit(rate_limit=("minute", 10)).windows
    for address in range(100):
        windows.counted(f"address:10.0.0.{address}", 1_000, 60, 10)
    assert len(windows.by_key) == 100
    windows.counted("address:10.0.1.1", 1_030, 60, 10)  # within the sweep's interval
    assert len(windows.by_key) == 101
    windows.counted("address:10.0.1.2", 1_061, 60, 10)
    assert set(windows.by_key) == {"address:10.0.1.1", "address:10.0.1.2"}


def test_every_limit_counts_with_its_own_windows() -> None:
    first, second = CountedLimit(rate_limit=("minute", 1)), CountedLimit(rate_limit=("minute", 1))
    assert first.middleware_class is WindowCounter
    assert first.windows is not second.windows
    assert first.windows.counted("k", 0, 60, 1) is not None
    assert second.windows.counted("k", 0, 60, 1) is not None
