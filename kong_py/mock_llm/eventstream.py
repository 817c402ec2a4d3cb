"""AWS event-stream framing (``application/vnd.amazon.eventstream``), the encoding side.

Bedrock's ``converse-stream`` answers in binary messages, not SSE. Written here from the
format's definition (not with botocore, which only decodes) so that the project's tests can
check it with botocore's decoder, an independent implementation:

    total length (4, big endian) | headers length (4) | CRC32 of those 8 bytes (4)
    headers: name length (1) | name | type 7 = string (1) | value length (2) | value
    payload | CRC32 of everything before (4)
"""
from __future__ import annotations

import struct
import zlib
from typing import Any

import orjson

STRING = 7  # header value type: UTF-8 string
CONTENT_TYPE = "application/vnd.amazon.eventstream"


def encode_headers(headers: dict[str, str]) -> bytes:
    out = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        out += struct.pack("!B", len(raw_name)) + raw_name
        out += struct.pack("!BH", STRING, len(raw_value)) + raw_value
    return bytes(out)


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One complete event-stream message."""
    raw_headers = encode_headers(headers)
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack("!II", total, len(raw_headers))
    message = prelude + struct.pack("!I", zlib.crc32(prelude)) + raw_headers + payload
    return message + struct.pack("!I", zlib.crc32(message))


def event(event_type: str, data: Any) -> bytes:
    """A Bedrock stream event: ``:event-type`` + JSON payload."""
    return encode_message({":event-type": event_type, ":content-type": "application/json",
                           ":message-type": "event"}, orjson.dumps(data))


def exception(exception_type: str, message: str) -> bytes:
    """An in-stream error, e.g. ``throttlingException`` (``:message-type: exception``)."""
    return encode_message({":exception-type": exception_type, ":content-type": "application/json",
                           ":message-type": "exception"}, orjson.dumps({"message": message}))
