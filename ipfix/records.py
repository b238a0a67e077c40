"""Every kind of flow record flowexport sends, in one place: what the generated collector
files, the README tables and the string-length options cover."""

from __future__ import annotations

from collections.abc import Mapping

from .connection_record import CONNECTION_RECORDS
from .dns_record import DNS_RECORDS
from .http_record import HTTP_RECORDS
from .ie import InformationElement, Registry
from .layout import RecordLayout

ALL_LAYOUTS: tuple[RecordLayout, ...] = (HTTP_RECORDS, CONNECTION_RECORDS, DNS_RECORDS)


def _merged(maps: list[Mapping[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for mapping in maps:
        for name, value in mapping.items():
            if merged.setdefault(name, value) != value:
                raise AssertionError(f"{name}: record kinds disagree on its default length")
    return merged


# per string element, whichever kinds carry it
DEFAULT_MAX_LENGTHS = _merged([layout.max_lengths for layout in ALL_LAYOUTS])
DEFAULT_V9_WIDTHS = _merged([layout.netflow9_widths for layout in ALL_LAYOUTS])
STRING_ELEMENTS = frozenset(DEFAULT_MAX_LENGTHS)


def record_elements(registry: Registry) -> list[InformationElement]:
    """Every element any record may carry, each once, in the order the kinds list them."""
    seen: dict[tuple[int, int], InformationElement] = {}
    for layout in ALL_LAYOUTS:
        for element in layout.all_elements(registry):
            seen.setdefault(element.key, element)
    return list(seen.values())


def kinds_of(registry: Registry, element: InformationElement) -> list[str]:
    """The kinds of record that carry `element`."""
    return [layout.kind for layout in ALL_LAYOUTS
            if element.key in {e.key for e in layout.all_elements(registry)}]
