"""Templates and the compiled record encoder behind them (RFC 7011 §3.4).

A template is compiled once into a packing plan: runs of fixed-length fields
become one `struct.Struct`, so the per-record cost is one `pack` call plus a
short loop over the variable-length strings.
"""

from __future__ import annotations

import itertools
import re
import socket
import struct
from collections.abc import Callable, Mapping, Sequence
from ipaddress import IPv4Address, IPv6Address

import msgspec

from .datatypes import (
    NATURAL_SIZE,
    SIGNED_TYPES,
    TEXT_OR_OCTETS,
    UNSIGNED_TYPES,
    VARIABLE_LENGTH,
    DataType,
)
from .errors import EncodeError
from .ie import InformationElement
from .native import speedups as _speedups


def native_encoder_available() -> bool:
    return _speedups is not None


def _no_native_encode(values: Sequence[object], plan: bytes,
                      base: int = 0) -> tuple[bytes, int] | None:
    return None  # pragma: no cover - never called: without the C part no plan is made


# (record, strings cut) or None for the Python path; only for a RecordEncoder.native_plan
native_encode: Callable[[Sequence[object], bytes, int], tuple[bytes, int] | None] = (
    _no_native_encode if _speedups is None else _speedups.encode)


MIN_DATA_TEMPLATE_ID = 256  # RFC 7011 §3.4.1: ids 0-255 are reserved for set ids
MAX_VARLEN = 0xFFFF
_SURROGATE = re.compile("[\ud800-\udfff]")
_SHORT_PREFIX = tuple(bytes((n,)) for n in range(255))  # RFC 7011 §7: one length byte below 255


class TemplateField(msgspec.Struct, frozen=True):
    """A field of a template: the element and its on-wire length."""

    element: InformationElement
    length: int

    @property
    def is_variable_length(self) -> bool:
        return self.length == VARIABLE_LENGTH


class Template(msgspec.Struct, frozen=True):
    """A (data or options) template; the first `scope_field_count` fields are the scope."""

    template_id: int
    fields: tuple[TemplateField, ...]
    scope_field_count: int = 0

    def __post_init__(self) -> None:
        if not MIN_DATA_TEMPLATE_ID <= self.template_id <= 0xFFFF:
            raise ValueError(f"template id must be 256..65535, not {self.template_id}")
        if not self.fields:
            raise ValueError("a template needs at least one field")
        if not 0 <= self.scope_field_count <= len(self.fields):
            raise ValueError(f"bad scope field count {self.scope_field_count}")
        for field in self.fields:
            check_field_length(field.element, field.length)

    @property
    def is_options(self) -> bool:
        return self.scope_field_count > 0

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.element.name for f in self.fields)


def make_template(
    template_id: int,
    elements: Sequence[InformationElement],
    *,
    scope_field_count: int = 0,
    lengths: Mapping[str, int] | None = None,
) -> Template:
    """A template of `elements` at their default lengths, with optional overrides by name."""
    lengths = lengths or {}
    fields = tuple(TemplateField(e, lengths.get(e.name, e.default_length)) for e in elements)
    return Template(template_id, fields, scope_field_count)


def check_field_length(element: InformationElement, length: int) -> None:
    """Raise ValueError for a length the element's type cannot be encoded in (RFC 7011 §6.2)."""
    natural = NATURAL_SIZE[element.data_type]
    if element.data_type in TEXT_OR_OCTETS:
        ok = 0 < length <= VARIABLE_LENGTH
    elif element.data_type in UNSIGNED_TYPES or element.data_type in SIGNED_TYPES:
        ok = natural is not None and 1 <= length <= natural
    elif element.data_type is DataType.FLOAT64:
        ok = length in (4, 8)
    else:
        ok = length == natural
    if not ok:
        raise ValueError(f"{element.name}: length {length} is invalid for {element.data_type.name}")


def utf8_prefix(data: bytes, limit: int) -> bytes:
    """The longest prefix of UTF-8 `data` of at most `limit` bytes that ends on a character."""
    if len(data) <= limit:
        return data
    cut = limit
    while cut > 0 and (data[cut] & 0xC0) == 0x80:  # never split a code point
        cut -= 1
    return data[:cut]


def to_utf8(value: str) -> bytes:
    """UTF-8 bytes of `value`; lone surrogates (undecodable input) become U+FFFD."""
    try:
        return value.encode()
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", value).encode()


def _pack_address(size: int) -> Callable[[object], bytes]:
    family = socket.AF_INET if size == 4 else socket.AF_INET6
    cls = IPv4Address if size == 4 else IPv6Address
    zero = bytes(size)
    cache: dict[object, bytes] = {}

    def pack(value: object) -> bytes:
        packed = cache.get(value)
        if packed is not None:
            return packed
        if not value:
            return zero
        try:
            if isinstance(value, str):
                packed = socket.inet_pton(family, value)
            elif isinstance(value, cls):
                packed = value.packed
            elif isinstance(value, bytes) and len(value) == size:
                packed = value
            else:
                raise TypeError
        except (OSError, TypeError):
            raise EncodeError(f"not an IPv{4 if size == 4 else 6} address: {value!r}") from None
        if len(cache) < 4096:  # client and upstream addresses repeat; keep it bounded
            cache[value] = packed
        return packed

    return pack


def _to_boolean(value: object) -> int:
    return 1 if value else 2  # RFC 7011 §6.1.5: true is 1, false is 2


# the C encoder's plan: kind, wire length, byte limit per field (ipfix/_speedups.c)
_NATIVE_ENTRY = struct.Struct("!BHHx")
_NATIVE_UINT, _NATIVE_IPV4, _NATIVE_IPV6, _NATIVE_VARLEN, _NATIVE_FIXED_TEXT, _NATIVE_UPTIME = (
    range(6))


def plan_with_uptimes(plan: bytes, sources: Sequence[int]) -> bytes:
    """`plan` with its first fields made v9 sysUpTime fields: max(values[source] - base, 0)
    mod 2^32 in 4 bytes, taking no value of their own (`native_encode`'s third argument
    is the base)."""
    return (b"".join(_NATIVE_ENTRY.pack(_NATIVE_UPTIME, 4, source) for source in sources)
            + plan[len(sources) * _NATIVE_ENTRY.size:])

_STRUCT_CODES = {
    (True, 1): "B", (True, 2): "H", (True, 4): "I", (True, 8): "Q",
    (False, 1): "b", (False, 2): "h", (False, 4): "i", (False, 8): "q",
}


def _is_text(field: TemplateField) -> bool:
    return field.element.data_type in TEXT_OR_OCTETS


class TruncationCounter:
    """Counts fields cut to fit a limit, for the exporter's statistics."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class RecordEncoder:
    """Encodes value sequences (in template field order) into data records.

    Text fields (variable-length, or fixed-width and NUL-padded as in NetFlow v9)
    are encoded through a small per-field cache of finished bytes: HTTP methods,
    versions, hosts, agents and content types repeat from record to record, and a
    dictionary hit is far cheaper than encoding, measuring and prefixing again.
    """

    CACHE_ENTRIES = 1024  # per text field; a full cache is emptied, not grown
    CACHED_MAX_BYTES = 256  # long, mostly unique values (paths, queries) are not kept

    def __init__(
        self,
        template: Template,
        max_lengths: Mapping[str, int] | None = None,
        truncations: TruncationCounter | None = None,
        *,
        terminate_fixed_strings: bool = False,
    ) -> None:
        """`terminate_fixed_strings` keeps a NUL at the end of every fixed-width string, for
        collectors that read them as C strings (pmacct runs a full field into the next)."""
        self.template = template
        self.truncations = truncations or TruncationCounter()
        max_lengths = max_lengths or {}
        fields = template.fields
        self._count = len(fields)
        self._limits: list[int] = []
        self._widths: list[int | None] = []  # fixed width of a text field; None: varlen
        self._is_string: list[bool] = []
        for field in fields:
            element = field.element
            limit = min(max_lengths.get(element.name, MAX_VARLEN), MAX_VARLEN)
            is_string = element.data_type is DataType.STRING
            width = None
            if element.data_type in TEXT_OR_OCTETS and not field.is_variable_length:
                width = field.length
                limit = min(limit, width - (is_string and terminate_fixed_strings))
            self._limits.append(limit)
            self._widths.append(width)
            self._is_string.append(is_string)
        self._prepare: list[tuple[int, Callable[[object], object]]] = []
        # plan entries: (struct, start, stop) for runs of fixed non-text fields,
        # (None, start, stop) for runs of text fields
        self._plan: list[tuple[struct.Struct | None, int, int]] = []
        stop = 0
        for text, run in itertools.groupby(fields, key=_is_text):
            run_fields = list(run)
            start, stop = stop, stop + len(run_fields)
            if text:
                self._plan.append((None, start, stop))
            else:
                codes = "".join(self._fixed_code(i, f) for i, f in enumerate(run_fields, start))
                self._plan.append((struct.Struct("!" + codes), start, stop))
        self.native_plan = self._build_native_plan()
        self._caches: list[dict[object, bytes]] = [{} for _ in fields]
        shape = [packer is None for packer, _, _ in self._plan]
        self._split: int | None = None  # fields before it: one struct; after: all text
        if shape in ([False, True], [True]):
            self._split = self._plan[-1][1]
            self._head = self._plan[0][0] if shape == [False, True] else None
            self._tail_caches = self._caches[self._split:]

    def _build_native_plan(self) -> bytes | None:
        """The C encoder's plan, when it is installed and knows every field of the template."""
        if _speedups is None:
            return None
        entries = []
        for index, field in enumerate(self.template.fields):
            data_type, length = field.element.data_type, field.length
            if data_type in UNSIGNED_TYPES or data_type in (DataType.DATE_TIME_SECONDS,
                                                            DataType.DATE_TIME_MILLISECONDS):
                if length not in (1, 2, 4, 8):
                    return None
                kind = _NATIVE_UINT
            elif data_type is DataType.IPV4_ADDRESS:
                kind = _NATIVE_IPV4
            elif data_type is DataType.IPV6_ADDRESS:
                kind = _NATIVE_IPV6
            elif data_type is DataType.STRING:
                kind = _NATIVE_VARLEN if field.is_variable_length else _NATIVE_FIXED_TEXT
            else:
                return None
            entries.append(_NATIVE_ENTRY.pack(kind, length, self._limits[index]))
        return b"".join(entries)

    def _fixed_code(self, index: int, field: TemplateField) -> str:
        element, length, data_type = field.element, field.length, field.element.data_type
        if data_type in UNSIGNED_TYPES or data_type in SIGNED_TYPES:
            signed = data_type in SIGNED_TYPES
            code = _STRUCT_CODES.get((not signed, length))
            if code is not None:
                return code
            self._prepare.append((index, _int_to_bytes(length, signed, element.name)))
            return f"{length}s"
        if data_type is DataType.DATE_TIME_MILLISECONDS:
            return "Q"
        if data_type is DataType.DATE_TIME_SECONDS:
            return "I"
        if data_type is DataType.FLOAT64:
            return "d" if length == 8 else "f"
        if data_type is DataType.FLOAT32:
            return "f"
        if data_type is DataType.BOOLEAN:
            self._prepare.append((index, _to_boolean))
            return "B"
        if data_type in (DataType.IPV4_ADDRESS, DataType.IPV6_ADDRESS):
            self._prepare.append((index, _pack_address(length)))
            return f"{length}s"
        if data_type is DataType.MAC_ADDRESS:
            return "6s"
        raise ValueError(f"{element.name}: cannot encode {data_type.name}")

    def encode(self, values: Sequence[object], limits: Sequence[int] | None = None) -> bytes:
        """One data record; strings over their limit are cut at a character boundary."""
        if self.native_plan is not None and limits is None:
            result = native_encode(values, self.native_plan, 0)
            if result is not None:
                record, cuts = result
                if cuts:
                    self.truncations.count += cuts
                return record
        if len(values) != self._count:
            raise EncodeError(f"template {self.template.template_id} has {self._count} fields, "
                              f"got {len(values)} values")
        if self._prepare:
            values = list(values)
            for index, convert in self._prepare:
                values[index] = convert(values[index])
        split = self._split
        if split is not None and limits is None:  # the common shape, the hot path
            tail: list[bytes] = list(map(dict.get, self._tail_caches, values[split:]))  # type: ignore[arg-type]
            if not all(tail):  # a miss (None); cached values are never empty
                for offset, part in enumerate(tail):
                    if part is None:
                        tail[offset] = self._text(split + offset, values[split + offset], None)
            if self._head is None:
                return b"".join(tail)
            try:
                return self._head.pack(*values[:split]) + b"".join(tail)
            except struct.error as exc:
                raise EncodeError(f"template {self.template.template_id}: {exc}") from None
        parts: list[bytes] = []
        for packer, start, stop in self._plan:
            if packer is None:
                parts.extend(self._text(i, values[i], limits) for i in range(start, stop))
                continue
            try:
                parts.append(packer.pack(*values[start:stop]))
            except struct.error as exc:
                raise EncodeError(f"template {self.template.template_id}: {exc}") from None
        return b"".join(parts)

    def _text(self, index: int, value: object, limits: Sequence[int] | None) -> bytes:
        """A text field's final bytes: length prefix or padding included."""
        if isinstance(value, str):
            data = to_utf8(value)
        elif isinstance(value, bytes | bytearray | memoryview):
            data = bytes(value)
        elif value is None:
            data = b""
        else:
            raise EncodeError(f"{self.template.fields[index].element.name}: not text: {value!r}")
        limit = self._limits[index] if limits is None else limits[index]
        truncated = len(data) > limit
        if truncated:
            self.truncations.count += 1
            data = utf8_prefix(data, limit) if self._is_string[index] else data[:limit]
        width = self._widths[index]
        if width is not None:
            out = data.ljust(width, b"\0")
        elif len(data) < 255:
            out = _SHORT_PREFIX[len(data)] + data
        else:  # RFC 7011 §7: 255, then a 2-byte length
            out = b"\xff" + len(data).to_bytes(2, "big") + data
        if limits is None and not truncated and len(out) <= self.CACHED_MAX_BYTES:
            cache = self._caches[index]
            if len(cache) >= self.CACHE_ENTRIES:
                cache.clear()
            cache[value] = out
        return out

    def encode_within(self, values: Sequence[object], budget: int) -> bytes:
        """Encode, cutting the longest variable-length fields until the record fits `budget`.

        Only reached for records too large for an empty message; each cut field is
        counted once.
        """
        before = self.truncations.count
        record = self.encode(values)
        if len(record) <= budget:
            return record
        sizes = self._varlen_sizes(values)
        limits = list(self._limits)
        for index, size in sizes.items():
            limits[index] = min(limits[index], size)
        while len(record) > budget:
            longest = max(sizes, key=lambda i: limits[i], default=None)
            if longest is None or limits[longest] == 0:
                raise EncodeError(f"a record of template {self.template.template_id} "
                                  f"cannot fit {budget} bytes")
            second = max((limits[i] for i in sizes if i != longest), default=0)
            excess = len(record) - budget
            cut_to = max(second, limits[longest] - excess, 0)
            if cut_to == limits[longest]:  # tied with the runner-up: cut this one alone
                cut_to = max(limits[longest] - excess, 0)
            limits[longest] = cut_to
            self.truncations.count = before  # the final encode counts its own cuts
            record = self.encode(values, limits)
        return record

    def _varlen_sizes(self, values: Sequence[object]) -> dict[int, int]:
        sizes: dict[int, int] = {}
        for index, field in enumerate(self.template.fields):
            if field.is_variable_length:
                value = values[index]
                if isinstance(value, str):
                    sizes[index] = len(to_utf8(value))
                elif isinstance(value, bytes | bytearray | memoryview):
                    sizes[index] = len(value)
                else:
                    sizes[index] = 0
        return sizes


def _int_to_bytes(length: int, signed: bool, name: str) -> Callable[[object], bytes]:
    """Reduced-size integer encoding (RFC 7011 §6.2) for lengths struct has no code for."""

    def convert(value: object) -> bytes:
        if not isinstance(value, int):
            raise EncodeError(f"{name}: not an integer: {value!r}")
        try:
            return value.to_bytes(length, "big", signed=signed)
        except OverflowError:
            raise EncodeError(f"{name}: {value!r} does not fit {length} bytes") from None

    return convert
