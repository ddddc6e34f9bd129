"""Fixtures of the end-to-end tests: one real Prefect server, and workers.

The session starts one `prefect server start` from the virtual environment
($DROVER_VENV, default .venv at the top of the source tree) on a free
loopback port, with SQLite in a temporary folder and every online feature
off.  Each test starts its own worker on its own work pool, so tests never
pick up each other's runs.  When a test fails, the output of every process
it started and the end of the server's log are attached to its report.
"""

import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import processes  # noqa: E402
from prefect_api import PrefectApi, unique_name, wait_until  # noqa: E402

SERVER_START_DEADLINE_SECONDS = 180.0
REPORT_TAIL_LINES = 400

process_logs_key = pytest.StashKey[list]()


@dataclass
class PrefectServer:
    api_url: str
    home: Path
    process: processes.ManagedProcess


@dataclass
class Worker:
    """A running worker under test and the names it serves."""

    pool: str
    name: str
    process: processes.ManagedProcess

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.process.log_text()


def _server_environment(home: Path) -> dict:
    env = processes.clean_environment()
    env.update({
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL":
            f"sqlite+aiosqlite:///{(home / 'prefect.db').resolve()}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    })
    return env


def _server_healthy(api_url: str, server: processes.ManagedProcess) -> bool:
    if not server.running():
        raise AssertionError(
            f"prefect server exited with status {server.process.returncode} before it "
            f"was healthy; its log follows\n{server.log_text()}")
    try:
        return httpx.get(f"{api_url}/health", timeout=5.0).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    venv = processes.venv_dir()
    prefect = venv / "bin" / "prefect"
    if not os.access(prefect, os.X_OK):
        pytest.fail(f"{prefect} is missing: run scripts/install-deps.sh or set DROVER_VENV",
                    pytrace=False)

    home = tmp_path_factory.mktemp("prefect-server")
    port = processes.free_loopback_port()
    api_url = f"http://127.0.0.1:{port}/api"
    server = processes.ManagedProcess(
        [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        _server_environment(home), home / "server.log", cwd=home)
    try:
        wait_until(lambda: _server_healthy(api_url, server),
                   f"the Prefect server at {api_url} to report healthy",
                   deadline=SERVER_START_DEADLINE_SECONDS)
    except BaseException:
        server.stop()
        raise

    yield PrefectServer(api_url=api_url, home=home, process=server)

    status = server.stop()
    if status not in (0, -signal.SIGTERM):
        print(f"prefect server exited with status {status}", file=sys.stderr)


@pytest.fixture(scope="session")
def api(prefect_server):
    client = PrefectApi(prefect_server.api_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def worker_kind():
    return processes.worker_kind()


@pytest.fixture(scope="session")
def examples_dir():
    return processes.EXAMPLES_DIR


def _attach_log(request, title: str, path: Path) -> None:
    request.node.stash.setdefault(process_logs_key, []).append((title, path))


@pytest.fixture
def start_process(request, tmp_path):
    """Return a function that starts a command whose output joins the failure report.

    Every process still running at the end of the test is stopped with
    SIGTERM, then SIGKILL after a deadline.
    """
    started = []

    def start(argv: list[str], env: dict, label: str) -> processes.ManagedProcess:
        log_path = tmp_path / f"{label}-{len(started)}.log"
        _attach_log(request, f"{label} output ({' '.join(argv)})", log_path)
        process = processes.ManagedProcess(argv, env, log_path, cwd=tmp_path)
        started.append(process)
        return process

    yield start

    for process in reversed(started):
        process.stop()


@pytest.fixture
def start_worker(request, worker_kind, prefect_server, api, start_process, tmp_path):
    """Return a function that starts the worker under test on a new pool.

    Pool and worker names are unique per call unless given.  Options map to
    the command line: pool_type to --type, queues to --work-queue, limit to
    --limit, extra_args are appended as they are.  The function returns once
    the pool exists, which the worker ensures by creating a missing pool.
    """
    _attach_log(request, "prefect server log (shared by all tests)",
                prefect_server.home / "server.log")

    def start(pool: str | None = None, name: str | None = None,
              pool_type: str | None = None, queues: list[str] | None = None,
              limit: int | None = None, extra_args: list[str] | None = None) -> Worker:
        pool = pool or unique_name("pool")
        name = name or unique_name("worker")
        argv = worker_kind.worker_argv(pool, name, pool_type, queues or [], limit,
                                       extra_args or [])
        home = tmp_path / f"home-{name}"
        home.mkdir()
        env = processes.worker_environment(prefect_server.api_url, home, worker_kind.venv)
        process = start_process(argv, env, f"{worker_kind.name} worker {name}")
        worker = Worker(pool=pool, name=name, process=process)
        wait_until(lambda: _pool_ready(api, worker),
                   f"work pool {pool} to exist after starting worker {name}")
        return worker

    return start


def _pool_ready(api: PrefectApi, worker: Worker) -> bool:
    # A worker started with --run-once may already be gone when its pool
    # existed beforehand, so only a missing pool makes an exit an error.
    if api.read_pool(worker.pool) is not None:
        return True
    if not worker.process.running():
        raise AssertionError(f"worker {worker.name} exited with status "
                             f"{worker.process.process.returncode} before its pool existed")
    return False


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"(could not read {path}: {error})"
    last_lines = text.splitlines()[-lines:]
    return "\n".join(last_lines) if last_lines else "(empty)"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for title, path in item.stash.get(process_logs_key, []):
        report.sections.append((f"{title}, last {REPORT_TAIL_LINES} lines",
                                _tail(path, REPORT_TAIL_LINES)))

