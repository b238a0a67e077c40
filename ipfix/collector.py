"""A small IPFIX / NetFlow v9 collector for local debugging.

    python -m ipfix.collector --listen 127.0.0.1:4739                     # JSON lines
    python -m ipfix.collector --listen 127.0.0.1:4739 --format human --summary 10
    python -m ipfix.collector --read flows.ipfix --format pretty

Prints one JSON object per flow record, keyed by element name, with the
message context in `_`-prefixed keys. Malformed datagrams and sequence gaps
are reported on stderr; the collector carries on.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
from collections.abc import Hashable, Sequence
from types import FrameType
from typing import TextIO

import msgspec

from .decoder import DecodedMessage, DecodedRecord, Decoder
from .errors import DecodeError
from .filereader import read_messages
from .ie import DEFAULT_ENTERPRISE_NUMBER, build_registry
from .netflow9 import DEFAULT_PRIVATE_BASE
from .readable import Summary, is_readable_record, line

DEFAULT_LISTEN = "127.0.0.1:4739"  # loopback unless asked otherwise; 4739 is IANA's IPFIX port
MAX_DATAGRAM = 65535
MAX_TRACKED_STREAMS = 4096


class SequenceTracker:
    """Counts records lost between messages of each stream, from sequence numbers.

    IPFIX numbers data records, v9 numbers packets (RFC 7011 §3.1, RFC 3954 §5.1).
    """

    def __init__(self) -> None:
        self._expected: dict[tuple[Hashable, int, int], int] = {}
        self.lost: dict[tuple[Hashable, int, int], int] = {}

    def observe(self, exporter: Hashable, message: DecodedMessage) -> int:
        """Record a message; return how many records (v9: packets) went missing before it."""
        key = (exporter, message.version, message.observation_domain_id)
        expected = self._expected.get(key)
        step = message.data_record_count if message.version == 10 else 1
        gap = 0
        if expected is not None:
            gap = (message.sequence_number - expected) & 0xFFFFFFFF
            if gap >= 0x80000000:  # behind us: reordered or a restarted exporter
                gap = 0
        if gap:
            self.lost[key] = self.lost.get(key, 0) + gap
        if message.complete or message.version != 10:
            self._expected[key] = (message.sequence_number + step) & 0xFFFFFFFF
        else:  # records of unknown templates were not counted: resynchronise next time
            self._expected.pop(key, None)
        if len(self._expected) > MAX_TRACKED_STREAMS:
            self._expected.pop(next(iter(self._expected)))
        return gap


class Printer:
    """Writes records as JSON lines (for machines), one line per exchange (`human`), or an
    indented listing of every field (`pretty`)."""

    def __init__(self, out: TextIO, fmt: str, include_options: bool, *,
                 colour: bool = False, summary: Summary | None = None) -> None:
        self.out = out
        self.fmt = fmt
        self.include_options = include_options
        self.encoder = msgspec.json.Encoder()
        self.records = 0
        self.colour = colour
        self.summary = summary

    def message(self, exporter: str, message: DecodedMessage) -> None:
        for record in message.records:
            if self.summary is not None and not record.is_options:
                self.summary.add(record.fields)
            if record.is_options and not self.include_options:
                continue
            self.records += 1
            if self.fmt == "json":
                self._json(exporter, message, record)
            elif self.fmt == "human":
                if is_readable_record(record.fields):
                    self.out.write(line(record.fields, colour=self.colour) + "\n")
            else:
                self._pretty(exporter, message, record)
        self.out.flush()

    def _json(self, exporter: str, message: DecodedMessage, record: DecodedRecord) -> None:
        line = {"_exporter": exporter, "_version": message.version,
                "_domain": message.observation_domain_id, "_template": record.template_id,
                "_export_time": message.export_time, "_sequence": message.sequence_number}
        if record.is_options:
            line["_options"] = True
        line.update(record.fields)
        self.out.write(self.encoder.encode(line).decode() + "\n")

    def _pretty(self, exporter: str, message: DecodedMessage, record: DecodedRecord) -> None:
        kind = "options record" if record.is_options else "flow record"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(message.export_time))
        self.out.write(f"{kind} from {exporter}  v{message.version} domain "
                       f"{message.observation_domain_id} template {record.template_id} "
                       f"seq {message.sequence_number}  {stamp}Z\n")
        width = max(map(len, record.fields), default=0)
        for name, value in record.fields.items():
            if value in ("", 0, "0.0.0.0", "::") and not record.is_options:
                continue  # empty fields only add noise for a person
            self.out.write(f"  {name:<{width}}  {value}\n")


class Collector:
    """Decodes datagrams or files, prints records, counts what went wrong."""

    def __init__(self, decoder: Decoder, printer: Printer, err: TextIO) -> None:
        self.decoder = decoder
        self.printer = printer
        self.err = err
        self.sequences = SequenceTracker()
        self.malformed = 0
        self.skipped_sets = 0
        self._lost_reported = 0

    def feed(self, data: bytes, exporter: str) -> None:
        try:
            message = self.decoder.decode(data, exporter)
        except DecodeError as exc:
            self.malformed += 1
            self.err.write(f"malformed message from {exporter}: {exc}\n")
            return
        for reason in message.skipped_sets:
            self.skipped_sets += 1
            self.err.write(f"skipped from {exporter}: {reason}\n")
        gap = self.sequences.observe(exporter, message)
        if gap:
            unit = "records" if message.version == 10 else "packets"
            self.err.write(f"sequence gap from {exporter} domain "
                           f"{message.observation_domain_id}: {gap} {unit} lost\n")
        self.printer.message(exporter, message)

    def write_summary(self, seconds: float) -> None:
        """The periodic summary (--summary), with the records lost since the last one."""
        summary = self.printer.summary
        if summary is None:
            return
        lost = sum(self.sequences.lost.values())
        self.err.write(summary.render(seconds, lost - self._lost_reported) + "\n")
        self.err.flush()
        self._lost_reported = lost

    def summary(self) -> str:
        lost = sum(self.sequences.lost.values())
        parts = [f"{self.printer.records} records", f"{lost} lost by sequence numbers",
                 f"{self.malformed} malformed messages", f"{self.skipped_sets} skipped sets"]
        for (exporter, version, domain), count in self.sequences.lost.items():
            parts.append(f"{exporter} v{version} domain {domain}: {count} lost")
        return "collector: " + ", ".join(parts)


def parse_endpoint(text: str) -> tuple[str, int]:
    """HOST:PORT or [IPV6]:PORT."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "127.0.0.1", int(port)


def _listen(collector: Collector, endpoint: tuple[str, int], count: int | None,
            duration: float | None, summary_every: float | None) -> None:
    family = socket.AF_INET6 if ":" in endpoint[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(endpoint)
    sock.settimeout(0.2)
    bound = sock.getsockname()
    collector.err.write(f"collector: listening on {bound[0]}:{bound[1]}\n")
    collector.err.flush()
    stop = [False]

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop[0] = True

    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    deadline = None if duration is None else started + duration
    summary_due = None if summary_every is None else started + summary_every
    try:
        while not stop[0]:
            if count is not None and collector.printer.records >= count:
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if summary_due is not None and summary_every is not None and now >= summary_due:
                collector.write_summary(summary_every)
                summary_due += summary_every
            try:
                data, peer = sock.recvfrom(MAX_DATAGRAM)
            except TimeoutError:
                continue
            collector.feed(data, f"{peer[0]}:{peer[1]}")
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowexport-collector", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", type=parse_endpoint, default=None, metavar="HOST:PORT",
                        help=f"UDP address for IPFIX and NetFlow v9 (default {DEFAULT_LISTEN})")
    parser.add_argument("--read", action="append", default=[], metavar="FILE",
                        help="decode an RFC 5655 IPFIX file instead of listening (repeatable)")
    parser.add_argument("--format", choices=("json", "human", "pretty"), default="json",
                        help="json: a JSON object per record (default); human: a line per "
                             "HTTP exchange; pretty: every field of every record")
    parser.add_argument("--colour", "--color", choices=("auto", "always", "never"),
                        default="auto", help="colours in the human format (auto: on a "
                                             "terminal, unless NO_COLOR is set)")
    parser.add_argument("--summary", type=float, default=None, metavar="SECONDS",
                        help="every SECONDS, a summary on stderr: exchanges per second, "
                             "status classes, top hosts, p50/p99 duration, records lost")
    parser.add_argument("--options", action="store_true",
                        help="also print options records (type information, statistics)")
    parser.add_argument("--enterprise-number", type=int, default=DEFAULT_ENTERPRISE_NUMBER)
    parser.add_argument("--netflow9-private-base", type=int, default=DEFAULT_PRIVATE_BASE)
    parser.add_argument("--count", type=int, default=None,
                        help="exit after printing this many records")
    parser.add_argument("--duration", type=float, default=None,
                        help="exit after this many seconds")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    decoder = Decoder(build_registry(args.enterprise_number),
                      netflow9_private_base=args.netflow9_private_base)
    colour = args.colour == "always" or (args.colour == "auto" and sys.stdout.isatty()
                                         and not os.environ.get("NO_COLOR"))
    printer = Printer(sys.stdout, args.format, args.options, colour=colour,
                      summary=Summary() if args.summary else None)
    collector = Collector(decoder, printer, sys.stderr)
    if args.read:
        for path in args.read:
            try:
                with open(path, "rb") as stream:
                    for message in read_messages(stream):
                        collector.feed(message, path)
            except (OSError, DecodeError) as exc:
                sys.stderr.write(f"{path}: {exc}\n")
                return 1
    else:
        _listen(collector, args.listen or parse_endpoint(DEFAULT_LISTEN), args.count,
                args.duration, args.summary)
    sys.stderr.write(collector.summary() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
