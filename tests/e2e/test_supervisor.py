"""The supervisor's own duties: keeping its executor alive, and stopping."""

import os
import signal

import pytest

from processes import child_pids, pid_alive, wait_for_exit
from prefect_api import unique_name, wait_until

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


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT],
                         ids=["SIGTERM", "SIGINT"])
def test_signal_stops_worker(api, start_worker, signal_number):
    worker = start_worker()
    wait_until(lambda: any(record["name"] == worker.name
                           for record in api.pool_workers(worker.pool)),
               f"worker {worker.name} to send its first heartbeat")

    worker.process.process.send_signal(signal_number)
    status = wait_for_exit(worker.process, EXIT_DEADLINE_SECONDS)
    name = signal.Signals(signal_number).name

    assert status is not None, f"worker still running {EXIT_DEADLINE_SECONDS:.0f} s after {name}"
    assert status == 0, f"worker exited with status {status} after {name}"


def test_run_once_serves_and_exits(api, start_worker, worker_kind, examples_dir, tmp_path):
    pool_name = unique_name("pool")
    api.create_pool(pool_name, "process", worker_kind.default_template(tmp_path))
    deployment = api.create_deployment("hello", pool_name, examples_dir)
    run = api.create_flow_run(deployment["id"])

    worker = start_worker(pool=pool_name, extra_args=["--run-once"])
    status = wait_for_exit(worker.process, EXIT_DEADLINE_SECONDS * 3)
    final = api.read_flow_run(run["id"])

    assert status is not None, "worker started with --run-once is still running"
    assert status == 0, f"worker started with --run-once exited with status {status}"
    assert final["state"]["type"] == "COMPLETED", final["state"]
