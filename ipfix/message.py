"""Message framing: packing records into size-capped IPFIX messages (RFC 7011 §3).

The packer is shared with NetFlow v9 (`netflow9.py`), which differs only in
its header, its set ids and its 4-byte flowset padding. A record is never
split across messages; the caller makes each record fit an empty message.
"""

from __future__ import annotations

import struct
from abc import ABC, abstractmethod

import msgspec

from .template import Template

IPFIX_VERSION = 10
IPFIX_HEADER = struct.Struct("!HHIII")  # §3.1: version, length, export time, sequence, domain
SET_HEADER = struct.Struct("!HH")  # §3.3.2: set id, length
TEMPLATE_SET_ID = 2  # §3.3.2
OPTIONS_TEMPLATE_SET_ID = 3
MAX_MESSAGE_SIZE = 0xFFFF  # the header's 16-bit length
DEFAULT_MAX_MESSAGE_SIZE = 1400  # leaves room for IP/UDP headers and tunnels under a 1500 MTU

_FIELD_SPEC = struct.Struct("!HH")
_ENTERPRISE_FIELD_SPEC = struct.Struct("!HHI")
_ENTERPRISE_BIT = 0x8000  # §3.2


class Datagram(msgspec.Struct, frozen=True):
    """A finished message and the number of flow records in it."""

    payload: bytes
    flow_records: int


def ipfix_template_record(template: Template) -> bytes:
    """The template record (§3.4.1) or options template record (§3.4.2) of `template`."""
    if template.is_options:
        parts = [struct.pack("!HHH", template.template_id, len(template.fields),
                             template.scope_field_count)]
    else:
        parts = [struct.pack("!HH", template.template_id, len(template.fields))]
    for field in template.fields:
        element = field.element
        if element.is_enterprise:
            parts.append(_ENTERPRISE_FIELD_SPEC.pack(
                element.element_id | _ENTERPRISE_BIT, field.length, element.enterprise_number))
        else:
            parts.append(_FIELD_SPEC.pack(element.element_id, field.length))
    return b"".join(parts)


class MessagePacker(ABC):
    """Packs (set id, record) items into messages of at most `max_message_size` bytes.

    Records with the same set id share one set per message, whatever order they
    come in (IPv4 and IPv6 flows interleave), in order of each set's first record.
    Header fields that depend on what was sent before (sequence numbers) are filled
    in when a message is closed, in sending order.
    """

    header_size: int
    padding: int  # sets are padded to a multiple of this (1: none)

    def __init__(self, max_message_size: int) -> None:
        if not self.header_size + SET_HEADER.size < max_message_size <= MAX_MESSAGE_SIZE:
            raise ValueError(f"max message size must be {self.header_size + SET_HEADER.size + 1}"
                             f"..{MAX_MESSAGE_SIZE}, not {max_message_size}")
        self.max_message_size = max_message_size
        # set key -> records, in first-use order; a key is the set id, plus a multiple of
        # 2^16 for a record that goes in a set of its own (`add(own_set=True)`)
        self._sets: dict[int, list[bytes]] = {}
        self._payloads: dict[int, int] = {}  # set id -> bytes of its records
        self._size = self.header_size  # bytes so far: header, set headers, records
        self._padding_size = 0  # bytes of padding the sets need (NetFlow v9)
        self._records = 0
        self._data_records = 0
        self._flow_records = 0
        self._done: list[Datagram] = []
        self.closed_messages = 0
        budget = max_message_size - self.header_size - SET_HEADER.size
        self.record_budget = budget - budget % self.padding  # the largest record that fits
        # a flow record larger than this leaves no room for a second one of its size: it
        # goes out in a message of its own at once (every v9 record at default widths)
        self.solo_size = self.record_budget // 2

    def add(
        self, set_id: int, record: bytes, *, is_data: bool, is_flow: bool = False, now_ms: int,
        own_set: bool = False,
    ) -> None:
        """Append a record, closing the current message first if it would overflow.

        `is_data` marks data records (they count in IPFIX sequence numbers);
        `is_flow` marks flow records as opposed to options records; `own_set` puts the
        record in a set of its own (options templates: pmacct 1.7.7 misreads the length
        of an options template record, and so reads only the first one of a set).
        """
        if own_set:
            set_id |= (len(self._sets) + 1) << 16  # a key no other record shares
        size = len(record)
        if size > self.record_budget:
            raise ValueError(f"record of {size} bytes exceeds {self.record_budget}")
        # an empty message always has room (record_budget); a record that cannot fit even
        # without set header and padding needs no exact sum (v9: every record, at 1400 bytes)
        if self._sets and (self._size + size > self.max_message_size
                           or self._grown_size(set_id, size) > self.max_message_size):
            self.close(now_ms)
        padding = self.padding
        payload = self._payloads.get(set_id)
        if payload is None:
            self._sets[set_id] = [record]
            self._size += SET_HEADER.size + size
            self._payloads[set_id] = size
            self._padding_size += -size % padding
        else:
            self._sets[set_id].append(record)
            self._size += size
            self._payloads[set_id] = payload + size
            self._padding_size += -(payload + size) % padding - -payload % padding
        self._records += 1
        self._data_records += is_data
        self._flow_records += is_flow

    @property
    def holds_records(self) -> bool:
        """The current message has records, waiting for `close`."""
        return bool(self._sets)

    def _grown_size(self, set_id: int, size: int) -> int:
        """The message size, padding included, once a record of `size` bytes is added."""
        padding = self.padding
        payload = self._payloads.get(set_id)
        if payload is None:
            return (self._size + self._padding_size + SET_HEADER.size + size
                    + (-size % padding))
        return (self._size + self._padding_size + size
                + (-(payload + size) % padding) - (-payload % padding))

    def add_flow(self, set_id: int, record: bytes, now_ms: int) -> None:
        """`add` for a flow record, with short ways for the two common cases: a set open
        with room left (IPFIX), and a record that fills a message alone (NetFlow v9)."""
        records = self._sets.get(set_id)
        size = len(record)
        if (records is not None and self.padding == 1
                and self._size + size <= self.max_message_size):
            records.append(record)
            self._payloads[set_id] += size
            self._size += size
            self._records += 1
            self._data_records += 1
            self._flow_records += 1
            return
        if size > self.solo_size and size <= self.record_budget:
            if self._sets:
                if self._grown_size(set_id, size) <= self.max_message_size:
                    # it joins templates or options records; poll closes that message
                    self.add(set_id, record, is_data=True, is_flow=True, now_ms=now_ms)
                    return
                self.close(now_ms)
            self._done.append(Datagram(self._solo_message(set_id, record, now_ms), 1))
            return
        self.add(set_id, record, is_data=True, is_flow=True, now_ms=now_ms)

    @abstractmethod
    def _solo_message(self, set_id: int, record: bytes, now_ms: int) -> bytes:
        """The message of one flow record, framed as `close` would frame it."""

    def close(self, now_ms: int) -> None:
        """Finish the current message, if it holds anything."""
        if not self._sets:
            return
        length = self._size + self._padding_size
        parts = [self._header(length, now_ms, self._records, self._data_records)]
        for set_id, records in self._sets.items():
            payload = self._payloads[set_id]
            pad = -payload % self.padding
            parts.append(SET_HEADER.pack(set_id & 0xFFFF, SET_HEADER.size + payload + pad))
            parts.extend(records)
            if pad:
                parts.append(bytes(pad))
        message = b"".join(parts)
        assert len(message) == length <= self.max_message_size
        self._done.append(Datagram(message, self._flow_records))
        self.closed_messages += 1
        self._sets = {}
        self._payloads = {}
        self._size = self.header_size
        self._padding_size = 0
        self._records = 0
        self._data_records = 0
        self._flow_records = 0

    def take(self) -> list[Datagram]:
        """Closed messages since the last call, each with its count of flow records."""
        done, self._done = self._done, []
        return done

    @abstractmethod
    def _header(self, length: int, now_ms: int, records: int, data_records: int) -> bytes:
        """The message header; called once per message, in sending order."""


class IpfixPacker(MessagePacker):
    """IPFIX framing: the sequence number counts data records sent before the message."""

    header_size = IPFIX_HEADER.size
    padding = 1

    def __init__(self, max_message_size: int, observation_domain_id: int) -> None:
        super().__init__(max_message_size)
        if not 0 <= observation_domain_id <= 0xFFFFFFFF:
            raise ValueError(f"observation domain id out of range: {observation_domain_id}")
        self.observation_domain_id = observation_domain_id
        self.sequence_number = 0  # §3.1: data records sent so far in this domain, mod 2^32

    def _header(self, length: int, now_ms: int, records: int, data_records: int) -> bytes:
        header = IPFIX_HEADER.pack(IPFIX_VERSION, length, (now_ms // 1000) & 0xFFFFFFFF,
                                   self.sequence_number, self.observation_domain_id)
        self.sequence_number = (self.sequence_number + data_records) & 0xFFFFFFFF
        return header

    def _solo_message(self, set_id: int, record: bytes, now_ms: int) -> bytes:
        # rare in IPFIX (a record over half a message): variable sizes, no layout cache
        set_length = SET_HEADER.size + len(record)
        self.closed_messages += 1
        return b"".join((self._header(IPFIX_HEADER.size + set_length, now_ms, 1, 1),
                         SET_HEADER.pack(set_id, set_length), record))
