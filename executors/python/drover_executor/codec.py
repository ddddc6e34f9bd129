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
MAX_NESTING = 32  # levels of msgpack arrays and maps, the message array is 1

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

# What msgpack returns for ext values; ExtType is a tuple, so it is tested first.
_EXT_TYPES = (msgpack.ExtType, msgpack.Timestamp)

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


def is_flow_run_id(text: str) -> bool:
    """Tell whether text is a flow run id in canonical lowercase UUID form."""
    return bool(_UUID_RE.match(text))


def type_name(msg_type: int) -> str:
    """Return the upper-case name of a message type ("HELLO"), or "UNKNOWN"."""
    return TYPE_NAMES.get(msg_type, "UNKNOWN")


# ---------------------------------------------------------------------------
# Field checks shared by the encoder and the decoder.  Each takes the field's
# position text ("HELLO field type") and raises "<where>: <problem>" with the
# wording of the C codec, so reasons read the same in every language.


def _fail(where: str, problem: str) -> None:
    raise ProtocolError(f"{where}: {problem}")


def _describe(value: Any) -> str:
    """Describe a value for the "got ..." part of a reason."""
    if isinstance(value, _EXT_TYPES):
        return "an ext value"
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return f"a string of {len(_raw_bytes(value))} bytes"
    if isinstance(value, (bytes, bytearray)):
        return f"bin data of {len(value)} bytes"
    if isinstance(value, _Map):
        return f"a map of {len(value)} entries"
    if isinstance(value, (list, tuple)):
        return f"an array of {len(value)} elements"
    if isinstance(value, dict):
        return f"a map of {len(value)} entries"
    return "an ext value"


def _raw_bytes(value: str) -> bytes:
    """Return the bytes a string stands for.

    The decoder keeps invalid UTF-8 as surrogate escapes, which give back the
    peer's bytes; a lone surrogate handed to the encoder becomes its (invalid)
    three-byte form.
    """
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def _quote(raw: bytes) -> str:
    """Quote at most 40 bytes of peer text, escaping all but printable ASCII."""
    out = "".join(chr(c) if 0x20 <= c < 0x7F and c not in (0x22, 0x5C) else f"\\x{c:02x}"
                  for c in raw[:40])
    return f'"{out}"' + ("..." if len(raw) > 40 else "")


def _check_str(where: str, value: Any, min_len: int, max_len: int,
               charset: Optional["re.Pattern[str]"] = None, charset_text: str = "") -> str:
    if not isinstance(value, str):
        _fail(where, f"expected a string, got {_describe(value)}")
    raw = _raw_bytes(value)
    if not min_len <= len(raw) <= max_len:
        if min_len == max_len:
            _fail(where, f"expected a string of {max_len} bytes, got {len(raw)} bytes")
        _fail(where, f"expected a string of {min_len}..{max_len} bytes, got {len(raw)} bytes")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        _fail(where, f"invalid UTF-8 at byte {exc.start}")
    nul = raw.find(b"\0")
    if nul >= 0:
        _fail(where, f"contains U+0000 at byte {nul}")
    if charset is not None and not charset.match(value):
        _fail(where, f"expected only characters of {charset_text}, got {_quote(raw)}")
    return value


def _check_uuid(where: str, value: Any) -> str:
    if not isinstance(value, str):
        _fail(where, f"expected a string, got {_describe(value)}")
    if not _UUID_RE.match(value):
        _fail(where, "expected a canonical lowercase UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), "
                     f"got {_quote(_raw_bytes(value))}")
    return value


def _check_uint(where: str, value: Any, low: int, high: int, choice: str = "") -> int:
    # bool is an int subclass in Python, but a distinct type on the wire.
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high \
            or (choice and value not in (low, high)):
        expected = choice or f"an unsigned integer {low}..{high}"
        _fail(where, f"expected {expected}, got {_describe(value)}")
    return value


def _check_int(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or \
            not INT64_MIN <= value <= INT64_MAX:
        _fail(where, f"expected an integer {INT64_MIN}..{INT64_MAX}, got {_describe(value)}")
    return value


def _check_bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        _fail(where, f"expected a boolean, got {_describe(value)}")
    return value


def _check_json_object(where: str, value: Any, max_len: int) -> str:
    """Check a json field: one JSON object, with the rules of PROTOCOL.md section 3.4."""
    _check_str(where, value, 2, max_len)
    depth = _json_depth(value)
    if depth > MAX_JSON_DEPTH:
        _fail(where, f"JSON text nests {depth} levels deep, the limit is {MAX_JSON_DEPTH}")
    try:
        parsed = json.loads(value, object_pairs_hook=_unique_members,
                            parse_constant=_reject_constant, parse_int=_parse_int,
                            parse_float=_parse_float)
    except (ValueError, RecursionError) as exc:
        _fail(where, f"invalid JSON text: {exc}")
    if not isinstance(parsed, dict):
        _fail(where, f"expected a JSON object, got a JSON {type(parsed).__name__}")
    if _has_lone_surrogate(parsed):
        _fail(where, "invalid JSON text: a \\u escape of an unpaired UTF-16 surrogate")
    return value


_MAX_DOUBLE = 1.7976931348623157e308


def _json_depth(text: str) -> int:
    """Return the deepest nesting of arrays and objects, counting brackets outside strings."""
    depth = deepest = 0
    in_string = escaped = False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}" and depth > 0:
            depth -= 1
    return deepest


def _unique_members(pairs: List[Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, item in pairs:
        if key in out:
            raise ValueError(f"duplicate object key {key!r}")
        out[key] = item
    return out


def _reject_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a JSON number")


def _parse_int(text: str) -> int:
    number = int(text)
    if abs(number) > _MAX_DOUBLE:
        raise ValueError(f"number {text[:20]}... exceeds the range of a double")
    return number


def _parse_float(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} exceeds the range of a double")
    return number


def _has_lone_surrogate(root: Any) -> bool:
    stack = [root]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def _check_inventory(where: str, value: Any) -> List[RunEntry]:
    if isinstance(value, (_Map,) + _EXT_TYPES) or not isinstance(value, (list, tuple)):
        _fail(where, f"expected an array, got {_describe(value)}")
    if len(value) > MAX_INVENTORY:
        _fail(where, f"expected at most {MAX_INVENTORY} entries, got {len(value)}")
    entries = []
    for i, item in enumerate(value):
        if isinstance(item, RunEntry):
            item = [item.flow_run_id, item.identifier, item.exited, item.code]
        if isinstance(item, (_Map,) + _EXT_TYPES) or not isinstance(item, (list, tuple)) \
                or len(item) != 4:
            _fail(f"{where}[{i}]", "expected an array of 4 elements "
                                   f"[flow_run_id, identifier, exited, code], got {_describe(item)}")
        prefix = f"{where}[{i}]."
        entries.append(RunEntry(
            flow_run_id=_check_uuid(prefix + "flow_run_id", item[0]),
            identifier=_check_str(prefix + "identifier", item[1], 0, MAX_IDENTIFIER),
            exited=_check_bool(prefix + "exited", item[2]),
            code=_check_int(prefix + "code", item[3]),
        ))
    seen = set()
    for entry in entries:
        if entry.flow_run_id in seen:
            _fail(where, f"flow run id {entry.flow_run_id} is listed twice")
        seen.add(entry.flow_run_id)
    return entries


def _hello_fields(m: Any) -> list:
    w = "HELLO field "
    return [
        _check_str(w + "executor_id", m[0], 1, MAX_NAME, _EXECUTOR_ID_RE, "[A-Za-z0-9._:-]"),
        _check_str(w + "type", m[1], 1, MAX_TYPE, _TYPE_RE, "[a-z0-9_-]"),
        _check_uint(w + "capacity", m[2], 1, MAX_CAPACITY),
        _check_json_object(w + "schema", m[3], MAX_SCHEMA),
        _check_str(w + "software", m[4], 0, MAX_NAME),
        _check_str(w + "hostname", m[5], 0, MAX_NAME),
        _check_inventory(w + "inventory", m[6]),
    ]


def _welcome_fields(m: Any) -> list:
    w = "WELCOME field "
    supervisor_id = _check_str(w + "supervisor_id", m[0], 1, MAX_NAME)
    ping = _check_uint(w + "ping_interval_ms", m[1], MIN_PING_INTERVAL_MS, MAX_PING_INTERVAL_MS)
    liveness = _check_uint(w + "liveness_ms", m[2], MIN_PING_INTERVAL_MS, MAX_LIVENESS_MS)
    if liveness < ping:
        _fail(w + "liveness_ms", f"expected an unsigned integer {ping}..{MAX_LIVENESS_MS} "
                                 f"(at least ping_interval_ms), got {liveness}")
    return [supervisor_id, ping, liveness]


def _ping_fields(name: str) -> Any:
    return lambda m: [_check_uint(f"{name} field seq", m[0], 0, UINT64_MAX),
                      _check_uint(f"{name} field running", m[1], 0, UINT32_MAX)]


# Per message type: the checker that turns a list of field values into checked values.
_SPECS: Dict[int, Any] = {
    Hello.TYPE: _hello_fields,
    Welcome.TYPE: _welcome_fields,
    Reject.TYPE: lambda m: [_check_str("REJECT field reason", m[0], 1, MAX_REASON)],
    Job.TYPE: lambda m: [_check_uuid("JOB field flow_run_id", m[0]),
                         _check_json_object("JOB field config", m[1], MAX_CONFIG)],
    Started.TYPE: lambda m: [_check_uuid("STARTED field flow_run_id", m[0]),
                             _check_str("STARTED field identifier", m[1], 1, MAX_IDENTIFIER)],
    Log.TYPE: lambda m: [_check_uuid("LOG field flow_run_id", m[0]),
                         _check_uint("LOG field stream", m[1], STREAM_STDOUT, STREAM_STDERR,
                                     "1 (stdout) or 2 (stderr)"),
                         _check_str("LOG field line", m[2], 0, MAX_LOG_LINE)],
    Exited.TYPE: lambda m: [_check_uuid("EXITED field flow_run_id", m[0]),
                            _check_int("EXITED field code", m[1]),
                            _check_str("EXITED field error", m[2], 0, MAX_REASON)],
    Ack.TYPE: lambda m: [_check_uuid("ACK field flow_run_id", m[0]),
                         _check_uint("ACK field acked_type", m[1], Started.TYPE, Exited.TYPE,
                                     "5 (STARTED) or 7 (EXITED)")],
    Kill.TYPE: lambda m: [_check_uuid("KILL field flow_run_id", m[0]),
                          _check_uint("KILL field grace_seconds", m[1], 0, MAX_GRACE)],
    Ping.TYPE: _ping_fields("PING"),
    Pong.TYPE: _ping_fields("PONG"),
    Goodbye.TYPE: lambda m: [_check_str("GOODBYE field reason", m[0], 0, MAX_REASON)],
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
        raise ProtocolError(f"{type_name(cls.TYPE)}: frame of {len(frame)} bytes exceeds the "
                            f"limit of {MAX_FRAME} bytes", TOO_LARGE)
    return frame


def decode(data: bytes, expect: Optional[Type[Any]] = None) -> Any:
    """Decode one body frame into a message object.

    When ``expect`` is a message class, a frame of another type is malformed.
    Raises ProtocolError, whose ``kind`` tells a bad frame from a frame of
    another protocol version or of an unknown type.  The checks run in the
    order of PROTOCOL.md section 7, so every binding returns the same kind.
    """
    if len(data) > MAX_FRAME:
        raise ProtocolError(f"message: frame of {len(data)} bytes exceeds the limit of "
                            f"{MAX_FRAME} bytes", TOO_LARGE)
    if not data:
        raise ProtocolError("message: empty frame")
    root = _unpack(data)
    if _nests_too_deep(root):
        raise ProtocolError(f"message: arrays and maps nest deeper than {MAX_NESTING} levels")

    if isinstance(root, _Map) or not isinstance(root, list) or len(root) < 2:
        raise ProtocolError("message: expected an array [version, type, fields...], "
                            f"got {_describe(root)}")
    version = _check_envelope_uint("version", root[0])
    msg_type = _check_envelope_uint("type", root[1])
    if version != PROTOCOL_VERSION:
        peer_reason = None
        if msg_type == Reject.TYPE and len(root) == 3 and isinstance(root[2], str):
            peer_reason = root[2].encode("utf-8", "replace").decode("utf-8")
        raise ProtocolError(f"message version: {version} is not the supported protocol "
                            f"version {PROTOCOL_VERSION} (message type {msg_type})",
                            VERSION, version, msg_type, peer_reason)
    cls = MESSAGE_CLASSES.get(msg_type)
    if cls is None:
        raise ProtocolError(f"message type: {msg_type} is not a known message type",
                            UNKNOWN, version, msg_type)

    names = field_names(cls)
    fields = root[2:]
    if len(fields) != len(names):
        raise ProtocolError(f"{type_name(msg_type)}: expected {len(names)} fields, "
                            f"got {len(fields)}")
    msg = cls(*_SPECS[msg_type](fields))
    if expect is not None and cls is not expect:
        raise ProtocolError(f"message type: expected {type_name(expect.TYPE)}, "
                            f"got {type_name(msg_type)}")
    return msg


class _Map(list):
    """A decoded msgpack map, kept as its (key, value) pairs.

    Keys may be arrays, which a dict cannot hold, and a map is never valid
    in a message, so only its type and size matter.
    """


def _unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, unicode_errors="surrogateescape",
                               object_pairs_hook=_Map, strict_map_key=False, use_list=True)
    except msgpack.ExtraData as exc:
        raise ProtocolError(f"message: {len(exc.extra)} trailing bytes after the message "
                            f"array") from None
    except msgpack.FormatError:
        raise ProtocolError("message: byte 0xc1 is not msgpack") from None
    except msgpack.StackError:
        raise ProtocolError(f"message: arrays and maps nest deeper than {MAX_NESTING} "
                            f"levels") from None
    except (ValueError, TypeError, msgpack.UnpackException):
        # Incomplete input, or a length header larger than the frame.
        raise ProtocolError(f"message: truncated frame of {len(data)} bytes") from None


def _nests_too_deep(root: Any) -> bool:
    """Tell whether a non-empty array or map sits deeper than MAX_NESTING levels."""
    stack = [(root, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, _Map):
            children = [item for pair in value for item in pair]
        elif isinstance(value, list):
            children = value
        else:
            continue
        if children and level > MAX_NESTING:
            return True
        stack.extend((child, level + 1) for child in children)
    return False


def _check_envelope_uint(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(f"message {name}: expected an unsigned integer, "
                            f"got {_describe(value)}")
    return value
