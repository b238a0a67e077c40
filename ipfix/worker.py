"""Export from a process of its own: the proxy hands over facts, the worker does the rest.

A proxy's event loop runs on one core. Building, encoding and sending the records there
costs it about 1.2% of its instructions per request (tests/bench/instructions.py);
handing the facts to a worker over a pipe costs it almost nothing (msgpack in C, one
write per few dozen flows), and the worker runs on another core when there is one.

    proxy:  ExportWorker.submit -> pending list -> every few ms one frame -> pipe
    worker: python -m ipfix.worker: frames -> Exporter (queue, batches, sockets)

A frame is a 4-byte length and a msgpack message: `Start` first, then `Items` and
`Lost` (what the proxy dropped or could not read, so the worker's statistics and
notSent counters include it). When its input ends the worker flushes everything, like
the in-process exporter's `close`, and writes its statistics to stdout as one JSON
line. It ignores SIGINT and SIGTERM: a terminal's Ctrl-C reaches the whole process
group, and the worker must outlive the proxy's shutdown to send what it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import struct
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import msgspec

from .exporter import CollectorSpec, Exporter, ExporterStatistics, format_statistics, now_ms
from .facts import FlowFacts, RecordRules, record_of
from .http import HttpFlowRecord
from .session import SessionConfig

logger = logging.getLogger(__name__)

_LENGTH = struct.Struct("!I")
RESTART_INTERVAL_MS = 10_000  # a worker that keeps dying is restarted this often at most
CLOSE_TIMEOUT_S = 30.0  # for the worker to send what it holds after the proxy stops
BYTES_PER_ITEM = 2048  # bound of unwritten frames: queue size x this


class Start(msgspec.Struct, tag="start"):
    collectors: list[CollectorSpec]
    config: SessionConfig
    rules: RecordRules
    queue_size: int
    log_level: str = "INFO"


class Items(msgspec.Struct, tag="items"):
    facts: list[FlowFacts] = []
    records: list[HttpFlowRecord] = []


class Lost(msgspec.Struct, tag="lost"):
    dropped: int = 0  # queue full or no worker to take them
    unencodable: int = 0  # could not be read or built


Message = Start | Items | Lost


class ExportWorker:
    """The proxy's side: the same calls as `Exporter`, the work done in a child process."""

    def __init__(
        self,
        collectors: Sequence[CollectorSpec],
        config: SessionConfig,
        *,
        rules: RecordRules,
        queue_size: int = 16_384,
        log_level: str = "INFO",
        clock: Callable[[], int] = now_ms,
    ) -> None:
        if queue_size <= 0:
            raise ValueError(f"queue size must be positive, not {queue_size}")
        self._start = Start(list(collectors), config, rules, queue_size, log_level)
        self._queue_size = queue_size
        self._clock = clock
        self._encoder = msgspec.msgpack.Encoder()
        self._facts: list[FlowFacts] = []
        self._records: list[HttpFlowRecord] = []
        self._out = bytearray()  # frames not yet written to the pipe
        self._frames: deque[list[int]] = deque()  # [bytes left, items] per unwritten frame
        self._dropped_untold = 0
        self._unencodable_untold = 0
        self._delay_s = max(config.flush_interval_ms, 10) / 10_000
        self.statistics = ExporterStatistics()  # the worker's, once it reported; ours till then
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._after: Exporter | None = None  # records that come after close
        self._restart_after = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._spawn()

    # -- producer side: called from hooks -------------------------------------------------

    def submit(self, item: FlowFacts | HttpFlowRecord) -> bool:
        """Queue an item for the worker; False when it had to be dropped (and counted)."""
        if self._closed:
            self._export_after_close(item)
            return True
        if len(self._facts) + len(self._records) >= self._queue_size:
            self._drop(1)
            return False
        if isinstance(item, FlowFacts):
            self._facts.append(item)
        else:
            self._records.append(item)
        if self._wakeup is not None and not self._wakeup.is_set():
            self._wakeup.set()
        return True

    def count_lost(self, now: int | None = None) -> None:
        """An item that could not be read: counted as unencodable and not sent."""
        self.statistics.encode_errors += 1
        self._unencodable_untold += 1

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Start handing over on the running loop; the caller keeps the task."""
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        if self._facts or self._records:
            self._wakeup.set()
        self._task = self._loop.create_task(self._run(), name="flowexport-worker")
        return self._task

    def close(self) -> None:
        """Hand over everything, end the worker's input and wait for its statistics."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._closed = True
        self._frame()
        if self._process is not None and self._process.stdin is not None:
            os.set_blocking(self._process.stdin.fileno(), True)
        self._write()  # all of it now, or the worker is gone and the rest counted dropped
        process = self._process
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
            process.stdin = None  # communicate() only reads
        report = b""
        try:
            report, _ = process.communicate(timeout=CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            logger.error("flowexport: export worker did not finish in time; killed")
            process.kill()
            process.wait()
        self._process = None
        self._adopt(report, process.returncode)

    def shutdown(self) -> None:
        """Nothing to release here once `close` ran; kept for the Exporter's interface."""
        if self._after is not None:
            self._after.shutdown()

    @property
    def queued(self) -> int:
        return len(self._facts) + len(self._records) + sum(f[1] for f in self._frames)

    def statistics_line(self) -> str:
        return format_statistics(self.statistics, self.queued)

    # -- handing over ---------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            await asyncio.sleep(self._delay_s)  # gather a few dozen flows per write
            self._wakeup.clear()
            self._frame()
            self._write()
            if self._frames:  # the pipe is full: try again later
                self._wakeup.set()

    def _frame(self) -> None:
        """Pending items (and what was lost meanwhile) become one frame in `_out`."""
        facts, records = self._facts, self._records
        items = len(facts) + len(records)
        if items:
            self._facts, self._records = [], []
            if len(self._out) > self._queue_size * BYTES_PER_ITEM:
                self._drop(items)  # the worker is not reading: its pipe and our buffer are full
            else:
                self._append(Items(facts, records), items)
        if self._dropped_untold or self._unencodable_untold:
            self._append(Lost(self._dropped_untold, self._unencodable_untold), 0)
            self._dropped_untold = self._unencodable_untold = 0

    def _append(self, message: Message, items: int) -> None:
        body = self._encoder.encode(message)
        self._out += _LENGTH.pack(len(body))
        self._out += body
        self._frames.append([_LENGTH.size + len(body), items])

    def _write(self) -> None:
        process = self._process
        if process is None:
            if self._clock() >= self._restart_after and not self._closed:
                self._spawn()
            if self._process is None:
                self._drop_buffered()
                return
            process = self._process
        assert process.stdin is not None
        while self._out:
            try:
                written = os.write(process.stdin.fileno(), self._out)
            except BlockingIOError:
                return
            except OSError as exc:  # BrokenPipeError: the worker is gone
                self._lost_worker(exc)
                return
            del self._out[:written]
            while self._frames and written:
                frame = self._frames[0]
                taken = min(frame[0], written)
                frame[0] -= taken
                written -= taken
                if frame[0] == 0:
                    self._frames.popleft()

    def _drop(self, count: int) -> None:
        self.statistics.records += count
        self.statistics.dropped += count
        self._dropped_untold += count

    def _drop_buffered(self) -> None:
        """Frames that cannot reach any worker: their items are dropped and counted."""
        items = sum(f[1] for f in self._frames)
        self._out.clear()
        self._frames.clear()
        if items:
            self._drop(items)

    # -- the child process ----------------------------------------------------------------

    def _spawn(self) -> None:
        """Start a worker and send it `Start`; on failure, try again later."""
        self._restart_after = self._clock() + RESTART_INTERVAL_MS
        package_root = str(Path(__file__).resolve().parents[1])
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": package_root + (os.pathsep + path if path else "")}
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "ipfix.worker"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, env=env, start_new_session=False)
        except OSError as exc:
            logger.error(f"flowexport: cannot start the export worker: {exc}")
            return
        assert process.stdin is not None
        os.set_blocking(process.stdin.fileno(), False)
        self._process = process
        body = self._encoder.encode(self._start)
        self._out[:0] = _LENGTH.pack(len(body)) + body  # before anything buffered
        self._frames.appendleft([_LENGTH.size + len(body), 0])

    def _lost_worker(self, exc: OSError) -> None:
        process = self._process
        assert process is not None
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
            process.stdin = None
        code = process.poll()
        if code is None:
            process.kill()
            code = process.wait()
        self._process = None
        self._drop_buffered()
        logger.error(f"flowexport: the export worker exited (code {code}: {exc}); records it "
                     "held are lost, the ones handed over since are counted as dropped; "
                     f"restarting it in {RESTART_INTERVAL_MS // 1000} s at most")
        self._restart_after = min(self._restart_after, self._clock())

    def _adopt(self, report: bytes, code: int | None) -> None:
        """The worker's statistics become ours, plus whatever it was never told about."""
        line = report.strip().rsplit(b"\n", 1)[-1] if report.strip() else b""
        try:
            theirs = msgspec.json.decode(line, type=ExporterStatistics)
        except msgspec.DecodeError:
            logger.error(f"flowexport: the export worker ended (code {code}) without statistics")
            return
        theirs.dropped += self._dropped_untold
        theirs.records += self._dropped_untold
        theirs.encode_errors += self._unencodable_untold
        self.statistics = theirs

    def _export_after_close(self, item: FlowFacts | HttpFlowRecord) -> None:
        """Flows that end during shutdown: exported here, synchronously, like the exporter
        does after its `close`."""
        if self._after is None:
            start = self._start
            self._after = Exporter(start.collectors, start.config,
                                   prepare=partial(record_of, rules=start.rules))
            self._after.close()
        self._after.submit(item)


# -- the worker process -------------------------------------------------------------------


async def _serve(stdin: int) -> ExporterStatistics:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    pipe = os.fdopen(stdin, "rb", buffering=0)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    decoder = msgspec.msgpack.Decoder(Message)
    exporter: Exporter | None = None
    cpu = 0.0  # decoding and queueing: the exporter counts its own task
    while True:
        try:
            length = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))[0]
            frame = await reader.readexactly(length)
        except asyncio.IncompleteReadError:
            break  # the proxy closed its end: it is done
        started = time.process_time()
        message = decoder.decode(frame)
        if isinstance(message, Start):
            logging.basicConfig(level=message.log_level, stream=sys.stderr,
                                format="[%(asctime)s.%(msecs)03d] %(message)s",
                                datefmt="%H:%M:%S")
            exporter = Exporter(message.collectors, message.config,
                                queue_size=message.queue_size,
                                prepare=partial(record_of, rules=message.rules))
            exporter.start()
        elif exporter is None:
            raise RuntimeError(f"export worker: {type(message).__name__} before Start")
        elif isinstance(message, Items):
            for facts in message.facts:
                exporter.submit(facts)
            for record in message.records:
                exporter.submit(record)
        else:
            exporter.count_dropped(message.dropped)
            for _ in range(message.unencodable):
                exporter.count_lost()
        cpu += time.process_time() - started
    if exporter is None:
        return ExporterStatistics()
    exporter.close()
    statistics = exporter.summary()
    statistics.cpu_seconds += cpu
    return statistics


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    statistics = asyncio.run(_serve(sys.stdin.fileno()))
    sys.stdout.buffer.write(msgspec.json.encode(statistics) + b"\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
