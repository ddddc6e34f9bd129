"""Start one Prefect server for a benchmark run and leave it running.

Prints nothing but writes {"api_url": ..., "pid": ...} to --info; stop the
server later with SIGTERM to that pid (bench/run-all.sh does).
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))

import benchlib as bl  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--home", type=Path, required=True, help="server home (SQLite lives here)")
    ap.add_argument("--info", type=Path, required=True, help="where to write url and pid")
    args = ap.parse_args()
    server = bl.Server(args.home)
    args.info.write_text(json.dumps({"api_url": server.api_url, "pid": server.proc.pid}))


if __name__ == "__main__":
    main()
