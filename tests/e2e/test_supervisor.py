"""The supervisor's own duties: keeping its executor alive, and stopping."""

import os
import signal

from processes import child_pids, pid_alive, wait_for_exit
from prefect_api import wait_until

EXECUTOR_PROGRAM = "drover-executor-process"
EXIT_DEADLINE_SECONDS = 60.0


def only_executor(worker) -> int | None:
    """Return the pid of the worker's one local executor, or None while there is not exactly one."""
    pids = child_pids(worker.pid, EXECUTOR_PROGRAM)
    return pids[0] if len(pids) == 1 else None


def test_killed_executor_is_restarted(api, start_worker, worker_kind, examples_dir):
    worker_kind.require_drover("Prefect's process worker has no executor process")
    worker = start_worker()
    first = wait_until(lambda: only_executor(worker),
                       f"worker {worker.name} to start its {EXECUTOR_PROGRAM}")

    os.kill(first, signal.SIGKILL)
    second = wait_until(lambda: (pid := only_executor(worker)) != first and pid,
                        f"worker {worker.name} to restart {EXECUTOR_PROGRAM} "
                        f"after pid {first} was killed")

    assert not pid_alive(first)
    assert second != first
    assert worker.process.running(), "the supervisor exited after its executor was killed"

    deployment = api.create_deployment("hello", worker.pool, examples_dir)
    run = api.create_flow_run(deployment["id"])
    final = api.wait_for_final_state(run["id"])
    assert final["state"]["type"] == "COMPLETED", final["state"]


def test_sigterm_stops_worker(api, start_worker):
    worker = start_worker()
    wait_until(lambda: any(record["name"] == worker.name
                           for record in api.pool_workers(worker.pool)),
               f"worker {worker.name} to send its first heartbeat")

    worker.process.process.send_signal(signal.SIGTERM)
    status = wait_for_exit(worker.process, EXIT_DEADLINE_SECONDS)

    assert status is not None, f"worker still running {EXIT_DEADLINE_SECONDS:.0f} s after SIGTERM"
    assert status == 0, f"worker exited with status {status} after SIGTERM"
