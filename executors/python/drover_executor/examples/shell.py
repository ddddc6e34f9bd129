"""drover-executor-shell: runs each flow run's command through /bin/sh -c.

The command runs in its own session and process group, with the job's env on
top of the executor's environment (a null value removes a variable), in
working_dir when one is set.  Its stdout and stderr lines go to the
supervisor as LOG.  After timeout_seconds the process group gets SIGTERM and,
TIMEOUT_GRACE_S later, SIGKILL.  The identifier is "hostname:pid".
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
from typing import Any, Dict, List, Optional

from drover_executor import Executor, Field, Run, RunLost, main as sdk_main
from drover_executor.codec import MAX_LOG_LINE, STREAM_STDERR, STREAM_STDOUT

DEFAULT_COMMAND = "prefect flow-run execute"
# Seconds between SIGTERM and SIGKILL when a run exceeds timeout_seconds.
TIMEOUT_GRACE_S = 10
# Bytes read from a pipe per readable event.
READ_CHUNK = 65536


class ShellProcess:
    """A started command: the process, its output pipes and pending kill timers."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.pid = proc.pid
        self.partial: Dict[int, bytes] = {STREAM_STDOUT: b"", STREAM_STDERR: b""}
        self.pipes: Dict[int, Any] = {STREAM_STDOUT: proc.stdout, STREAM_STDERR: proc.stderr}
        self.timers: List[Any] = []


class RecoveredProcess:
    """A command started by an earlier process of this executor; only its pid is known."""

    def __init__(self, pid: int):
        self.pid = pid
        self.timers: List[Any] = []


class ShellExecutor(Executor):
    type = "shell"
    description = "Runs the flow run command through /bin/sh -c on the executor's host."
    documentation_url = ""
    logo_url = ""
    fields = [
        Field("timeout_seconds", "integer", 3600,
              "Seconds the command may run before its process group gets SIGTERM, then "
              "SIGKILL 10 seconds later. 0 means no limit."),
        Field("working_dir", ["string", "null"], None,
              "Directory the command runs in. Unset means the executor's working directory.",
              title="Working Directory"),
    ]

    def prepare(self, config: Dict[str, Any]) -> Dict[str, Any]:
        if config["timeout_seconds"] < 0:
            raise ValueError(f"timeout_seconds: {config['timeout_seconds']} is negative, "
                             f"use 0 for no limit")
        if not config["command"]:
            config["command"] = DEFAULT_COMMAND
        return config

    def start(self, flow_run_id: str, config: Dict[str, Any]) -> Any:
        env = dict(os.environ)
        for key, value in config["env"].items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        proc = subprocess.Popen(
            ["/bin/sh", "-c", config["command"]],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd=config["working_dir"] or None, start_new_session=True,
            close_fds=True)
        handle = ShellProcess(proc)
        for stream, pipe in handle.pipes.items():
            os.set_blocking(pipe.fileno(), False)
            self.watch_fd(pipe.fileno(),
                          lambda s=stream: self._read_pipe(flow_run_id, handle, s))
        timeout = config["timeout_seconds"]
        if timeout > 0:
            handle.timers.append(self.call_later(timeout, lambda: self._on_timeout(flow_run_id)))
        return f"{socket.gethostname()}:{proc.pid}", handle

    def poll(self, run: Run) -> Optional[int]:
        handle = run.handle
        if isinstance(handle, RecoveredProcess):
            if _pid_alive(handle.pid):
                return None
            self._cancel_timers(handle)
            raise RunLost(f"process {handle.pid} ended while the executor was restarting; "
                          f"its exit status is unknown")
        code = handle.proc.poll()
        if code is None:
            return None
        # Lines written just before the exit are still in the pipes: send them before EXITED.
        for stream in list(handle.pipes):
            self._read_pipe(run.flow_run_id, handle, stream, final=True)
        self._cancel_timers(handle)
        return code

    def kill(self, run: Run, grace_seconds: int) -> None:
        self._signal_group(run.handle.pid, signal.SIGTERM)
        if grace_seconds == 0:
            self._signal_group(run.handle.pid, signal.SIGKILL)
            return
        pid = run.handle.pid
        run.handle.timers.append(
            self.call_later(grace_seconds, lambda: self._signal_group(pid, signal.SIGKILL)))

    def recover(self, identifier: str) -> Any:
        host, _, pid_text = identifier.rpartition(":")
        if host != socket.gethostname() or not pid_text.isdigit():
            return None
        pid = int(pid_text)
        # The command was started as a session leader, so its session id is its pid;
        # a reused pid belongs to some other session.
        try:
            if os.getsid(pid) != pid:
                return None
        except OSError:
            return None
        return RecoveredProcess(pid)

    # ---------------------------------------------------------------- helpers

    def _read_pipe(self, flow_run_id: str, handle: ShellProcess, stream: int,
                   final: bool = False) -> None:
        pipe = handle.pipes.get(stream)
        if pipe is None:
            return
        eof = False
        while True:
            try:
                chunk = os.read(pipe.fileno(), READ_CHUNK)
            except BlockingIOError:
                break
            if not chunk:
                eof = True
                break
            self._emit_lines(flow_run_id, handle, stream, chunk)
            if not final:
                break
        if eof or final:
            rest = handle.partial[stream]
            if rest:
                self.log(flow_run_id, rest.decode("utf-8", "replace"), stream)
                handle.partial[stream] = b""
            self.unwatch_fd(pipe.fileno())
            pipe.close()
            del handle.pipes[stream]

    def _emit_lines(self, flow_run_id: str, handle: ShellProcess, stream: int,
                    chunk: bytes) -> None:
        data = handle.partial[stream] + chunk
        lines = data.split(b"\n")
        handle.partial[stream] = lines.pop()
        for line in lines:
            self.log(flow_run_id, line.decode("utf-8", "replace"), stream)
        # A line without a newline is cut at the LOG limit rather than buffered forever.
        while len(handle.partial[stream]) >= MAX_LOG_LINE:
            piece = handle.partial[stream][:MAX_LOG_LINE]
            handle.partial[stream] = handle.partial[stream][MAX_LOG_LINE:]
            self.log(flow_run_id, piece.decode("utf-8", "replace"), stream)

    def _on_timeout(self, flow_run_id: str) -> None:
        run = self.runs.get(flow_run_id)
        if run is None or run.exited:
            return
        log_line = (f"timeout_seconds={run.config['timeout_seconds']} reached: "
                    f"sending SIGTERM to process group {run.handle.pid}")
        self.log(flow_run_id, log_line, STREAM_STDERR)
        self.kill(run, TIMEOUT_GRACE_S)

    def _signal_group(self, pgid: int, sig: int) -> None:
        try:
            os.killpg(pgid, sig)
        except OSError as exc:
            if exc.errno != errno.ESRCH:  # the group is already gone
                raise

    def _cancel_timers(self, handle: Any) -> None:
        for timer in handle.timers:
            timer.cancel()
        handle.timers.clear()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: Optional[List[str]] = None) -> int:
    return sdk_main(ShellExecutor, argv)


if __name__ == "__main__":
    sys.exit(main())
