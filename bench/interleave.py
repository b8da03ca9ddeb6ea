"""Timing two flows fairly: interleaved A B A B ... on the same device in the same run.

Sequential timing (all of A, then all of B) lets machine load, thermal state or caches favour one side;
interleaving pairs makes both sides see the same conditions. Report the median of each side, the spread
(min..max) and the ratio of medians, and the ratio per pair (its spread says how much to trust it).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Paired:
    """Seconds per repetition of each side, in the order they ran (A[i] ran just before B[i])."""

    a_name: str
    b_name: str
    a: list[float] = field(default_factory=list)
    b: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """median(B) / median(A): how many times faster A is than B."""
        return statistics.median(self.b) / statistics.median(self.a)

    @property
    def pair_ratios(self) -> list[float]:
        return [b / a for a, b in zip(self.a, self.b)]

    def report(self, unit: str = "s", scale: float = 1.0) -> str:
        def side(name: str, xs: list[float]) -> str:
            xs = [x * scale for x in xs]
            return (
                f"{name}: median {statistics.median(xs):.4g} {unit} (min {min(xs):.4g}, max {max(xs):.4g}, n {len(xs)})"
            )

        pr = self.pair_ratios
        return (
            f"{side(self.a_name, self.a)}\n{side(self.b_name, self.b)}\n"
            f"ratio {self.b_name}/{self.a_name}: {self.ratio:.2f}x (per pair {min(pr):.2f}..{max(pr):.2f}x)"
        )


def interleave(
    a: Callable[[], object],
    b: Callable[[], object],
    pairs: int,
    *,
    warmup: int = 1,
    a_name: str = "ours",
    b_name: str = "reference",
    sync: Callable[[], None] = lambda: None,
) -> Paired:
    """Run `warmup` untimed pairs, then `pairs` timed pairs A, B, A, B, ...; `sync()` (e.g.
    torch.cuda.synchronize) ends each timed call, so queued device work is counted."""
    for _ in range(warmup):
        a(), b()
        sync()
    out = Paired(a_name, b_name)
    for _ in range(pairs):
        for fn, times in ((a, out.a), (b, out.b)):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
    return out
