"""The process executor's spawner killed on its own.

The executor starts one spawner process at start-up, which forks the
monitors of runs.  A spawner killed while the executor idles must not stay
behind as a zombie child of the executor, and the next run must still
start and report its exit status.
"""

import os
import signal
from pathlib import Path

import processes
from prefect_api import wait_until

EXECUTOR_NAME = "drover-executor-process"
ZOMBIE_DEADLINE_SECONDS = 30.0


def child_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in children.read_text().split()]
    except OSError:
        return []


def process_state(pid: int) -> str | None:
    """Return the state letter of /proc/PID/stat (Z for a zombie), or None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def spawner_of(executor_pid: int) -> int | None:
    for pid in child_pids(executor_pid):
        if process_state(pid) not in (None, "Z"):
            return pid
    return None


def test_killed_spawner_leaves_no_zombie(api, start_worker, worker_kind, examples_dir):
    worker_kind.require_drover("the spawner is part of drover's process executor")
    worker = start_worker()
    executor_pid = wait_until(
        lambda: (processes.child_pids(worker.pid, EXECUTOR_NAME) or [None])[0],
        "the worker to start its process executor")
    spawner_pid = wait_until(lambda: spawner_of(executor_pid),
                             f"executor {executor_pid} to start its spawner")

    os.kill(spawner_pid, signal.SIGKILL)

    wait_until(lambda: process_state(spawner_pid) is None,
               f"the killed spawner {spawner_pid} to be reaped, not left a zombie",
               deadline=ZOMBIE_DEADLINE_SECONDS)
    deployment = api.create_deployment("hello", worker.pool, examples_dir,
                                       job_variables={"command": '/bin/sh -c "exit 7"'})
    run = api.create_flow_run(deployment["id"])
    final = api.wait_for_final_state(run["id"])
    assert final["state"]["type"] == "CRASHED", final["state"]
    assert "status code 7" in final["state"]["message"], final["state"]
