"""Shared pieces of the worker benchmarks: a Prefect server, its API, workers, /proc.

Every time the benchmarks report about a flow run comes from the server's own
records (state timestamps, the run's `updated` column), so the client that
watches progress cannot skew them; the client only polls slowly to learn when
a measurement is over.  The worker processes are sampled through /proc.
"""

import asyncio
import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx

SOURCE_DIR = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("DROVER_VENV", SOURCE_DIR / ".venv"))
BUILD = Path(os.environ.get("DROVER_BUILD_DIR", SOURCE_DIR / "build-bench"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
FINAL_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env() -> dict:
    """This environment without any Prefect setting, so none of the user's leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["DO_NOT_TRACK"] = "1"
    env.pop("VIRTUAL_ENV", None)
    return env


def parse_time(text: str) -> float:
    """Server timestamp (ISO 8601, UTC) to seconds since the epoch."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat()


CPUACCT = Path("/sys/fs/cgroup/cpuacct")


class CpuGroup:
    """A cpuacct cgroup (v1) holding a worker and everything it ever starts.

    Catches CPU that sampling the process tree misses: processes that leave
    the tree (drover's per-run monitors are re-parented to init) and short
    children.  It also counts the flow-run processes, alike for both workers.
    Unavailable (usage() is None) when the hierarchy is missing or read-only."""

    def __init__(self):
        self.path = CPUACCT / unique("drover-bench")
        try:
            self.path.mkdir()
        except OSError:
            self.path = None

    def join_self(self) -> None:
        """Moves the calling process in; runs in the child before exec."""
        if self.path is not None:
            with open(self.path / "cgroup.procs", "w") as f:
                f.write(str(os.getpid()))

    def usage(self):
        if self.path is None:
            return None
        try:
            return int((self.path / "cpuacct.usage").read_text()) / 1e9
        except OSError:
            return None

    def remove(self) -> None:
        if self.path is None:
            return
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


class Proc:
    """A child process whose output goes to a log file; stop() is SIGTERM then SIGKILL."""

    def __init__(self, argv, env, log_path: Path, cwd=None, group: CpuGroup | None = None):
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.started = time.time()
        self.p = subprocess.Popen(self.argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                  stdout=self._log, stderr=subprocess.STDOUT,
                                  start_new_session=True,
                                  preexec_fn=group.join_self if group else None)

    @property
    def pid(self) -> int:
        return self.p.pid

    def running(self) -> bool:
        return self.p.poll() is None

    def stop(self, deadline: float = 30.0) -> int:
        if self.running():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=deadline)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self._log.close()
        return self.p.returncode


class Server:
    """One `prefect server start` on a free loopback port with SQLite in home."""

    def __init__(self, home: Path):
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}/api"
        env = clean_env()
        env.update({
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL":
                f"sqlite+aiosqlite:///{(home / 'prefect.db').resolve()}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
            # Runs of a snapshot were scheduled minutes before a measurement
            # starts; marking them Late would add a write per run to it.
            "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
        })
        self.proc = Proc([VENV / "bin" / "prefect", "server", "start", "--host", "127.0.0.1",
                          "--port", port], env, home / "server.log", cwd=home)
        end = time.monotonic() + 180
        while True:
            if not self.proc.running():
                raise RuntimeError(f"prefect server exited; see {home / 'server.log'}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > end:
                self.proc.stop()
                raise RuntimeError("prefect server did not become healthy in 180 s")
            time.sleep(0.5)
        log(f"prefect server pid {self.proc.pid} at {self.api_url}")

    def stop(self) -> None:
        self.proc.stop()

    def cpu_seconds(self) -> float:
        """CPU seconds of the server's process tree so far."""
        return sum(cpu_seconds(pid) for pid in worker_tree(self.proc.pid))


class Api:
    """The few REST calls the benchmarks make."""

    def __init__(self, api_url: str):
        self.url = api_url.rstrip("/")
        self.http = httpx.Client(base_url=self.url + "/", timeout=60)

    def call(self, method, path, **kw):
        # SQLite answers 503 while another writer holds it; clients are meant to retry.
        for attempt in range(30):
            try:
                r = self.http.request(method, path.lstrip("/"), **kw)
            except httpx.TransportError:
                if attempt == 29:
                    raise
                time.sleep(0.1)
                continue
            if r.status_code != 503:
                break
            time.sleep(0.05 * (attempt + 1))
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:500]}")
        return r.json() if r.content else None

    def create_pool(self, name: str, template: dict) -> dict:
        return self.call("POST", "/work_pools/", json={
            "name": name, "type": "process", "base_job_template": template})

    def create_deployment(self, pool: str, command: str = "true") -> str:
        flow = self.call("POST", "/flows/", json={"name": "bench-flow"})
        dep = self.call("POST", "/deployments/", json={
            "name": unique("bench"), "flow_id": flow["id"], "work_pool_name": pool,
            "entrypoint": "flows.py:noop", "job_variables": {"command": command},
            "parameters": {}, "enforce_parameter_schema": False})
        return dep["id"]

    def create_runs(self, deployment_id: str, n: int, concurrency: int = 1) -> list[str]:
        """Create n runs of the deployment, scheduled now.

        One request at a time by default: concurrent inserts make SQLite
        answer 503 and the retries cost more than they save.

        POST /flow_runs/ costs the server less than the deployment's
        create_flow_run; the workers read the deployment either way."""
        dep = self.call("GET", f"/deployments/{deployment_id}")
        body = {"flow_id": dep["flow_id"], "deployment_id": deployment_id,
                "work_pool_name": dep["work_pool_name"], "state": {"type": "SCHEDULED"}}

        async def go():
            sem = asyncio.Semaphore(concurrency)
            async with httpx.AsyncClient(base_url=self.url + "/", timeout=120) as client:
                async def one():
                    async with sem:
                        # SQLite answers 503 when it is busy; the API clients retry too.
                        for attempt in range(30):
                            try:
                                r = await client.post("flow_runs/", json=body)
                            except httpx.TransportError:
                                # The server may drop a kept-alive connection.
                                await asyncio.sleep(0.1)
                                continue
                            if r.status_code != 503:
                                break
                            await asyncio.sleep(0.05 * (attempt + 1))
                        r.raise_for_status()
                        return r.json()["id"]
                return await asyncio.gather(*(one() for _ in range(n)))
        return asyncio.run(go())

    def create_run(self, deployment_id: str) -> str:
        return self.call("POST", f"/deployments/{deployment_id}/create_flow_run", json={})["id"]

    def runs(self, ids: list[str]) -> list[dict]:
        out = []
        for i in range(0, len(ids), 200):
            chunk = ids[i:i + 200]
            out += self.call("POST", "/flow_runs/filter", json={
                "flow_runs": {"id": {"any_": chunk}}, "limit": len(chunk)})
        return out

    def count_scheduled(self, deployment_id: str) -> int:
        return self.call("POST", "/flow_runs/count", json={
            "deployments": {"id": {"any_": [deployment_id]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}})

    def pool_workers(self, pool: str) -> list[dict]:
        return self.call("POST", f"/work_pools/{pool}/workers/filter", json={})

    def wait_pids(self, ids: list[str], deadline: float, deployment_id: str,
                  stall: float = 60.0) -> str:
        """Poll slowly until every run has an infrastructure_pid or ended without one.

        Asks only about runs not yet settled, and only once fewer than a page
        are left Scheduled, so the watching adds little load to the server.
        Returns "complete", "deadline", or "stalled" when nothing settled for
        `stall` seconds (a worker that lost a run)."""
        left = set(ids)
        start = time.monotonic()
        progress = start
        while left:
            now = time.monotonic()
            if now - start > deadline:
                return "deadline"
            if now - progress > stall:
                return "stalled"
            time.sleep(1.0)
            if len(left) > 200 and self.count_scheduled(deployment_id) > 200:
                progress = time.monotonic()   # still claiming
                continue
            for run in self.runs(sorted(left)[:200]):
                if run.get("infrastructure_pid") or run.get("state_type") in FINAL_STATES:
                    left.discard(run["id"])
                    progress = time.monotonic()
        return "complete"

    def close(self):
        self.http.close()


# ---- worker processes ------------------------------------------------------

def prefect_process_template() -> dict:
    env = clean_env()
    env["PREFECT_HOME"] = "/tmp/drover-bench-template-home"
    out = subprocess.run([str(VENV / "bin" / "prefect"), "work-pool",
                          "get-default-base-job-template", "--type", "process"],
                         env=env, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


def worker_env(api_url: str, home: Path, query_s: float, heartbeat_s: float = 30) -> dict:
    env = clean_env()
    env["PREFECT_API_URL"] = api_url
    env["PREFECT_HOME"] = str(home)
    env["PREFECT_WORKER_QUERY_SECONDS"] = str(query_s)
    env["PREFECT_WORKER_HEARTBEAT_SECONDS"] = str(heartbeat_s)
    env["PREFECT_WORKER_PREFETCH_SECONDS"] = "10"
    env["PATH"] = os.pathsep.join([str(VENV / "bin"), str(BUILD / "bin"),
                                   env.get("PATH", "/usr/bin:/bin")])
    return env


def worker_argv(kind: str, pool: str, name: str, limit: int, extra=()) -> list:
    """kind: prefect, drover (as installed) or drover-lean (drover without the
    two optional writes per run: worker labels and the Submitting state)."""
    if kind == "drover":
        prog = BUILD / "bin" / "drover"
    elif kind == "drover-lean":
        prog = BUILD / "bin" / "drover"
        extra = ["--no-run-labels", "--no-submitting-state", *extra]
    else:
        prog = VENV / "bin" / "prefect"
    return [prog, "worker", "start", "--pool", pool, "--name", name, "--type", "process",
            "--limit", str(limit), *extra]


def start_worker(kind, api_url, pool, workdir: Path, query_s, limit=100000, extra=(),
                 group: CpuGroup | None = None):
    name = unique(kind)
    home = workdir / f"home-{name}"
    home.mkdir(parents=True)
    env = worker_env(api_url, home, query_s)
    if kind.startswith("drover"):
        env["XDG_RUNTIME_DIR"] = str(home)   # executor state stays in the temp dir
    return name, Proc(worker_argv(kind, pool, name, limit, extra), env,
                      workdir / f"{name}.log", cwd=home, group=group)


# ---- /proc ----------------------------------------------------------------

def _stat(pid: int):
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    f = text[text.rindex(")") + 2:].split()
    # f[0] is field 3 (state); utime is field 14 -> f[11]
    return {"comm": comm, "state": f[0], "ppid": int(f[1]),
            "utime": int(f[11]), "stime": int(f[12]), "cutime": int(f[13]),
            "cstime": int(f[14]), "rss": int(f[21]) * PAGE}


def _pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def cpu_seconds(pid: int) -> float:
    """utime+stime of one process (not its children)."""
    s = _stat(pid)
    return (s["utime"] + s["stime"]) / CLK_TCK if s else float("nan")


def worker_tree(root: int) -> list[int]:
    """root and its live descendants, minus flow-run processes (the `true` command)."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            s = _stat(int(entry))
            if s and s["state"] != "Z":
                stats[int(entry)] = s
    kids = {}
    for pid, s in stats.items():
        kids.setdefault(s["ppid"], []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid not in stats:
            continue
        if pid != root and stats[pid]["comm"] == "true":
            continue
        out.append(pid)
        todo += kids.get(pid, [])
    return out


def sample(root: int) -> dict:
    """CPU seconds and memory of the worker tree now."""
    cpu = cpu_children = rss = pss = 0
    n = 0
    for pid in worker_tree(root):
        s = _stat(pid)
        if s is None:
            continue
        n += 1
        cpu += s["utime"] + s["stime"]
        cpu_children += s["cutime"] + s["cstime"]
        rss += s["rss"]
        pss += _pss(pid)
    return {"t": time.time(), "procs": n, "cpu_s": cpu / CLK_TCK,
            "cpu_with_children_s": (cpu + cpu_children) / CLK_TCK,
            "rss": rss, "pss": pss}


class Sampler(threading.Thread):
    """Samples a worker tree every interval seconds until stop()."""

    def __init__(self, root: int, interval: float = 0.5):
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.samples = []
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            self.samples.append(sample(self.root))
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join()
        self.samples.append(sample(self.root))

    def window(self, t0: float, t1: float) -> dict:
        """CPU used and memory held between two moments (nearest samples)."""
        inside = [s for s in self.samples if t0 - self.interval <= s["t"] <= t1 + self.interval]
        if len(inside) < 2:
            inside = self.samples[-2:]
        first, last = inside[0], inside[-1]
        return {
            "cpu_s": last["cpu_s"] - first["cpu_s"],
            "cpu_with_children_s": last["cpu_with_children_s"] - first["cpu_with_children_s"],
            "rss_peak": max(s["rss"] for s in inside),
            "rss_mean": sum(s["rss"] for s in inside) / len(inside),
            "pss_peak": max(s["pss"] for s in inside),
            "pss_mean": sum(s["pss"] for s in inside) / len(inside),
            "procs_max": max(s["procs"] for s in inside),
            "seconds": last["t"] - first["t"],
        }


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
