"""Wraps datagrams in a classic pcap file (IPv4/UDP over loopback) for tshark to read.

Writing the capture ourselves keeps the interop tests free of capture timing;
tshark still decodes every byte we produce.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

_GLOBAL_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)  # 101: raw IP


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4_udp(payload: bytes, src_port: int, dst_port: int) -> bytes:
    udp = struct.pack("!HHHH", src_port, dst_port, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + udp


def write_pcap(path: Path, datagrams: Iterable[bytes], *, src_port: int = 40000,
               dst_port: int = 4739, start_time: float = 1_700_000_000.0) -> None:
    with path.open("wb") as out:
        out.write(_GLOBAL_HEADER)
        for index, payload in enumerate(datagrams):
            packet = _ipv4_udp(payload, src_port, dst_port)
            stamp = start_time + index * 0.001
            out.write(struct.pack("<IIII", int(stamp), int((stamp % 1) * 1e6), len(packet),
                                  len(packet)))
            out.write(packet)
