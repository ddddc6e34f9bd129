"""The monitor of one shell run, which outlives the executor that started it.

    python -m drover_executor.examples.shell_monitor EXIT_FILE

The shell executor starts it as the leader of a new session and process
group, and writes {"argv": [...], "env": {...}} to its standard input, so
the job's environment never appears on a command line.  The monitor starts
the command in its own process group, copies the command's output to its
own stdout and stderr (pipes read by the executor), waits for the command
and writes its exit status (-N for signal N) to EXIT_FILE.  When the
executor is gone, the writes fail and the monitor keeps draining the output,
so while the command runs it neither blocks on a full pipe nor dies of
SIGPIPE.  A restarted executor reads EXIT_FILE.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
from typing import Dict, List

# Seconds between two checks of the command while its output is quiet.
WAIT_STEP_S = 0.1
READ_CHUNK = 65536


def write_exit_file(path: str, code: int) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{code}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_exit_file(path: str) -> "int | None":
    """Return the exit status a monitor wrote, or None when there is none (yet)."""
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


class _Forwarder:
    """Copies the command's output to the executor until the executor is gone."""

    def __init__(self, proc: subprocess.Popen):
        self.targets: Dict[int, int] = {proc.stdout.fileno(): 1, proc.stderr.fileno(): 2}
        self.selector = selectors.DefaultSelector()
        for fd in self.targets:
            os.set_blocking(fd, False)
            self.selector.register(fd, selectors.EVENT_READ)
        self.executor_gone = False

    def pump(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            self._read(key.fd)

    def drain(self) -> None:
        """Forward what is already in the pipes and stop watching them."""
        for fd in list(self.targets):
            while fd in self.targets and self._read(fd):
                pass
        self.selector.close()

    def _read(self, fd: int) -> bool:
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return False
        if not data:
            self.selector.unregister(fd)
            del self.targets[fd]
            return False
        if not self.executor_gone:
            try:
                _write_all(self.targets[fd], data)
            except OSError:
                self.executor_gone = True
        return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def run_monitor(exit_path: str, argv: List[str], env: Dict[str, str]) -> int:
    # The executor signals the whole process group: SIGTERM is for the command,
    # and a handler (unlike SIG_IGN) is not inherited by the command.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        sys.stderr.write(f"drover shell monitor: cannot start {argv[0]}: {exc.strerror}\n")
        write_exit_file(exit_path, 127)
        return 1

    forwarder = _Forwarder(proc)
    # A grandchild may keep the pipes open after the command exits, so the
    # command's exit, not the pipes' end, decides when the run is over.
    while proc.poll() is None:
        forwarder.pump(WAIT_STEP_S)
    forwarder.drain()
    write_exit_file(exit_path, proc.returncode)
    return 0


def main(argv: "List[str] | None" = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m drover_executor.examples.shell_monitor EXIT_FILE "
                         "< {\"argv\": [...], \"env\": {...}}\n")
        return 2
    spec = json.load(sys.stdin)
    return run_monitor(args[0], spec["argv"], spec["env"])


if __name__ == "__main__":
    sys.exit(main())
