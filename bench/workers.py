"""drover against Prefect's own process worker on one Prefect server.

Phases (each selectable with --phases):

  throughput  N runs scheduled at once on a fresh pool; the worker starts after
              they exist.  Timed from the worker's registration on the server
              (the `created` time of its worker record, written by its first
              heartbeat, just before its first poll) to the last run's
              infrastructure_pid (the run's `updated` time, which the PATCH of
              infrastructure_pid is the last write to).  Both are server
              timestamps.  CPU and memory of the worker's processes are sampled
              meanwhile.
  latency     runs created one by one at random moments (exponential gaps)
              while the worker polls; latency is a run's expected start time
              (its creation) to its infrastructure_pid write.
  idle        a worker with nothing to do: CPU seconds and memory over a window.

The two workers run one after the other, never at once.  Each repetition and
each worker gets its own pool and deployment.  Results go to one JSON file.
"""

import argparse
import json
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))

import benchlib as bl  # noqa: E402

KINDS = ["drover", "prefect"]
LARGE = 2000       # batch size from which --reps-large applies
DEADLINE = 600.0   # longest wait for one throughput measurement, seconds
SERVER_PID = 0   # when known, the server's CPU seconds are recorded per measurement


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


def throughput_once(api, template, kind, n, workdir, query_s):
    pool = bl.unique(f"tp-{kind}-{n}")
    api.create_pool(pool, template)
    dep = api.create_deployment(pool)
    t0 = time.time()
    ids = api.create_runs(dep, n)
    bl.log(f"{kind} N={n}: {n} runs created in {time.time() - t0:.1f} s; starting worker")
    load0 = bl.loadavg()
    server0 = bl.cpu_seconds(SERVER_PID) if SERVER_PID else None
    group = bl.CpuGroup()
    name, proc = bl.start_worker(kind, api.url, pool, workdir, query_s, group=group)
    sampler = bl.Sampler(proc.pid, 0.5)
    sampler.start()
    try:
        ok = api.wait_pids(ids, DEADLINE, dep)
        server_cpu = bl.cpu_seconds(SERVER_PID) - server0 if SERVER_PID else None
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
    t_done = max(bl.parse_time(r["updated"]) for r in settled) if settled else float("nan")
    result = {
        "kind": kind, "n": n, "complete": ok == "complete" and len(with_pid) == n,
        "end": ok,
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
           f"({result['seconds_from_ready']:.2f} s from registration), "
           f"cpu {result['footprint']['cpu_s']:.2f} s, "
           f"rss peak {result['footprint']['rss_peak'] / 2**20:.1f} MiB")
    return result


def phase_throughput(api, template, workdir, sizes, reps, reps_large, query_s, save):
    out = []
    for n in sizes:
        r_count = reps_large if n >= LARGE else reps
        for rep in range(r_count):
            # Alternate which worker goes first, to spread any drift of the server.
            order = KINDS if rep % 2 == 0 else list(reversed(KINDS))
            for kind in order:
                res = throughput_once(api, template, kind, n, workdir, query_s)
                res["rep"] = rep
                out.append(res)
                save(out)
    return out


def ceiling_once(api, template, n, concurrency, with_deployment, ceiling_bin):
    pool = bl.unique(f"ceil-{n}")
    api.create_pool(pool, template)
    dep = api.create_deployment(pool)
    ids = api.create_runs(dep, n)
    argv = [str(ceiling_bin), "--api", api.url, "--pool", pool, "--runs", str(n),
            "--concurrency", str(concurrency), "--deadline", str(DEADLINE)]
    if with_deployment:
        argv.append("--deployment")
    server0 = bl.cpu_seconds(SERVER_PID) if SERVER_PID else None
    out = subprocess.run(argv, capture_output=True, text=True, timeout=DEADLINE + 60)
    server_cpu = bl.cpu_seconds(SERVER_PID) - server0 if SERVER_PID else None
    res = json.loads(out.stdout)
    runs = api.runs(ids)
    with_pid = [r for r in runs if r.get("infrastructure_pid")]
    t_done = max(bl.parse_time(r["updated"]) for r in with_pid) if with_pid else float("nan")
    res.update({"n": n, "with_pid": len(with_pid), "server_cpu_s": server_cpu,
                "seconds_server": t_done - res["first_poll"],
                "loadavg_after": bl.loadavg()})
    res["runs_per_second_server"] = len(with_pid) / res["seconds_server"]
    bl.log(f"ceiling N={n} c={concurrency} dep={with_deployment}: "
           f"{res['runs_per_second_server']:.1f} runs/s, {res['retried_errors']} retried")
    return res


def phase_ceiling(api, template, sizes, reps, reps_large, concurrencies, ceiling_bin):
    """First the concurrency that serves best on a mid-size batch, then the
    repetitions at it."""
    out = {"sweep": [], "runs": []}
    best, best_rate = concurrencies[0], -1.0
    if len(concurrencies) > 1:
        for c in concurrencies:
            res = ceiling_once(api, template, 300, c, True, ceiling_bin)
            out["sweep"].append(res)
            if res["runs_per_second_server"] > best_rate:
                best, best_rate = c, res["runs_per_second_server"]
    out["concurrency"] = best
    for n in sizes:
        for rep in range(reps_large if n >= LARGE else reps):
            res = ceiling_once(api, template, n, best, True, ceiling_bin)
            res["rep"] = rep
            out["runs"].append(res)
    return out


def phase_latency(api, template, workdir, count, mean_gap, query_s, seed):
    out = []
    for kind in KINDS:
        rng = random.Random(seed)
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
        res = {"kind": kind, "count": count, "complete": ok and len(lat) == count,
               "query_seconds": query_s, "latencies": lat, "log": str(proc.log_path)}
        bl.log(f"{kind} latency: p50 {percentile(lat, 50):.3f} s "
               f"p95 {percentile(lat, 95):.3f} s p99 {percentile(lat, 99):.3f} s")
        out.append(res)
    return out


def phase_idle(api, template, workdir, settle, window):
    out = []
    for kind in KINDS:
        pool = bl.unique(f"idle-{kind}")
        api.create_pool(pool, template)
        # Out-of-the-box polling: 10 s between polls, 30 s between heartbeats.
        group = bl.CpuGroup()
        name, proc = bl.start_worker(kind, api.url, pool, workdir, 10, group=group)
        sampler = bl.Sampler(proc.pid, 1.0)
        sampler.start()
        try:
            worker_ready(api, pool, proc)   # None is fine: only the settling matters
            time.sleep(settle)
            g0 = group.usage()
            t0 = time.time()
            time.sleep(window)
            t1 = time.time()
            g1 = group.usage()
        finally:
            sampler.stop()
            proc.stop()
            group.remove()
        res = {"kind": kind, "window_seconds": window,
               "cgroup_cpu_s": g1 - g0 if g0 is not None and g1 is not None else None,
               "cgroup_startup_cpu_s": g0,
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
    # On SIGTERM, unwind so that the finally blocks stop the workers started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    ap.add_argument("--api-url", help="use this running server instead of starting one")
    ap.add_argument("--phases", default="idle,throughput,latency")
    ap.add_argument("--sizes", default="100,500,2000")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--reps-large", type=int, default=2, help="repetitions of N >= --large")
    ap.add_argument("--large", type=int, default=2000, help="smallest N counted as large")
    ap.add_argument("--query-seconds", type=float, default=1.0,
                    help="PREFECT_WORKER_QUERY_SECONDS of both workers in throughput and latency")
    ap.add_argument("--latency-runs", type=int, default=100)
    ap.add_argument("--latency-mean-gap", type=float, default=0.6)
    ap.add_argument("--idle-settle", type=float, default=15)
    ap.add_argument("--idle-window", type=float, default=120)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ceiling-bin", type=Path, help="drover-bench-ceiling, for the ceiling phase")
    ap.add_argument("--ceiling-sizes", help="batch sizes for the ceiling (default: --sizes)")
    ap.add_argument("--ceiling-concurrency", default="4,8,16",
                    help="concurrencies tried on 300 runs; the best is used for the repetitions")
    ap.add_argument("--kinds", default="drover,prefect",
                    help="workers to measure: drover, prefect, drover-default")
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--deadline", type=float, default=600,
                    help="longest throughput measurement; the rate is then over the runs settled")
    ap.add_argument("--server-pid", type=int, default=0, help="pid of the server at --api-url")
    args = ap.parse_args()
    global SERVER_PID, DEADLINE, LARGE
    DEADLINE = args.deadline
    LARGE = args.large
    KINDS[:] = args.kinds.split(",")

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="drover-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    server = None
    if args.api_url:
        api_url = args.api_url
    else:
        server = bl.Server(workdir / "server")
        api_url = server.api_url
        args.server_pid = server.proc.pid
    SERVER_PID = args.server_pid
    api = bl.Api(api_url)
    results = {"started": time.time(), "query_seconds": args.query_seconds,
               "workdir": str(workdir)}
    try:
        template = bl.prefect_process_template()
        phases = args.phases.split(",")
        if "idle" in phases:
            results["idle"] = phase_idle(api, template, workdir, args.idle_settle,
                                         args.idle_window)
            bl.write_json(args.out, results)
        if "throughput" in phases:
            sizes = [int(s) for s in args.sizes.split(",")]
            def save(partial):
                results["throughput"] = partial
                bl.write_json(args.out, results)
            results["throughput"] = phase_throughput(api, template, workdir, sizes, args.reps,
                                                     args.reps_large, args.query_seconds, save)
            bl.write_json(args.out, results)
        if "ceiling" in phases:
            results["ceiling"] = phase_ceiling(
                api, template, [int(x) for x in (args.ceiling_sizes or args.sizes).split(",")],
                args.reps,
                args.reps_large, [int(c) for c in args.ceiling_concurrency.split(",")],
                args.ceiling_bin)
            bl.write_json(args.out, results)
        if "latency" in phases:
            results["latency"] = phase_latency(api, template, workdir, args.latency_runs,
                                               args.latency_mean_gap, args.query_seconds,
                                               args.seed)
        results["finished"] = time.time()
        bl.write_json(args.out, results)
    finally:
        api.close()
        if server:
            server.stop()
    json.dump({"out": str(args.out)}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
