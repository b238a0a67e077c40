"""IPFIX abstract data types, semantics and units (RFC 7012, RFC 5610).

The numeric codes are IANA's: they go on the wire in RFC 5610 type records,
so collectors can decode our enterprise elements without configuration.
"""

from __future__ import annotations

from enum import IntEnum

VARIABLE_LENGTH = 0xFFFF  # RFC 7011 §7: field length 65535 announces a variable-length field


class DataType(IntEnum):
    """IANA "IPFIX Information Element Data Types" registry."""

    OCTET_ARRAY = 0
    UNSIGNED8 = 1
    UNSIGNED16 = 2
    UNSIGNED32 = 3
    UNSIGNED64 = 4
    SIGNED8 = 5
    SIGNED16 = 6
    SIGNED32 = 7
    SIGNED64 = 8
    FLOAT32 = 9
    FLOAT64 = 10
    BOOLEAN = 11
    MAC_ADDRESS = 12
    STRING = 13
    DATE_TIME_SECONDS = 14
    DATE_TIME_MILLISECONDS = 15
    DATE_TIME_MICROSECONDS = 16
    DATE_TIME_NANOSECONDS = 17
    IPV4_ADDRESS = 18
    IPV6_ADDRESS = 19


class Semantics(IntEnum):
    """IANA "IPFIX Information Element Semantics" registry (RFC 5610 §3.2)."""

    DEFAULT = 0
    QUANTITY = 1
    TOTAL_COUNTER = 2
    DELTA_COUNTER = 3
    IDENTIFIER = 4
    FLAGS = 5
    LIST = 6
    SNMP_COUNTER = 7
    SNMP_GAUGE = 8


class Units(IntEnum):
    """The subset of the IANA "IPFIX Information Element Units" registry we use."""

    NONE = 0
    BITS = 1
    OCTETS = 2
    PACKETS = 3
    FLOWS = 4
    SECONDS = 5
    MILLISECONDS = 6
    MICROSECONDS = 7
    NANOSECONDS = 8
    MESSAGES = 11


# Natural (full) encoded size of each fixed-size type; None means variable length.
NATURAL_SIZE: dict[DataType, int | None] = {
    DataType.OCTET_ARRAY: None,
    DataType.UNSIGNED8: 1,
    DataType.UNSIGNED16: 2,
    DataType.UNSIGNED32: 4,
    DataType.UNSIGNED64: 8,
    DataType.SIGNED8: 1,
    DataType.SIGNED16: 2,
    DataType.SIGNED32: 4,
    DataType.SIGNED64: 8,
    DataType.FLOAT32: 4,
    DataType.FLOAT64: 8,
    DataType.BOOLEAN: 1,
    DataType.MAC_ADDRESS: 6,
    DataType.STRING: None,
    DataType.DATE_TIME_SECONDS: 4,
    DataType.DATE_TIME_MILLISECONDS: 8,
    DataType.DATE_TIME_MICROSECONDS: 8,
    DataType.DATE_TIME_NANOSECONDS: 8,
    DataType.IPV4_ADDRESS: 4,
    DataType.IPV6_ADDRESS: 16,
}

UNSIGNED_TYPES = frozenset(
    {DataType.UNSIGNED8, DataType.UNSIGNED16, DataType.UNSIGNED32, DataType.UNSIGNED64}
)
SIGNED_TYPES = frozenset(
    {DataType.SIGNED8, DataType.SIGNED16, DataType.SIGNED32, DataType.SIGNED64}
)
TEXT_OR_OCTETS = frozenset({DataType.STRING, DataType.OCTET_ARRAY})
