"""Load generators: an open loop (fixed arrival rate) for latency, a closed loop for maximum throughput.

Latency in the open loop is measured from each request's *scheduled* send time, so a server that
falls behind is charged for the queue it builds (no coordinated omission). Every loop is bounded
both in requests and in seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import aiohttp

JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Target:
    """One HTTP endpoint and the bodies it is sent, in turn (or, for GET, the paths asked for in turn)."""

    name: str
    url: str
    bodies: Sequence[bytes] = (b"",)
    method: str = "POST"
    paths: Sequence[str] = ("",)

    def requests(self) -> Iterator[tuple[str, bytes]]:
        """(URL, body) of each request, forever."""
        for path, body in zip(itertools.cycle(self.paths), itertools.cycle(self.bodies), strict=False):
            yield self.url + path, body


@dataclass
class LoadResult:
    """What one loop measured."""

    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    late_s: float = 0.0  # open loop: how far behind schedule the generator itself fell, at worst

    @property
    def requests(self) -> int:
        """Requests that got an answer or failed."""
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def failures(self) -> int:
        """Non-2xx answers and transport errors."""
        bad = sum(n for status, n in self.statuses.items() if not 200 <= status < 300)
        return bad + sum(self.errors.values())

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return (self.requests - self.failures) / self.elapsed_s if self.elapsed_s else 0.0

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile latency in milliseconds."""
        return percentile([s * 1000 for s in self.latencies_s], q)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (NaN when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    """The median, NaN when empty."""
    return statistics.median(values) if values else float("nan")


def session(connections: int) -> aiohttp.ClientSession:
    """A kept-alive client pool of at most ``connections`` connections."""
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30))


async def _one(
    client: aiohttp.ClientSession, method: str, request: tuple[str, bytes], result: LoadResult
) -> int | None:
    url, body = request
    try:
        async with client.request(method, url, data=body or None, headers=JSON if body else None) as answer:
            await answer.read()
            result.statuses[answer.status] += 1
            return answer.status
    except (aiohttp.ClientError, TimeoutError) as error:
        result.errors[type(error).__name__] += 1
        return None


async def open_loop(target: Target, *, rate: float, count: int, max_s: float) -> LoadResult:
    """Send ``count`` requests at ``rate`` per second, evenly spaced, whatever the answers take."""
    result = LoadResult()
    requests = target.requests()
    async with session(64) as client:
        start = time.perf_counter()

        async def fire(scheduled: float, request: tuple[str, bytes]) -> None:
            status = await _one(client, target.method, request, result)
            if status is not None and 200 <= status < 300:
                result.latencies_s.append(time.perf_counter() - scheduled)

        tasks = []
        for index in range(count):
            scheduled = start + index / rate
            if scheduled - start > max_s:
                break
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                result.late_s = max(result.late_s, -delay)
            tasks.append(asyncio.create_task(fire(scheduled, next(requests))))
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=max_s + 30)
        result.elapsed_s = time.perf_counter() - start
    return result


async def closed_loop(target: Target, *, clients: int, duration_s: float, max_requests: int) -> LoadResult:
    """``clients`` concurrent clients, each sending its next request as soon as the last is answered."""
    result = LoadResult()
    requests = target.requests()
    sent = itertools.count()
    async with session(clients) as client:
        start = time.perf_counter()
        deadline = start + duration_s

        async def run_client() -> None:
            while time.perf_counter() < deadline and next(sent) < max_requests:
                began = time.perf_counter()
                status = await _one(client, target.method, next(requests), result)
                if status is not None and 200 <= status < 300:
                    result.latencies_s.append(time.perf_counter() - began)

        await asyncio.wait_for(asyncio.gather(*(run_client() for _ in range(clients))), duration_s + 60)
        result.elapsed_s = time.perf_counter() - start
    return result


PACE_S = 0.01  # the single client's pause between requests, idle and after a burst alike


async def paced_p50(target: Target, *, count: int) -> float:
    """One client's p50 (ms) with a pause between requests: the idle reference of ``recovery``.

    Measured the way ``recovery`` probes, since a paced request of a millisecond costs more than a
    back-to-back one (caches and CPU idle states), and only like can be compared with like.
    """
    requests = target.requests()
    result = LoadResult()
    async with session(1) as client:
        for _ in range(count):
            began = time.perf_counter()
            if await _one(client, target.method, next(requests), result) is not None:
                result.latencies_s.append(time.perf_counter() - began)
            await asyncio.sleep(PACE_S)
    return result.percentile(50)


@dataclass
class Recovery:
    """How long one client took to see idle latency again, or where it stood when the probe gave up."""

    seconds: float | None
    last_median_ms: float


async def recovery(target: Target, *, idle_p50_ms: float, max_s: float, window: int = 5) -> Recovery:
    """Seconds until one client's rolling median latency is back within 1.5x of ``idle_p50_ms``."""
    requests = target.requests()
    recent: list[float] = []
    result = LoadResult()
    async with session(1) as client:
        start = time.perf_counter()
        while (now := time.perf_counter()) - start < max_s:
            await _one(client, target.method, next(requests), result)
            recent = [*recent[-(window - 1) :], (time.perf_counter() - now) * 1000]
            if len(recent) == window and median(recent) <= 1.5 * idle_p50_ms:
                return Recovery(time.perf_counter() - start, median(recent))
            await asyncio.sleep(PACE_S)
    return Recovery(None, median(recent) if recent else float("inf"))
