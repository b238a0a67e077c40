"""NetFlow v9 framing and field mapping (RFC 3954), reusing the IPFIX template machinery.

v9 has no variable-length fields and no enterprise numbers: strings travel as
fixed-width, zero-padded fields, and our enterprise elements take field types
from a private range, `private_base + element id` (32768 + id by default).
"""

from __future__ import annotations

import struct

from .datatypes import DataType, Semantics
from .ie import IANA, InformationElement
from .message import SET_HEADER, MessagePacker
from .template import Template

NETFLOW9_VERSION = 9
NETFLOW9_HEADER = struct.Struct("!HHIIII")  # §5.1: version, count, sysUpTime, secs, seq, source id
TEMPLATE_FLOWSET_ID = 0  # §5.2
OPTIONS_TEMPLATE_FLOWSET_ID = 1  # §6.1
DEFAULT_PRIVATE_BASE = 32768
FIRST_SWITCHED = 22  # §8: sysUpTime in ms at which the first packet of the flow was switched
LAST_SWITCHED = 21

# §6.1 scope field types; they share no number space with the field types.
SCOPE_SYSTEM = InformationElement("scopeSystem", 1, IANA, DataType.UNSIGNED32,
                                  Semantics.IDENTIFIER)
SCOPE_NAMES = {1: "scopeSystem", 2: "scopeInterface", 3: "scopeLineCard", 4: "scopeCache",
               5: "scopeTemplate"}

_FIELD_SPEC = struct.Struct("!HH")


def v9_field_type(element: InformationElement, private_base: int = DEFAULT_PRIVATE_BASE) -> int:
    """The v9 field type of an element: its IANA id, or the private range for ours."""
    if not element.is_enterprise:
        return element.element_id
    field_type = private_base + element.element_id
    if field_type > 0xFFFF:
        raise ValueError(f"{element.name}: private base {private_base} + {element.element_id} "
                         "exceeds 65535")
    return field_type


def v9_template_record(template: Template, private_base: int = DEFAULT_PRIVATE_BASE) -> bytes:
    """The template record (§5.2) or options template record (§6.1) of `template`."""
    for field in template.fields:
        if field.is_variable_length:
            raise ValueError(f"{field.element.name}: NetFlow v9 has no variable-length fields")
    scope = template.fields[: template.scope_field_count]
    rest = template.fields[template.scope_field_count:]
    if template.is_options:
        parts = [struct.pack("!HHH", template.template_id, 4 * len(scope), 4 * len(rest))]
        parts += [_FIELD_SPEC.pack(f.element.element_id, f.length) for f in scope]
    else:
        parts = [struct.pack("!HH", template.template_id, len(rest))]
    parts += [_FIELD_SPEC.pack(v9_field_type(f.element, private_base), f.length) for f in rest]
    return b"".join(parts)


class Netflow9Packer(MessagePacker):
    """v9 framing: count is every record in the packet, sequence counts packets."""

    header_size = NETFLOW9_HEADER.size
    padding = 4  # §5.3: flowsets end on a 4-byte boundary

    def __init__(self, max_message_size: int, source_id: int, boot_time_ms: int) -> None:
        super().__init__(max_message_size)
        if not 0 <= source_id <= 0xFFFFFFFF:
            raise ValueError(f"source id out of range: {source_id}")
        if boot_time_ms % 1000:
            raise ValueError(f"boot time must be a whole second, not {boot_time_ms} ms")
        self.source_id = source_id
        self.boot_time_ms = boot_time_ms
        self.sequence_number = 0  # §5.1: export packets sent so far, mod 2^32
        self._clock: tuple[int, int, int] = (-1, 0, 0)  # now_ms, sysUpTime, secs
        self._solo_layouts: dict[int, tuple[struct.Struct, int, int]] = {}  # by set id

    def _header(self, length: int, now_ms: int, records: int, data_records: int) -> bytes:
        clock = self._clock_at(now_ms)
        sequence = self.sequence_number
        self.sequence_number = (sequence + 1) & 0xFFFFFFFF
        return NETFLOW9_HEADER.pack(NETFLOW9_VERSION, records, clock[1], clock[2], sequence,
                                    self.source_id)

    def _solo_message(self, set_id: int, record: bytes, now_ms: int) -> bytes:
        # the usual case inline: each Python call here costs as much as the packing
        layout = self._solo_layouts.get(set_id)
        if layout is None or layout[2] != len(record):
            layout = self._solo_layout(set_id, len(record))
        clock = self._clock
        if clock[0] != now_ms:
            clock = self._clock_at(now_ms)
        sequence = self.sequence_number
        self.sequence_number = (sequence + 1) & 0xFFFFFFFF
        self.closed_messages += 1
        return layout[0].pack(NETFLOW9_VERSION, 1, clock[1], clock[2], sequence,
                              self.source_id, set_id, layout[1], record)

    def _solo_layout(self, set_id: int, size: int) -> tuple[struct.Struct, int, int]:
        """How `_solo_message` packs a record of `size` bytes: header, flowset header,
        record and padding in one struct (one C call instead of a dozen Python steps), the
        flowset's length, and the record size it is for (one size per template)."""
        pad = -size % self.padding
        layout = self._solo_layouts[set_id] = (
            struct.Struct(f"{NETFLOW9_HEADER.format}HH{size}s{pad}x"),
            SET_HEADER.size + size + pad, size)
        return layout

    def _clock_at(self, now_ms: int) -> tuple[int, int, int]:
        """now_ms, sysUpTime and secs: packets of one batch share one clock reading."""
        clock = self._clock
        if clock[0] != now_ms:
            # Collectors rebuild times as unix_secs * 1000 - sysUpTime + FIRST_SWITCHED, and
            # unix_secs has no milliseconds: both describe the same whole second, so that a
            # flow's time comes out exact. It is the next one (rounded up), so that no flow
            # ends after sysUpTime: pmacct computes sysUpTime - FIRST_SWITCHED unsigned.
            secs = -(-now_ms // 1000)
            clock = self._clock = (now_ms, (secs * 1000 - self.boot_time_ms) & 0xFFFFFFFF,
                                   secs & 0xFFFFFFFF)
        return clock
