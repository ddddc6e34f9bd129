"""Time each Prefect API call a dispatch makes, one call at a time.

For each call type, runs it once per flow run on a fresh set of runs,
sequentially, and reports the median and p90 wall time of the request and the
server's CPU seconds per call (from /proc of the server pid).  This shows
which calls of a worker's dispatch cost the server most.

    api_costs.py --api-url URL --server-pid PID [--runs 50] --out FILE
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))

import benchlib as bl  # noqa: E402


def timed(api, server_pid, label, calls):
    """Run each (method, path, body) in calls; return wall and server CPU per call."""
    walls = []
    cpu0 = bl.cpu_seconds(server_pid)
    for method, path, body in calls:
        t0 = time.perf_counter()
        if body is None:
            api.call(method, path)
        else:
            api.call(method, path, json=body)
        walls.append(time.perf_counter() - t0)
    cpu = bl.cpu_seconds(server_pid) - cpu0
    walls.sort()
    res = {"call": label, "n": len(walls), "median_ms": 1000 * statistics.median(walls),
           "p90_ms": 1000 * walls[int(0.9 * (len(walls) - 1))],
           "server_cpu_ms_per_call": 1000 * cpu / len(walls)}
    bl.log(f"{label}: median {res['median_ms']:.1f} ms, server CPU "
           f"{res['server_cpu_ms_per_call']:.1f} ms per call")
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--api-url", required=True)
    ap.add_argument("--server-pid", type=int, required=True)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    api = bl.Api(args.api_url)
    pool = bl.unique("costs")
    api.create_pool(pool, bl.prefect_process_template())
    dep_id = api.create_deployment(pool)
    dep = api.call("GET", f"/deployments/{dep_id}")
    ids = api.create_runs(dep_id, args.runs, concurrency=1)
    before = bl.iso(time.time() + 10)
    labels = {"prefect.worker.name": "costs", "prefect.worker.type": "process",
              "prefect.work-pool.name": pool}
    out = [
        timed(api, args.server_pid, "POST get_scheduled_flow_runs (limit 1)",
              [("POST", f"/work_pools/{pool}/get_scheduled_flow_runs",
                {"scheduled_before": before, "limit": 1})] * args.runs),
        timed(api, args.server_pid, "POST set_state Pending (claim)",
              [("POST", f"/flow_runs/{i}/set_state",
                {"state": {"type": "PENDING", "name": "Pending"}}) for i in ids]),
        timed(api, args.server_pid, "GET deployment",
              [("GET", f"/deployments/{dep_id}", None)] * args.runs),
        timed(api, args.server_pid, "GET flow",
              [("GET", f"/flows/{dep['flow_id']}", None)] * args.runs),
        timed(api, args.server_pid, "PATCH labels",
              [("PATCH", f"/flow_runs/{i}/labels", labels) for i in ids]),
        timed(api, args.server_pid, "POST set_state Pending (Submitting)",
              [("POST", f"/flow_runs/{i}/set_state",
                {"state": {"type": "PENDING", "name": "Submitting"}}) for i in ids]),
        timed(api, args.server_pid, "PATCH infrastructure_pid",
              [("PATCH", f"/flow_runs/{i}", {"infrastructure_pid": "costs:1"}) for i in ids]),
        timed(api, args.server_pid, "POST logs (1 record)",
              [("POST", "/logs/", [{"name": "costs", "level": 20, "message": "m",
                                    "timestamp": bl.iso(time.time()), "flow_run_id": i}])
               for i in ids]),
    ]
    api.close()
    bl.write_json(args.out, out)


if __name__ == "__main__":
    main()
