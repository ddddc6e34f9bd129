"""Command line of an executor program: drover-executor-<type> --connect ENDPOINT."""

from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional, Type

import zmq

from . import codec
from .executor import (SOFTWARE, Executor, configure_logging, default_executor_id,
                       default_state_dir)


def build_parser(executor_cls: Type[Executor]) -> argparse.ArgumentParser:
    prog = f"drover-executor-{executor_cls.type}"
    parser = argparse.ArgumentParser(
        prog=prog,
        description=f"drover executor for the {executor_cls.type!r} infrastructure type. "
                    f"{executor_cls.description}".strip(),
        epilog="Runs until SIGTERM or SIGINT, then says GOODBYE to the supervisor. "
               "Exit status: 0 on a signal or after --describe, 1 when the supervisor "
               "rejects the executor or a setting is invalid, 2 on a usage error.")
    parser.add_argument("--connect", metavar="ENDPOINT",
                        help="ZeroMQ endpoint of the supervisor's ROUTER socket, "
                             "for example ipc:///run/drover/pool.sock or tcp://127.0.0.1:5555")
    parser.add_argument("--id", metavar="ID", dest="executor_id",
                        help="executor id, 1 to 128 characters of [A-Za-z0-9._:-], unique "
                             "per supervisor (default: TYPE-HOSTNAME-PID; give a stable id to "
                             "re-adopt runs after a restart)")
    default_capacity = executor_cls.default_capacity or "4 per online CPU"
    parser.add_argument("--capacity", metavar="N", type=int,
                        help=f"maximum number of runs in flight, 1 to {codec.MAX_CAPACITY} "
                             f"(default: {default_capacity})")
    parser.add_argument("--describe", action="store_true",
                        help="print the declared job configuration schema as JSON and exit")
    parser.add_argument("--state-dir", metavar="DIR",
                        help="directory that keeps the run records, in DIR/ID, so a restarted "
                             "executor still reports its runs (default: $XDG_RUNTIME_DIR/drover, "
                             "else /tmp/drover-UID)")
    parser.add_argument("--trace", action="store_true",
                        help="log every protocol message sent and received")
    parser.add_argument("--version", action="version", version=SOFTWARE)
    return parser


def main(executor_cls: Type[Executor], argv: Optional[List[str]] = None) -> int:
    """Parse the command line and run executor_cls; returns the exit status."""
    parser = build_parser(executor_cls)
    args = parser.parse_args(argv)

    if args.describe:
        print(json.dumps(executor_cls.describe(), indent=2))
        return 0
    if not args.connect:
        parser.error("--connect ENDPOINT is required unless --describe is given")
    if args.capacity is not None and not 1 <= args.capacity <= codec.MAX_CAPACITY:
        parser.error(f"--capacity {args.capacity} is outside 1..{codec.MAX_CAPACITY}")

    configure_logging()
    executor = executor_cls()
    try:
        return executor.serve(args.connect, args.executor_id or
                              default_executor_id(executor_cls.type), args.capacity,
                              state_dir=args.state_dir or default_state_dir(), trace=args.trace)
    except (ValueError, zmq.ZMQError) as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # init() or shutdown() of the author failed
        print(f"{parser.prog}: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
