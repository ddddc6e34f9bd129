"""The executor side of the drover protocol, for executors written in Python.

An author subclasses Executor, declares the job configuration fields and
implements start(), poll() and kill().  The SDK owns everything on the
wire: it connects a DEALER socket, sends HELLO with the schema and the
inventory of runs it still holds, waits for WELCOME, pings, reconnects on a
fresh socket when the supervisor goes silent, resends STARTED and EXITED
until they are acknowledged, ignores duplicate JOBs and says GOODBYE on
SIGTERM or SIGINT.

The loop is single-threaded: one zmq.Poller waits on the socket, a wake-up
pipe fed by signals (SIGCHLD included, so child exits are seen at once), the
file descriptors an executor watches, and the earliest timer.  Runs are also
polled every ``poll_interval`` seconds for infrastructure that has no file
descriptor to wait on.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import zmq

from . import codec
from .codec import (Ack, Exited, Goodbye, Hello, Job, Kill, Log, Pong, ProtocolError, Reject,
                    Started, Welcome)
from .runs import Run, RunLost, Timer
from .schema import COMMON_FIELDS, COMMON_NAMES, ConfigError, Field, check_config
from .session import HELLO_RETRY_FIRST_S, SOFTWARE, ProtocolSession
from .state import StateDir, remove_run_files
from .text import configure_logging, cut_utf8, exception_text, log, quote_value

__all__ = ["Executor", "Run", "RunLost", "Field", "SOFTWARE", "configure_logging",
           "default_executor_id", "default_state_dir"]

# Milliseconds the socket waits at close for a last GOODBYE to leave.
LINGER_MS = 1000


class Executor(ProtocolSession):
    """Base class of an executor; subclass it and override the hooks.

    Class attributes describe the infrastructure type: ``type`` matches
    [a-z0-9_-]+, ``fields`` lists the job configuration fields beyond the
    common command, env, labels and name, and ``variables`` is an optional
    JSON schema of the variables a deployment may set.  Without it the
    supervisor derives the variables from the fields.
    """

    type: str = ""
    description: str = ""
    documentation_url: str = ""
    logo_url: str = ""
    fields: List[Field] = []
    variables: Optional[Dict[str, Any]] = None

    # Seconds between two calls of poll() for each run in flight.
    poll_interval: float = 1.0
    # Default of --capacity; 0 means four runs per online CPU.
    default_capacity: int = 0

    # ----------------------------------------------------------------- hooks

    def init(self) -> None:
        """Prepare the executor after the options are parsed, before runs are recovered.

        Raise to stop the executor with exit status 1.
        """

    def shutdown(self) -> None:
        """Release what init() acquired; called once before serve() returns."""

    def prepare(self, config: Dict[str, Any]) -> Dict[str, Any]:
        """Adjust a checked job configuration before start(); raise to reject it."""
        return config

    def start(self, flow_run_id: str, config: Dict[str, Any]) -> Any:
        """Start the infrastructure of a flow run.

        Return its identifier (a string of 1 to 256 bytes), or a tuple
        (identifier, handle) where handle is stored on the Run for poll() and
        kill().  Raise any exception to report that the run could not start.
        """
        raise NotImplementedError

    def poll(self, run: Run) -> Optional[int]:
        """Return the run's exit code once it ended (-N when killed by signal N), else None.

        Raise RunLost when the exit status cannot be known any more.
        """
        raise NotImplementedError

    def kill(self, run: Run, grace_seconds: int) -> None:
        """Stop a run: ask it to end, and force it after grace_seconds.

        poll() still reports the exit.
        """
        raise NotImplementedError

    def recover(self, identifier: str) -> Any:
        """Find a run started by an earlier process of this executor.

        Called at start-up for every run in the state directory that had not
        exited.  Return a handle for poll() and kill(), or None when the run
        is gone, which reports it as lost.  An exception reports it as lost
        with the exception text.
        """
        return None

    # ------------------------------------------------------- schema, helpers

    @classmethod
    def all_fields(cls) -> List[Field]:
        """Return the common fields followed by the executor's own."""
        own = list(cls.fields)
        clash = [f.name for f in own if f.name in COMMON_NAMES]
        if clash:
            raise ValueError(f"{cls.__name__} redeclares the common field(s) "
                             f"{', '.join(clash)}")
        return COMMON_FIELDS + own

    @classmethod
    def describe(cls) -> Dict[str, Any]:
        """Return the declared schema that HELLO carries and --describe prints."""
        return {
            "type": cls.type,
            "description": cls.description,
            "documentation_url": cls.documentation_url,
            "logo_url": cls.logo_url,
            "fields": [f.declaration() for f in cls.all_fields()],
            "variables": cls.variables,
        }

    @classmethod
    def schema_json(cls) -> str:
        return json.dumps(cls.describe(), separators=(",", ":"))

    def __init__(self) -> None:
        self.runs: Dict[str, Run] = {}
        self.executor_id = ""
        self.capacity = 1
        self.trace = False
        self.malformed_count = 0
        self._watched: Dict[int, Callable[[], None]] = {}
        self._timers: List[Tuple[float, int, Timer]] = []
        self._timer_seq = itertools.count()
        self._pending_logs: Deque[Log] = collections.deque()
        self._dropped_logs = 0
        self._stop_reason: Optional[str] = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._ctx: Optional[zmq.Context] = None
        self._sock: Optional[zmq.Socket] = None
        self._poller: Optional[zmq.Poller] = None
        self._state: Optional[StateDir] = None
        self._scratch_dir: Optional[str] = None
        self._endpoint = ""
        self._schema = ""
        # Connection state: a socket that waits for WELCOME until _hello_deadline,
        # a welcomed session, or no socket until _reconnect_at.
        self._welcomed = False
        self._hello_deadline = 0.0
        self._hello_retry = HELLO_RETRY_FIRST_S
        self._reconnect_at: Optional[float] = None
        self._last_rx = 0.0
        self._liveness = 0.0
        self._ping_interval = 1.0
        self._next_ping = 0.0
        self._next_resend = 0.0
        self._ping_seq = 0

    # ------------------------------------------------- calls from the hooks

    def log(self, flow_run_id: str, line: str, stream: int = codec.STREAM_STDOUT) -> None:
        """Send one line of a run's output to the supervisor as LOG.

        U+0000 and unencodable characters become U+FFFD, and a line above
        64 KiB is cut into pieces at character boundaries.
        """
        data = line.replace("\0", "\ufffd").encode("utf-8", "replace")
        start = 0
        while True:
            piece = data[start:start + codec.MAX_LOG_LINE].decode("utf-8", "ignore")
            self._queue_log(Log(flow_run_id, stream, piece))
            start += len(piece.encode("utf-8"))
            if start >= len(data) or not piece:
                break

    def watch_fd(self, fd: int, callback: Callable[[], None]) -> None:
        """Call callback() from the loop whenever fd is readable or hung up."""
        self._watched[fd] = callback
        if self._poller is not None:
            self._poller.register(fd, zmq.POLLIN)

    def unwatch_fd(self, fd: int) -> None:
        if self._watched.pop(fd, None) is not None and self._poller is not None:
            self._poller.unregister(fd)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Call callback() from the loop after delay seconds."""
        timer = Timer(time.monotonic() + max(0.0, delay), callback)
        heapq.heappush(self._timers, (timer.when, next(self._timer_seq), timer))
        return timer

    def state_path(self, flow_run_id: str, suffix: str) -> str:
        """Return "<state dir>/<flow run id><suffix>", a file removed with the run's record.

        Without a state directory the file lives in a private temporary
        directory, removed when serve() returns.
        """
        if self._state is not None:
            return self._state.run_path(flow_run_id, suffix)
        if self._scratch_dir is None:
            self._scratch_dir = tempfile.mkdtemp(prefix=f"drover-executor-{self.type}-")
        return os.path.join(self._scratch_dir, flow_run_id + suffix)

    def stop(self, reason: str = "stopped") -> None:
        """Make serve() send GOODBYE and return 0; safe to call from another thread."""
        self._stop_reason = reason
        try:
            os.write(self._wake_w, b"s")
        except BlockingIOError:
            pass

    # ------------------------------------------------------------ main loop

    def serve(self, endpoint: str, executor_id: Optional[str] = None,
              capacity: Optional[int] = None, state_dir: Optional[str] = None,
              trace: bool = False, handle_signals: bool = True) -> int:
        """Run the executor until stop(), SIGTERM, SIGINT or REJECT.

        Returns the process exit status: 0 after a stop or signal, 1 after
        REJECT.  Raises ValueError for invalid settings.  With a state_dir,
        runs are kept in STATE_DIR/EXECUTOR_ID and recovered at start-up.
        handle_signals=False leaves signal handling alone, which serve()
        needs when it runs outside the main thread.
        """
        self.executor_id = executor_id or default_executor_id(self.type)
        self.capacity = capacity or self.default_capacity or 4 * (os.cpu_count() or 1)
        self.capacity = min(self.capacity, codec.MAX_CAPACITY)
        self.trace = trace
        self._endpoint = endpoint
        self._schema = self.schema_json()
        self._check_identity()

        self.init()
        try:
            if state_dir:
                self._state = StateDir(os.path.join(state_dir, self.executor_id))
                self._load_state()
            self._ctx = zmq.Context()
            self._poller = zmq.Poller()
            self._poller.register(self._wake_r, zmq.POLLIN)
            for fd in self._watched:
                self._poller.register(fd, zmq.POLLIN)
            old_handlers = self._install_signals() if handle_signals else None
            self._info("start", endpoint=endpoint, type=self.type, capacity=self.capacity,
                       software=SOFTWARE, runs=len(self.runs), state_dir=state_dir)
            try:
                self._connect()
                return self._loop()
            finally:
                if old_handlers is not None:
                    self._restore_signals(old_handlers)
                self._close_socket(LINGER_MS)
                self._ctx.term()
                self._ctx = None
                self._poller = None
        finally:
            if self._state is not None:
                # A directory without runs is of no use to a later executor.
                self._state.close(remove=not self.runs)
                self._state = None
            self.shutdown()
            if self._scratch_dir is not None:
                shutil.rmtree(self._scratch_dir, ignore_errors=True)
                self._scratch_dir = None

    def _loop(self) -> int:
        next_poll = time.monotonic()
        while True:
            now = time.monotonic()
            deadline = min(self._next_deadline(), next_poll)
            timeout_ms = max(0, int((deadline - now) * 1000) + 1)
            events = dict(self._poller.poll(timeout_ms))

            poll_now = False
            if self._wake_r in events:
                poll_now = self._drain_wake_pipe()
            if self._stop_reason is not None:
                # Sent before WELCOME too: a supervisor that has already welcomed
                # this connection learns at once that the executor is gone.
                self._send(Goodbye(cut_utf8(self._stop_reason, codec.MAX_REASON)))
                self._info("stop", reason=self._stop_reason, runs=len(self.runs))
                return 0
            if self._sock is not None and self._sock in events:
                status = self._read_socket()
                if status is not None:
                    return status
            for fd in [fd for fd in events if fd in self._watched]:
                callback = self._watched.get(fd)
                if callback is not None:
                    callback()

            now = time.monotonic()
            if poll_now or now >= next_poll:
                self._poll_runs()
                next_poll = now + self.poll_interval
            self._run_timers(now)
            self._check_connection(now)

    def _on_ack(self, msg: Ack) -> Optional[int]:
        run = self.runs.get(msg.flow_run_id)
        if run is None:
            return None
        if msg.acked_type == Started.TYPE and run.identifier:
            if not run.started_acked:
                run.started_acked = True
                self._save(run)
        elif msg.acked_type == Exited.TYPE and run.exited:
            run.exited_acked = True
            self._forget(run)
        return None

    def _on_job(self, msg: Job) -> Optional[int]:
        run = self.runs.get(msg.flow_run_id)
        if run is not None:
            self._warn("duplicate_job", flow_run=msg.flow_run_id, identifier=run.identifier,
                       exited=run.exited)
            self._resend_run(run)
            return None

        run = Run(msg.flow_run_id)
        self.runs[run.flow_run_id] = run
        self._info("job", flow_run=run.flow_run_id, size=len(msg.config))
        if self._active_count() > self.capacity:
            self._fail_start(run, f"executor {self.executor_id} is at capacity "
                                  f"({self.capacity} runs)")
            return None
        try:
            run.config = check_config(self.all_fields(), json.loads(msg.config))
        except (ConfigError, ValueError, RecursionError) as exc:
            self._fail_start(run, f"invalid job configuration: {exc}")
            return None
        try:
            run.config = self.prepare(run.config)
        except Exception as exc:  # the author's prepare() may raise anything
            self._fail_start(run, f"invalid job configuration: {exception_text(exc)}")
            return None
        self._start(run)
        return None

    def _start(self, run: Run) -> None:
        try:
            result = self.start(run.flow_run_id, run.config)
        except Exception as exc:  # any failure of the author's start() is a start failure
            self._fail_start(run, f"failed to start: {exception_text(exc)}")
            return
        identifier, handle = result if isinstance(result, tuple) else (result, None)
        if not isinstance(identifier, str) or \
                not 1 <= len(identifier.encode("utf-8", "replace")) <= codec.MAX_IDENTIFIER \
                or "\0" in identifier:
            self._fail_start(run, f"start() returned an invalid identifier {identifier!r}: "
                                  f"expected a string of 1 to {codec.MAX_IDENTIFIER} bytes")
            return
        run.identifier = identifier
        run.handle = handle
        self._save(run)
        self._info("started", flow_run=run.flow_run_id, identifier=identifier)
        self._send(Started(run.flow_run_id, identifier))

    def _fail_start(self, run: Run, error: str) -> None:
        self._warn("start_failed", flow_run=run.flow_run_id, error=error)
        self._finish(run, -1, error)

    def _on_kill(self, msg: Kill) -> Optional[int]:
        run = self.runs.get(msg.flow_run_id)
        if run is None or run.exited:
            self._info("kill_ignored", flow_run=msg.flow_run_id,
                       reason="unknown run" if run is None else "run already ended")
            return None
        self._info("kill", flow_run=run.flow_run_id, identifier=run.identifier,
                   grace_s=msg.grace_seconds)
        run.killing = True
        try:
            self.kill(run, msg.grace_seconds)
        except Exception as exc:  # report and carry on: poll() still reports the run's end
            self._error("kill_failed", flow_run=run.flow_run_id, error=exception_text(exc))
        self._poll_run(run)
        return None

    _HANDLERS: Dict[type, Callable[["Executor", Any], Optional[int]]] = {
        Welcome: ProtocolSession._on_welcome, Reject: ProtocolSession._on_reject,
        Goodbye: ProtocolSession._on_goodbye, Pong: ProtocolSession._on_pong,
        Ack: _on_ack, Job: _on_job, Kill: _on_kill,
    }

    # ------------------------------------------------------------ runs

    def _active_count(self) -> int:
        return sum(1 for r in self.runs.values() if not r.exited)

    def _poll_runs(self) -> None:
        for run in list(self.runs.values()):
            if not run.exited:
                self._poll_run(run)

    def _poll_run(self, run: Run) -> None:
        try:
            code = self.poll(run)
        except RunLost as exc:
            self._finish(run, -1, str(exc) or "the run was lost")
            return
        except Exception as exc:  # a broken poll() must not stop the loop
            self._error("poll_failed", flow_run=run.flow_run_id, error=exception_text(exc))
            return
        if code is None:
            return
        if isinstance(code, bool) or not isinstance(code, int) or \
                not codec.INT64_MIN <= code <= codec.INT64_MAX:
            self._error("poll_failed", flow_run=run.flow_run_id,
                        error=f"poll() returned {code!r}, expected an integer or None")
            return
        self._finish(run, code, "")

    def _finish(self, run: Run, code: int, error: str) -> None:
        run.exited = True
        run.code = code
        run.error = cut_utf8(error, codec.MAX_REASON)
        self._save(run)
        self._info("exited", flow_run=run.flow_run_id, identifier=run.identifier, code=code,
                   error=run.error or None)
        self._send(Exited(run.flow_run_id, code, run.error))

    def _forget(self, run: Run) -> None:
        self.runs.pop(run.flow_run_id, None)
        if self._state is not None:
            self._state.remove(run.flow_run_id)
        elif self._scratch_dir is not None:
            remove_run_files(self._scratch_dir, run.flow_run_id)

    def _resend_run(self, run: Run) -> None:
        """Repeat what the supervisor should know of a run it sent again."""
        if run.identifier:
            self._send(Started(run.flow_run_id, run.identifier))
        if run.exited:
            self._send(Exited(run.flow_run_id, run.code, run.error))

    def _resend_unacked(self, include_started: bool = True, include_exited: bool = True) -> None:
        for run in list(self.runs.values()):
            if include_started and run.identifier and not run.started_acked:
                self._send(Started(run.flow_run_id, run.identifier))
            if include_exited and run.exited and not run.exited_acked:
                self._send(Exited(run.flow_run_id, run.code, run.error))

    # --------------------------------------------------------- state dir

    def _save(self, run: Run) -> None:
        if self._state is None:
            return
        try:
            self._state.save(run.flow_run_id, run.to_state())
        except OSError as exc:
            self._error("state_write_failed", flow_run=run.flow_run_id, error=exc)

    def _load_state(self) -> None:
        for item in self._state.load(self._warn):
            run = Run(item["flow_run_id"])
            run.identifier = item["identifier"]
            run.exited = item["exited"]
            run.code = item["code"]
            run.error = item["error"]
            run.started_acked = item["started_acked"]
            self.runs[run.flow_run_id] = run
            if run.exited:
                continue
            reason = "it never reported an identifier"
            try:
                run.handle = self.recover(run.identifier) if run.identifier else None
                reason = "its infrastructure is gone"
            except Exception as exc:  # a failed recovery loses the run, nothing more
                reason = exception_text(exc)
                run.handle = None
            if run.handle is None:
                self._finish(run, -1, f"run lost while the executor was restarting "
                                      f"(identifier {run.identifier!r}): {reason}")
            else:
                self._info("recovered", flow_run=run.flow_run_id, identifier=run.identifier)

    # ---------------------------------------------------------- signals

    def _install_signals(self) -> Dict[int, Any]:
        old: Dict[int, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            old[sig] = signal.signal(sig, self._on_stop_signal)
        # A handler that does nothing still makes each child exit write to the wake-up fd.
        old[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        old[-1] = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        return old

    def _restore_signals(self, old: Dict[int, Any]) -> None:
        signal.set_wakeup_fd(old.pop(-1))
        for sig, handler in old.items():
            signal.signal(sig, handler)

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        self._stop_reason = f"executor received {signal.Signals(signum).name}"

    def _drain_wake_pipe(self) -> bool:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass
        return True

    # ---------------------------------------------------------- helpers

    def _run_timers(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.callback()

    def _check_identity(self) -> None:
        try:
            codec.encode(Hello(self.executor_id, self.type, self.capacity, self._schema))
        except ProtocolError as exc:
            raise ValueError(f"invalid executor settings: {exc.reason}") from None

    def _emit(self, level: int, event: str, flow_run: Optional[str],
              fields: Dict[str, Any]) -> None:
        parts = [f"executor={self.executor_id or self.type or '-'}"]
        if flow_run:
            parts.append(f"flow_run={flow_run}")
        parts.append(event)
        for key, value in fields.items():
            if value is not None:
                parts.append(f"{key}={quote_value(value)}")
        log.log(level, " ".join(parts))

    def _info(self, event: str, flow_run: Optional[str] = None, **fields: Any) -> None:
        self._emit(logging.INFO, event, flow_run, fields)

    def _warn(self, event: str, flow_run: Optional[str] = None, **fields: Any) -> None:
        self._emit(logging.WARNING, event, flow_run, fields)

    def _error(self, event: str, flow_run: Optional[str] = None, **fields: Any) -> None:
        self._emit(logging.ERROR, event, flow_run, fields)


def default_executor_id(executor_type: str) -> str:
    """Return "<type>-<hostname>-<pid>" as the C SDK builds it.

    Characters of the host name outside [A-Za-z0-9.-] become "_", and at
    most 64 of them are used.  A restarted executor re-adopts its runs only
    with a stable id, so long-running deployments should pass --id.
    """
    host = "".join(c if c.isascii() and (c.isalnum() or c in ".-") else "_"
                   for c in socket.gethostname()[:64])
    return f"{executor_type}-{host or 'host'}-{os.getpid()}"[:codec.MAX_NAME]


def default_state_dir() -> str:
    """Return $XDG_RUNTIME_DIR/drover when that is an absolute path, else /tmp/drover-<uid>."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime.startswith("/"):
        return os.path.join(runtime, "drover")
    return f"/tmp/drover-{os.getuid()}"

