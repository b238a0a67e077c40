"""HTTP flow records for people: one line per exchange, and a summary now and then.

    10:41:07.123  192.0.2.10:40000  GET shop.example /items/1?page=2  200  ↑234 B ↓1.2 kB
        40 ms  completed                                          (one line, wrapped here)

JSON lines stay the collector's default for machines; this is what a person watching a
proxy wants to read, in colour on a terminal and plain when piped.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Mapping

from .termination import FlowEndReason, Termination

Fields = Mapping[str, object]

_RESET = "\033[0m"
_STATUS_COLOURS = {2: "\033[32m", 3: "\033[36m", 4: "\033[33m", 5: "\033[31m"}
_NO_STATUS_COLOUR = "\033[35m"
_PROBLEM_COLOUR = "\033[31m"
_DIM = "\033[2m"


def is_http_record(fields: Fields) -> bool:
    return "httpRequestMethod" in fields or "httpStatusCode" in fields


def size(octets: int) -> str:
    """1234 -> '1.2 kB': bytes as a person reads them."""
    if octets < 1000:
        return f"{octets} B"
    value = octets / 1000
    for unit in ("kB", "MB", "GB"):
        if value < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def ending(fields: Fields) -> str:
    """How the exchange ended, in words."""
    reason = fields.get("flowEndReason")
    code = fields.get("httpTerminationStateCode", 0)
    try:
        words = Termination(int(code)).words  # type: ignore[call-overload]
    except (TypeError, ValueError):
        words = f"termination code {code}"
    if reason == FlowEndReason.ACTIVE_TIMEOUT:
        return f"interim ({words} so far)" if code else "interim, still open"
    return words


def duration_ms(fields: Fields) -> int | None:
    start, end = fields.get("flowStartMilliseconds"), fields.get("flowEndMilliseconds")
    if isinstance(start, int) and isinstance(end, int) and start and end >= start:
        return end - start
    return None


def client(fields: Fields) -> str:
    host = fields.get("sourceIPv4Address") or fields.get("sourceIPv6Address") or "?"
    port = fields.get("sourceTransportPort", 0)
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def line(fields: Fields, *, colour: bool) -> str:
    """One line for one HTTP flow record."""
    start = fields.get("flowStartMilliseconds")
    moment = (time.strftime("%H:%M:%S", time.localtime(start / 1000)) + f".{start % 1000:03d}"
              if isinstance(start, int) and start else "--:--:--.---")
    status = int(fields.get("httpStatusCode", 0) or 0)  # type: ignore[call-overload]
    target = str(fields.get("httpRequestTarget", ""))
    query = fields.get("httpRequestQuery")
    if query:
        target = f"{target}?{query}"
    method = str(fields.get("httpRequestMethod", "") or "-")
    host = str(fields.get("httpRequestHost", "") or "-")
    took = duration_ms(fields)
    up = int(fields.get("initiatorOctets", 0) or 0)  # type: ignore[call-overload]
    down = int(fields.get("responderOctets", 0) or 0)  # type: ignore[call-overload]
    ended = ending(fields)
    status_text = str(status) if status else "---"
    took_text = f"{took} ms" if took is not None else "- ms"
    if colour:
        status_text = (_STATUS_COLOURS.get(status // 100, _NO_STATUS_COLOUR) + status_text
                       + _RESET)
        if fields.get("httpTerminationStateCode", 0):
            ended = _PROBLEM_COLOUR + ended + _RESET
        moment = _DIM + moment + _RESET
    return (f"{moment}  {client(fields)}  {method} {host} {target}  {status_text}  "
            f"\u2191{size(up)} \u2193{size(down)}  {took_text}  {ended}")


def percentile(sorted_values: list[int], fraction: float) -> int:
    """The value below which `fraction` of them lie (nearest rank)."""
    rank = max(math.ceil(fraction * len(sorted_values)), 1)
    return sorted_values[rank - 1]


class Summary:
    """What the records of an interval add up to: rates, status classes, top hosts,
    duration percentiles, and records lost by sequence numbers."""

    def __init__(self, top: int = 5) -> None:
        self.top = top
        self.reset()

    def reset(self) -> None:
        self.exchanges = 0
        self.classes: Counter[str] = Counter()
        self.hosts: Counter[str] = Counter()
        self.durations: list[int] = []
        self.problems = 0

    def add(self, fields: Fields) -> None:
        if fields.get("flowEndReason") == FlowEndReason.ACTIVE_TIMEOUT:
            return  # an interim record: the exchange counts once, at its end
        self.exchanges += 1
        status = int(fields.get("httpStatusCode", 0) or 0)  # type: ignore[call-overload]
        self.classes[f"{status // 100}xx" if status else "none"] += 1
        self.hosts[str(fields.get("httpRequestHost", "") or "-")] += 1
        took = duration_ms(fields)
        if took is not None:
            self.durations.append(took)
        if fields.get("httpTerminationStateCode", 0):
            self.problems += 1

    def render(self, seconds: float, lost: int) -> str:
        """The summary of what was added over the last `seconds`, then a fresh start."""
        rate = self.exchanges / seconds if seconds > 0 else 0.0
        classes = " ".join(f"{name} {count}" for name, count in sorted(self.classes.items()))
        hosts = ", ".join(f"{host} {count}" for host, count in self.hosts.most_common(self.top))
        durations = sorted(self.durations)
        timing = (f"p50 {percentile(durations, 0.5)} ms, p99 {percentile(durations, 0.99)} ms"
                  if durations else "no durations")
        text = (f"-- {seconds:.0f} s: {self.exchanges} exchanges ({rate:.1f}/s); "
                f"status {classes or 'none'}; not completed {self.problems}; {timing}; "
                f"top hosts: {hosts or 'none'}; lost by sequence numbers: {lost}")
        self.reset()
        return text
