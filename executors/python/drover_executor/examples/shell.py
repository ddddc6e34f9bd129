"""drover-executor-shell: runs each flow run's command through /bin/sh -c.

Each run gets a monitor (shell_monitor.py), started in a session and
process group of its own, which runs the command with the job's env on top
of the executor's environment (a null value removes a variable), in
working_dir when one is set.  The command's stdout and stderr lines go to
the supervisor as LOG.  The monitor writes the exit status to the state
directory, so a restarted executor still reports it.  After timeout_seconds
the process group gets SIGTERM and, TIMEOUT_GRACE_S later, SIGKILL.  The
identifier is "hostname:pid", the pid of the monitor, which is also the
process group id.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from typing import Any, Dict, List, Optional

from drover_executor import Executor, Field, Run, RunLost, main as sdk_main
from drover_executor.codec import MAX_LOG_LINE, STREAM_STDERR, STREAM_STDOUT
from drover_executor.examples.shell_monitor import read_exit_file

DEFAULT_COMMAND = "prefect flow-run execute"
# Seconds between SIGTERM and SIGKILL when a run exceeds timeout_seconds.
TIMEOUT_GRACE_S = 10
# Bytes read from a pipe per readable event.
READ_CHUNK = 65536


class ShellProcess:
    """A started run: its monitor process, output pipes and pending kill timers."""

    def __init__(self, proc: subprocess.Popen, exit_path: str):
        self.proc = proc
        self.pid = proc.pid
        self.exit_path = exit_path
        self.partial: Dict[int, bytes] = {STREAM_STDOUT: b"", STREAM_STDERR: b""}
        self.pipes: Dict[int, Any] = {STREAM_STDOUT: proc.stdout, STREAM_STDERR: proc.stderr}
        self.timers: List[Any] = []
        # A KILL is under way and its SIGKILL is still to come.
        self.sigkill_pending = False
        # The grace period ended with processes left in the group, which got SIGKILL.
        self.escalated = False


class RecoveredProcess:
    """A run started by an earlier process of this executor: its monitor's pid and exit file."""

    def __init__(self, pid: int, exit_path: str):
        self.pid = pid
        self.exit_path = exit_path
        self.timers: List[Any] = []
        self.sigkill_pending = False
        self.escalated = False


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
        program = _missing_program(config["command"], env.get("PATH", os.defpath),
                                   config["working_dir"])
        if program:
            raise FileNotFoundError(f"command not found: {program}")
        exit_path = self.state_path(flow_run_id, ".exit")
        if os.path.exists(exit_path):
            os.unlink(exit_path)
        # The monitor runs with the executor's own environment, so that a PYTHONPATH
        # of the job cannot break it, and gets the command's environment on stdin.
        proc = subprocess.Popen(
            [sys.executable, "-m", "drover_executor.examples.shell_monitor", exit_path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=config["working_dir"] or None, start_new_session=True, close_fds=True)
        try:
            proc.stdin.write(json.dumps({"argv": ["/bin/sh", "-c", config["command"]],
                                         "env": env}).encode())
            proc.stdin.close()
        except OSError:
            proc.kill()
            proc.wait()
            raise
        handle = ShellProcess(proc, exit_path)
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
            if _pid_alive(handle.pid) or (handle.sigkill_pending and _group_alive(handle.pid)):
                return None
            self._cancel_timers(handle)
            code = read_exit_file(handle.exit_path)
            if code is None:
                raise RunLost(f"the monitor (pid {handle.pid}) of the run ended without "
                              f"recording an exit status")
            return -signal.SIGKILL if handle.escalated else code
        monitor_code = handle.proc.poll()
        if monitor_code is None:
            return None
        # A monitor killed by SIGKILL recorded nothing: its own status is the run's.
        code = read_exit_file(handle.exit_path)
        if code is None:
            code = monitor_code
        # While a KILL is under way the run is the whole process group: a shell that
        # died of SIGTERM may leave commands that ignore it until the SIGKILL.
        if handle.sigkill_pending and _group_alive(handle.pid):
            return None
        # Lines written just before the exit are still in the pipes: send them before EXITED.
        for stream in list(handle.pipes):
            self._read_pipe(run.flow_run_id, handle, stream, final=True)
        self._cancel_timers(handle)
        return -signal.SIGKILL if handle.escalated else code

    def kill(self, run: Run, grace_seconds: int) -> None:
        handle = run.handle
        self._signal_group(handle.pid, signal.SIGTERM)
        if grace_seconds == 0:
            self._escalate(handle)
            return
        # A second KILL may shorten the grace period: the earliest SIGKILL timer wins.
        handle.sigkill_pending = True
        handle.timers.append(self.call_later(grace_seconds, lambda: self._escalate(handle)))

    def _escalate(self, handle: Any) -> None:
        if handle.escalated:
            return
        handle.sigkill_pending = False
        if _group_alive(handle.pid):
            handle.escalated = True
            self._signal_group(handle.pid, signal.SIGKILL)

    def recover(self, identifier: str) -> Any:
        host, _, pid_text = identifier.rpartition(":")
        if host != socket.gethostname() or not pid_text.isdigit():
            return None
        pid = int(pid_text)
        # The runs are loaded before recover() is called: find the one of this identifier.
        run = next((r for r in self.runs.values() if r.identifier == identifier), None)
        if run is None:
            return None
        exit_path = self.state_path(run.flow_run_id, ".exit")
        if read_exit_file(exit_path) is not None:
            return RecoveredProcess(pid, exit_path)   # ended while the executor was down
        # The monitor was started as a session leader, so its session id is its pid;
        # a reused pid belongs to some other session.
        try:
            if os.getsid(pid) != pid:
                return None
        except OSError:
            return None
        return RecoveredProcess(pid, exit_path)

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


def _group_alive(pgid: int) -> bool:
    """Tell whether any process is left in the process group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_alive(pid: int) -> bool:
    """Tell whether a process runs; a zombie that nobody reaped counts as ended."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            # The state follows the command name, which is in parentheses.
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


# Words that make a command more than one plain program call; with any of them
# the shell decides what runs, and the program is not checked before the start.
_SHELL_SYNTAX = set("|&;<>()$`\\\"'*?[]#~=%{}!\n")
_SHELL_WORDS = {"if", "then", "else", "elif", "fi", "case", "esac", "for", "while", "until",
                "do", "done", "in", "function", "select", "time", "exec", "eval", "command",
                "cd", "export", "set", "unset", "trap", "read", "test", "[", "true", "false",
                "exit", "return", "shift", "wait", "umask", "ulimit", "alias", "source", ".",
                ":", "echo", "printf", "kill", "type", "hash", "getopts", "pwd", "readonly",
                "local", "times", "break", "continue", "jobs", "fg", "bg"}


def _missing_program(command: str, path: str, working_dir: Optional[str]) -> str:
    """Return the program a plain command names when it cannot be found, else "".

    Only a command made of plain words is checked, whose first word is no
    shell keyword or builtin, so that a missing program fails the start with
    a clear error instead of exiting with the shell's status 127.
    """
    words = command.split()
    if not words or any(c in _SHELL_SYNTAX for c in command) or words[0] in _SHELL_WORDS:
        return ""
    program = words[0]
    if "/" in program:
        full = os.path.join(working_dir or os.getcwd(), program)
        return "" if os.access(full, os.X_OK) else program
    return "" if shutil.which(program, path=path) else program


def main(argv: Optional[List[str]] = None) -> int:
    return sdk_main(ShellExecutor, argv)


if __name__ == "__main__":
    sys.exit(main())
