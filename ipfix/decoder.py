"""IPFIX (RFC 7011) and NetFlow v9 (RFC 3954) decoding, with no I/O.

Built for hostile input: every length is checked against the bytes it
claims, each set is read from its own bounded slice, the template cache is
bounded, and every malformation raises `DecodeError`. Data for a template we
have not seen skips its set and is reported, as RFC 7011 §8 asks.
"""

from __future__ import annotations

import socket
import struct
from collections import OrderedDict
from collections.abc import Callable, Hashable

import msgspec

from .datatypes import NATURAL_SIZE, VARIABLE_LENGTH, DataType
from .errors import DecodeError
from .ie import DEFAULT_REGISTRY, IANA, InformationElement, Registry
from .message import (
    IPFIX_HEADER,
    IPFIX_VERSION,
    OPTIONS_TEMPLATE_SET_ID,
    SET_HEADER,
    TEMPLATE_SET_ID,
)
from .netflow9 import (
    DEFAULT_PRIVATE_BASE,
    NETFLOW9_HEADER,
    NETFLOW9_VERSION,
    OPTIONS_TEMPLATE_FLOWSET_ID,
    SCOPE_NAMES,
    TEMPLATE_FLOWSET_ID,
)

Value = int | float | bool | str
ValueDecoder = Callable[[bytes], Value]

_ENTERPRISE_BIT = 0x8000
_MAX_FIELDS = 1024  # more fields than any sane template; bounds work per record


class DecodedRecord(msgspec.Struct):
    """One data record: values keyed by element name."""

    template_id: int
    is_options: bool
    fields: dict[str, Value]


class DecodedMessage(msgspec.Struct):
    """What one message held, with the header fields a collector checks."""

    version: int
    observation_domain_id: int
    sequence_number: int
    export_time: int  # seconds since the epoch
    records: list[DecodedRecord]
    template_ids: list[int]
    skipped_sets: list[str]  # why each skipped set was skipped
    data_record_count: int  # data records in the message, if every set was decoded
    header_count: int = 0  # v9 only: the header's record count
    sys_uptime_ms: int = 0  # v9 only

    @property
    def complete(self) -> bool:
        return not self.skipped_sets


class _FieldSpec(msgspec.Struct, frozen=True):
    element_id: int
    length: int
    enterprise_number: int = IANA
    v9_scope: bool = False


class _Template(msgspec.Struct):
    template_id: int
    specs: tuple[_FieldSpec, ...]
    scope_field_count: int
    plan: list[tuple[str, int, ValueDecoder]] | None = None
    plan_generation: int = -1

    @property
    def min_length(self) -> int:
        return sum(1 if s.length == VARIABLE_LENGTH else s.length for s in self.specs)


def _unsigned(data: bytes) -> Value:
    return int.from_bytes(data, "big")


def _signed(data: bytes) -> Value:
    return int.from_bytes(data, "big", signed=True)


def _text(data: bytes) -> Value:
    return data.decode("utf-8", "replace")


def _strict_text(data: bytes) -> Value:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"string is not valid UTF-8: {exc.reason} at byte {exc.start}") from None


def _strict_fixed_text(data: bytes) -> Value:
    return _strict_text(data.rstrip(b"\x00"))


def _fixed_text(data: bytes) -> Value:
    return data.rstrip(b"\x00").decode("utf-8", "replace")  # v9 pads strings with NULs


def _octets(data: bytes) -> Value:
    return data.hex()


def _ipv4(data: bytes) -> Value:
    return socket.inet_ntop(socket.AF_INET, data)


def _ipv6(data: bytes) -> Value:
    return socket.inet_ntop(socket.AF_INET6, data)


def _boolean(data: bytes) -> Value:
    return {1: True, 2: False}.get(data[0], data[0])  # RFC 7011 §6.1.5


def _mac(data: bytes) -> Value:
    return data.hex(":")


def _float(data: bytes) -> Value:
    return float(struct.unpack("!f" if len(data) == 4 else "!d", data)[0])


def value_decoder(data_type: DataType, length: int, *, strict: bool = False) -> ValueDecoder:
    """How to read a field of this type at this length; raw hex where they disagree.

    Strings are read with invalid UTF-8 replaced, or, `strict`, refused with DecodeError."""
    natural = NATURAL_SIZE[data_type]
    if data_type is DataType.STRING:
        if strict:
            return _strict_text if length == VARIABLE_LENGTH else _strict_fixed_text
        return _text if length == VARIABLE_LENGTH else _fixed_text
    if length == VARIABLE_LENGTH:
        return _octets
    if data_type in (DataType.UNSIGNED8, DataType.UNSIGNED16, DataType.UNSIGNED32,
                     DataType.UNSIGNED64, DataType.DATE_TIME_SECONDS,
                     DataType.DATE_TIME_MILLISECONDS, DataType.DATE_TIME_MICROSECONDS,
                     DataType.DATE_TIME_NANOSECONDS):
        return _unsigned if natural is not None and 1 <= length <= natural else _octets
    if data_type in (DataType.SIGNED8, DataType.SIGNED16, DataType.SIGNED32, DataType.SIGNED64):
        return _signed if natural is not None and 1 <= length <= natural else _octets
    fixed: dict[DataType, tuple[ValueDecoder, tuple[int, ...]]] = {
        DataType.IPV4_ADDRESS: (_ipv4, (4,)),
        DataType.IPV6_ADDRESS: (_ipv6, (16,)),
        DataType.BOOLEAN: (_boolean, (1,)),
        DataType.MAC_ADDRESS: (_mac, (6,)),
        DataType.FLOAT32: (_float, (4,)),
        DataType.FLOAT64: (_float, (4, 8)),
    }
    decoder, lengths = fixed.get(data_type, (_octets, ()))
    return decoder if length in lengths else _octets


class _LearnedTypes:
    """Element types an exporter described in RFC 5610 records, bounded."""

    __slots__ = ("generation", "types")

    def __init__(self) -> None:
        self.types: dict[tuple[int, int], tuple[str, DataType]] = {}
        self.generation = 0


class Decoder:
    """Decodes messages from many exporters, keeping each one's templates apart."""

    def __init__(
        self,
        registry: Registry = DEFAULT_REGISTRY,
        *,
        netflow9_private_base: int = DEFAULT_PRIVATE_BASE,
        max_templates_per_exporter: int = 1024,
        max_exporters: int = 1024,
        max_learned_types: int = 1024,
        strict_text: bool = False,
    ) -> None:
        """`strict_text` refuses strings that are not valid UTF-8 (RFC 7011 §6.1.6) instead
        of showing U+FFFD for the bad bytes."""
        self.strict_text = strict_text
        self.registry = registry
        self.netflow9_private_base = netflow9_private_base
        self.max_templates_per_exporter = max_templates_per_exporter
        self.max_exporters = max_exporters
        self.max_learned_types = max_learned_types
        # exporter -> {(version, domain, template id) -> template}, least recently used first
        self._templates: OrderedDict[Hashable, OrderedDict[tuple[int, int, int], _Template]] = (
            OrderedDict())
        self._learned: dict[Hashable, _LearnedTypes] = {}

    def decode(self, data: bytes, exporter: Hashable = "") -> DecodedMessage:
        """Decode one message (one UDP datagram, or one message of a file)."""
        if len(data) < 2:
            raise DecodeError("message shorter than a version number", offset=0)
        version = int.from_bytes(data[:2], "big")
        if version == IPFIX_VERSION:
            return self._decode_ipfix(bytes(data), exporter)
        if version == NETFLOW9_VERSION:
            return self._decode_netflow9(bytes(data), exporter)
        raise DecodeError(f"unsupported version {version}", offset=0)

    # -- IPFIX ----------------------------------------------------------------------------

    def _decode_ipfix(self, data: bytes, exporter: Hashable) -> DecodedMessage:
        if len(data) < IPFIX_HEADER.size:
            raise DecodeError(f"IPFIX header needs 16 bytes, got {len(data)}", offset=0)
        _, length, export_time, sequence, domain = IPFIX_HEADER.unpack_from(data)
        if length != len(data):
            raise DecodeError(f"message length {length} but {len(data)} bytes", offset=2)
        message = DecodedMessage(IPFIX_VERSION, domain, sequence, export_time, [], [], [], 0)
        offset = IPFIX_HEADER.size
        while offset < length:
            if length - offset < SET_HEADER.size:
                raise DecodeError("truncated set header", offset=offset)
            set_id, set_length = SET_HEADER.unpack_from(data, offset)
            if set_length < SET_HEADER.size or offset + set_length > length:
                raise DecodeError(f"set length {set_length} does not fit", offset=offset,
                                  set_id=set_id)
            body = data[offset + SET_HEADER.size: offset + set_length]
            body_offset = offset + SET_HEADER.size
            if set_id in (TEMPLATE_SET_ID, OPTIONS_TEMPLATE_SET_ID):
                self._ipfix_templates(body, body_offset, set_id, exporter, domain, message)
            elif set_id >= 256:
                self._data_set(body, body_offset, set_id, (exporter, IPFIX_VERSION, domain),
                               message)
            else:
                message.skipped_sets.append(f"set {set_id}: reserved set id")
            offset += set_length
        return message

    def _ipfix_templates(self, body: bytes, base: int, set_id: int, exporter: Hashable,
                         domain: int, message: DecodedMessage) -> None:
        options = set_id == OPTIONS_TEMPLATE_SET_ID
        pos = 0
        while len(body) - pos >= 4:  # fewer bytes left is padding (§3.3.1)
            template_id, field_count = struct.unpack_from("!HH", body, pos)
            pos += 4
            if template_id < 256:
                raise DecodeError(f"template id {template_id} below 256", offset=base + pos - 4,
                                  set_id=set_id)
            if field_count == 0:  # §8.1 withdrawal
                self._withdraw(exporter, IPFIX_VERSION, domain, template_id)
                continue
            scope_count = 0
            if options:
                if len(body) - pos < 2:
                    raise DecodeError("truncated options template", offset=base + pos,
                                      set_id=set_id, template_id=template_id)
                (scope_count,) = struct.unpack_from("!H", body, pos)
                pos += 2
                if not 0 < scope_count <= field_count:
                    raise DecodeError(f"scope field count {scope_count} of {field_count}",
                                      offset=base + pos - 2, set_id=set_id,
                                      template_id=template_id)
            if field_count > _MAX_FIELDS:
                raise DecodeError(f"{field_count} fields", offset=base + pos, set_id=set_id,
                                  template_id=template_id)
            specs = []
            for _ in range(field_count):
                if len(body) - pos < 4:
                    raise DecodeError("truncated field specifier", offset=base + pos,
                                      set_id=set_id, template_id=template_id)
                element_id, length = struct.unpack_from("!HH", body, pos)
                pos += 4
                enterprise = IANA
                if element_id & _ENTERPRISE_BIT:
                    if len(body) - pos < 4:
                        raise DecodeError("truncated enterprise number", offset=base + pos,
                                          set_id=set_id, template_id=template_id)
                    (enterprise,) = struct.unpack_from("!I", body, pos)
                    pos += 4
                    element_id &= ~_ENTERPRISE_BIT
                if length == 0:
                    raise DecodeError("field of length 0", offset=base + pos - 4,
                                      set_id=set_id, template_id=template_id)
                specs.append(_FieldSpec(element_id, length, enterprise))
            self._store(exporter, IPFIX_VERSION, domain,
                        _Template(template_id, tuple(specs), scope_count))
            message.template_ids.append(template_id)

    # -- NetFlow v9 -----------------------------------------------------------------------

    def _decode_netflow9(self, data: bytes, exporter: Hashable) -> DecodedMessage:
        if len(data) < NETFLOW9_HEADER.size:
            raise DecodeError(f"v9 header needs 20 bytes, got {len(data)}", offset=0)
        _, count, uptime, secs, sequence, source_id = NETFLOW9_HEADER.unpack_from(data)
        message = DecodedMessage(NETFLOW9_VERSION, source_id, sequence, secs, [], [], [], 0,
                                 header_count=count, sys_uptime_ms=uptime)
        offset = NETFLOW9_HEADER.size
        while offset < len(data):
            if len(data) - offset < SET_HEADER.size:
                raise DecodeError("truncated flowset header", offset=offset)
            set_id, set_length = SET_HEADER.unpack_from(data, offset)
            if set_length < SET_HEADER.size or offset + set_length > len(data):
                raise DecodeError(f"flowset length {set_length} does not fit", offset=offset,
                                  set_id=set_id)
            body = data[offset + SET_HEADER.size: offset + set_length]
            body_offset = offset + SET_HEADER.size
            if set_id == TEMPLATE_FLOWSET_ID:
                self._v9_templates(body, body_offset, exporter, source_id, message)
            elif set_id == OPTIONS_TEMPLATE_FLOWSET_ID:
                self._v9_options_templates(body, body_offset, exporter, source_id, message)
            elif set_id >= 256:
                self._data_set(body, body_offset, set_id,
                               (exporter, NETFLOW9_VERSION, source_id), message)
            else:
                message.skipped_sets.append(f"flowset {set_id}: reserved flowset id")
            offset += set_length
        return message

    def _v9_templates(self, body: bytes, base: int, exporter: Hashable, source_id: int,
                      message: DecodedMessage) -> None:
        pos = 0
        while len(body) - pos >= 4:
            template_id, field_count = struct.unpack_from("!HH", body, pos)
            pos += 4
            if template_id < 256 or field_count == 0 or field_count > _MAX_FIELDS:
                if template_id == 0 and field_count == 0:
                    break  # zero padding
                raise DecodeError(f"bad template header ({template_id}, {field_count} fields)",
                                  offset=base + pos - 4, set_id=TEMPLATE_FLOWSET_ID)
            if len(body) - pos < 4 * field_count:
                raise DecodeError("truncated template", offset=base + pos,
                                  set_id=TEMPLATE_FLOWSET_ID, template_id=template_id)
            specs = []
            for _ in range(field_count):
                field_type, length = struct.unpack_from("!HH", body, pos)
                pos += 4
                if length == 0:
                    raise DecodeError("field of length 0", offset=base + pos - 4,
                                      set_id=TEMPLATE_FLOWSET_ID, template_id=template_id)
                specs.append(self._v9_spec(field_type, length))
            self._store(exporter, NETFLOW9_VERSION, source_id,
                        _Template(template_id, tuple(specs), 0))
            message.template_ids.append(template_id)

    def _v9_options_templates(self, body: bytes, base: int, exporter: Hashable,
                              source_id: int, message: DecodedMessage) -> None:
        pos = 0
        set_id = OPTIONS_TEMPLATE_FLOWSET_ID
        while len(body) - pos >= 6:
            template_id, scope_length, option_length = struct.unpack_from("!HHH", body, pos)
            pos += 6
            if template_id == 0 and scope_length == 0:
                break  # zero padding
            if (template_id < 256 or scope_length % 4 or option_length % 4
                    or scope_length == 0 or (scope_length + option_length) // 4 > _MAX_FIELDS):
                raise DecodeError(f"bad options template ({template_id}, scope {scope_length}, "
                                  f"options {option_length})", offset=base + pos - 6,
                                  set_id=set_id)
            if len(body) - pos < scope_length + option_length:
                raise DecodeError("truncated options template", offset=base + pos,
                                  set_id=set_id, template_id=template_id)
            specs = []
            for index in range((scope_length + option_length) // 4):
                field_type, length = struct.unpack_from("!HH", body, pos)
                pos += 4
                if length == 0:
                    raise DecodeError("field of length 0", offset=base + pos - 4,
                                      set_id=set_id, template_id=template_id)
                if index < scope_length // 4:
                    specs.append(_FieldSpec(field_type, length, IANA, v9_scope=True))
                else:
                    specs.append(self._v9_spec(field_type, length))
            self._store(exporter, NETFLOW9_VERSION, source_id,
                        _Template(template_id, tuple(specs), scope_length // 4))
            message.template_ids.append(template_id)

    def _v9_spec(self, field_type: int, length: int) -> _FieldSpec:
        base = self.netflow9_private_base
        if field_type >= base:
            element = self.registry.lookup(self.registry.enterprise_number, field_type - base)
            if element is not None:
                return _FieldSpec(element.element_id, length, element.enterprise_number)
        return _FieldSpec(field_type, length)

    # -- data sets, shared ----------------------------------------------------------------

    def _data_set(self, body: bytes, base: int, set_id: int, key: tuple[Hashable, int, int],
                  message: DecodedMessage) -> None:
        exporter, version, domain = key
        templates = self._templates.get(exporter)
        template = templates.get((version, domain, set_id)) if templates else None
        if template is None:
            message.skipped_sets.append(f"set {set_id}: no template {set_id} from this exporter")
            return
        plan = self._plan(exporter, template)
        min_length = template.min_length
        pos = 0
        while len(body) - pos >= min_length:  # fewer bytes left is padding
            values: dict[str, Value] = {}
            for name, length, decode in plan:
                if length == VARIABLE_LENGTH:  # §7
                    if pos >= len(body):
                        raise DecodeError("truncated variable-length field", offset=base + pos,
                                          set_id=set_id, template_id=set_id)
                    length = body[pos]
                    pos += 1
                    if length == 255:
                        if len(body) - pos < 2:
                            raise DecodeError("truncated 3-byte length", offset=base + pos,
                                              set_id=set_id, template_id=set_id)
                        length = int.from_bytes(body[pos: pos + 2], "big")
                        pos += 2
                if len(body) - pos < length:
                    raise DecodeError(f"field {name} overruns the set", offset=base + pos,
                                      set_id=set_id, template_id=set_id)
                values[name] = decode(body[pos: pos + length])
                pos += length
            record = DecodedRecord(set_id, template.scope_field_count > 0, values)
            message.records.append(record)
            message.data_record_count += 1
            if record.is_options:
                self._learn(exporter, values)

    def _plan(self, exporter: Hashable, template: _Template) -> list[tuple[str, int, ValueDecoder]]:
        learned = self._learned.get(exporter)
        generation = learned.generation if learned else 0
        if template.plan is not None and template.plan_generation == generation:
            return template.plan
        plan = []
        seen: dict[str, int] = {}
        for spec in template.specs:
            name, decode = self._resolve(spec, learned)
            if name in seen:  # a template may repeat an element; keep every value
                seen[name] += 1
                name = f"{name}#{seen[name]}"
            else:
                seen[name] = 1
            plan.append((name, spec.length, decode))
        template.plan, template.plan_generation = plan, generation
        return plan

    def _resolve(self, spec: _FieldSpec, learned: _LearnedTypes | None
                 ) -> tuple[str, ValueDecoder]:
        if spec.v9_scope:
            name = SCOPE_NAMES.get(spec.element_id, f"scope{spec.element_id}")
            return name, value_decoder(DataType.UNSIGNED64, spec.length)
        element: InformationElement | None = self.registry.lookup(
            spec.enterprise_number, spec.element_id)
        if element is not None:
            return element.name, value_decoder(element.data_type, spec.length,
                                               strict=self.strict_text)
        key = (spec.enterprise_number, spec.element_id)
        described = learned.types.get(key) if learned else None
        if described is not None:
            return described[0], value_decoder(described[1], spec.length,
                                               strict=self.strict_text)
        return f"{spec.enterprise_number}/{spec.element_id}", _octets

    def _learn(self, exporter: Hashable, values: dict[str, Value]) -> None:
        """Remember RFC 5610 type records, to name and type an exporter's own elements."""
        pen = values.get("privateEnterpriseNumber")
        element_id = values.get("informationElementId")
        data_type = values.get("informationElementDataType")
        name = values.get("informationElementName")
        if not (isinstance(pen, int) and isinstance(element_id, int) and isinstance(name, str)
                and isinstance(data_type, int) and pen != IANA):
            return
        try:
            data_type = DataType(data_type)
        except ValueError:
            return
        learned = self._learned.setdefault(exporter, _LearnedTypes())
        key = (pen, element_id)
        if learned.types.get(key) == (name, data_type):
            return
        if key not in learned.types and len(learned.types) >= self.max_learned_types:
            return
        learned.types[key] = (name[:128], data_type)
        learned.generation += 1

    # -- the template cache ---------------------------------------------------------------

    def _store(self, exporter: Hashable, version: int, domain: int, template: _Template) -> None:
        if template.min_length == 0:
            raise DecodeError("template with no bytes per record",
                              template_id=template.template_id)
        templates = self._templates.get(exporter)
        if templates is None:
            while len(self._templates) >= self.max_exporters:
                evicted, _ = self._templates.popitem(last=False)
                self._learned.pop(evicted, None)
            templates = self._templates[exporter] = OrderedDict()
        else:
            self._templates.move_to_end(exporter)
        key = (version, domain, template.template_id)
        templates.pop(key, None)
        while len(templates) >= self.max_templates_per_exporter:
            templates.popitem(last=False)
        templates[key] = template

    def _withdraw(self, exporter: Hashable, version: int, domain: int, template_id: int) -> None:
        templates = self._templates.get(exporter)
        if templates is not None:
            templates.pop((version, domain, template_id), None)
