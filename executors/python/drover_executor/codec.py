"""Encoder and decoder of the drover wire protocol, version 1.

Every ZeroMQ message between a supervisor (ROUTER) and an executor (DEALER)
carries one msgpack array ``[version, type, field1, field2, ...]``.  This
module applies the same checks and limits as the C codec declared in
``include/drover/protocol.h``: exact field counts, field types, the
canonical UUID form, size caps, valid UTF-8 and no trailing bytes.  Every
failure raises ProtocolError with a reason that names the field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Optional, Type

import msgpack

PROTOCOL_VERSION = 1

# Hard caps, in bytes unless stated.  A message or field above its cap is malformed.
MAX_FRAME = 2 * 1024 * 1024
UUID_LEN = 36
MAX_NAME = 128
MAX_TYPE = 64
MAX_IDENTIFIER = 256
MAX_REASON = 1024
MAX_CONFIG = 1024 * 1024
MAX_SCHEMA = 256 * 1024
MAX_LOG_LINE = 64 * 1024
MAX_INVENTORY = 4096
MAX_CAPACITY = 65535
MAX_GRACE = 86400  # seconds
MAX_JSON_DEPTH = 128  # levels of arrays and objects in a json field, the top object is 1

MIN_PING_INTERVAL_MS = 100
MAX_PING_INTERVAL_MS = 600000
MAX_LIVENESS_MS = 3600000

STREAM_STDOUT = 1
STREAM_STDERR = 2

UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# Result kinds of the decoder, with the numbers of enum drover_decode_result.
MALFORMED = "malformed"
VERSION = "version"
UNKNOWN = "unknown"
TOO_LARGE = "too_large"
RESULT_CODES = {MALFORMED: -1, VERSION: -2, UNKNOWN: -3, TOO_LARGE: -4}

_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_EXECUTOR_ID_RE = re.compile(r"[A-Za-z0-9._:-]+\Z")
_TYPE_RE = re.compile(r"[a-z0-9_-]+\Z")


class ProtocolError(Exception):
    """A message that breaks the protocol.

    ``kind`` is MALFORMED, VERSION, UNKNOWN or TOO_LARGE.  For VERSION and
    UNKNOWN, ``version`` and ``msg_type`` hold what the peer sent.  A REJECT
    of another version, ``[version, 3, reason]``, also sets ``peer_reason``.
    """

    def __init__(self, reason: str, kind: str = MALFORMED,
                 version: Optional[int] = None, msg_type: Optional[int] = None,
                 peer_reason: Optional[str] = None):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.version = version
        self.msg_type = msg_type
        self.peer_reason = peer_reason

    @property
    def code(self) -> int:
        """The number of this kind in enum drover_decode_result."""
        return RESULT_CODES[self.kind]


# ---------------------------------------------------------------------------
# Messages


@dataclass
class RunEntry:
    """One run an executor still knows about, listed in HELLO's inventory."""

    flow_run_id: str
    identifier: str = ""  # "" when the infrastructure never started
    exited: bool = False  # the run ended and its EXITED is not yet acknowledged
    code: int = 0  # exit status when exited, -N means killed by signal N


@dataclass
class Hello:
    TYPE: ClassVar[int] = 1
    executor_id: str
    type: str
    capacity: int
    schema: str
    software: str = ""
    hostname: str = ""
    inventory: List[RunEntry] = field(default_factory=list)


@dataclass
class Welcome:
    TYPE: ClassVar[int] = 2
    supervisor_id: str
    ping_interval_ms: int
    liveness_ms: int


@dataclass
class Reject:
    TYPE: ClassVar[int] = 3
    reason: str


@dataclass
class Job:
    TYPE: ClassVar[int] = 4
    flow_run_id: str
    config: str


@dataclass
class Started:
    TYPE: ClassVar[int] = 5
    flow_run_id: str
    identifier: str


@dataclass
class Log:
    TYPE: ClassVar[int] = 6
    flow_run_id: str
    stream: int
    line: str


@dataclass
class Exited:
    TYPE: ClassVar[int] = 7
    flow_run_id: str
    code: int
    error: str = ""  # non-empty when the infrastructure could not be started


@dataclass
class Ack:
    TYPE: ClassVar[int] = 8
    flow_run_id: str
    acked_type: int  # Started.TYPE or Exited.TYPE


@dataclass
class Kill:
    TYPE: ClassVar[int] = 9
    flow_run_id: str
    grace_seconds: int


@dataclass
class Ping:
    TYPE: ClassVar[int] = 10
    seq: int
    running: int


@dataclass
class Pong:
    TYPE: ClassVar[int] = 11
    seq: int
    running: int


@dataclass
class Goodbye:
    TYPE: ClassVar[int] = 12
    reason: str = ""


MESSAGE_CLASSES: Dict[int, Type[Any]] = {
    cls.TYPE: cls
    for cls in (Hello, Welcome, Reject, Job, Started, Log, Exited, Ack, Kill, Ping, Pong,
                Goodbye)
}

TYPE_NAMES: Dict[int, str] = {num: cls.__name__.upper() for num, cls in MESSAGE_CLASSES.items()}
TYPE_NAMES_REVERSED: Dict[str, int] = {name: num for num, name in TYPE_NAMES.items()}


def type_name(msg_type: int) -> str:
    """Return the upper-case name of a message type ("HELLO"), or "UNKNOWN"."""
    return TYPE_NAMES.get(msg_type, "UNKNOWN")


# ---------------------------------------------------------------------------
# Field checks shared by the encoder and the decoder


def _fail(name: str, problem: str) -> None:
    raise ProtocolError(f"{name}: {problem}")


def _check_str(name: str, value: Any, min_len: int, max_len: int) -> str:
    """Check a string field; lengths are in UTF-8 bytes.

    Decoded strings carry invalid UTF-8 as surrogate escapes, which the strict
    encode below catches, so the reason names the field.
    """
    if not isinstance(value, str):
        _fail(name, f"expected a string, got {_describe(value)}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        _fail(name, "invalid UTF-8")
    if "\0" in value:
        _fail(name, "contains a NUL byte")
    if size < min_len:
        _fail(name, "empty" if min_len == 1 else f"shorter than {min_len} bytes")
    if size > max_len:
        _fail(name, f"{size} bytes exceeds the limit of {max_len}")
    return value


def _check_uint(name: str, value: Any, low: int, high: int) -> int:
    # bool is an int subclass in Python, but a distinct type on the wire.
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(name, f"expected an unsigned integer, got {_describe(value)}")
    if value < 0:
        _fail(name, f"expected an unsigned integer, got {value}")
    if value < low or value > high:
        _fail(name, f"{value} is outside {low}..{high}")
    return value


def _check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(name, f"expected an integer, got {_describe(value)}")
    if value < INT64_MIN or value > INT64_MAX:
        _fail(name, f"{value} does not fit in 64 bits")
    return value


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        _fail(name, f"expected a boolean, got {_describe(value)}")
    return value


def _check_uuid(name: str, value: Any) -> str:
    _check_str(name, value, 1, UUID_LEN)
    if not _UUID_RE.match(value):
        _fail(name, f"{value!r} is not a canonical lowercase UUID")
    return value


def _check_pattern(name: str, value: Any, max_len: int, pattern: "re.Pattern[str]",
                   allowed: str) -> str:
    _check_str(name, value, 1, max_len)
    if not pattern.match(value):
        _fail(name, f"{value!r} contains characters outside {allowed}")
    return value


def _check_json_object(name: str, value: Any, max_len: int) -> str:
    """Check a json field: one JSON object, with the rules of PROTOCOL.md section 3.4."""
    _check_str(name, value, 0, max_len)
    try:
        parsed = json.loads(value, object_pairs_hook=_unique_members,
                            parse_constant=_reject_constant, parse_int=_parse_int,
                            parse_float=_parse_float)
    except _JSONRuleError as exc:
        _fail(name, f"invalid JSON: {exc}")
    except ValueError as exc:
        _fail(name, f"invalid JSON: {exc}")
    except RecursionError:
        _fail(name, f"invalid JSON: nested more than {MAX_JSON_DEPTH} levels")
    if not isinstance(parsed, dict):
        _fail(name, "JSON text is not an object")
    problem = _json_depth_or_surrogate(parsed)
    if problem:
        _fail(name, f"invalid JSON: {problem}")
    return value


class _JSONRuleError(ValueError):
    pass


_MAX_DOUBLE = 1.7976931348623157e308


def _unique_members(pairs: List[Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, item in pairs:
        if key in out:
            raise _JSONRuleError(f"duplicate member {key!r}")
        out[key] = item
    return out


def _reject_constant(text: str) -> Any:
    raise _JSONRuleError(f"{text} is not a JSON number")


def _parse_int(text: str) -> int:
    number = int(text)
    if abs(number) > _MAX_DOUBLE:
        raise _JSONRuleError(f"number {text[:20]}... exceeds the range of a double")
    return number


def _parse_float(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise _JSONRuleError(f"number {text[:40]} exceeds the range of a double")
    return number


def _json_depth_or_surrogate(root: Dict[str, Any]) -> str:
    """Return why a parsed JSON object breaks the depth or surrogate rule, or ""."""
    surrogate = "a \\u escape of an unpaired UTF-16 surrogate"
    stack = [(root, 1)]
    while stack:
        container, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return f"nested more than {MAX_JSON_DEPTH} levels"
        if isinstance(container, dict):
            if any(_has_surrogate(key) for key in container):
                return surrogate
            items = container.values()
        else:
            items = container
        for item in items:
            if isinstance(item, (dict, list)):
                stack.append((item, depth + 1))
            elif isinstance(item, str) and _has_surrogate(item):
                return surrogate
    return ""


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_stream(name: str, value: Any) -> int:
    _check_uint(name, value, STREAM_STDOUT, STREAM_STDERR)
    return value


def _check_acked_type(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or \
            value not in (Started.TYPE, Exited.TYPE):
        _fail(name, f"expected 5 (STARTED) or 7 (EXITED), got {_describe(value)}")
    return value


def _describe(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (bytes, bytearray)):
        return "binary data"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "a map"
    return "an extension value"


def _check_inventory(name: str, value: Any) -> List[RunEntry]:
    if not isinstance(value, (list, tuple)):
        _fail(name, f"expected an array, got {_describe(value)}")
    if len(value) > MAX_INVENTORY:
        _fail(name, f"{len(value)} entries exceeds the limit of {MAX_INVENTORY}")
    entries = []
    for i, item in enumerate(value):
        where = f"{name}[{i}]"
        if isinstance(item, RunEntry):
            item = [item.flow_run_id, item.identifier, item.exited, item.code]
        if not isinstance(item, (list, tuple)):
            _fail(where, f"expected an array, got {_describe(item)}")
        if len(item) != 4:
            _fail(where, f"expected 4 elements, got {len(item)}")
        entries.append(RunEntry(
            flow_run_id=_check_uuid(where + ".flow_run_id", item[0]),
            identifier=_check_str(where + ".identifier", item[1], 0, MAX_IDENTIFIER),
            exited=_check_bool(where + ".exited", item[2]),
            code=_check_int(where + ".code", item[3]),
        ))
    return entries


def _hello_fields(m: Any) -> list:
    return [
        _check_pattern("executor_id", m[0], MAX_NAME, _EXECUTOR_ID_RE, "[A-Za-z0-9._:-]"),
        _check_pattern("type", m[1], MAX_TYPE, _TYPE_RE, "[a-z0-9_-]"),
        _check_uint("capacity", m[2], 1, MAX_CAPACITY),
        _check_json_object("schema", m[3], MAX_SCHEMA),
        _check_str("software", m[4], 0, MAX_NAME),
        _check_str("hostname", m[5], 0, MAX_NAME),
        _check_inventory("inventory", m[6]),
    ]


def _welcome_fields(m: Any) -> list:
    supervisor_id = _check_str("supervisor_id", m[0], 1, MAX_NAME)
    ping = _check_uint("ping_interval_ms", m[1], MIN_PING_INTERVAL_MS, MAX_PING_INTERVAL_MS)
    liveness = _check_uint("liveness_ms", m[2], 0, UINT32_MAX)
    if liveness < ping or liveness > MAX_LIVENESS_MS:
        _fail("liveness_ms", f"{liveness} is outside {ping} (ping_interval_ms)..{MAX_LIVENESS_MS}")
    return [supervisor_id, ping, liveness]


# Per message type: the field names in wire order and the checker of a field list.
_SPECS: Dict[int, Any] = {
    Hello.TYPE: _hello_fields,
    Welcome.TYPE: _welcome_fields,
    Reject.TYPE: lambda m: [_check_str("reason", m[0], 1, MAX_REASON)],
    Job.TYPE: lambda m: [_check_uuid("flow_run_id", m[0]),
                         _check_json_object("config", m[1], MAX_CONFIG)],
    Started.TYPE: lambda m: [_check_uuid("flow_run_id", m[0]),
                             _check_str("identifier", m[1], 1, MAX_IDENTIFIER)],
    Log.TYPE: lambda m: [_check_uuid("flow_run_id", m[0]), _check_stream("stream", m[1]),
                         _check_str("line", m[2], 0, MAX_LOG_LINE)],
    Exited.TYPE: lambda m: [_check_uuid("flow_run_id", m[0]), _check_int("code", m[1]),
                            _check_str("error", m[2], 0, MAX_REASON)],
    Ack.TYPE: lambda m: [_check_uuid("flow_run_id", m[0]), _check_acked_type("acked_type", m[1])],
    Kill.TYPE: lambda m: [_check_uuid("flow_run_id", m[0]),
                          _check_uint("grace_seconds", m[1], 0, MAX_GRACE)],
    Ping.TYPE: lambda m: [_check_uint("seq", m[0], 0, UINT64_MAX),
                          _check_uint("running", m[1], 0, UINT32_MAX)],
    Pong.TYPE: lambda m: [_check_uint("seq", m[0], 0, UINT64_MAX),
                          _check_uint("running", m[1], 0, UINT32_MAX)],
    Goodbye.TYPE: lambda m: [_check_str("reason", m[0], 0, MAX_REASON)],
}


def field_names(cls: Type[Any]) -> List[str]:
    """Return the names of a message class's fields in wire order."""
    return [f for f in cls.__dataclass_fields__ if f != "TYPE"]


# ---------------------------------------------------------------------------
# Public encode / decode


def encode(msg: Any) -> bytes:
    """Encode a message object into one body frame.

    Raises ProtocolError naming the field when a field breaks its limit.
    """
    cls = type(msg)
    checker = _SPECS.get(getattr(cls, "TYPE", None)) if cls in MESSAGE_CLASSES.values() else None
    if checker is None:
        raise ProtocolError(f"cannot encode {cls.__name__}: not a protocol message")
    values = [getattr(msg, name) for name in field_names(cls)]
    checked = checker(values)
    if cls is Hello:
        checked[6] = [[e.flow_run_id, e.identifier, e.exited, e.code] for e in checked[6]]
    frame = msgpack.packb([PROTOCOL_VERSION, cls.TYPE] + checked, use_bin_type=True)
    if len(frame) > MAX_FRAME:
        raise ProtocolError(f"frame: {len(frame)} bytes exceeds the limit of {MAX_FRAME}",
                            TOO_LARGE)
    return frame


def decode(data: bytes, expect: Optional[Type[Any]] = None) -> Any:
    """Decode one body frame into a message object.

    When ``expect`` is a message class, a frame of another type is malformed.
    Raises ProtocolError, whose ``kind`` tells a bad frame from a frame of
    another protocol version or of an unknown type.
    """
    if len(data) > MAX_FRAME:
        raise ProtocolError(f"frame: {len(data)} bytes exceeds the limit of {MAX_FRAME}",
                            TOO_LARGE)
    items = _unpack(data)
    if not isinstance(items, list):
        raise ProtocolError(f"message: expected an array, got {_describe(items)}")
    if len(items) < 2:
        raise ProtocolError(f"message: expected at least 2 elements, got {len(items)}")

    version = _check_uint("version", items[0], 0, UINT64_MAX)
    msg_type = _check_uint("type", items[1], 0, UINT64_MAX)
    if version != PROTOCOL_VERSION:
        peer_reason = None
        if msg_type == Reject.TYPE and len(items) == 3 and isinstance(items[2], str):
            peer_reason = items[2].encode("utf-8", "replace").decode("utf-8")
        raise ProtocolError(f"version: {version} is not the supported version "
                            f"{PROTOCOL_VERSION}", VERSION, version, msg_type, peer_reason)
    cls = MESSAGE_CLASSES.get(msg_type)
    if cls is None:
        raise ProtocolError(f"type: unknown message type {msg_type}", UNKNOWN, version, msg_type)
    if expect is not None and cls is not expect:
        raise ProtocolError(f"type: expected {type_name(expect.TYPE)}, got {type_name(msg_type)}")

    names = field_names(cls)
    fields = items[2:]
    if len(fields) != len(names):
        raise ProtocolError(f"{type_name(msg_type)}: expected {len(names)} fields, "
                            f"got {len(fields)}")
    return cls(*_SPECS[msg_type](fields))


def _unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, unicode_errors="surrogateescape",
                               strict_map_key=False, use_list=True)
    except msgpack.ExtraData:
        raise ProtocolError("message: trailing bytes after the array") from None
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ProtocolError(f"message: not valid msgpack ({exc.__class__.__name__})") from None
