"""Reads and heartbeats while the server holds drover's writes.

A proxy on loopback sits between drover and the session's Prefect server.
It passes reads, heartbeats and polls at once, and delays every other write
(claims, labels, states) until the test ends, as a server stuck on a locked
SQLite database does.  drover then has as many writes in flight as its write
window allows, and its reads and heartbeats must still reach the server.
"""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

import processes
from failure_helpers import drover_env, drover_program
from prefect_api import unique_name, wait_until

# Upper bound of drover's write window (HTTP_MAX_WRITES in supervisor/http.c).
MAX_WRITES_IN_FLIGHT = 16
# More runs than the window, so that writes wait in drover's queue.
RUNS = MAX_WRITES_IN_FLIGHT + 8
HOLD_DEADLINE_SECONDS = 120.0
# drover's HTTP timeout, beyond the test's deadlines: a held write that
# timed out would free its connection and let a waiting read through.
REQUEST_TIMEOUT_SECONDS = "900"


def is_read(method: str, path: str) -> bool:
    return method in ("GET", "HEAD") or path.rstrip("/").endswith(("/filter", "/count"))


def passes_at_once(method: str, path: str) -> bool:
    return (is_read(method, path) or path.endswith("/workers/heartbeat")
            or path.endswith("/get_scheduled_flow_runs"))


class HoldingProxy:
    """Forwards requests to upstream; delays the writes that passes_at_once rejects."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.held = 0
        self.seen: list[tuple[str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                hold = not passes_at_once(self.command, path)
                with proxy.lock:
                    proxy.seen.append((self.command, path))
                    proxy.held += hold
                if hold:
                    proxy.release.wait()
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "accept-encoding",
                                                "connection")}
                reply = httpx.request(self.command, proxy.upstream + self.path, content=body,
                                      headers=headers, timeout=60.0)
                self.send_response(reply.status_code)
                self.send_header("Content-Type", reply.headers.get("content-type", "text/plain"))
                self.send_header("Content-Length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api"

    def count(self, method: str, suffix: str) -> int:
        with self.lock:
            return sum(1 for m, p in self.seen if m == method and p.endswith(suffix))

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_reads_and_heartbeats_pass_held_writes(api, prefect_server, start_process,
                                               worker_kind, examples_dir, tmp_path):
    worker_kind.require_drover("the write window is drover's")
    pool = unique_name("pool")
    api.create_pool(pool)
    deployment = api.create_deployment("hello", pool, examples_dir,
                                       job_variables={"command": "sleep 1"})
    proxy = HoldingProxy(prefect_server.api_url.removesuffix("/api"))
    try:
        for _ in range(RUNS):
            api.create_flow_run(deployment["id"])
        env = drover_env(proxy.api_url, tmp_path / "home",
                         {"PREFECT_API_REQUEST_TIMEOUT": REQUEST_TIMEOUT_SECONDS})
        worker = start_process([str(drover_program()), "worker", "start", "--pool", pool,
                                "--name", unique_name("worker"),
                                "--state-dir", str(tmp_path / "state")],
                               env, "drover behind the holding proxy")

        wait_until(lambda: proxy.held >= MAX_WRITES_IN_FLIGHT,
                   f"drover to have {MAX_WRITES_IN_FLIGHT} writes held by the proxy",
                   deadline=HOLD_DEADLINE_SECONDS)
        pool_reads = proxy.count("GET", f"/work_pools/{pool}")
        heartbeats = proxy.count("POST", "/workers/heartbeat")

        wait_until(lambda: proxy.count("GET", f"/work_pools/{pool}") >= pool_reads + 2,
                   "two more reads of the pool while the writes are held",
                   deadline=HOLD_DEADLINE_SECONDS)
        wait_until(lambda: proxy.count("POST", "/workers/heartbeat") >= heartbeats + 2,
                   "two more heartbeats while the writes are held",
                   deadline=HOLD_DEADLINE_SECONDS)
        assert worker.running(), worker.log_text()
    finally:
        proxy.close()
