"""Hostile input: random and mutated datagrams only ever raise DecodeError, quickly."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipfix.decoder import Decoder
from ipfix.errors import DecodeError
from ipfix.session import ExportFormat
from tests.conftest import run_session, sample_record

pytestmark = pytest.mark.usefixtures("encoder_impl")

_, IPFIX_STREAM = run_session([sample_record(i) for i in range(8)])
_, V9_STREAM = run_session([sample_record(i) for i in range(4)], ExportFormat.NETFLOW9)
VALID = [d.payload for d in IPFIX_STREAM + V9_STREAM]


def primed_decoder() -> Decoder:
    """A decoder that has seen the templates, so mutations reach the data-set code."""
    decoder = Decoder(max_templates_per_exporter=16, max_exporters=4)
    for payload in VALID:
        decoder.decode(payload, "fuzz")
    return decoder


def decode_safely(decoder: Decoder, data: bytes) -> None:
    started = time.perf_counter()
    try:
        message = decoder.decode(data, "fuzz")
    except DecodeError:
        pass
    else:
        assert len(message.records) <= len(data)  # each record takes at least one byte
    assert time.perf_counter() - started < 1.0


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_random_bytes(data: bytes) -> None:
    decode_safely(primed_decoder(), data)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(VALID), st.integers(0, 10**6), st.binary(min_size=2, max_size=2))
def test_version_prefixed_random_bytes(valid: bytes, seed: int, version: bytes) -> None:
    import random
    rng = random.Random(seed)
    body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 600)))
    decode_safely(primed_decoder(), valid[:2] + body)
    decode_safely(primed_decoder(), version + valid[2:])


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(VALID), st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)),
                                        min_size=1, max_size=8))
def test_mutated_valid_messages(valid: bytes, edits: list[tuple[int, int]]) -> None:
    data = bytearray(valid)
    for position, value in edits:
        data[position % len(data)] = value
    decoder = primed_decoder()
    decode_safely(decoder, bytes(data))
    for payload in VALID:  # the decoder still works for good input afterwards
        decode_safely(decoder, payload)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(VALID), st.integers(0, 2000), st.binary(max_size=300))
def test_spliced_messages(valid: bytes, cut: int, tail: bytes) -> None:
    decode_safely(primed_decoder(), valid[:cut] + tail)


def test_template_cache_is_bounded() -> None:
    decoder = Decoder(max_templates_per_exporter=16, max_exporters=4)
    for exporter in range(10):
        for payload in VALID:
            decoder.decode(payload, exporter)
    assert len(decoder._templates) <= 4
    assert all(len(t) <= 16 for t in decoder._templates.values())
