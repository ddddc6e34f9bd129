"""Cross-check the test vectors in proto/vectors with Python's msgpack package.

For each NAME.json, msgpack.packb of [version, type, field values...] must
give exactly the bytes of NAME.msgpack, and unpacking NAME.msgpack must give
the same values back.  This shows that the vectors use the shortest encoding
that a common msgpack library produces by default, independently of the C
codec that wrote them.

Usage: python check_vectors.py VECTOR_DIR
"""

import json
import pathlib
import sys

import msgpack

TYPES = {"HELLO": 1, "WELCOME": 2, "REJECT": 3, "JOB": 4, "STARTED": 5, "LOG": 6,
         "EXITED": 7, "ACK": 8, "KILL": 9, "PING": 10, "PONG": 11, "GOODBYE": 12}


def wire_values(doc):
    """Return the msgpack array of a vector's JSON form, in field order."""
    values = [doc["version"], TYPES[doc["type"]]]
    for name, value in doc["fields"].items():
        if name == "inventory":
            value = [[e["flow_run_id"], e["identifier"], e["exited"], e["code"]] for e in value]
        values.append(value)
    return values


def main():
    folder = pathlib.Path(sys.argv[1])
    failures = 0
    vectors = sorted(folder.glob("*.json"))
    for path in vectors:
        doc = json.loads(path.read_text(encoding="utf-8"))
        expected = path.with_suffix(".msgpack").read_bytes()
        values = wire_values(doc)
        packed = msgpack.packb(values, use_bin_type=True)
        if packed != expected:
            print(f"FAIL {path.stem}: msgpack.packb gives {packed.hex()}, "
                  f"the vector holds {expected.hex()}")
            failures += 1
        unpacked = msgpack.unpackb(expected, raw=False)
        if unpacked != values:
            print(f"FAIL {path.stem}: unpacking gives {unpacked!r}, expected {values!r}")
            failures += 1
    print(f"{len(vectors)} vectors, {failures} failures")
    return 1 if failures or not vectors else 0


if __name__ == "__main__":
    sys.exit(main())
