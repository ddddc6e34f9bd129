"""drover against Prefect's own process worker on real Prefect servers.

Phases (each selectable with --phases):

  throughput  N runs scheduled at once on one pool; the worker starts after
              they exist.  Timed from the worker's registration on the server
              (the `created` time of its worker record, written by its first
              heartbeat, just before its first poll) to the last run's
              infrastructure_pid (the run's `updated` time, which the PATCH of
              infrastructure_pid is the last write to).  Both are server
              timestamps.  CPU and memory of the worker's processes are sampled
              meanwhile.
  ceiling     drover-bench-ceiling on the same batches: only the API calls a
              dispatch needs, many in flight, nothing started.
  latency     runs created one by one at random moments (exponential gaps)
              while the worker polls; latency is a run's expected start time
              (its creation) to its infrastructure_pid write.
  idle        every worker at once, each on its own empty pool of one server,
              with nothing to do: CPU seconds and memory over a window.

Each throughput and ceiling measurement gets a server of its own, started on a
copy of a database made once per batch size (one pool, one deployment, N
scheduled runs), so every worker meets the same database and no measurement
inherits the writes of the one before.  The workers run one after the other,
never at once, in an order that rotates with each repetition.  Results go to
one JSON file, rewritten after every measurement.
"""

import argparse
import json
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))

import benchlib as bl  # noqa: E402

KINDS = ["drover", "drover-lean", "prefect"]


def worker_ready(api: bl.Api, pool: str, proc: bl.Proc, deadline: float = 120) -> float | None:
    """Wait for the worker's record on the pool; return its server `created` time.

    Returns None when no record appeared: a heartbeat that met a busy server
    is retried only at the next heartbeat interval."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if not proc.running():
            raise RuntimeError(f"worker exited early; see {proc.log_path}")
        workers = api.pool_workers(pool)
        if workers:
            return min(bl.parse_time(w["created"]) for w in workers)
        time.sleep(0.2)
    return None


# ---- database snapshots ----------------------------------------------------

def make_snapshot(workdir: Path, template: dict, n: int) -> dict:
    """Create a stopped server's home with one pool, one deployment (command
    `true`) and n runs scheduled at creation, and return {home, pool,
    deployment, ids, n}."""
    home = workdir / f"snapshot-{n}"
    if home.exists():
        shutil.rmtree(home)
    server = bl.Server(home)
    api = bl.Api(server.api_url)
    try:
        pool = "bench"
        api.create_pool(pool, template)
        dep = api.create_deployment(pool)
        t0 = time.time()
        ids = api.create_runs(dep, n)
        bl.log(f"snapshot N={n}: {n} runs created in {time.time() - t0:.1f} s")
    finally:
        api.close()
        server.stop()
    # Fold the write-ahead log into the database, so the copies start alike.
    with sqlite3.connect(home / "prefect.db") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (home / "server.log").unlink(missing_ok=True)
    return {"home": str(home), "pool": pool, "deployment": dep, "ids": ids, "n": n}


class SnapshotServer:
    """A server started on a fresh copy of a snapshot; removes the copy on exit."""

    def __init__(self, snap: dict, workdir: Path, tag: str):
        self.home = workdir / bl.unique(f"server-{tag}")
        shutil.copytree(snap["home"], self.home)
        self.server = bl.Server(self.home)
        self.api = bl.Api(self.server.api_url)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.api.close()
        self.server.stop()
        # Keep the server's log, drop the database.
        shutil.copy(self.home / "server.log", str(self.home) + ".log")
        shutil.rmtree(self.home, ignore_errors=True)


# ---- throughput --------------------------------------------------------------

def throughput_once(snap, kind, workdir, query_s, deadline):
    n, pool, ids = snap["n"], snap["pool"], snap["ids"]
    with SnapshotServer(snap, workdir, f"{kind}-{n}") as srv:
        api = srv.api
        load0 = bl.loadavg()
        server0 = srv.server.cpu_seconds()
        group = bl.CpuGroup()
        name, proc = bl.start_worker(kind, api.url, pool, workdir, query_s, group=group)
        sampler = bl.Sampler(proc.pid, 0.5)
        sampler.start()
        try:
            # No stall rule: under load Prefect's worker may need a minute
            # before its first infrastructure_pid.
            end = api.wait_pids(ids, deadline, snap["deployment"], stall=deadline)
            t_end = time.time()
            server_cpu = srv.server.cpu_seconds() - server0
            group_cpu = group.usage()
            t_ready = worker_ready(api, pool, proc, 5)
            if t_ready is None:
                # No worker record yet: time from the process start instead.
                t_ready = proc.started
        finally:
            sampler.stop()
            proc.stop()
            group.remove()
        runs = api.runs(ids)
    with_pid = [r for r in runs if r.get("infrastructure_pid")]
    # Runs the worker gave up on (crashed) count as settled, at their last write.
    settled = [r for r in runs if r.get("infrastructure_pid") or r.get("state_type") in bl.FINAL_STATES]
    # With nothing settled, the measurement ran until the deadline.
    t_done = max(bl.parse_time(r["updated"]) for r in settled) if settled else t_end
    result = {
        "kind": kind, "n": n, "complete": end == "complete" and len(with_pid) == n,
        "end": end,
        "with_pid": len(with_pid),
        "crashed": sum(1 for r in runs if not r.get("infrastructure_pid")
                       and r.get("state_type") in bl.FINAL_STATES),
        "seconds_from_ready": t_done - t_ready,
        "seconds_from_process_start": t_done - proc.started,
        "startup_seconds": t_ready - proc.started,
        "footprint": sampler.window(proc.started, t_done),
        "footprint_dispatch": sampler.window(t_ready, t_done),
        "log": str(proc.log_path),
        "loadavg_before": load0, "loadavg_after": bl.loadavg(),
        "server_cpu_s": server_cpu,
        "cgroup_cpu_s": group_cpu,
    }
    # A rate over the runs that settled, so a measurement cut by the deadline
    # still gives one.
    result["runs_per_second"] = len(settled) / result["seconds_from_ready"]
    bl.log(f"{kind} N={n}: {result['runs_per_second']:.1f} runs/s "
           f"({result['seconds_from_ready']:.2f} s from registration, {len(settled)}/{n} settled), "
           f"cpu {result['footprint']['cpu_s']:.2f} s, server cpu {server_cpu:.1f} s, "
           f"rss peak {result['footprint']['rss_peak'] / 2**20:.1f} MiB")
    return result


def ceiling_once(snap, workdir, concurrency, ceiling_bin, deadline):
    n, ids = snap["n"], snap["ids"]
    with SnapshotServer(snap, workdir, f"ceiling-{n}") as srv:
        argv = [str(ceiling_bin), "--api", srv.api.url, "--pool", snap["pool"], "--runs", str(n),
                "--concurrency", str(concurrency), "--deadline", str(deadline), "--deployment"]
        server0 = srv.server.cpu_seconds()
        out = subprocess.run(argv, capture_output=True, text=True, timeout=deadline + 60)
        server_cpu = srv.server.cpu_seconds() - server0
        res = json.loads(out.stdout)
        runs = srv.api.runs(ids)
    with_pid = [r for r in runs if r.get("infrastructure_pid")]
    t_done = max(bl.parse_time(r["updated"]) for r in with_pid) if with_pid else float("nan")
    res.update({"kind": "ceiling", "n": n, "with_pid": len(with_pid), "server_cpu_s": server_cpu,
                "seconds_server": t_done - res["first_poll"],
                "loadavg_after": bl.loadavg()})
    res["runs_per_second_server"] = len(with_pid) / res["seconds_server"]
    bl.log(f"ceiling N={n} c={concurrency}: {res['runs_per_second_server']:.1f} runs/s, "
           f"{res['retried_errors']} retried, server cpu {server_cpu:.1f} s")
    return res


def phase_throughput(template, workdir, sizes, reps, query_s, deadline, ceiling, save):
    """ceiling: (binary, concurrency) to measure the ceiling client in each
    repetition too, or None."""
    out = {"throughput": [], "ceiling": {"concurrency": ceiling[1] if ceiling else None,
                                         "runs": []}}
    kinds = KINDS + (["ceiling"] if ceiling else [])
    for n in sizes:
        snap = make_snapshot(workdir, template, n)
        for rep in range(reps):
            # Rotate the order, so drift of the machine's load spreads over all kinds.
            order = kinds[rep % len(kinds):] + kinds[:rep % len(kinds)]
            for kind in order:
                if kind == "ceiling":
                    res = ceiling_once(snap, workdir, ceiling[1], ceiling[0], deadline)
                    res["rep"] = rep
                    out["ceiling"]["runs"].append(res)
                else:
                    res = throughput_once(snap, kind, workdir, query_s, deadline)
                    res["rep"] = rep
                    out["throughput"].append(res)
                save(out)
        shutil.rmtree(snap["home"], ignore_errors=True)
    return out


# ---- pickup latency and idle footprint on one shared server -----------------

def phase_latency(api, template, workdir, reps, count, mean_gap, query_s, seed):
    out = []
    kinds = [k for k in KINDS if k != "drover-lean"]   # polls and claims as drover does
    for rep in range(reps):
        order = kinds if rep % 2 == 0 else list(reversed(kinds))
        for kind in order:
            rng = random.Random(seed + rep)
            pool = bl.unique(f"lat-{kind}")
            api.create_pool(pool, template)
            dep = api.create_deployment(pool)
            name, proc = bl.start_worker(kind, api.url, pool, workdir, query_s)
            try:
                if worker_ready(api, pool, proc) is None:
                    bl.log(f"{kind}: no worker record after 120 s; measuring anyway")
                time.sleep(3)
                ids = []
                for _ in range(count):
                    time.sleep(rng.expovariate(1.0 / mean_gap))
                    ids.append(api.create_run(dep))
                ok = api.wait_pids(ids, 300, dep) == "complete"
            finally:
                proc.stop()
            lat = []
            for r in api.runs(ids):
                if r.get("infrastructure_pid") and r.get("expected_start_time"):
                    lat.append(bl.parse_time(r["updated"]) - bl.parse_time(r["expected_start_time"]))
            lat.sort()
            res = {"kind": kind, "rep": rep, "count": count,
                   "complete": ok and len(lat) == count,
                   "query_seconds": query_s, "latencies": lat, "log": str(proc.log_path)}
            bl.log(f"{kind} latency rep {rep}: p50 {percentile(lat, 50):.3f} s "
                   f"p95 {percentile(lat, 95):.3f} s p99 {percentile(lat, 99):.3f} s")
            out.append(res)
    return out


def phase_idle(api, template, workdir, settle, window):
    """All workers at once, each on its own pool: idle workers load the server
    too little to disturb each other, and the window is spent once."""
    kinds = [k for k in KINDS if k != "drover-lean"]   # idle, it is drover
    workers = []
    try:
        for kind in kinds:
            pool = bl.unique(f"idle-{kind}")
            api.create_pool(pool, template)
            # Out-of-the-box polling: 10 s between polls, 30 s between heartbeats.
            group = bl.CpuGroup()
            name, proc = bl.start_worker(kind, api.url, pool, workdir, 10, group=group)
            sampler = bl.Sampler(proc.pid, 1.0)
            sampler.start()
            workers.append((kind, pool, group, proc, sampler))
        for kind, pool, group, proc, sampler in workers:
            worker_ready(api, pool, proc)   # None is fine: only the settling matters
        time.sleep(settle)
        g0 = [w[2].usage() for w in workers]
        t0 = time.time()
        time.sleep(window)
        t1 = time.time()
        g1 = [w[2].usage() for w in workers]
    finally:
        for kind, pool, group, proc, sampler in workers:
            sampler.stop()
            proc.stop()
            group.remove()
    out = []
    for (kind, pool, group, proc, sampler), a, b in zip(workers, g0, g1):
        res = {"kind": kind, "window_seconds": window,
               "cgroup_cpu_s": b - a if a is not None and b is not None else None,
               "cgroup_startup_cpu_s": a,
               "startup": sampler.window(proc.started, t0),
               "idle": sampler.window(t0, t1), "log": str(proc.log_path)}
        bl.log(f"{kind} idle: cpu {res['idle']['cpu_s']:.2f} s in {window} s, "
               f"rss {res['idle']['rss_mean'] / 2**20:.1f} MiB "
               f"pss {res['idle']['pss_mean'] / 2**20:.1f} MiB")
        out.append(res)
    return out


def percentile(values, p):
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def main():
    # On SIGTERM, unwind so that the finally blocks stop the workers and servers started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    ap.add_argument("--phases", default="idle,throughput,latency",
                    help="comma list of idle, throughput, latency (ceiling goes with throughput)")
    ap.add_argument("--sizes", default="100,500,2000", help="throughput batch sizes")
    ap.add_argument("--reps", type=int, default=5, help="repetitions of each measurement")
    ap.add_argument("--query-seconds", type=float, default=1.0,
                    help="PREFECT_WORKER_QUERY_SECONDS of the workers in throughput and latency")
    ap.add_argument("--latency-runs", type=int, default=20, help="runs per latency repetition")
    ap.add_argument("--latency-mean-gap", type=float, default=1.0,
                    help="mean gap between created runs, seconds")
    ap.add_argument("--idle-settle", type=float, default=15,
                    help="seconds between start-up and the idle window")
    ap.add_argument("--idle-window", type=float, default=300, help="idle window, seconds")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ceiling-bin", type=Path,
                    help="drover-bench-ceiling; without it the ceiling is not measured")
    ap.add_argument("--ceiling-concurrency", type=int, default=16,
                    help="requests the ceiling client keeps in flight")
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help="workers to measure: drover, drover-lean, prefect")
    ap.add_argument("--workdir", type=Path, help="scratch folder (default: a new temporary one)")
    ap.add_argument("--deadline", type=float, default=120,
                    help="maximum duration of a throughput measurement, seconds; a cut measurement's "
                         "rate is over the runs that settled")
    args = ap.parse_args()
    KINDS[:] = args.kinds.split(",")

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="drover-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = {"started": time.time(), "query_seconds": args.query_seconds,
               "workdir": str(workdir), "reps": args.reps, "deadline": args.deadline}
    template = bl.prefect_process_template()
    phases = args.phases.split(",")
    # Throughput first: it matters most, and a run cut short keeps it.
    if "throughput" in phases:
        def save(partial):
            results.update(partial)
            bl.write_json(args.out, results)
        ceiling = (args.ceiling_bin, args.ceiling_concurrency) if args.ceiling_bin else None
        save(phase_throughput(template, workdir, [int(s) for s in args.sizes.split(",")],
                              args.reps, args.query_seconds, args.deadline, ceiling, save))
    if "idle" in phases or "latency" in phases:
        server = bl.Server(workdir / "server-shared")
        api = bl.Api(server.api_url)
        try:
            if "latency" in phases:
                results["latency"] = phase_latency(api, template, workdir, args.reps,
                                                   args.latency_runs, args.latency_mean_gap,
                                                   args.query_seconds, args.seed)
                bl.write_json(args.out, results)
            if "idle" in phases:
                results["idle"] = phase_idle(api, template, workdir, args.idle_settle,
                                             args.idle_window)
                bl.write_json(args.out, results)
        finally:
            api.close()
            server.stop()
    results["finished"] = time.time()
    bl.write_json(args.out, results)
    json.dump({"out": str(args.out)}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
