"""The connection to the supervisor: HELLO, WELCOME, liveness, and sending.

ProtocolSession is a part of Executor, kept in its own file: it opens the
DEALER socket, sends HELLO with the inventory, handles WELCOME, REJECT,
GOODBYE and PONG, pings, replaces the socket when the supervisor goes
silent, and sends every message.  The run messages (JOB, ACK, KILL) are
handled in executor.py.
"""

from __future__ import annotations

import socket
import time
from typing import Any, List, Optional

import msgpack
import zmq

from . import codec
from .codec import Goodbye, Hello, Job, Log, Ping, Pong, ProtocolError, Reject, Welcome
from .runs import Run
from .text import cut_utf8, log

SOFTWARE = "drover-executor-python/0.1.0"

# A HELLO without WELCOME or REJECT after this many seconds is sent again on a
# fresh socket, and the wait doubles after each failure up to HELLO_RETRY_MAX_S.
HELLO_RETRY_FIRST_S = 2.0
HELLO_RETRY_MAX_S = 30.0
# LOG lines produced while no supervisor is connected wait here, oldest dropped first.
MAX_PENDING_LOGS = 10000
# Messages read from the socket in one loop pass, so that run fds and timers
# are served even under a flood.
MAX_RECV_PER_PASS = 256


class ProtocolSession:
    """The supervisor connection of an Executor; it uses the Executor's attributes."""

    # -------------------------------------------------------- connection

    def _connect(self) -> None:
        """Open a fresh DEALER socket and send HELLO with the current inventory.

        A fresh socket drops whatever the old one still queued, so the HELLO
        is the first message the supervisor gets on the new connection.
        """
        self._close_socket(0)
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.MAXMSGSIZE, codec.MAX_FRAME + 64)
        self._sock.connect(self._endpoint)
        self._poller.register(self._sock, zmq.POLLIN)
        self._welcomed = False
        self._reconnect_at = None
        self._hello_deadline = time.monotonic() + self._hello_retry

        inventory = [r.entry() for r in self.runs.values()]
        if len(inventory) > codec.MAX_INVENTORY:
            self._warn("inventory_truncated", runs=len(inventory), sent=codec.MAX_INVENTORY)
            inventory = inventory[:codec.MAX_INVENTORY]
        hostname = cut_utf8(socket.gethostname(), codec.MAX_NAME)
        self._send(Hello(self.executor_id, self.type, self.capacity, self._schema, SOFTWARE,
                         hostname, inventory))

    def _close_socket(self, linger_ms: int) -> None:
        if self._sock is None:
            return
        if self._poller is not None:
            self._poller.unregister(self._sock)
        self._sock.close(linger=linger_ms)
        self._sock = None
        self._welcomed = False

    def _supervisor_gone(self, why: str) -> None:
        self._warn("reconnect", reason=why, endpoint=self._endpoint, runs=len(self.runs))
        self._connect()

    def _check_connection(self, now: float) -> None:
        if self._sock is None:
            if self._reconnect_at is not None and now >= self._reconnect_at:
                self._connect()
            return
        if not self._welcomed:
            if now >= self._hello_deadline:
                self._warn("hello_timeout", endpoint=self._endpoint,
                           waited_s=f"{self._hello_retry:g}",
                           retry_in_s=f"{self._hello_retry:g}")
                self._close_socket(0)
                self._reconnect_at = now + self._hello_retry
                self._hello_retry = min(self._hello_retry * 2, HELLO_RETRY_MAX_S)
            return
        if now - self._last_rx >= self._liveness:
            self._supervisor_gone(f"no message from the supervisor for "
                                  f"{self._liveness * 1000:.0f} ms")
            return
        if now >= self._next_ping:
            self._send(Ping(self._ping_seq, len(self.runs)))
            self._ping_seq += 1
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
        for _ in range(MAX_RECV_PER_PASS):
            if self._sock is None:
                break
            try:
                frames = self._sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            status = self._handle_frames(frames)
            if status is not None:
                return status
        return None

    def _handle_frames(self, frames: List[bytes]) -> Optional[int]:
        if len(frames) != 1:
            self._count_malformed(f"expected 1 frame, got {len(frames)}", sum(map(len, frames)))
            return None
        data = frames[0]
        try:
            msg = codec.decode(data)
        except ProtocolError as exc:
            return self._handle_bad_frame(exc, data)
        if self.trace:
            self._trace("supervisor -> executor", codec.type_name(msg.TYPE), len(data))

        handler = self._HANDLERS.get(type(msg))
        if handler is None:
            self._count_malformed(f"{codec.type_name(msg.TYPE)} is never sent to an executor",
                                  len(data))
            return None
        if not self._welcomed and type(msg) not in (Welcome, Reject):
            self._count_malformed(f"{codec.type_name(msg.TYPE)} before WELCOME", len(data))
            if isinstance(msg, Goodbye):
                return self._on_goodbye(msg)
            return None
        self._last_rx = time.monotonic()
        return handler(self, msg)

    def _handle_bad_frame(self, exc: ProtocolError, data: bytes) -> Optional[int]:
        size = len(data)
        if self.trace:
            self._trace("supervisor -> executor", "INVALID", size)
        if exc.kind == codec.VERSION and not self._welcomed:
            # A supervisor of another version replies to HELLO with a REJECT of its own version.
            self._error("rejected", supervisor_version=exc.version,
                        executor_version=codec.PROTOCOL_VERSION, reason=exc.peer_reason)
            return 1
        self._count_malformed(exc.reason, size, kind=exc.kind)
        if exc.kind == codec.MALFORMED and self._welcomed:
            self._answer_bad_job(data, exc.reason)
        return None

    def _answer_bad_job(self, data: bytes, reason: str) -> None:
        """Fail a JOB whose fields the decoder rejected, when it still names its run.

        Only [1, 4, <flow run id>, <anything>] qualifies, and never a run
        already held: the run then fails at once instead of waiting for the
        supervisor's inventory check.
        """
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=len(data) + 1)
        unpacker.feed(data)
        try:
            if unpacker.read_array_header() != 4 or unpacker.unpack() != codec.PROTOCOL_VERSION \
                    or unpacker.unpack() != Job.TYPE:
                return
            flow_run_id = unpacker.unpack()
        except (ValueError, TypeError, msgpack.UnpackException):
            return
        if not isinstance(flow_run_id, str) or not codec.is_flow_run_id(flow_run_id) \
                or flow_run_id in self.runs:
            return
        run = Run(flow_run_id)
        self.runs[flow_run_id] = run
        self._fail_start(run, f"invalid job configuration: {reason}")

    def _count_malformed(self, reason: str, size: int, kind: str = codec.MALFORMED) -> None:
        self.malformed_count += 1
        # Log the first few and then every 100th, so a flood does not flood stderr too.
        if self.malformed_count <= 10 or self.malformed_count % 100 == 0:
            self._warn("message_dropped", kind=kind, reason=reason, size=size,
                       total=self.malformed_count)

    def _on_welcome(self, msg: Welcome) -> Optional[int]:
        if self._welcomed:
            self._count_malformed("WELCOME within a session", 0)
            return None
        now = time.monotonic()
        self._welcomed = True
        self._hello_retry = HELLO_RETRY_FIRST_S
        self._ping_interval = msg.ping_interval_ms / 1000.0
        self._liveness = msg.liveness_ms / 1000.0
        self._ping_seq = 0
        self._next_ping = now
        self._next_resend = now + self._ping_interval
        self._info("welcome", supervisor=msg.supervisor_id, ping_interval_ms=msg.ping_interval_ms,
                   liveness_ms=msg.liveness_ms, runs=len(self.runs))
        # STARTED first and EXITED last, so the lines logged in between arrive in order.
        self._resend_unacked(include_exited=False)
        self._flush_logs()
        self._resend_unacked(include_started=False)
        return None

    def _on_reject(self, msg: Reject) -> Optional[int]:
        self._error("rejected", reason=msg.reason, endpoint=self._endpoint)
        self._close_socket(0)
        return 1

    def _on_goodbye(self, msg: Goodbye) -> Optional[int]:
        self._supervisor_gone(f"the supervisor said GOODBYE ({msg.reason or 'no reason'})")
        return None

    def _on_pong(self, msg: Pong) -> Optional[int]:
        return None

    # ------------------------------------------------------------- send

    def _queue_log(self, msg: Log) -> None:
        if self._welcomed:
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
        """Send a message; before WELCOME only HELLO and GOODBYE go out, the rest waits."""
        if self._sock is None or (not self._welcomed and not isinstance(msg, (Hello, Goodbye))):
            return
        try:
            data = codec.encode(msg)
        except ProtocolError as exc:
            self._error("encode_failed", type=codec.type_name(msg.TYPE), reason=exc.reason)
            return
        if self.trace:
            self._trace("executor -> supervisor", codec.type_name(msg.TYPE), len(data))
        try:
            self._sock.send(data, zmq.NOBLOCK)
        except zmq.Again:
            self._warn("send_dropped", type=codec.type_name(msg.TYPE),
                       reason="socket queue full")

    def _trace(self, direction: str, type_name: str, size: int) -> None:
        # Fields are left out on purpose: a JOB's config can hold secrets.
        log.info("executor=%s trace %s %s size=%d", self.executor_id, direction, type_name, size)

