"""Compares drover_split_command with Python's shlex.split on a table of
command lines, through "test_sdk split COMMAND"."""
import json
import shlex
import subprocess
import sys

CASES = [
    "prefect flow-run execute",
    "  leading and   trailing  ",
    "",
    "   ",
    "a\tb\nc",
    "/bin/sh -c 'exit 3'",
    "echo \"double $HOME `x`\"",
    "echo 'single \"inner\"'",
    "echo \"esc \\\" \\\\ \\$ \\n\"",
    "a\\ b c\\\\d \\'e",
    "''",
    "\"\"",
    "x'' ''y \"\"z",
    "adjacent'quo'\"ted\"words",
    "#not a comment",
    "a#b",
    "uni\u00e9code \u2603",
    "back\\\nslash-newline",
    "open 'quote",
    "open \"quote",
    "trailing\\",
    "\"tail\\\"",
]


def main():
    binary = sys.argv[1]
    failures = 0
    for case in CASES:
        out = subprocess.run([binary, "split", case], capture_output=True, check=True).stdout
        got = json.loads(out)
        try:
            want = shlex.split(case)
        except ValueError:
            want = None
        if want is None:
            ok = isinstance(got, dict) and "error" in got
        else:
            ok = got == want
        if not ok:
            failures += 1
            print(f"FAIL {case!r}: drover {got!r}, shlex {want!r}")
    print(f"{len(CASES) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
