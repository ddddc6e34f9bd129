"""Helpers of the failure tests: private Prefect servers, raw protocol peers, drover runs.

The shared fixtures give one Prefect server and long-running workers.  The
failure tests also need Prefect servers of their own (one with HTTP basic
authentication, one they pause with SIGSTOP), a DEALER socket that sends
hand-built protocol frames, and drover commands that are expected to exit.
"""

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import msgpack
import zmq

import processes
from conftest import SERVER_START_DEADLINE_SECONDS, _server_environment, _server_healthy
from prefect_api import wait_until

PROTOCOL_VERSION = 1
MSG_HELLO = 1
MSG_WELCOME = 2
MSG_REJECT = 3
MSG_ACK = 8

# Maximum wait for one reply on a raw protocol socket.
REPLY_DEADLINE_MS = 30_000


def drover_program() -> Path:
    return processes.build_dir() / "bin" / "drover"


def executor_program() -> Path:
    return processes.build_dir() / "bin" / "drover-executor-process"


def drover_template() -> dict:
    """Return drover's default base job template for process pools."""
    result = subprocess.run([str(drover_program()), "template", "process"], check=True,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return json.loads(result.stdout)


def start_private_server(start_process, tmp_path: Path, label: str,
                         extra_env: dict | None = None):
    """Start a Prefect server of the test's own, with the shared server's settings.

    extra_env adds server settings (for example PREFECT_SERVER_API_AUTH_STRING).
    Returns (API URL, server process) once the server is healthy;
    start_process stops it at the end of the test.
    """
    home = tmp_path / label
    home.mkdir()
    port = processes.free_loopback_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = _server_environment(home)
    env.update(extra_env or {})
    prefect = processes.venv_dir() / "bin" / "prefect"
    server = start_process([str(prefect), "server", "start", "--host", "127.0.0.1",
                            "--port", str(port)], env, label)
    if extra_env and "PREFECT_SERVER_API_AUTH_STRING" in extra_env:
        # /health needs the credentials too on such a server.
        user, _, password = extra_env["PREFECT_SERVER_API_AUTH_STRING"].partition(":")
        import httpx

        def healthy():
            if not server.running():
                raise AssertionError(f"private server {label} exited: {server.log_text()}")
            try:
                return httpx.get(f"{api_url}/health", auth=(user, password),
                                 timeout=5.0).status_code == 200
            except httpx.HTTPError:
                return False
        wait_until(healthy, f"private server {label} to report healthy",
                   deadline=SERVER_START_DEADLINE_SECONDS)
    else:
        wait_until(lambda: _server_healthy(api_url, server),
                   f"private server {label} to report healthy",
                   deadline=SERVER_START_DEADLINE_SECONDS)
    return api_url, server


def drover_env(api_url: str, home: Path, extra: dict | None = None) -> dict:
    home.mkdir(parents=True, exist_ok=True)
    env = processes.worker_environment(api_url, home, processes.venv_dir())
    env.update(extra or {})
    return env


def run_drover(argv: list[str], env: dict, deadline: float = 30.0):
    """Run drover to its exit; return (status, combined output).

    status is None when drover was still running at the deadline (it is then
    killed), which the caller reports as a failure to exit.
    """
    process = subprocess.Popen([str(drover_program()), *argv], env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=deadline)
        return process.returncode, output.decode(errors="replace")
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return None, output.decode(errors="replace")


def process_schema() -> str:
    """Return the process executor's declared schema text."""
    result = subprocess.run([str(executor_program()), "--describe"], check=True,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return result.stdout


def hello(executor_id: str, schema: str, infra_type: str = "process",
          version: int = PROTOCOL_VERSION, inventory: list | None = None) -> bytes:
    return msgpack.packb([version, MSG_HELLO, executor_id, infra_type, 1, schema,
                          "failure-test/1", socket.gethostname(), inventory or []])


class RawPeer:
    """A DEALER socket that exchanges hand-built protocol frames with a supervisor."""

    def __init__(self, endpoint: str, identity: str | None = None):
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        if identity:
            self.socket.setsockopt(zmq.IDENTITY, identity.encode())
        self.socket.connect(endpoint)

    def send(self, frame: bytes) -> None:
        self.socket.send(frame)

    def receive(self, deadline_ms: int = REPLY_DEADLINE_MS):
        """Return the next decoded message, or None when nothing came before the deadline."""
        if not self.socket.poll(deadline_ms, zmq.POLLIN):
            return None
        return msgpack.unpackb(self.socket.recv(), raw=False)

    def receive_type(self, expected: set[int], deadline_ms: int = REPLY_DEADLINE_MS):
        """Return the next message whose type is in expected, skipping others; None at the deadline."""
        while True:
            message = self.receive(deadline_ms)
            if message is None or (isinstance(message, list) and len(message) > 1
                                   and message[1] in expected):
                return message

    def close(self) -> None:
        self.socket.close(0)
        self.context.term()
