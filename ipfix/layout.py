"""A kind of flow record laid out on the wire: its templates and their encoder.

A record is a msgspec Struct whose field order is its templates' field order, so it is
encoded from one `astuple`. Its client and its upstream may be of different address
families, hence four data templates per kind, from its first template id:

    +0 client IPv4, upstream IPv4     +1 client IPv6, upstream IPv6
    +2 client IPv4, upstream IPv6     +3 client IPv6, upstream IPv4

A record without an upstream uses the client's family and a zero address. NetFlow v9
templates begin with FIRST/LAST_SWITCHED, computed from the record's start and end, and
have fixed-width strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from .datatypes import VARIABLE_LENGTH
from .errors import EncodeError
from .ie import InformationElement, Registry
from .netflow9 import DEFAULT_PRIVATE_BASE, FIRST_SWITCHED, LAST_SWITCHED, v9_field_type
from .session import SessionConfig
from .template import (
    RecordEncoder,
    Template,
    TemplateField,
    TruncationCounter,
    native_encode,
    plan_with_uptimes,
)

# record attribute -> element name, or (IPv4 name, IPv6 name) for an address
FieldSpec = tuple[tuple[str, str | tuple[str, str]], ...]
UPSTREAM_ADDRESS = "upstream_address"  # its family picks the upstream half of the template

# The fields every kind of record begins with, in this order (its Struct's first fields):
# who talked to whom through which proxy address, when, over what, how much each way.
FLOW_KEYS: FieldSpec = (
    ("flow_id", "flowId"),
    ("start_ms", "flowStartMilliseconds"),
    ("end_ms", "flowEndMilliseconds"),
    ("client_address", ("sourceIPv4Address", "sourceIPv6Address")),
    ("proxy_address", ("destinationIPv4Address", "destinationIPv6Address")),
    ("upstream_address", ("postNATDestinationIPv4Address", "postNATDestinationIPv6Address")),
    ("client_port", "sourceTransportPort"),
    ("proxy_port", "destinationTransportPort"),
    ("upstream_port", "postNAPTDestinationTransportPort"),
    ("protocol", "protocolIdentifier"),
    ("octets", "octetDeltaCount"),
    ("initiator_octets", "initiatorOctets"),
    ("responder_octets", "responderOctets"),
)

# (client is IPv6, upstream is IPv6) -> offset from the first template id
FAMILY_TEMPLATES: dict[tuple[bool, bool], int] = {
    (False, False): 0, (True, True): 1, (False, True): 2, (True, False): 3,
}


class RecordLayout:
    """One kind of flow record: its fields, templates and encoder (what ExportSession
    needs of it, a RecordFormat)."""

    def __init__(self, kind: str, record_type: type[msgspec.Struct], fields: FieldSpec,
                 first_id: int, max_lengths: Mapping[str, int],
                 netflow9_widths: Mapping[str, int]) -> None:
        if tuple(a for a, _ in fields) != record_type.__struct_fields__:
            raise ValueError(f"the fields must follow {record_type.__name__}'s field order")
        self.kind = kind  # for people and generated files: "http", "connection", "dns"
        self.record_type = record_type
        self.fields = fields
        self.first_id = first_id
        self.max_lengths = max_lengths  # defaults, bytes of UTF-8 in IPFIX
        # defaults; a value keeps at least one NUL byte, so it carries width - 1 bytes
        self.netflow9_widths = netflow9_widths

    def elements(self, registry: Registry, client_v6: bool,
                 upstream_v6: bool) -> list[InformationElement]:
        """The data template's elements for one combination of address families."""
        elements = []
        for attribute, names in self.fields:
            if isinstance(names, tuple):
                v6 = upstream_v6 if attribute == UPSTREAM_ADDRESS else client_v6
                elements.append(registry[names[1] if v6 else names[0]])
            else:
                elements.append(registry[names])
        return elements

    @property
    def template_ids(self) -> range:
        return range(self.first_id, self.first_id + len(FAMILY_TEMPLATES))

    def all_elements(self, registry: Registry) -> list[InformationElement]:
        """Every element the record may carry, both address families, in record order."""
        return [registry[name] for _, names in self.fields
                for name in (names if isinstance(names, tuple) else (names,))]

    def ipfix_templates(self, registry: Registry) -> list[Template]:
        """The four IPFIX data templates, strings variable-length."""
        templates = []
        for (client_v6, upstream_v6), offset in _by_offset():
            elements = self.elements(registry, client_v6, upstream_v6)
            fields = tuple(TemplateField(e, e.default_length) for e in elements)
            templates.append(Template(self.first_id + offset, fields))
        return templates

    def netflow9_templates(self, registry: Registry, widths: Mapping[str, int] | None = None,
                           *, include_enterprise: bool = True) -> list[Template]:
        """The four v9 data templates: FIRST/LAST_SWITCHED first, strings at fixed widths."""
        widths = self.netflow9_widths if widths is None else widths
        first, last = registry["flowStartSysUpTime"], registry["flowEndSysUpTime"]
        assert (first.element_id, last.element_id) == (FIRST_SWITCHED, LAST_SWITCHED)
        templates = []
        for (client_v6, upstream_v6), offset in _by_offset():
            fields = [TemplateField(first, 4), TemplateField(last, 4)]
            for element in self.elements(registry, client_v6, upstream_v6):
                if element.is_enterprise and not include_enterprise:
                    continue
                length = element.default_length
                if length == VARIABLE_LENGTH:
                    length = widths.get(element.name, 0)
                    if not 1 < length < VARIABLE_LENGTH:  # one byte stays NUL
                        raise ValueError(
                            f"{element.name}: v9 width must be 2..65534, not {length}")
                fields.append(TemplateField(element, length))
            templates.append(Template(self.first_id + offset, tuple(fields)))
        return templates

    def encoding(self, registry: Registry, config: SessionConfig, *,
                 netflow9_boot_time_ms: int | None,
                 truncations: TruncationCounter) -> LayoutEncoder:
        max_lengths = {**self.max_lengths, **config.max_lengths}
        if netflow9_boot_time_ms is None:
            return LayoutEncoder(self, self.ipfix_templates(registry), max_lengths=max_lengths,
                                 truncations=truncations)
        templates = self.netflow9_templates(
            registry, {**self.netflow9_widths, **config.netflow9_widths},
            include_enterprise=config.netflow9_enterprise_fields)
        return LayoutEncoder(self, templates, max_lengths=max_lengths,
                             netflow9_boot_time_ms=netflow9_boot_time_ms,
                             netflow9_private_base=config.netflow9_private_base,
                             truncations=truncations)


def _by_offset() -> list[tuple[tuple[bool, bool], int]]:
    return sorted(FAMILY_TEMPLATES.items(), key=lambda item: item[1])


class LayoutEncoder:
    """Turns records of one layout into (template id, data record) for one wire format."""

    def __init__(
        self,
        layout: RecordLayout,
        templates: list[Template],
        *,
        max_lengths: Mapping[str, int] | None = None,
        netflow9_boot_time_ms: int | None = None,
        netflow9_private_base: int = DEFAULT_PRIVATE_BASE,
        truncations: TruncationCounter | None = None,
    ) -> None:
        self.truncations = truncations or TruncationCounter()
        self.templates = templates
        max_lengths = layout.max_lengths if max_lengths is None else max_lengths
        v9 = netflow9_boot_time_ms is not None
        self._encoders = [RecordEncoder(t, max_lengths, self.truncations,
                                        terminate_fixed_strings=v9) for t in templates]
        self._boot_ms = netflow9_boot_time_ms
        self._base_ms = netflow9_boot_time_ms or 0
        self._keep: list[int] | None = None
        names = layout.record_type.__struct_fields__
        self._start, self._end = names.index("start_ms"), names.index("end_ms")
        if netflow9_boot_time_ms is not None:
            for template in templates:  # fail early on types v9 cannot carry
                for field in template.fields:
                    v9_field_type(field.element, netflow9_private_base)
            present = set(templates[0].names)
            keep = [i for i, (_, element) in enumerate(layout.fields)
                    if isinstance(element, tuple) or element in present]
            self._keep = keep if len(keep) < len(layout.fields) else None
        first_id = templates[0].template_id
        # by 2 * (client is IPv6) + (upstream is IPv6): FAMILY_TEMPLATES without a tuple
        self._lanes = [(first_id + offset, self._encoders[offset],
                        self._record_plan(self._encoders[offset]))
                       for _, offset in sorted(FAMILY_TEMPLATES.items())]

    def _record_plan(self, encoder: RecordEncoder) -> bytes | None:
        """The C plan that encodes a record's fields as they stand (astuple): the
        template's own, where v9's two uptimes come from start_ms and end_ms in C."""
        plan = encoder.native_plan
        if plan is None or self._boot_ms is None:
            return plan
        if self._keep is not None:
            return None  # fields left out: the Python path picks the values
        return plan_with_uptimes(plan, [self._start, self._end])

    def encode(self, record: Any, budget: int) -> tuple[int, bytes]:
        client_v6 = ":" in record.client_address
        upstream = record.upstream_address
        template_id, encoder, plan = self._lanes[
            2 * client_v6 + ((":" in upstream) if upstream else client_v6)]
        fields: tuple[object, ...] = msgspec.structs.astuple(record)
        try:
            # the usual case in one C call, v9's uptimes included: each Python step here
            # costs about as much as encoding a field
            result = None if plan is None else native_encode(fields, plan, self._base_ms)
            if result is None:
                data = encoder.encode(self._values(fields))
            else:
                data, cuts = result
                if cuts:
                    self.truncations.count += cuts
            if len(data) > budget:
                data = encoder.encode_within(self._values(fields), budget)
        except EncodeError as exc:
            raise EncodeError(f"flow {record.flow_id}: {exc}") from None
        return template_id, data

    def _values(self, fields: Sequence[object]) -> tuple[object, ...]:
        """The values in template order: v9's begin with FIRST/LAST_SWITCHED."""
        if self._boot_ms is None:
            return tuple(fields)
        start, end = fields[self._start], fields[self._end]
        assert isinstance(start, int) and isinstance(end, int)
        if self._keep is not None:
            fields = [fields[i] for i in self._keep]
        boot = self._boot_ms
        # sysUpTime-relative; a flow that began before the exporter started begins at 0
        return (max(start - boot, 0) & 0xFFFFFFFF, max(end - boot, 0) & 0xFFFFFFFF, *fields)
