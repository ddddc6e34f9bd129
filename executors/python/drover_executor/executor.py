"""The executor side of the drover protocol, for executors written in Python.

An author subclasses Executor, declares the job configuration fields and
implements start(), poll() and kill().  The SDK owns everything on the
wire: it connects a DEALER socket, says HELLO with the schema and the
inventory of runs it still knows, waits for WELCOME, pings, reconnects on a
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
import signal
import socket
import sys
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import zmq

from . import codec
from .codec import (Ack, Exited, Goodbye, Hello, Job, Kill, Log, Ping, Pong, ProtocolError,
                    Reject, RunEntry, Started, Welcome)
from .schema import COMMON_FIELDS, COMMON_NAMES, ConfigError, Field, check_config
from .state import StateDir

__all__ = ["Executor", "Run", "RunLost", "Field"]

SOFTWARE = "drover-executor-python/0.1.0"

log = logging.getLogger("drover_executor")

# Before the first WELCOME the supervisor's timings are unknown: a HELLO left
# unanswered this long is sent again on a fresh socket.
HELLO_TIMEOUT_S = 5.0
# Pause before reconnecting after the supervisor said GOODBYE, so a supervisor
# that is restarting is not flooded with HELLOs.
GOODBYE_RECONNECT_S = 1.0
# LOG lines produced while no supervisor is connected wait here, oldest dropped first.
MAX_PENDING_LOGS = 10000
# Flow run ids of runs whose EXITED was acknowledged, kept to recognise a late duplicate JOB.
MAX_FINISHED = 4096
# How long close() waits for GOODBYE to leave the socket.
LINGER_MS = 1000


class RunLost(Exception):
    """Raised by poll() when a run's exit status can no longer be known.

    The SDK reports the run as exited with the exception text as the error.
    """


class Run:
    """A flow run this executor took.

    ``handle`` belongs to the executor: start() or recover() may return it,
    poll() and kill() read it.  ``config`` is the checked job configuration.
    """

    def __init__(self, flow_run_id: str, config: Optional[Dict[str, Any]] = None):
        self.flow_run_id = flow_run_id
        self.config = config or {}
        self.identifier = ""
        self.handle: Any = None
        self.exited = False
        self.code = 0
        self.error = ""
        self.started_acked = False
        self.exited_acked = False
        self.killing = False

    def entry(self) -> RunEntry:
        return RunEntry(self.flow_run_id, self.identifier, self.exited, self.code)

    def to_state(self) -> Dict[str, Any]:
        return {"flow_run_id": self.flow_run_id, "identifier": self.identifier,
                "exited": self.exited, "code": self.code, "error": self.error,
                "started_acked": self.started_acked}

    def __repr__(self) -> str:
        return f"Run({self.flow_run_id}, identifier={self.identifier!r}, exited={self.exited})"


class Timer:
    """A callback scheduled with Executor.call_later(); cancel() stops it."""

    def __init__(self, when: float, callback: Callable[[], None]):
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Executor:
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

    # ----------------------------------------------------------------- hooks

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
        is gone, which reports it as lost.
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
        self._finished: "collections.OrderedDict[str, Tuple[int, str]]" = \
            collections.OrderedDict()
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
        self._state: Optional[StateDir] = None

    def log(self, flow_run_id: str, line: str, stream: int = codec.STREAM_STDOUT) -> None:
        """Send one line of a run's output to the supervisor as LOG.

        A line above 64 KiB is cut into pieces; invalid UTF-8 is replaced.
        """
        data = line.encode("utf-8", "replace")
        if not data:
            self._queue_log(Log(flow_run_id, stream, ""))
        for i in range(0, len(data), codec.MAX_LOG_LINE):
            piece = data[i:i + codec.MAX_LOG_LINE].decode("utf-8", "ignore")
            self._queue_log(Log(flow_run_id, stream, piece))

    def watch_fd(self, fd: int, callback: Callable[[], None]) -> None:
        """Call callback() from the loop whenever fd is readable."""
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

    def stop(self, reason: str = "stopped") -> None:
        """Make serve() say GOODBYE and return; safe to call from another thread."""
        self._stop_reason = reason
        try:
            os.write(self._wake_w, b"s")
        except BlockingIOError:
            pass

    _poller: Optional[zmq.Poller] = None

    # ------------------------------------------------------------ main loop

    def serve(self, endpoint: str, executor_id: Optional[str] = None, capacity: int = 1,
              state_dir: Optional[str] = None, trace: bool = False,
              handle_signals: bool = True) -> int:
        """Run the executor until stopped, SIGTERM, SIGINT or REJECT.

        Returns the process exit status: 0 after a stop or signal, 1 after REJECT.
        handle_signals=False leaves signal handling alone, which serve() needs
        when it runs outside the main thread.
        """
        self.executor_id = executor_id or default_executor_id(self.type)
        self.capacity = capacity
        self.trace = trace
        self._endpoint = endpoint
        self._check_identity()
        self._schema = self.schema_json()
        if len(self._schema.encode()) > codec.MAX_SCHEMA:
            raise ValueError(f"schema of {len(self._schema)} bytes exceeds the limit of "
                             f"{codec.MAX_SCHEMA}")
        if state_dir:
            self._state = StateDir(state_dir)
            self._load_state()

        self._ctx = zmq.Context()
        self._poller = zmq.Poller()
        self._poller.register(self._wake_r, zmq.POLLIN)
        for fd in self._watched:
            self._poller.register(fd, zmq.POLLIN)
        old_handlers = self._install_signals() if handle_signals else None
        self._info("start", endpoint=endpoint, type=self.type, capacity=capacity,
                   software=SOFTWARE, runs=len(self.runs))
        try:
            self._connect()
            status = self._loop()
        finally:
            if old_handlers is not None:
                self._restore_signals(old_handlers)
            self._close_socket(LINGER_MS)
            self._ctx.term()
            self._ctx = None
            self._poller = None
        return status

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
                self._send(Goodbye(self._stop_reason[:codec.MAX_REASON]))
                self._info("stop", reason=self._stop_reason, runs=self._active_count())
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

    # -------------------------------------------------------- connection

    def _connect(self) -> None:
        """Open a fresh DEALER socket and say HELLO with the current inventory."""
        self._close_socket(0)
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(self._endpoint)
        self._poller.register(self._sock, zmq.POLLIN)
        self._welcomed = False
        self._hello_deadline = time.monotonic() + HELLO_TIMEOUT_S
        self._reconnect_at: Optional[float] = None
        inventory = [r.entry() for r in self.runs.values()][:codec.MAX_INVENTORY]
        if len(self.runs) > codec.MAX_INVENTORY:
            self._warn("inventory_truncated", runs=len(self.runs), sent=codec.MAX_INVENTORY)
        hostname = socket.gethostname().encode()[:codec.MAX_NAME].decode("utf-8", "ignore")
        self._send(Hello(self.executor_id, self.type, self.capacity, self._schema, SOFTWARE,
                         hostname, inventory))

    def _close_socket(self, linger_ms: int) -> None:
        if self._sock is None:
            return
        if self._poller is not None:
            try:
                self._poller.unregister(self._sock)
            except KeyError:
                pass
        self._sock.close(linger=linger_ms)
        self._sock = None

    def _reconnect(self, why: str, delay: float = 0.0) -> None:
        self._warn("reconnect", reason=why, endpoint=self._endpoint, delay_s=delay)
        if delay > 0:
            self._close_socket(0)
            self._welcomed = False
            self._reconnect_at = time.monotonic() + delay
        else:
            self._connect()

    def _check_connection(self, now: float) -> None:
        if self._sock is None:
            if self._reconnect_at is not None and now >= self._reconnect_at:
                self._connect()
            return
        if not self._welcomed:
            if now >= self._hello_deadline:
                self._reconnect(f"no WELCOME within {HELLO_TIMEOUT_S:g} s")
            return
        if now - self._last_rx >= self._liveness:
            self._reconnect(f"supervisor silent for {self._liveness * 1000:.0f} ms")
            return
        if now >= self._next_ping:
            self._ping_seq += 1
            self._send(Ping(self._ping_seq, self._active_count()))
            self._next_ping = now + self._ping_interval
        if now >= self._next_resend:
            self._resend_unacked()
            self._next_resend = now + self._ping_interval

    def _next_deadline(self) -> float:
        deadlines = []
        if self._timers:
            deadlines.append(self._timers[0][0])
        if self._sock is None:
            if self._reconnect_at is not None:
                deadlines.append(self._reconnect_at)
        elif not self._welcomed:
            deadlines.append(self._hello_deadline)
        else:
            deadlines.extend([self._last_rx + self._liveness, self._next_ping,
                              self._next_resend])
        return min(deadlines) if deadlines else time.monotonic() + 3600

    # ------------------------------------------------------ receive side

    def _read_socket(self) -> Optional[int]:
        while self._sock is not None:
            try:
                frames = self._sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return None
            status = self._handle_frames(frames)
            if status is not None:
                return status
        return None

    def _handle_frames(self, frames: List[bytes]) -> Optional[int]:
        if len(frames) != 1:
            self._warn("malformed", reason=f"expected 1 frame, got {len(frames)}")
            return None
        data = frames[0]
        try:
            msg = codec.decode(data)
        except ProtocolError as exc:
            return self._handle_bad_frame(exc, len(data))
        if self.trace:
            self._trace("supervisor -> executor", msg, len(data))
        self._last_rx = time.monotonic()

        handler = self._HANDLERS.get(type(msg))
        if handler is None:
            self._warn("unexpected_message", type=codec.type_name(msg.TYPE),
                       reason="executors never receive this type")
            return None
        return handler(self, msg)

    def _handle_bad_frame(self, exc: ProtocolError, size: int) -> Optional[int]:
        if self.trace:
            log.info("executor=%s trace supervisor -> executor INVALID size=%d",
                     self.executor_id, size)
        self._warn("malformed", kind=exc.kind, reason=exc.reason, size=size)
        if exc.kind == codec.VERSION:
            self._send(Goodbye(f"unsupported protocol version {exc.version}, this executor "
                               f"speaks version {codec.PROTOCOL_VERSION}"))
        return None

    def _on_welcome(self, msg: Welcome) -> Optional[int]:
        now = time.monotonic()
        self._welcomed = True
        self._supervisor_id = msg.supervisor_id
        self._ping_interval = msg.ping_interval_ms / 1000.0
        self._liveness = msg.liveness_ms / 1000.0
        self._ping_seq = getattr(self, "_ping_seq", 0)
        self._next_ping = now + self._ping_interval
        self._next_resend = now + self._ping_interval
        self._info("welcome", supervisor=msg.supervisor_id, ping_interval_ms=msg.ping_interval_ms,
                   liveness_ms=msg.liveness_ms)
        self._resend_unacked(include_exited=False)
        self._flush_logs()
        self._resend_unacked(include_started=False)
        return None

    def _on_reject(self, msg: Reject) -> Optional[int]:
        self._error("rejected", reason=msg.reason, endpoint=self._endpoint)
        return 1

    def _on_goodbye(self, msg: Goodbye) -> Optional[int]:
        self._reconnect(f"supervisor said GOODBYE ({msg.reason or 'no reason'})",
                        GOODBYE_RECONNECT_S)
        return None

    def _on_pong(self, msg: Pong) -> Optional[int]:
        return None

    def _on_ack(self, msg: Ack) -> Optional[int]:
        run = self.runs.get(msg.flow_run_id)
        if run is None:
            return None
        if msg.acked_type == Started.TYPE:
            run.started_acked = True
            self._save(run)
        elif run.exited:
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
        if msg.flow_run_id in self._finished:
            code, error = self._finished[msg.flow_run_id]
            self._warn("duplicate_job", flow_run=msg.flow_run_id, reason="already finished")
            self._send(Exited(msg.flow_run_id, code, error))
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
            run.config = self.prepare(run.config)
        except (ConfigError, ValueError, RecursionError) as exc:
            self._fail_start(run, f"invalid job configuration: {exc}")
            return None
        except Exception as exc:  # the author's prepare() may raise anything
            self._fail_start(run, f"prepare failed: {_exc_text(exc)}")
            return None
        self._start(run)
        return None

    def _start(self, run: Run) -> None:
        try:
            result = self.start(run.flow_run_id, run.config)
        except Exception as exc:  # any failure of the author's start() is a start failure
            self._fail_start(run, f"failed to start: {_exc_text(exc)}")
            return
        identifier, handle = result if isinstance(result, tuple) else (result, None)
        if not isinstance(identifier, str) or not 1 <= len(identifier.encode()) \
                <= codec.MAX_IDENTIFIER:
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
        if run is None:
            finished = self._finished.get(msg.flow_run_id)
            self._warn("kill_unknown_run", flow_run=msg.flow_run_id,
                       finished=finished is not None)
            if finished is not None:
                self._send(Exited(msg.flow_run_id, finished[0], finished[1]))
            return None
        if run.exited:
            self._resend_run(run)
            return None
        self._info("kill", flow_run=run.flow_run_id, identifier=run.identifier,
                   grace_s=msg.grace_seconds)
        run.killing = True
        try:
            self.kill(run, msg.grace_seconds)
        except Exception as exc:  # report and carry on: poll() still sees the run
            self._error("kill_failed", flow_run=run.flow_run_id, error=_exc_text(exc))
        self._poll_run(run)
        return None

    _HANDLERS: Dict[type, Callable[["Executor", Any], Optional[int]]] = {
        Welcome: _on_welcome, Reject: _on_reject, Goodbye: _on_goodbye, Pong: _on_pong,
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
            self._error("poll_failed", flow_run=run.flow_run_id, error=_exc_text(exc))
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
        error = error.encode()[:codec.MAX_REASON].decode("utf-8", "ignore")
        run.exited = True
        run.code = code
        run.error = error
        self._save(run)
        self._info("exited", flow_run=run.flow_run_id, identifier=run.identifier, code=code,
                   error=error or None)
        self._send(Exited(run.flow_run_id, code, error))

    def _forget(self, run: Run) -> None:
        self.runs.pop(run.flow_run_id, None)
        self._finished[run.flow_run_id] = (run.code, run.error)
        while len(self._finished) > MAX_FINISHED:
            self._finished.popitem(last=False)
        if self._state is not None:
            self._state.remove(run.flow_run_id)

    def _resend_run(self, run: Run) -> None:
        """Repeat what the supervisor should know of a run it asked about again."""
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
            try:
                run.handle = self.recover(run.identifier) if run.identifier else None
            except Exception as exc:  # a failed recovery loses the run, nothing more
                self._error("recover_failed", flow_run=run.flow_run_id, error=_exc_text(exc))
                run.handle = None
            if run.handle is None:
                self._finish(run, -1, f"the run with identifier {run.identifier!r} was lost "
                                      f"while the executor was restarting")
            else:
                self._info("recovered", flow_run=run.flow_run_id, identifier=run.identifier)

    # ------------------------------------------------------------- send

    def _queue_log(self, msg: Log) -> None:
        if self._sock is not None and self._welcomed:
            self._send(msg)
            return
        if len(self._pending_logs) >= MAX_PENDING_LOGS:
            self._pending_logs.popleft()
            self._dropped_logs += 1
        self._pending_logs.append(msg)

    def _flush_logs(self) -> None:
        if self._dropped_logs:
            self._warn("logs_dropped", count=self._dropped_logs,
                       reason="no supervisor connected")
            self._dropped_logs = 0
        while self._pending_logs:
            self._send(self._pending_logs.popleft())

    def _send(self, msg: Any) -> None:
        if self._sock is None:
            return
        try:
            data = codec.encode(msg)
        except ProtocolError as exc:
            self._error("encode_failed", type=codec.type_name(msg.TYPE), reason=exc.reason)
            return
        if self.trace:
            self._trace("executor -> supervisor", msg, len(data))
        try:
            self._sock.send(data, zmq.NOBLOCK)
        except zmq.Again:
            self._warn("send_dropped", type=codec.type_name(msg.TYPE),
                       reason="socket queue full or no peer")

    # ---------------------------------------------------------- signals

    def _install_signals(self) -> Dict[int, Any]:
        old: Dict[int, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            old[sig] = signal.signal(sig, self._on_stop_signal)
        # A no-op handler makes each child exit write to the wake-up fd.
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
            codec.encode(Hello(self.executor_id, self.type, self.capacity, "{}"))
        except ProtocolError as exc:
            raise ValueError(f"invalid executor settings: {exc.reason}") from None

    def _trace(self, direction: str, msg: Any, size: int) -> None:
        flow_run = getattr(msg, "flow_run_id", None)
        prefix = f"executor={self.executor_id}"
        if flow_run:
            prefix += f" flow_run={flow_run}"
        log.info("%s trace %s %s size=%d", prefix, direction, codec.type_name(msg.TYPE), size)

    def _emit(self, level: int, event: str, flow_run: Optional[str], fields: Dict[str, Any]):
        parts = [f"executor={self.executor_id}"]
        if flow_run:
            parts.append(f"flow_run={flow_run}")
        parts.append(f"event={event}")
        for key, value in fields.items():
            if value is not None:
                parts.append(f"{key}={_quote(value)}")
        log.log(level, " ".join(parts))

    def _info(self, event: str, flow_run: Optional[str] = None, **fields: Any) -> None:
        self._emit(logging.INFO, event, flow_run, fields)

    def _warn(self, event: str, flow_run: Optional[str] = None, **fields: Any) -> None:
        self._emit(logging.WARNING, event, flow_run, fields)

    def _error(self, event: str, flow_run: Optional[str] = None, **fields: Any) -> None:
        self._emit(logging.ERROR, event, flow_run, fields)

    # Until the first WELCOME these hold harmless values.
    _welcomed = False
    _reconnect_at: Optional[float] = None
    _hello_deadline = 0.0
    _last_rx = 0.0
    _liveness = 0.0
    _ping_interval = 1.0
    _next_ping = 0.0
    _next_resend = 0.0
    _ping_seq = 0


def _quote(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return json.dumps(text)
    return text


def _exc_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def default_executor_id(executor_type: str) -> str:
    """Return "<type>-<hostname>-<pid>", with characters outside [A-Za-z0-9._:-] replaced."""
    host = "".join(c if c.isascii() and (c.isalnum() or c in "._:-") else "_"
                   for c in socket.gethostname())
    return f"{executor_type}-{host}-{os.getpid()}"[:codec.MAX_NAME]


def configure_logging(stream: Any = None) -> None:
    """Send the SDK's log lines to stderr as "time level message"."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
