"""One export session: the stream of messages to one collector, with no I/O.

It owns what a stream needs to be decodable: templates first and again on a
timer and every N messages, sequence numbers, statistics records and the
flush deadline. Time comes in as an argument (`now_ms`), so the asyncio layer
only asks for datagrams and re-arms one timer at `next_deadline()`, and tests
can drive time by hand.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from enum import StrEnum
from functools import lru_cache
from typing import Any, Protocol

import msgspec

from .ie import DEFAULT_ENTERPRISE_NUMBER, Registry, build_registry
from .message import (
    DEFAULT_MAX_MESSAGE_SIZE,
    OPTIONS_TEMPLATE_SET_ID,
    TEMPLATE_SET_ID,
    Datagram,
    IpfixPacker,
    MessagePacker,
    ipfix_template_record,
)
from .netflow9 import (
    DEFAULT_PRIVATE_BASE,
    OPTIONS_TEMPLATE_FLOWSET_ID,
    TEMPLATE_FLOWSET_ID,
    Netflow9Packer,
    v9_template_record,
)
from .options import (
    EXPORTING_STATISTICS_TEMPLATE_ID,
    METERING_STATISTICS_TEMPLATE_ID,
    NETFLOW9_SAMPLING_TEMPLATE_ID,
    NETFLOW9_STATISTICS_TEMPLATE_ID,
    SAMPLING_TEMPLATE_ID,
    TYPE_INFO_TEMPLATE_ID,
    ExportStatistics,
    exporting_statistics_template,
    exporting_statistics_values,
    metering_statistics_template,
    metering_statistics_values,
    netflow9_sampling_template,
    netflow9_sampling_values,
    netflow9_statistics_template,
    netflow9_statistics_values,
    sampling_template,
    sampling_values,
    type_info_template,
    type_info_values,
)
from .template import RecordEncoder, Template, TruncationCounter


class ExportFormat(StrEnum):
    IPFIX = "ipfix"
    NETFLOW9 = "netflow9"


class SessionConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How one stream is framed; every field has an operator-facing option in the addon."""

    format: ExportFormat = ExportFormat.IPFIX
    observation_domain_id: int = 1
    enterprise_number: int = DEFAULT_ENTERPRISE_NUMBER
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    flush_interval_ms: int = 200
    # RFC 6728 suggests 600 s; collectors that start late or restart should not wait that long.
    template_refresh_ms: int = 30_000
    template_refresh_messages: int = 100
    statistics_interval_ms: int = 60_000
    # per element name, over the record formats' own defaults: byte limits of IPFIX
    # strings, and the fixed widths of NetFlow v9 strings
    max_lengths: Mapping[str, int] = msgspec.field(default_factory=dict)
    netflow9_widths: Mapping[str, int] = msgspec.field(default_factory=dict)
    netflow9_private_base: int = DEFAULT_PRIVATE_BASE
    netflow9_enterprise_fields: bool = True
    exporting_process_id: int = msgspec.field(default_factory=os.getpid)
    sampling_interval: int = 1  # 1-in-N flow sampling upstream of the session, announced

    def __post_init__(self) -> None:
        for name in ("flush_interval_ms", "template_refresh_ms", "template_refresh_messages",
                     "statistics_interval_ms", "sampling_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)!r}")
        if not 0 <= self.observation_domain_id <= 0xFFFFFFFF:
            raise ValueError(f"observation domain id out of range: {self.observation_domain_id!r}")


@lru_cache(maxsize=8)
def registry_for(enterprise_number: int) -> Registry:
    return build_registry(enterprise_number)


class RecordEncoding(Protocol):
    """One kind of flow record in one wire format: its data templates, and the encoder
    that picks one of them for each record."""

    @property
    def templates(self) -> Sequence[Template]: ...

    def encode(self, record: Any, budget: int) -> tuple[int, bytes]:
        """(template id, data record of at most `budget` bytes); EncodeError if it cannot."""
        ...


class RecordFormat(Protocol):
    """A kind of flow record (HTTP exchanges, ...): the session asks it for an encoding
    for its wire format, so the framing knows nothing of what records say."""

    @property
    def record_type(self) -> type: ...

    def encoding(self, registry: Registry, config: SessionConfig, *,
                 netflow9_boot_time_ms: int | None,
                 truncations: TruncationCounter) -> RecordEncoding: ...


class ExportSession:
    """Builds the message stream for one collector."""

    def __init__(self, config: SessionConfig, formats: Sequence[RecordFormat],
                 now_ms: int) -> None:
        self.config = config
        self.registry = registry_for(config.enterprise_number)
        self.statistics = ExportStatistics()
        self.truncations = TruncationCounter()
        self._start_ms = now_ms
        self._packer: MessagePacker
        v9 = config.format is ExportFormat.NETFLOW9
        boot = now_ms - now_ms % 1000  # see Netflow9Packer: sysUpTime on whole seconds
        encodings = [f.encoding(self.registry, config, truncations=self.truncations,
                                netflow9_boot_time_ms=boot if v9 else None) for f in formats]
        self._encoders = {f.record_type: e.encode
                          for f, e in zip(formats, encodings, strict=True)}
        templates = [t for e in encodings for t in e.templates]
        if config.format is ExportFormat.IPFIX:
            self._packer = IpfixPacker(config.max_message_size, config.observation_domain_id)
            option_templates = [type_info_template(self.registry),
                                metering_statistics_template(self.registry),
                                exporting_statistics_template(self.registry)]
            if config.sampling_interval > 1:
                option_templates.append(sampling_template(self.registry))
            self._template_sets = [(OPTIONS_TEMPLATE_SET_ID,
                                    [ipfix_template_record(t) for t in option_templates]),
                                   (TEMPLATE_SET_ID, [ipfix_template_record(t) for t in templates])]
        else:
            self._packer = Netflow9Packer(config.max_message_size, config.observation_domain_id,
                                          boot_time_ms=boot)
            option_templates = [netflow9_statistics_template(self.registry)]
            if config.sampling_interval > 1:
                option_templates.append(netflow9_sampling_template(self.registry))
            base = config.netflow9_private_base
            self._template_sets = [
                (OPTIONS_TEMPLATE_FLOWSET_ID,
                 [v9_template_record(t, base) for t in option_templates]),
                (TEMPLATE_FLOWSET_ID, [v9_template_record(t, base) for t in templates])]
        self.templates = (*templates, *option_templates)
        ids = [t.template_id for t in self.templates]
        if len(set(ids)) != len(ids):
            raise ValueError(f"template ids must differ, got {sorted(ids)}")
        self._option_encoders = {t.template_id: RecordEncoder(t) for t in option_templates}
        for _, records in self._template_sets:
            for record in records:
                if len(record) > self._packer.record_budget:
                    raise ValueError(f"max message size {config.max_message_size} is too small "
                                     f"for a {len(record)}-byte template record")
        self._type_records = self._type_info_records() + self._sampling_records()
        self._budget = self._packer.record_budget
        self._refresh_messages = config.template_refresh_messages
        self._templates_due_ms = now_ms  # the first message carries the templates
        self._templates_sent_ms = now_ms
        self._closed_at_templates = 0
        self._statistics_due_ms = now_ms + config.statistics_interval_ms
        self._flush_due_ms: int | None = None
        self._ready: list[Datagram] = []

    # -- the data path -------------------------------------------------------------------

    def add(self, record: Any, now_ms: int) -> None:
        """Encode one flow record into the current message (EncodeError if it cannot be)."""
        template_id, data = self._encoders[type(record)](record, self._budget)
        if (now_ms >= self._templates_due_ms
                or self._packer.closed_messages - self._closed_at_templates
                >= self._refresh_messages):
            self._add_templates(now_ms)
        packer = self._packer
        packer.add_flow(template_id, data, now_ms)
        if self._flush_due_ms is None and packer.holds_records:
            self._flush_due_ms = now_ms + self.config.flush_interval_ms

    def poll(self, now_ms: int) -> list[Datagram]:
        """Act on whatever timer is due; return the datagrams ready to send."""
        if now_ms >= self._templates_due_ms:  # the message-count refresh waits for data
            self._add_templates(now_ms)
        if now_ms >= self._statistics_due_ms:
            self._add_statistics(now_ms)
        if self._flush_due_ms is not None and now_ms >= self._flush_due_ms:
            self._close(now_ms)
        return self._take()

    def flush(self, now_ms: int) -> list[Datagram]:
        """Close the current message now and return everything ready (shutdown, tests)."""
        self._close(now_ms)
        return self._take()

    def flush_with_statistics(self, now_ms: int) -> list[Datagram]:
        """The final flush: current statistics go out with what is left."""
        if self._templates_due(now_ms):
            self._add_templates(now_ms)
        self._add_statistics(now_ms)
        return self.flush(now_ms)

    def next_deadline(self) -> int:
        """The earliest time `poll` has something to do."""
        due = min(self._templates_due_ms, self._statistics_due_ms)
        return due if self._flush_due_ms is None else min(due, self._flush_due_ms)

    @property
    def holds_records(self) -> bool:
        """Records wait for the flush deadline (or for `poll` to hand them out)."""
        return self._flush_due_ms is not None or bool(self._ready)

    def request_templates(self) -> None:
        """Send templates with the next message (a new socket: a new stream to collectors)."""
        self._templates_due_ms = 0

    def resend_templates(self, now_ms: int, min_gap_ms: int) -> None:
        """Send templates soon: with the next message, or `min_gap_ms` after they last went
        if that is later (a collector that may have restarted, checked again and again)."""
        due = max(now_ms, self._templates_sent_ms + min_gap_ms)
        self._templates_due_ms = min(self._templates_due_ms, due)

    # -- accounting ----------------------------------------------------------------------

    def count_not_sent(self, flow_records: int, now_ms: int, *, messages: int = 0,
                       octets: int = 0) -> None:
        """Flow records lost before or at sending: they show in the statistics records."""
        stats = self.statistics
        stats.not_sent_flow_records += flow_records
        stats.not_sent_messages += messages
        stats.not_sent_octets += octets
        if flow_records or messages:
            stats.first_drop_ms = stats.first_drop_ms or now_ms
            stats.last_drop_ms = now_ms

    def count_send_failure(self, datagram: Datagram, now_ms: int) -> None:
        """A datagram `poll` returned could not be sent."""
        stats = self.statistics
        stats.messages -= 1
        stats.flow_records -= datagram.flow_records
        stats.octets -= len(datagram.payload)
        self.count_not_sent(datagram.flow_records, now_ms, messages=1,
                            octets=len(datagram.payload))

    # -- internals -----------------------------------------------------------------------

    def _templates_due(self, now_ms: int) -> bool:
        return (now_ms >= self._templates_due_ms
                or self._packer.closed_messages - self._closed_at_templates
                >= self.config.template_refresh_messages)

    def _add(self, set_id: int, data: bytes, now_ms: int, *, is_data: bool,
             is_flow: bool = False, own_set: bool = False) -> None:
        if self._flush_due_ms is None:
            self._flush_due_ms = now_ms + self.config.flush_interval_ms
        self._packer.add(set_id, data, is_data=is_data, is_flow=is_flow, now_ms=now_ms,
                         own_set=own_set)

    def _add_templates(self, now_ms: int) -> None:
        # templates lead a message: a collector that lost them decodes all that follows
        self._close(now_ms)
        self._templates_due_ms = now_ms + self.config.template_refresh_ms
        self._templates_sent_ms = now_ms
        self._closed_at_templates = self._packer.closed_messages
        # options templates and their records (RFC 5610 types, sampling) come first:
        # libfixbuf gives an element its type only in templates that arrive after it
        (options_set, option_records), (data_set, data_records) = self._template_sets
        for record in option_records:
            self._add(options_set, record, now_ms, is_data=False, own_set=True)
        for template_id, record in self._type_records:
            self._add(template_id, record, now_ms, is_data=True)
        for record in data_records:
            self._add(data_set, record, now_ms, is_data=False)

    def _sampling_records(self) -> list[tuple[int, bytes]]:
        """The sampling announcement, sent with every template refresh."""
        config = self.config
        if config.sampling_interval <= 1:
            return []
        if config.format is ExportFormat.IPFIX:
            template_id = SAMPLING_TEMPLATE_ID
            values = sampling_values(config.observation_domain_id, config.sampling_interval)
        else:
            template_id = NETFLOW9_SAMPLING_TEMPLATE_ID
            values = netflow9_sampling_values(config.observation_domain_id,
                                              config.sampling_interval)
        return [(template_id, self._option_encoders[template_id].encode(values))]

    def _type_info_records(self) -> list[tuple[int, bytes]]:
        if self.config.format is not ExportFormat.IPFIX:
            return []  # v9 has no enterprise numbers to describe
        encoder = self._option_encoders[TYPE_INFO_TEMPLATE_ID]
        exported = {f.element.key for t in self.templates for f in t.fields}
        return [(TYPE_INFO_TEMPLATE_ID, encoder.encode(type_info_values(e)))
                for e in self.registry.enterprise_elements() if e.key in exported]

    def _add_statistics(self, now_ms: int) -> None:
        self._statistics_due_ms = now_ms + self.config.statistics_interval_ms
        self._collect()  # so the totals include every message closed so far
        stats, config = self.statistics, self.config
        if config.format is ExportFormat.IPFIX:
            rows = [(METERING_STATISTICS_TEMPLATE_ID,
                     metering_statistics_values(config.observation_domain_id, stats)),
                    (EXPORTING_STATISTICS_TEMPLATE_ID,
                     exporting_statistics_values(config.exporting_process_id, stats))]
        else:
            rows = [(NETFLOW9_STATISTICS_TEMPLATE_ID,
                     netflow9_statistics_values(config.observation_domain_id, stats))]
        for template_id, values in rows:
            self._add(template_id, self._option_encoders[template_id].encode(values), now_ms,
                      is_data=True)

    def _close(self, now_ms: int) -> None:
        self._packer.close(now_ms)
        self._flush_due_ms = None

    def _collect(self) -> None:
        done = self._packer.take()
        if done:
            stats = self.statistics
            stats.messages += len(done)
            stats.flow_records += sum(d.flow_records for d in done)
            stats.octets += sum(len(d.payload) for d in done)
            self._ready += done

    def _take(self) -> list[Datagram]:
        self._collect()
        ready, self._ready = self._ready, []
        return ready
