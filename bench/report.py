"""Summarise one bench/run-all.sh result folder as Markdown tables.

    report.py RESULTS_DIR [IDLE_JSON] > summary.md

IDLE_JSON, when given, is a workers.json of another run whose idle phase
replaces this run's (for a run made without the idle phase).

Every number printed comes from the JSON files in RESULTS_DIR.  Cells are
"median (min-max)" over the repetitions; ratios compare medians.
"""

import json
import statistics
import sys
from pathlib import Path

MIB = 2 ** 20


def load(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def mmm(values, fmt="{:.1f}"):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med) + " (1 run)"
    return f"{fmt.format(med)} ({fmt.format(min(values))}-{fmt.format(max(values))}, {len(values)} runs)"


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b, fmt="{:.2f}"):
    return fmt.format(a / b) if a is not None and b else "n/a"


def pct(values, p):
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


KINDS = ["drover", "drover-lean", "prefect"]


def throughput(w):
    rows = w.get("throughput", [])
    ceiling = w.get("ceiling", {})
    out = ["## Dispatch throughput", "",
           "Runs per second from the worker's registration to the last infrastructure_pid "
           "(server timestamps); CPU seconds of the worker's own processes over the whole "
           "measurement (start included), and of its cgroup (everything it started, the "
           "`true` runs included); the server's CPU seconds per settled run; peak RSS of the "
           "worker's processes.", "",
           "| N | worker | runs/s | complete | worker CPU s | cgroup CPU s | server CPU ms per run | peak RSS MiB | startup s |",
           "|---|---|---|---|---|---|---|---|---|"]
    sizes = sorted({r["n"] for r in rows} | {c["n"] for c in ceiling.get("runs", [])})
    for n in sizes:
        for kind in KINDS:
            rs = [r for r in rows if r["n"] == n and r["kind"] == kind]
            if not rs:
                continue
            done = sum(1 for r in rs if r["complete"])
            out.append(
                f"| {n} | {kind} | {mmm([rate(r) for r in rs])} | {done}/{len(rs)} "
                f"| {mmm([cpu(r) for r in rs], '{:.2f}')} "
                f"| {mmm([r.get('cgroup_cpu_s') for r in rs], '{:.2f}')} "
                f"| {mmm([server_ms_per_run(r, r['with_pid'] + r['crashed']) for r in rs], '{:.0f}')} "
                f"| {mmm([r['footprint']['rss_peak'] / MIB for r in rs])} "
                f"| {mmm([r['startup_seconds'] for r in rs], '{:.2f}')} |")
        cs = [c for c in ceiling.get("runs", []) if c["n"] == n]
        if cs:
            out.append(f"| {n} | ceiling (c={ceiling.get('concurrency')}) "
                       f"| {mmm([c['runs_per_second_server'] for c in cs])} "
                       f"| {sum(1 for c in cs if c['with_pid'] == n)}/{len(cs)} | | "
                       f"| {mmm([server_ms_per_run(c, c['with_pid']) for c in cs], '{:.0f}')} | | |")
    out += ["", "Incomplete measurements ended at the deadline; their rate is over the runs "
            "that settled by then (0 when none did), and their worker CPU is left out when "
            "none did.", "",
            "Ratios of medians:", "",
            "| N | worker | runs/s / Prefect | runs/s / ceiling | worker CPU per run / Prefect | peak RSS / Prefect |",
            "|---|---|---|---|---|---|"]
    for n in sizes:
        p = [r for r in rows if r["n"] == n and r["kind"] == "prefect"]
        cs = [c for c in ceiling.get("runs", []) if c["n"] == n]
        pr = med([rate(r) for r in p])
        cr = med([c["runs_per_second_server"] for c in cs])
        pcpu = med([cpu(r) / r["with_pid"] for r in p if cpu(r) and r["with_pid"]])
        prss = med([r["footprint"]["rss_peak"] for r in p])
        for kind in ("drover", "drover-lean"):
            d = [r for r in rows if r["n"] == n and r["kind"] == kind]
            if not d:
                continue
            dr = med([rate(r) for r in d])
            dcpu = med([cpu(r) / r["with_pid"] for r in d if cpu(r) and r["with_pid"]])
            drss = med([r["footprint"]["rss_peak"] for r in d])
            times = ratio(dr, pr)
            out.append(f"| {n} | {kind} | {times + 'x' if times != 'n/a' else 'n/a (Prefect: 0 runs/s)'} "
                       f"| {ratio(dr * 100 if dr else None, cr, '{:.0f}')}% "
                       f"| {ratio(dcpu * 100 if dcpu else None, pcpu, '{:.1f}')}% "
                       f"| {ratio(drss * 100 if drss else None, prss, '{:.1f}')}% |")
    return out


def rate(r):
    """Runs per second; 0 for a measurement in which no run settled."""
    if r["with_pid"] + r.get("crashed", 0) == 0:
        return 0.0
    return r["runs_per_second"]


def cpu(r):
    """Worker CPU seconds; None when no run settled, since the sampled window
    then ends at no known time."""
    return r["footprint"]["cpu_s"] if rate(r) else None


def server_ms_per_run(r, settled):
    cpu = r.get("server_cpu_s")
    return 1000 * cpu / settled if cpu is not None and settled else None


def idle(w):
    out = ["## Idle footprint", "",
           "Worker with nothing to do at out-of-the-box polling (10 s query, 30 s heartbeat).",
           "", "| worker | window s | CPU s in window | cgroup CPU s | CPU s to start | RSS MiB | PSS MiB | processes |",
           "|---|---|---|---|---|---|---|---|"]
    by = {}
    for r in w.get("idle", []):
        by[r["kind"]] = r
        i = r["idle"]
        out.append(f"| {r['kind']} | {r['window_seconds']:.0f} | {i['cpu_s']:.2f} "
                   f"| {r['cgroup_cpu_s'] if r.get('cgroup_cpu_s') is None else round(r['cgroup_cpu_s'], 2)} "
                   f"| {r['startup']['cpu_s']:.2f} | {i['rss_mean'] / MIB:.1f} "
                   f"| {i['pss_mean'] / MIB:.1f} | {i['procs_max']} |")
    if "drover" in by and "prefect" in by:
        d, p = by["drover"]["idle"], by["prefect"]["idle"]
        out += ["", f"drover / Prefect: RSS {100 * d['rss_mean'] / p['rss_mean']:.1f}%, "
                f"PSS {100 * d['pss_mean'] / p['pss_mean']:.1f}%, "
                f"idle CPU {ratio(100 * d['cpu_s'], p['cpu_s'], '{:.1f}')}%."]
    return out


def latency(w):
    out = ["## Pickup latency", "",
           "Run created (its expected start time) to infrastructure_pid written, runs created "
           "at random moments; the workers poll every "
           f"{w.get('query_seconds')} s. Per-repetition percentiles, median (min-max) over "
           "the repetitions, then the percentiles of all runs pooled.", "",
           "| worker | runs | p50 s | p95 s | p99 s | pooled p50 / p95 / p99 / max s |",
           "|---|---|---|---|---|---|"]
    for kind in KINDS:
        rs = [r for r in w.get("latency", []) if r["kind"] == kind and r["latencies"]]
        if not rs:
            continue
        pooled = sorted(x for r in rs for x in r["latencies"])
        out.append(f"| {kind} | {len(pooled)}/{sum(r['count'] for r in rs)} "
                   f"| {mmm([pct(r['latencies'], 50) for r in rs], '{:.3f}')} "
                   f"| {mmm([pct(r['latencies'], 95) for r in rs], '{:.3f}')} "
                   f"| {mmm([pct(r['latencies'], 99) for r in rs], '{:.3f}')} "
                   f"| {pct(pooled, 50):.3f} / {pct(pooled, 95):.3f} / {pct(pooled, 99):.3f} "
                   f"/ {max(pooled):.3f} |")
    return out


def micro(d: Path):
    out = ["## Microbenchmarks", "", "JOB sent -> STARTED received against drover-executor-process "
           "(command `true`), microseconds, 300 jobs a run:", "",
           "| transport | p50 | p90 | p99 | min | max |", "|---|---|---|---|---|---|"]
    rt = [json.loads(line) for line in (d / "roundtrip.jsonl").read_text().splitlines()
          if line.strip()] if (d / "roundtrip.jsonl").exists() else []
    for t in ("ipc", "tcp"):
        rs = [r for r in rt if r["transport"] == t]
        if rs:
            out.append(f"| {t} | {mmm([r['p50'] for r in rs], '{:.0f}')} "
                       f"| {mmm([r['p90'] for r in rs], '{:.0f}')} "
                       f"| {mmm([r['p99'] for r in rs], '{:.0f}')} "
                       f"| {min(r['min'] for r in rs):.0f} | {max(r['max'] for r in rs):.0f} |")
    pgs = [json.loads(line) for line in (d / "pingers.jsonl").read_text().splitlines()
           if line.strip()] if (d / "pingers.jsonl").exists() else []
    if pgs:
        pg = pgs[0]
        out += ["", f"{pg['executors']} simulated executors pinging every {pg['ping_interval_ms']} ms, "
                f"{pg['seconds']:.0f} s windows: the supervisor used "
                f"{mmm([100 * p['supervisor_core_share'] for p in pgs], '{:.2f}')} % of one core "
                f"(pings answered: {mmm([100 * p['pongs'] / max(p['pings'], 1) for p in pgs], '{:.2f}')} %; "
                f"supervisor RSS {mmm([p['supervisor_rss_bytes'] / MIB for p in pgs])} MiB)."]
    other = d / "other-micro.txt"
    if other.exists() and other.read_text().strip():
        out += ["", "Codec and renderer microbenchmarks (their own output):", "", "```",
                other.read_text().rstrip(), "```"]
    return out


def main():
    d = Path(sys.argv[1])
    machine = load(d / "machine.json") or {}
    w = load(d / "workers.json") or {}
    # Phases run by a separate invocation of workers.py (workers-*.json).
    for extra in sorted(d.glob("workers-*.json")):
        for key, value in (load(extra) or {}).items():
            if key in ("idle", "latency", "throughput", "ceiling") and not w.get(key):
                w[key] = value
    if len(sys.argv) > 2:
        w["idle"] = load(Path(sys.argv[2])).get("idle", [])
    lines = ["# Benchmark results", "", "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()),
             f"Load average at the end: {load(d / 'loadavg-end.json')}",
             "Server 503 answers (SQLite busy) logged: "
             + ((d / "server-503-count.txt").read_text().strip()
                if (d / "server-503-count.txt").exists() else "not counted"),
             ""]
    for part in (throughput(w), idle(w), latency(w), micro(d)):
        lines += part + [""]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
