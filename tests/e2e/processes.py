"""Child processes of the end-to-end tests: the worker under test and helpers.

The worker under test is drover by default.  DROVER_E2E_WORKER=prefect runs
the same scenarios against Prefect's own `prefect worker start --type process`
instead, which checks the harness and the scenarios themselves against a
worker known to be correct; tests of drover-only behaviour skip themselves in
that mode (see WorkerKind.require_drover).
"""

import json
import os
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

SOURCE_DIR = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = SOURCE_DIR / "examples"

# Seconds between heartbeats and between polls for scheduled runs.  Short
# values keep each test quick; they are the worker's own settings, not limits
# any test asserts on.
HEARTBEAT_SECONDS = "2"
QUERY_SECONDS = "1"

STOP_DEADLINE_SECONDS = 30.0


def venv_dir() -> Path:
    return Path(os.environ.get("DROVER_VENV", SOURCE_DIR / ".venv"))


def build_dir() -> Path:
    return Path(os.environ.get("DROVER_BUILD_DIR", SOURCE_DIR / "build"))


def free_loopback_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_environment() -> dict:
    """Return this process's environment without any Prefect setting.

    A developer's own PREFECT_API_URL or PREFECT_API_KEY must never reach the
    processes a test starts.
    """
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("PREFECT_")}
    env["DO_NOT_TRACK"] = "1"
    return env


def child_pids(parent_pid: int, name_part: str) -> list[int]:
    """Return the pids of parent_pid's live children whose command line contains name_part."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            continue
        # The command name in field 2 may contain spaces; fields after the
        # closing parenthesis are state, then ppid.
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] == "Z":
            continue
        if int(fields[1]) == parent_pid and name_part in cmdline:
            pids.append(int(entry.name))
    return pids


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


class ManagedProcess:
    """A child process whose standard output and error go to one log file."""

    def __init__(self, argv: list[str], env: dict, log_path: Path, cwd: Path | None = None):
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                        stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, deadline: float = STOP_DEADLINE_SECONDS) -> int:
        """Send SIGTERM, then SIGKILL if the process outlives deadline; return its status."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=deadline)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


@dataclass
class WorkerKind:
    """Which worker program the tests drive, and what differs between them."""

    name: str                 # "drover" or "prefect"
    program: Path
    venv: Path

    def require_drover(self, reason: str) -> None:
        """Skip the calling test when it checks behaviour only drover has."""
        if self.name != "drover":
            pytest.skip(f"drover-only: {reason}")

    def worker_argv(self, pool: str, name: str, pool_type: str | None,
                    queues: list[str], limit: int | None, extra: list[str]) -> list[str]:
        argv = [str(self.program), "worker", "start", "--pool", pool, "--name", name]
        if self.name == "prefect":
            # Prefect's worker needs the type to create a missing pool.
            pool_type = pool_type or "process"
        if pool_type:
            argv += ["--type", pool_type]
        for queue in queues:
            argv += ["--work-queue", queue]
        if limit is not None:
            argv += ["--limit", str(limit)]
        return argv + extra

    def default_template(self, prefect_home: Path) -> dict:
        """Return this worker's default base job template for process pools."""
        if self.name == "drover":
            return run_json([str(self.program), "template", "process"], prefect_home)
        return prefect_process_template(self.venv, prefect_home)

    def infrastructure_pid_valid(self, value: str | None) -> bool:
        """Check infrastructure_pid's form: drover writes host:pid, Prefect's worker the bare pid."""
        if not value:
            return False
        if self.name == "prefect":
            return value.isdigit()
        host, sep, pid = value.rpartition(":")
        return bool(sep) and host == socket.gethostname() and pid.isdigit()


def worker_kind() -> WorkerKind:
    """Return the worker selected by DROVER_E2E_WORKER, failing when its program is missing."""
    name = os.environ.get("DROVER_E2E_WORKER", "drover")
    venv = venv_dir()
    if name == "drover":
        program = build_dir() / "bin" / "drover"
        hint = ("build drover first (cmake -S . -B build -G Ninja && cmake --build build) "
                "or set DROVER_BUILD_DIR to the build directory")
    elif name == "prefect":
        program = venv / "bin" / "prefect"
        hint = "run scripts/install-deps.sh or set DROVER_VENV to the virtual environment"
    else:
        raise pytest.UsageError(
            f"DROVER_E2E_WORKER={name!r} is invalid: use 'drover' (the default) or 'prefect'")
    if not os.access(program, os.X_OK):
        pytest.fail(f"worker program {program} is missing or not executable: {hint}",
                    pytrace=False)
    return WorkerKind(name=name, program=program, venv=venv)


def worker_environment(api_url: str | None, prefect_home: Path, venv: Path) -> dict:
    """Return the environment a worker runs with; api_url None leaves PREFECT_API_URL unset."""
    env = clean_environment()
    if api_url is not None:
        env["PREFECT_API_URL"] = api_url
    env["PREFECT_HOME"] = str(prefect_home)
    # drover keeps its local executors' run records under XDG_RUNTIME_DIR:
    # inside the test's own folder, they go away with it.
    env["XDG_RUNTIME_DIR"] = str(prefect_home)
    env["PREFECT_WORKER_HEARTBEAT_SECONDS"] = HEARTBEAT_SECONDS
    env["PREFECT_WORKER_QUERY_SECONDS"] = QUERY_SECONDS
    # Flow run processes inherit this environment and need the venv's
    # Python with Prefect first on PATH, and drover finds its executors in
    # the build tree's bin/.
    env["PATH"] = os.pathsep.join([str(venv / "bin"), str(build_dir() / "bin"),
                                   env.get("PATH", "/usr/bin:/bin")])
    env.pop("VIRTUAL_ENV", None)
    return env


def wait_for_exit(process: ManagedProcess, deadline: float) -> int | None:
    """Wait up to deadline seconds for process to exit; return its status or None."""
    try:
        return process.process.wait(timeout=deadline)
    except subprocess.TimeoutExpired:
        return None


def run_json(argv: list[str], prefect_home: Path) -> dict:
    """Run a command that prints one JSON document and return the document."""
    env = clean_environment()
    env["PREFECT_HOME"] = str(prefect_home)
    result = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited with status {result.returncode}: "
                             f"{result.stderr}")
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError as error:
        raise AssertionError(f"{' '.join(argv)} printed invalid JSON ({error}): "
                             f"{result.stdout[:2000]}") from None


def prefect_process_template(venv: Path, prefect_home: Path) -> dict:
    """Return Prefect's own default base job template for process pools."""
    return run_json([str(venv / "bin" / "prefect"), "work-pool",
                     "get-default-base-job-template", "--type", "process"], prefect_home)
