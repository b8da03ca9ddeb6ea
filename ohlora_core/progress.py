"""Progress lines for long work: count, rate and ETA, at most every 10 % of the work or 30 s."""

from __future__ import annotations

import time
from collections.abc import Callable


class Progress:
    """`tick(n, detail)` after each unit of work; logs when another 10 % is done, 30 s have passed
    since the last line, or the work is complete (so a run's log holds about ten lines per stage)."""

    def __init__(
        self,
        total: int,
        log: Callable[[str], None] | None,
        name: str,
        unit: str = "items",
        done: int = 0,
        every_seconds: float = 30.0,
    ):
        self.total, self.log, self.name, self.unit = max(int(total), 1), log, name, unit
        self.done = self.start_done = done
        self.start = self.last = time.perf_counter()
        self.every = every_seconds
        self.next_share = 0.1 * (int(10 * done / self.total) + 1)
        self.lines = 0

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def tick(self, n: int = 1, detail: str = "") -> None:
        self.done += n
        now = time.perf_counter()
        share = self.done / self.total
        if not self.log or (share < self.next_share and now - self.last < self.every and self.done < self.total):
            return
        rate = (self.done - self.start_done) / max(now - self.start, 1e-9)
        eta = max(self.total - self.done, 0) / max(rate, 1e-9)
        self.log(
            f"{self.name}: {self.done}/{self.total} {self.unit} ({100 * min(share, 1):.0f} %), "
            f"{rate:.2f} {self.unit}/s, ETA {eta:.0f} s" + (f"; {detail}" if detail else "")
        )
        self.lines += 1
        self.last = now
        while self.next_share <= share:
            self.next_share += 0.1
