"""The asyncio side of exporting: a bounded queue, one background task, one socket per collector.

Producers (mitmproxy hooks) call `submit`, which never blocks and never raises:
a full queue drops the record and counts it. The background task drains the
queue in batches into one `ExportSession` per collector and sends what they
produce. Send failures are counted, logged at a limited rate and never
propagate. After `close()` the exporter works synchronously, so records of
flows that end during shutdown still go out.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import msgspec

from .destinations import CollectorKind, CollectorSpec
from .errors import EncodeError
from .filewriter import FILE_MAX_MESSAGE_SIZE, IpfixFileWriter
from .message import Datagram
from .session import ExportSession, RecordFormat, SessionConfig

logger = logging.getLogger(__name__)

RESOLVE_RETRY_MS = 30_000
LOG_INTERVAL_MS = 10_000  # at most one error line per collector in this time
# A collector that refused (ICMP) counts as reachable again once sends span this long
# without a refusal: routers send ICMP errors at about one a second at most.
REACHABLE_AFTER_MS = 3_000
# A collector that refused may have restarted without our templates: they go again when
# it seems back, but not more often than this.
TEMPLATE_RESEND_MS = 3_000
# errno of an ICMP error that an earlier datagram drew: a connected UDP socket reports it
# on the next send, which then does not transmit its own datagram (Linux)
_ICMP_ERRORS = frozenset((errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH,
                          errno.EHOSTDOWN, errno.ENOPROTOOPT))
WAKE_AT_RECORDS = 128  # a queue this long wakes the task at once; shorter ones wait a little
# Records encoded before the task lets the proxy run again: the loop is the proxy's, and a
# whole batch (WAKE_AT_RECORDS and more) would hold it for a noticeable time.
SLICE_RECORDS = 32


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class ExporterStatistics(msgspec.Struct, kw_only=True):
    """What the log's statistics line reports, summed over collectors."""

    records: int = 0  # records handed to the exporter
    exported: int = 0  # flow records that left this host (or went to a file), summed
    datagrams: int = 0
    octets: int = 0
    dropped: int = 0  # queue full: never reached any collector
    encode_errors: int = 0
    send_errors: int = 0  # datagrams that did not leave this host (or reach the file)
    refusals: int = 0  # ICMP errors for datagrams that did leave: the collector is not there
    truncations: int = 0
    max_flush_ms: float = 0.0
    cpu_seconds: float = 0.0  # spent by the background task: encoding, framing, sending


class _Target:
    """One collector: its session and its socket (or file), and its health."""

    def __init__(self, spec: CollectorSpec, config: SessionConfig,
                 formats: Sequence[RecordFormat], now: int) -> None:
        self.spec = spec
        if spec.kind is CollectorKind.FILE:
            config = msgspec.structs.replace(config, max_message_size=FILE_MAX_MESSAGE_SIZE)
        self.session = ExportSession(msgspec.structs.replace(config, format=spec.format),
                                     formats, now)
        self.sock: socket.socket | None = None
        self.writer: IpfixFileWriter | None = None
        self.resolve_after = 0
        self.local_address: Any = None  # our end of the socket: kept when it is reopened
        self.last_log = -LOG_INTERVAL_MS
        self.suppressed = 0
        self.send_errors = 0
        self.refusals = 0
        self.refused_at: int | None = None  # last ICMP error of the current outage
        self.clean_since: int | None = None  # first send after it that drew no error


class Exporter:
    """Exports flow records (of the given formats) to several collectors from one
    background task."""

    def __init__(
        self,
        collectors: Sequence[CollectorSpec],
        config: SessionConfig,
        formats: Sequence[RecordFormat],
        *,
        queue_size: int = 16_384,
    ) -> None:
        if queue_size <= 0:
            raise ValueError(f"queue size must be positive, not {queue_size}")
        self._clock = now_ms
        start = now_ms()
        self._targets = [_Target(spec, config, formats, start) for spec in collectors]
        self._queue: deque[Any] = deque()
        self._queue_size = queue_size
        self.statistics = ExporterStatistics()
        self._wakeup: asyncio.Event | None = None
        self._passed: asyncio.Event | None = None  # set after each pass of the task
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batch_timer: asyncio.TimerHandle | None = None
        # records wait this long in the queue at most, then the message they join waits
        # for the flush interval: under 1.5 flush intervals in all
        self._queue_wait_s = max(config.flush_interval_ms, 2) / 2000
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._statistics_interval_ms = config.statistics_interval_ms
        self._next_log = start + config.statistics_interval_ms
        self._cut_by_producer = 0

    # -- producer side: called from hooks -------------------------------------------------

    def submit(self, record: Any) -> bool:
        """Queue a record; False when the queue was full."""
        self.statistics.records += 1
        if self._closed:  # shutting down: no task any more, export right away
            self._export_now([record], release=True)
            return True
        if len(self._queue) >= self._queue_size:
            self.statistics.dropped += 1
            now = self._clock()
            for target in self._targets:
                target.session.count_not_sent(1, now)
            return False
        self._queue.append(record)
        queued = len(self._queue)
        if self._loop is not None and self._wakeup is not None:
            # one wake-up per batch, not per record: waking the task costs more than
            # encoding a record
            if queued == 1:
                self._batch_timer = self._loop.call_later(self._queue_wait_s, self._wakeup.set)
            elif queued == WAKE_AT_RECORDS:
                self._wakeup.set()
        return True

    def count_truncated(self, fields: int) -> None:
        """Fields a producer cut before handing the record over (lists cut between items
        to fit every collector): reported with the encoder's own cuts."""
        self._cut_by_producer += fields

    def count_lost(self, now: int | None = None) -> None:
        """A record that could not be built: counted as unencodable and as not sent."""
        self.statistics.encode_errors += 1
        now = self._clock() if now is None else now
        for target in self._targets:
            target.session.count_not_sent(1, now)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Start the background task on the running loop; the caller keeps the reference."""
        self._wakeup = asyncio.Event()
        self._passed = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self._queue:  # records queued before the loop ran
            self._wakeup.set()
        self._task = self._loop.create_task(self._run(), name="flowexport")
        return self._task

    def close(self) -> None:
        """Stop the task, export everything queued, flush every session, close sockets and
        files; synchronously. Records submitted later are exported one call at a time."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._loop = None
        self._closed = True
        now = self._clock()
        self._reopen()
        self._drain(now)  # also cancels a pending batch timer
        for target in self._targets:
            self._send(target, target.session.flush_with_statistics(now), now)
        self.shutdown()

    def shutdown(self) -> None:
        """Close sockets and files; `close` does it too (a script reload leaves none open)."""
        for target in self._targets:
            if target.sock is not None:
                target.sock.close()
                target.sock = None
            if target.writer is not None:
                target.writer.close()
                target.writer = None

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def wait_sent(self) -> None:
        """Until every record submitted so far has been sent, or counted as not sent
        (each one waits for its message's flush interval)."""
        assert self._wakeup is not None and self._passed is not None, "start() first"
        while self._queue or any(t.session.holds_records for t in self._targets):
            self._passed.clear()
            if self._queue:
                self._wakeup.set()  # the flush deadline wakes the task by itself
            await self._passed.wait()

    # -- the background task --------------------------------------------------------------

    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            now = self._clock()
            if any(t.sock is None and t.writer is None for t in self._targets):
                await self._resolve(loop, now)
            while True:  # a slice at a time, letting the proxy run in between
                started = time.perf_counter()
                cpu = time.process_time()
                more = self._drain(now, SLICE_RECORDS)
                if not more:
                    for target in self._targets:
                        self._send(target, target.session.poll(now), now)
                self.statistics.cpu_seconds += time.process_time() - cpu
                flush_ms = (time.perf_counter() - started) * 1000
                self.statistics.max_flush_ms = max(self.statistics.max_flush_ms, flush_ms)
                if not more:
                    break
                await asyncio.sleep(0)
                now = self._clock()
            if now >= self._next_log:
                self._next_log = now + self._statistics_interval_ms
                # the task count lets a soak test see leaks of tasks anywhere in the process
                logger.info(f"{self.statistics_line()}, {len(asyncio.all_tasks())} tasks")
            self._wakeup.clear()
            if self._passed is not None:
                self._passed.set()
            deadline = min([t.session.next_deadline() for t in self._targets] + [self._next_log])
            delay = max(deadline - self._clock(), 0) / 1000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), delay)

    def _drain(self, now: int, limit: int | None = None) -> bool:
        """Export what is queued, or `limit` records of it; True when some are left."""
        if self._batch_timer is not None:
            self._batch_timer.cancel()
            self._batch_timer = None
        queue = self._queue
        while queue:
            if limit is not None and len(queue) > limit:
                self._export_now([queue.popleft() for _ in range(limit)], now)
                return True
            batch = list(queue)
            queue.clear()
            self._export_now(batch, now)
        return False

    def _export_now(self, records: list[Any], now: int | None = None, *,
                    release: bool = False) -> None:
        """Encode and send `records`; `release` closes sockets and files afterwards (a record
        that came after `close`)."""
        now = self._clock() if now is None else now
        if self._closed:  # after close: a socket of its own, so templates go first
            self._reopen()
        for target in self._targets:
            add = target.session.add
            for record in records:
                try:
                    add(record, now)
                except EncodeError as exc:
                    self.statistics.encode_errors += 1
                    target.session.count_not_sent(1, now)
                    self._log(target, now, f"record not encodable: {exc}")
        for target in self._targets:
            if self._closed:
                self._send(target, target.session.flush(now), now)
            else:
                self._send(target, target.session.poll(now), now)
        if release:
            self.shutdown()

    # -- sending --------------------------------------------------------------------------

    async def _resolve(self, loop: asyncio.AbstractEventLoop, now: int) -> None:
        for target in self._targets:
            spec = target.spec
            if target.sock is not None or target.writer is not None or now < target.resolve_after:
                continue
            if spec.kind is CollectorKind.FILE:
                try:
                    target.writer = IpfixFileWriter(spec.path)
                except OSError as exc:
                    target.resolve_after = now + RESOLVE_RETRY_MS
                    self._log(target, now, f"cannot open: {exc}")
                continue
            try:
                infos = await loop.getaddrinfo(spec.host, spec.port, type=socket.SOCK_DGRAM)
                self._connect(target, infos[0])
            except OSError as exc:
                target.resolve_after = now + RESOLVE_RETRY_MS
                self._log(target, now, f"cannot resolve or connect: {exc}")

    def _reopen(self) -> None:
        """Without a loop (shutdown): open what is closed, for hosts that are IP literals.

        The new socket takes the old one's source port where it can (collectors key
        templates and sequence numbers on it); on another port the collector sees a new
        stream, which gets the templates again before any record.
        """
        for target in self._targets:
            if target.sock is None and target.spec.kind is not CollectorKind.FILE:
                try:
                    infos = socket.getaddrinfo(target.spec.host, target.spec.port,
                                               type=socket.SOCK_DGRAM,
                                               flags=socket.AI_NUMERICHOST)
                    same_port = self._connect(target, infos[0])
                except OSError:
                    continue
                if target.session.statistics.messages and not same_port:
                    target.session.request_templates()
            if target.writer is None and target.spec.kind is CollectorKind.FILE:
                with contextlib.suppress(OSError):
                    target.writer = IpfixFileWriter(target.spec.path)

    @staticmethod
    def _connect(target: _Target, info: tuple[Any, ...]) -> bool:
        """Open the target's socket; True when it has the source port it had before."""
        family, kind, proto, _, address = info
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        same_port = False
        if target.local_address is not None:
            try:
                sock.bind(target.local_address)
                same_port = True
            except OSError:
                pass  # taken meanwhile: any port, and the collector sees a new stream
        sock.connect(address)  # fixes the source port: collectors key templates on it
        target.sock = sock
        target.local_address = sock.getsockname()
        return same_port

    def _send(self, target: _Target, datagrams: list[Datagram], now: int) -> None:
        """Send each datagram; a collector that is not there does not stop any of them."""
        if not datagrams:
            return
        sock = target.sock
        if sock is None or target.writer is not None:
            self._write_or_fail(target, datagrams, now)
            return
        records = octets = sent = 0
        refused = False
        for datagram in datagrams:
            payload = datagram.payload
            try:
                sock.send(payload)
            except OSError as exc:
                if exc.errno in _ICMP_ERRORS:
                    # an earlier datagram drew an ICMP error; this one did not leave yet
                    refused = True
                    self._refused(target, now, exc)
                    try:
                        sock.send(payload)
                    except OSError as again:
                        self._failed(target, datagram, now, f"send failed: {again}")
                        continue
                else:
                    self._failed(target, datagram, now, f"send failed: {exc}")
                    continue
            sent += 1
            records += datagram.flow_records
            octets += len(payload)
        if sent:
            stats = self.statistics
            stats.datagrams += sent
            stats.octets += octets
            stats.exported += records
            if target.refused_at is not None and not refused:
                self._clean_send(target, now)

    def _refused(self, target: _Target, now: int, exc: OSError) -> None:
        """An ICMP error: counted and logged, not a lost datagram (it left, and so does the
        one whose send reported it)."""
        self.statistics.refusals += 1
        target.refusals += 1
        target.refused_at = now
        target.clean_since = None
        reason = "port unreachable" if exc.errno == errno.ECONNREFUSED else exc.strerror
        self._log(target, now, f"unreachable (ICMP {reason}), {target.refusals} refusals "
                               "so far; datagrams still go out")

    def _clean_send(self, target: _Target, now: int) -> None:
        """A send after refusals that reported none. The first may mean the collector is
        back, restarted and knowing none of our templates: they go with the next message
        (unless they went less than TEMPLATE_RESEND_MS ago; routers rate-limit ICMP
        errors, so sends between refusals can look clean). Once clean sends span
        REACHABLE_AFTER_MS, the datagrams sent at its start drew no error: it is back,
        and gets the templates once more."""
        if target.clean_since is None:
            target.clean_since = now
            target.session.resend_templates(now, TEMPLATE_RESEND_MS)
            return
        if now - target.clean_since < REACHABLE_AFTER_MS:
            return
        target.refused_at = target.clean_since = None
        target.session.resend_templates(now, TEMPLATE_RESEND_MS)
        logger.info(f"flowexport: collector {target.spec} reachable again "
                    f"(no ICMP error for {REACHABLE_AFTER_MS // 1000} s; "
                    f"{target.refusals} refusals in all)")

    def _write_or_fail(self, target: _Target, datagrams: list[Datagram], now: int) -> None:
        """A file target, or a socket not open yet (resolving): each datagram is written,
        or counted as not sent."""
        writer = target.writer
        for datagram in datagrams:
            if writer is None:
                self._failed(target, datagram, now, "not connected yet")
                continue
            try:
                writer.write(datagram.payload)
            except OSError as exc:
                self._failed(target, datagram, now, f"write failed: {exc}")
                continue
            self.statistics.datagrams += 1
            self.statistics.octets += len(datagram.payload)
            self.statistics.exported += datagram.flow_records
        if writer is not None:
            try:  # a file reader (tshark -r, the collector) sees records as they come
                writer.flush()
            except OSError as exc:
                self._log(target, now, f"flush failed: {exc}")

    def _failed(self, target: _Target, datagram: Datagram, now: int, reason: str | None) -> None:
        self.statistics.send_errors += 1
        target.send_errors += 1
        target.session.count_send_failure(datagram, now)
        if reason is not None:
            self._log(target, now, reason)

    def _log(self, target: _Target, now: int, message: str) -> None:
        if now - target.last_log < LOG_INTERVAL_MS:
            target.suppressed += 1
            return
        more = f" ({target.suppressed} similar suppressed)" if target.suppressed else ""
        logger.warning(f"flowexport: collector {target.spec}: {message}{more}")
        target.last_log = now
        target.suppressed = 0

    def statistics_line(self) -> str:
        stats = self.statistics
        stats.truncations = self._cut_by_producer + sum(t.session.truncations.count
                                                        for t in self._targets)
        return (f"flowexport: {stats.records} records, {stats.exported} sent, "
                f"{stats.datagrams} datagrams, {stats.octets} bytes, {stats.dropped} dropped, "
                f"{stats.encode_errors} unencodable, {stats.send_errors} send errors, "
                f"{stats.refusals} collector refusals (ICMP), "
                f"{stats.truncations} truncated fields, max flush {stats.max_flush_ms:.1f} ms, "
                f"{stats.cpu_seconds / max(stats.records, 1) * 1e6:.1f} us CPU/record, "
                f"{len(self._queue)} queued")
