"""Codec tests: the shared vectors both ways, round trips, and malformed frames."""

import json
import pathlib

import msgpack
import pytest

from drover_executor import codec
from drover_executor.codec import (Ack, Exited, Goodbye, Hello, Job, Kill, Log, Ping, Pong,
                                   ProtocolError, Reject, RunEntry, Started, Welcome)

VECTORS = pathlib.Path(__file__).resolve().parents[3] / "proto" / "vectors"
RUN = "0b9e5c39-7d0f-4c63-9a47-2f1c5d3e8a10"


def vector_names():
    if not VECTORS.is_dir():
        return []
    return sorted(p.stem for p in VECTORS.glob("*.msgpack"))


def message_from_json(form):
    """Build a message object from the readable form of a vector."""
    cls = codec.MESSAGE_CLASSES[codec.TYPE_NAMES_REVERSED[form["type"]]]
    fields = dict(form["fields"])
    if cls is Hello:
        fields["inventory"] = [RunEntry(**e) for e in fields["inventory"]]
    return cls(**fields)


def message_to_json(msg):
    fields = {name: getattr(msg, name) for name in codec.field_names(type(msg))}
    if isinstance(msg, Hello):
        fields["inventory"] = [vars(e) for e in msg.inventory]
    return {"type": codec.type_name(msg.TYPE), "version": codec.PROTOCOL_VERSION,
            "fields": fields}


@pytest.mark.skipif(not vector_names(), reason="proto/vectors holds no vectors yet")
@pytest.mark.parametrize("name", vector_names())
def test_vector_decodes_to_json_form(name):
    data = (VECTORS / f"{name}.msgpack").read_bytes()
    form = json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8"))
    msg = codec.decode(data)
    assert message_to_json(msg) == form


@pytest.mark.skipif(not vector_names(), reason="proto/vectors holds no vectors yet")
@pytest.mark.parametrize("name", vector_names())
def test_vector_json_form_encodes_to_bytes(name):
    data = (VECTORS / f"{name}.msgpack").read_bytes()
    form = json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8"))
    assert form["version"] == codec.PROTOCOL_VERSION
    assert codec.encode(message_from_json(form)) == data


SAMPLES = [
    Hello("shell-1", "shell", 4, '{"type":"shell","fields":[]}', "sdk/1", "host",
          [RunEntry(RUN, "host:12", False, 0), RunEntry(RUN.replace("0b", "1b"), "", True, -9)]),
    Welcome("sup", 100, 100),
    Welcome("sup", 600000, 3600000),
    Reject("type mismatch"),
    Job(RUN, '{"command": "echo \\u00e9", "env": {}}'),
    Started(RUN, "host:1"),
    Log(RUN, 1, ""),
    Log(RUN, 2, "x" * codec.MAX_LOG_LINE),
    Exited(RUN, -(2**63), ""),
    Exited(RUN, 2**63 - 1, "could not start"),
    Ack(RUN, 5),
    Ack(RUN, 7),
    Kill(RUN, 0),
    Kill(RUN, 86400),
    Ping(0, 0),
    Ping(2**64 - 1, 2**32 - 1),
    Pong(7, 3),
    Goodbye(""),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: f"{codec.type_name(m.TYPE)}")
def test_round_trip(msg):
    data = codec.encode(msg)
    assert codec.decode(data) == msg
    assert codec.decode(data, expect=type(msg)) == msg


def test_decode_expect_other_type_is_malformed():
    with pytest.raises(ProtocolError) as info:
        codec.decode(codec.encode(Ping(1, 0)), expect=Pong)
    assert info.value.kind == codec.MALFORMED


def pack(*items):
    return msgpack.packb(list(items), use_bin_type=True)


def big_inventory(n):
    return [[f"{i:08x}-0000-4000-8000-000000000000", "", False, 0] for i in range(n)]


HELLO_OK = ["e-1", "shell", 1, "{}", "", ""]

# (case id, frame, expected kind, text the reason must contain)
MALFORMED_TABLE = [
    ("empty frame", b"", codec.MALFORMED, "message"),
    ("not msgpack", b"\xc1", codec.MALFORMED, "message"),
    ("truncated array", b"\x93\x01", codec.MALFORMED, "message"),
    ("trailing bytes", pack(1, 10, 0, 0) + b"\x00", codec.MALFORMED, "trailing"),
    ("map envelope", msgpack.packb({"v": 1}), codec.MALFORMED, "message"),
    ("one element", pack(1), codec.MALFORMED, "message"),
    ("version as string", pack("1", 10, 0, 0), codec.MALFORMED, "version"),
    ("version as float", pack(1.0, 10, 0, 0), codec.MALFORMED, "version"),
    ("negative version", pack(-1, 10, 0, 0), codec.MALFORMED, "version"),
    ("type as nil", pack(1, None), codec.MALFORMED, "type"),
    ("version 2", pack(2, 10, 0, 0), codec.VERSION, "version"),
    ("version 0", pack(0, 10, 0, 0), codec.VERSION, "version"),
    ("version 2 unknown type", pack(2, 99), codec.VERSION, "version"),
    ("unknown type 99", pack(1, 99, "x"), codec.UNKNOWN, "type"),
    ("unknown type 0", pack(1, 0), codec.UNKNOWN, "type"),
    ("too few fields", pack(1, 4, RUN), codec.MALFORMED, "JOB"),
    ("too many fields", pack(1, 10, 0, 0, 0), codec.MALFORMED, "PING"),
    ("upper-case uuid", pack(1, 5, RUN.upper(), "h:1"), codec.MALFORMED, "flow_run_id"),
    ("braced uuid", pack(1, 5, "{" + RUN[:34] + "}", "h:1"), codec.MALFORMED, "flow_run_id"),
    ("short uuid", pack(1, 5, RUN[:-1], "h:1"), codec.MALFORMED, "flow_run_id"),
    ("uuid as bin", pack(1, 5, RUN.encode(), "h:1"), codec.MALFORMED, "flow_run_id"),
    ("config array", pack(1, 4, RUN, "[]"), codec.MALFORMED, "config"),
    ("config not json", pack(1, 4, RUN, "{"), codec.MALFORMED, "config"),
    ("config empty", pack(1, 4, RUN, ""), codec.MALFORMED, "config"),
    ("config duplicate key", pack(1, 4, RUN, '{"a":1,"a":2}'), codec.MALFORMED, "config"),
    ("config NaN", pack(1, 4, RUN, '{"a":NaN}'), codec.MALFORMED, "config"),
    ("config huge number", pack(1, 4, RUN, '{"a":1e999}'), codec.MALFORMED, "config"),
    ("config lone surrogate", pack(1, 4, RUN, '{"a":"\\udc00"}'), codec.MALFORMED, "config"),
    ("config 129 levels", pack(1, 4, RUN, '{"a":' + "[" * 128 + "]" * 128 + "}"),
     codec.MALFORMED, "config"),
    ("config as bin", pack(1, 4, RUN, b"{}"), codec.MALFORMED, "config"),
    ("config too large", pack(1, 4, RUN, '{"a":"' + "x" * codec.MAX_CONFIG + '"}'),
     codec.MALFORMED, "config"),
    ("invalid utf-8", pack(1, 3, b"\xff"), codec.MALFORMED, "reason"),
    ("identifier invalid utf-8", b"\x94\x01\x05\xd9\x24" + RUN.encode() + b"\xa2\xc3\x28",
     codec.MALFORMED, "identifier"),
    ("surrogate in utf-8", b"\x93\x01\x0c\xa3\xed\xa0\x80", codec.MALFORMED, "reason"),
    ("overlong utf-8", b"\x93\x01\x0c\xa2\xc0\xaf", codec.MALFORMED, "reason"),
    ("nul in reason", pack(1, 12, "a\0b"), codec.MALFORMED, "reason"),
    ("empty reject reason", pack(1, 3, ""), codec.MALFORMED, "reason"),
    ("reject reason too long", pack(1, 3, "r" * 1025), codec.MALFORMED, "reason"),
    ("log stream 0", pack(1, 6, RUN, 0, "x"), codec.MALFORMED, "stream"),
    ("log stream 3", pack(1, 6, RUN, 3, "x"), codec.MALFORMED, "stream"),
    ("log line too long", pack(1, 6, RUN, 1, "x" * 65537), codec.MALFORMED, "line"),
    ("log line nil", pack(1, 6, RUN, 1, None), codec.MALFORMED, "line"),
    ("empty identifier", pack(1, 5, RUN, ""), codec.MALFORMED, "identifier"),
    ("identifier too long", pack(1, 5, RUN, "i" * 257), codec.MALFORMED, "identifier"),
    ("exited code float", pack(1, 7, RUN, 1.0, ""), codec.MALFORMED, "code"),
    ("exited code bool", pack(1, 7, RUN, True, ""), codec.MALFORMED, "code"),
    ("exited code uint64", pack(1, 7, RUN, 2**63, ""), codec.MALFORMED, "code"),
    ("exited error too long", pack(1, 7, RUN, 0, "e" * 1025), codec.MALFORMED, "error"),
    ("ack type 6", pack(1, 8, RUN, 6), codec.MALFORMED, "acked_type"),
    ("ack type string", pack(1, 8, RUN, "5"), codec.MALFORMED, "acked_type"),
    ("kill grace 86401", pack(1, 9, RUN, 86401), codec.MALFORMED, "grace_seconds"),
    ("kill grace negative", pack(1, 9, RUN, -1), codec.MALFORMED, "grace_seconds"),
    ("ping seq negative", pack(1, 10, -1, 0), codec.MALFORMED, "seq"),
    ("ping running 2^32", pack(1, 10, 0, 2**32), codec.MALFORMED, "running"),
    ("pong seq float", pack(1, 11, 0.5, 0), codec.MALFORMED, "seq"),
    ("welcome ping 99", pack(1, 2, "s", 99, 1000), codec.MALFORMED, "ping_interval_ms"),
    ("welcome ping 600001", pack(1, 2, "s", 600001, 600001), codec.MALFORMED,
     "ping_interval_ms"),
    ("welcome liveness below ping", pack(1, 2, "s", 1000, 999), codec.MALFORMED, "liveness_ms"),
    ("welcome liveness too long", pack(1, 2, "s", 1000, 3600001), codec.MALFORMED,
     "liveness_ms"),
    ("welcome empty supervisor", pack(1, 2, "", 1000, 3000), codec.MALFORMED, "supervisor_id"),
    ("hello id with space", pack(1, 1, "e 1", *HELLO_OK[1:], []), codec.MALFORMED,
     "executor_id"),
    ("hello id too long", pack(1, 1, "e" * 129, *HELLO_OK[1:], []), codec.MALFORMED,
     "executor_id"),
    ("hello upper-case type", pack(1, 1, "e", "Shell", 1, "{}", "", "", []), codec.MALFORMED,
     "type"),
    ("hello type too long", pack(1, 1, "e", "t" * 65, 1, "{}", "", "", []), codec.MALFORMED,
     "type"),
    ("hello capacity 0", pack(1, 1, "e", "t", 0, "{}", "", "", []), codec.MALFORMED,
     "capacity"),
    ("hello capacity 65536", pack(1, 1, "e", "t", 65536, "{}", "", "", []), codec.MALFORMED,
     "capacity"),
    ("hello schema not object", pack(1, 1, "e", "t", 1, "null", "", "", []), codec.MALFORMED,
     "schema"),
    ("hello hostname too long", pack(1, 1, "e", "t", 1, "{}", "", "h" * 129, []),
     codec.MALFORMED, "hostname"),
    ("hello inventory map", pack(1, 1, *HELLO_OK, {}), codec.MALFORMED, "inventory"),
    ("inventory entry short", pack(1, 1, *HELLO_OK, [[RUN, "", False]]), codec.MALFORMED,
     "inventory[0]"),
    ("inventory exited int", pack(1, 1, *HELLO_OK, [[RUN, "", 1, 0]]), codec.MALFORMED,
     "inventory[0].exited"),
    ("inventory bad uuid", pack(1, 1, *HELLO_OK, [["x", "", False, 0]]), codec.MALFORMED,
     "inventory[0].flow_run_id"),
    ("inventory too long", pack(1, 1, *HELLO_OK, big_inventory(4097)), codec.MALFORMED,
     "inventory"),
    ("frame above 2 MiB", b"\xc1" * (codec.MAX_FRAME + 1), codec.TOO_LARGE, "frame"),
]


@pytest.mark.parametrize("frame,kind,needle",
                         [case[1:] for case in MALFORMED_TABLE],
                         ids=[case[0] for case in MALFORMED_TABLE])
def test_malformed_frame_rejected(frame, kind, needle):
    with pytest.raises(ProtocolError) as info:
        codec.decode(frame)
    assert info.value.kind == kind
    assert needle in info.value.reason


ACCEPTED_EDGES = [
    ("version as int8", b"\x94\xd0\x01\x0a\x00\x00", Ping(0, 0)),
    ("seq as int64", b"\x94\x01\x0a\xd3" + (5).to_bytes(8, "big") + b"\x00", Ping(5, 0)),
    ("log line at limit", pack(1, 6, RUN, 1, "x" * 65536), Log(RUN, 1, "x" * 65536)),
    ("inventory at limit", pack(1, 1, *HELLO_OK, big_inventory(4096)), None),
    ("config with escaped nul", pack(1, 4, RUN, '{"a":"\\u0000"}'),
     Job(RUN, '{"a":"\\u0000"}')),
    ("config 128 levels", pack(1, 4, RUN, '{"a":' + "[" * 127 + "]" * 127 + "}"), None),
    ("config surrounded by spaces", pack(1, 4, RUN, ' \n{"a":1}\t'),
     Job(RUN, ' \n{"a":1}\t')),
]


@pytest.mark.parametrize("frame,expected", [c[1:] for c in ACCEPTED_EDGES],
                         ids=[c[0] for c in ACCEPTED_EDGES])
def test_edge_frame_accepted(frame, expected):
    msg = codec.decode(frame)
    if expected is not None:
        assert msg == expected


# The table of tests/proto/test_malformed.c, which checks the C decoder, in its
# own notation: space-separated tokens, each hex bytes ("9401"), U for a valid
# flow run id string, or a quoted string ('text') packed as a msgpack str,
# where \xNN is a byte and \\ a backslash.  Each case gives the C decoder's
# result and a text its reason contains; this decoder must give both.
OK = "ok"
MALFORMED, VERSION, UNKNOWN = codec.MALFORMED, codec.VERSION, codec.UNKNOWN
C_TABLE = [
    ('empty frame', '', MALFORMED, 'empty frame'),
    ('not an array', '01', MALFORMED, 'expected an array'),
    ('map instead of array', '82 01 0a 02 00', MALFORMED, 'got a map'),
    ('empty array', '90', MALFORMED, 'expected an array'),
    ('array of one', '91 01', MALFORMED, 'expected an array'),
    ('version 2', '94 02 0a 00 00', VERSION, 'version'),
    ('version 0', '94 00 0a 00 00', VERSION, 'version'),
    ('version 2 with other fields', '92 02 01', VERSION, 'version'),
    ('version negative', '94 ff 0a 00 00', MALFORMED, 'version'),
    ('version as string', "94 '1' 0a 00 00", MALFORMED, 'version'),
    ('version as float', '94 cb3ff0000000000000 0a 00 00', MALFORMED, 'version'),
    ('version as uint64', '94 cf0000000000000001 0a 00 00', OK, None),
    ('unknown type 99', '94 01 63 00 00', UNKNOWN, 'type'),
    ('unknown type 0', '92 01 00', UNKNOWN, 'type'),
    ('unknown type huge', '92 01 cfffffffffffffffff', UNKNOWN, 'type'),
    ('type nil', '92 01 c0', MALFORMED, 'type'),
    ('type negative', '92 01 f6', MALFORMED, 'type'),
    ('trailing byte', '94 01 0a 00 00 00', MALFORMED, 'trailing'),
    ('two messages', '94 01 0a 00 00 94 01 0a 00 00', MALFORMED, 'trailing'),
    ('truncated str header', '93 01 0c d9', MALFORMED, 'truncated'),
    ('reserved byte c1', '93 01 0c c1', MALFORMED, '0xc1'),
    ('array32 of 4 billion', 'dd ffffffff', MALFORMED, 'truncated'),
    ('map32 of 4 billion', 'df ffffffff 00', MALFORMED, 'truncated'),
    ('str32 of 4 GiB', '93 01 0c db ffffffff 41', MALFORMED, 'truncated'),
    ('nested 33 deep', '91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 00', MALFORMED, 'nest deeper'),
    ('nested garbage in field', '93 01 0c 91 91 91 00', MALFORMED, 'GOODBYE field reason: expected a string, got an array'),
    ('ext instead of str', '93 01 0c d4 01 00', MALFORMED, 'ext'),
    ('bin instead of str', '93 01 0c c4 02 6869', MALFORMED, 'bin data'),
    ('PING one field short', '93 01 0a 00', MALFORMED, 'expected 2 fields, got 1'),
    ('PING one field extra', '95 01 0a 00 00 00', MALFORMED, 'expected 2 fields'),
    ('HELLO without inventory', "98 01 01 'node-a' 'process' 01 '{}' '' ''", MALFORMED, 'expected 7 fields'),
    ('PING seq negative', '94 01 0a ff 00', MALFORMED, 'PING field seq'),
    ('PING seq float', '94 01 0a cb3ff0000000000000 00', MALFORMED, 'a float'),
    ('PING seq true', '94 01 0a c3 00', MALFORMED, 'got true'),
    ('PING running above uint32', '94 01 0a 00 cf0000000100000000', MALFORMED, 'PING field running'),
    ('PING seq uint64 max', '94 01 0a cfffffffffffffffff 00', OK, None),
    ('PING seq as int8', '94 01 0a d005 d300000000000000ff', OK, None),
    ('HELLO capacity -3', "99 01 01 'node-a' 'process' d0fd '{}' '' '' 90", MALFORMED, 'HELLO field capacity: expected an unsigned integer 1..65535, got -3'),
    ('HELLO capacity 0', "99 01 01 'node-a' 'process' 00 '{}' '' '' 90", MALFORMED, 'HELLO field capacity'),
    ('HELLO capacity 65536', "99 01 01 'node-a' 'process' ce00010000 '{}' '' '' 90", MALFORMED, 'HELLO field capacity'),
    ('HELLO capacity 65535 as uint32', "99 01 01 'node-a' 'process' ce0000ffff '{}' '' '' 90", OK, None),
    ('EXITED code above int64', "95 01 07 U cf8000000000000000 ''", MALFORMED, 'EXITED field code'),
    ('EXITED code int64 min', "95 01 07 U d38000000000000000 ''", OK, None),
    ('LOG stream 3', "95 01 06 U 03 'x'", MALFORMED, 'LOG field stream: expected 1 (stdout) or 2 (stderr), got 3'),
    ('LOG stream 0', "95 01 06 U 00 'x'", MALFORMED, 'LOG field stream'),
    ('ACK of LOG', '94 01 08 U 06', MALFORMED, 'ACK field acked_type'),
    ('ACK of STARTED', '94 01 08 U 05', OK, None),
    ('KILL grace 86401', '94 01 09 U ce00015181', MALFORMED, 'KILL field grace_seconds'),
    ('KILL grace as uint32', '94 01 09 U ce0000001e', OK, None),
    ('WELCOME liveness below ping', "95 01 02 'sup' cd07d0 cd03e8", MALFORMED, 'WELCOME field liveness_ms'),
    ('WELCOME ping 99', "95 01 02 'sup' 63 cd2710", MALFORMED, 'WELCOME field ping_interval_ms'),
    ('WELCOME liveness above 1h', "95 01 02 'sup' cd07d0 ce0036ee81", MALFORMED, 'WELCOME field liveness_ms'),
    ('WELCOME liveness equal to ping', "95 01 02 'sup' 64 64", OK, None),
    ('HELLO empty executor_id', "99 01 01 '' 'process' 01 '{}' '' '' 90", MALFORMED, 'HELLO field executor_id'),
    ('HELLO executor_id with space', "99 01 01 'node a' 'process' 01 '{}' '' '' 90", MALFORMED, 'HELLO field executor_id'),
    ('HELLO type upper case', "99 01 01 'node-a' 'Process' 01 '{}' '' '' 90", MALFORMED, 'HELLO field type'),
    ('HELLO software as bin', "99 01 01 'node-a' 'process' 01 '{}' c40161 '' 90", MALFORMED, 'HELLO field software: expected a string, got bin data'),
    ('REJECT empty reason', "93 01 03 ''", MALFORMED, 'REJECT field reason'),
    ('GOODBYE reason nil', '93 01 0c c0', MALFORMED, 'GOODBYE field reason'),
    ('STARTED empty identifier', "94 01 05 U ''", MALFORMED, 'STARTED field identifier'),
    ('LOG line invalid byte ff', "95 01 06 U 01 'a\\xffb'", MALFORMED, 'LOG field line: invalid UTF-8 at byte 1'),
    ('LOG line overlong NUL', "95 01 06 U 01 '\\xc0\\x80'", MALFORMED, 'invalid UTF-8'),
    ('LOG line overlong slash', "95 01 06 U 01 '\\xe0\\x80\\xaf'", MALFORMED, 'invalid UTF-8'),
    ('LOG line surrogate', "95 01 06 U 01 '\\xed\\xa0\\x80'", MALFORMED, 'invalid UTF-8'),
    ('LOG line above U+10FFFF', "95 01 06 U 01 '\\xf4\\x90\\x80\\x80'", MALFORMED, 'invalid UTF-8'),
    ('LOG line cut sequence', "95 01 06 U 01 'ok\\xe2\\x82'", MALFORMED, 'invalid UTF-8 at byte 2'),
    ('LOG line NUL byte', "95 01 06 U 01 'a\\x00b'", MALFORMED, 'U+0000'),
    ('LOG line four-byte char', "95 01 06 U 01 '\\xf0\\x9f\\x90\\x8d'", OK, None),
    ('JOB id upper case', "94 01 04 '0B9E5C39-7D0F-4C63-9A47-2F1C5D3E8A10' '{}'", MALFORMED, 'JOB field flow_run_id: expected a canonical lowercase UUID'),
    ('JOB id 35 chars', "94 01 04 '0b9e5c39-7d0f-4c63-9a47-2f1c5d3e8a1' '{}'", MALFORMED, 'JOB field flow_run_id'),
    ('JOB id without hyphens', "94 01 04 '0b9e5c397d0f4c639a472f1c5d3e8a10abcd' '{}'", MALFORMED, 'JOB field flow_run_id'),
    ('JOB id with braces', "94 01 04 '{0b9e5c39-7d0f-4c63-9a47-2f1c5d3e8a1}' '{}'", MALFORMED, 'JOB field flow_run_id'),
    ('JOB id not hex', "94 01 04 '0b9e5c39-7d0f-4c63-9a47-2f1c5d3e8a1g' '{}'", MALFORMED, 'JOB field flow_run_id'),
    ('JOB id as integer', "94 01 04 07 '{}'", MALFORMED, 'JOB field flow_run_id'),
    ('JOB config empty object', "94 01 04 U '{}'", OK, None),
    ('JOB config not JSON', "94 01 04 U '{x'", MALFORMED, 'JOB field config: invalid JSON text'),
    ('JOB config array', "94 01 04 U '[1]'", MALFORMED, 'JOB field config: expected a JSON object'),
    ('JOB config string', '94 01 04 U \'"{}"\'', MALFORMED, 'JOB field config'),
    ('JOB config empty', "94 01 04 U ''", MALFORMED, 'JOB field config'),
    ('JOB config trailing text', "94 01 04 U '{} {}'", MALFORMED, 'JOB field config'),
    ('JOB config duplicate key', '94 01 04 U \'{"a":1,"a":2}\'', MALFORMED, 'JOB field config'),
    ('JOB config NaN', '94 01 04 U \'{"a":NaN}\'', MALFORMED, 'JOB field config'),
    ('JOB config lone surrogate', '94 01 04 U \'{"a":"\\\\ud800"}\'', MALFORMED, 'JOB field config'),
    ('JOB config 1e400', '94 01 04 U \'{"a":1e400}\'', MALFORMED, 'JOB field config'),
    ('JOB config big integer', '94 01 04 U \'{"a":123456789012345678901234567890}\'', OK, None),
    ('JOB config escaped NUL', '94 01 04 U \'{"a":"\\\\u0000"}\'', OK, None),
    ('HELLO schema not JSON', "99 01 01 'node-a' 'process' 01 'nope' '' '' 90", MALFORMED, 'HELLO field schema'),
    ('HELLO inventory nil', "99 01 01 'node-a' 'process' 01 '{}' '' '' c0", MALFORMED, 'HELLO field inventory: expected an array, got nil'),
    ('HELLO inventory entry short', "99 01 01 'node-a' 'process' 01 '{}' '' '' 91 93 U '' c2", MALFORMED, 'HELLO field inventory[0]: expected an array of 4'),
    ('HELLO inventory exited as 1', "99 01 01 'node-a' 'process' 01 '{}' '' '' 91 94 U '' 01 00", MALFORMED, 'HELLO field inventory[0].exited: expected a boolean'),
    ('HELLO inventory bad id', "99 01 01 'node-a' 'process' 01 '{}' '' '' 92 94 U '' c2 00 94 'x' '' c2 00", MALFORMED, 'HELLO field inventory[1].flow_run_id'),
    ('HELLO inventory duplicate', "99 01 01 'node-a' 'process' 01 '{}' '' '' 92 94 U '' c2 00 94 U 'p:1' c3 01", MALFORMED, 'listed twice'),
    ('HELLO inventory code float', "99 01 01 'node-a' 'process' 01 '{}' '' '' 91 94 U '' c3 ca00000000", MALFORMED, 'HELLO field inventory[0].code'),
    ('HELLO inventory of one', "99 01 01 'node-a' 'process' 01 '{}' '' '' 91 94 U 'node-a:12' c3 f7", OK, None),
]


def build_frame(spec):
    """Return the bytes of a frame written in the notation of C_TABLE."""
    out = bytearray()
    i = 0
    while i < len(spec):
        c = spec[i]
        if c == " ":
            i += 1
        elif c == "U":
            out += msgpack.packb(RUN)
            i += 1
        elif c == "'":
            text = bytearray()
            i += 1
            while spec[i] != "'":
                if spec.startswith("\\x", i):
                    text.append(int(spec[i + 2:i + 4], 16))
                    i += 4
                elif spec.startswith("\\\\", i):
                    text += b"\\"
                    i += 2
                else:
                    text += spec[i].encode()
                    i += 1
            i += 1
            # Without use_bin_type, bytes are packed as a str: the C table's raw text.
            out += msgpack.packb(bytes(text), use_bin_type=False)
        else:
            out.append(int(spec[i:i + 2], 16))
            i += 2
    return bytes(out)


@pytest.mark.parametrize("spec,kind,needle", [c[1:] for c in C_TABLE],
                         ids=[c[0] for c in C_TABLE])
def test_matches_c_decoder(spec, kind, needle):
    frame = build_frame(spec)
    if kind == OK:
        codec.decode(frame)
        return
    with pytest.raises(ProtocolError) as info:
        codec.decode(frame)
    assert info.value.kind == kind
    if needle is not None:
        assert needle in info.value.reason


def test_version_reject_carries_reason():
    with pytest.raises(ProtocolError) as info:
        codec.decode(pack(2, 3, "protocol version 1 is not supported"))
    assert info.value.kind == codec.VERSION
    assert info.value.version == 2
    assert info.value.peer_reason == "protocol version 1 is not supported"


ENCODE_ERRORS = [
    ("uuid", Started("not-a-uuid", "h:1"), "flow_run_id"),
    ("identifier", Started(RUN, ""), "identifier"),
    ("capacity", Hello("e", "t", 0, "{}"), "capacity"),
    ("schema", Hello("e", "t", 1, "[1]"), "schema"),
    ("stream", Log(RUN, 5, "x"), "stream"),
    ("line", Log(RUN, 1, "x" * 65537), "line"),
    ("code", Exited(RUN, 2**63, ""), "code"),
    ("grace", Kill(RUN, 86401), "grace_seconds"),
    ("goodbye", Goodbye("g" * 1025), "reason"),
]


@pytest.mark.parametrize("msg,needle", [c[1:] for c in ENCODE_ERRORS],
                         ids=[c[0] for c in ENCODE_ERRORS])
def test_encoder_checks_limits(msg, needle):
    with pytest.raises(ProtocolError) as info:
        codec.encode(msg)
    assert needle in info.value.reason


def test_encoding_is_shortest_form():
    assert codec.encode(Ping(0, 0)) == b"\x94\x01\x0a\x00\x00"
    assert codec.encode(Exited(RUN, -1, "")) == b"\x95\x01\x07\xd9\x24" + RUN.encode() + \
        b"\xff\xa0"
