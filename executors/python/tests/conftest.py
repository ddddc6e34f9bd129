"""A fake supervisor: a ROUTER socket on a loopback port that the tests drive by hand."""

import threading
import time

import pytest
import zmq

from drover_executor import codec

# Upper bound of any single wait; reaching it fails the test instead of hanging it.
WAIT_S = 20.0


class FakeSupervisor:
    def __init__(self):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.peer = None
        self.received = []

    def recv(self, timeout=WAIT_S):
        """Return the next message from any executor and remember its routing id."""
        if not self.sock.poll(int(timeout * 1000)):
            raise AssertionError(f"no message from the executor within {timeout} s; "
                                 f"received so far: {self.received}")
        peer, data = self.sock.recv_multipart()
        self.peer = peer
        msg = codec.decode(data)
        self.received.append(msg)
        return msg

    def expect(self, cls, skip=(codec.Ping,), answer_pings=True):
        """Return the next message of type cls, skipping (and answering) PINGs."""
        deadline = time.monotonic() + WAIT_S
        while True:
            msg = self.recv(max(0.01, deadline - time.monotonic()))
            if isinstance(msg, codec.Ping) and answer_pings:
                self.send(codec.Pong(msg.seq, 0))
            if isinstance(msg, cls):
                return msg
            if not isinstance(msg, tuple(skip)):
                raise AssertionError(f"expected {cls.__name__}, got {msg}")

    def send(self, msg, peer=None):
        self.sock.send_multipart([peer or self.peer, codec.encode(msg)])

    def send_raw(self, data, peer=None):
        self.sock.send_multipart([peer or self.peer, data])

    def welcome(self, ping_ms=200, liveness_ms=5000):
        hello = self.expect(codec.Hello)
        self.send(codec.Welcome("fake-supervisor", ping_ms, liveness_ms))
        return hello

    def close(self):
        self.sock.close()
        self.ctx.term()


@pytest.fixture
def supervisor():
    sup = FakeSupervisor()
    yield sup
    sup.close()


class ExecutorThread:
    """Runs Executor.serve() in a background thread; stop() makes it say GOODBYE."""

    def __init__(self, executor, endpoint, **kwargs):
        self.executor = executor
        self.status = None
        self.error = None
        kwargs.setdefault("executor_id", "test-executor")
        kwargs.setdefault("capacity", 4)
        self.thread = threading.Thread(target=self._run, args=(endpoint, kwargs), daemon=True)
        self.thread.start()

    def _run(self, endpoint, kwargs):
        try:
            self.status = self.executor.serve(endpoint, handle_signals=False, **kwargs)
        except BaseException as exc:  # surfaced by join()
            self.error = exc

    def join(self):
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), "serve() did not return"
        if self.error is not None:
            raise self.error
        return self.status

    def stop(self):
        self.executor.stop("test finished")
        return self.join()
