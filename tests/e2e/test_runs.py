"""Flow runs served end to end: final states, run records, logs and limits."""

import re
import uuid
from datetime import datetime

from prefect_api import wait_until

def is_subsequence(wanted: list[str], sequence: list[str]) -> bool:
    """Return True when wanted appears in sequence in order, gaps allowed."""
    remaining = iter(sequence)
    return all(item in remaining for item in wanted)


def state_time(history: list[dict], state_type: str) -> datetime:
    """Return the timestamp of the first state of state_type in history."""
    for state in history:
        if state["type"] == state_type:
            return datetime.fromisoformat(state["timestamp"])
    raise AssertionError(f"no {state_type} state in history {history}")


def test_hello_run_completes(api, start_worker, worker_kind, examples_dir):
    worker = start_worker()
    pool = api.read_pool(worker.pool)
    deployment = api.create_deployment("hello", worker.pool, examples_dir)
    run = api.create_flow_run(deployment["id"], parameters={"name": "e2e"})

    final = api.wait_for_final_state(run["id"])
    labels = final["labels"]
    history = api.state_history(run["id"])
    types = [state["type"] for state in history]
    names = [state["name"] for state in history]

    assert final["state"]["type"] == "COMPLETED", final["state"]
    assert worker_kind.infrastructure_pid_valid(final["infrastructure_pid"]), \
        f"infrastructure_pid {final['infrastructure_pid']!r} has the wrong form"
    assert labels.get("prefect.worker.name") == worker.name, labels
    assert labels.get("prefect.worker.type") == pool["type"], labels
    assert labels.get("prefect.work-pool.name") == worker.pool, labels
    assert labels.get("prefect.work-pool.id") == pool["id"], labels
    assert is_subsequence(["PENDING", "RUNNING", "COMPLETED"], types), types
    assert is_subsequence(["Pending", "Submitting", "Running"], names), names
    assert types[-1] == "COMPLETED", types


def test_raising_flow_fails(api, start_worker, examples_dir):
    worker = start_worker()
    deployment = api.create_deployment("fail", worker.pool, examples_dir)
    run = api.create_flow_run(deployment["id"])

    final = api.wait_for_final_state(run["id"])

    assert final["state"]["type"] == "FAILED", final["state"]


def test_nonzero_exit_crashes(api, start_worker, worker_kind, examples_dir):
    worker = start_worker()
    deployment = api.create_deployment("hello", worker.pool, examples_dir)
    run = api.create_flow_run(deployment["id"],
                              job_variables={"command": '/bin/sh -c "exit 3"'})

    final = api.wait_for_final_state(run["id"])
    message = final["state"]["message"] or ""

    assert final["state"]["type"] == "CRASHED", final["state"]
    assert re.search(r"status code:? 3\b", message), message
    if worker_kind.name == "drover":
        prefix = "Flow run infrastructure exited with non-zero status code 3."
        assert message.startswith(prefix), message
        assert message.removeprefix(prefix).strip(), f"no explanation after the code: {message}"


def test_process_output_reaches_run_logs(api, start_worker, worker_kind, examples_dir):
    worker_kind.require_drover("Prefect's process worker sends no process output to the API")
    worker = start_worker()
    token = uuid.uuid4().hex
    deployment = api.create_deployment("hello", worker.pool, examples_dir)
    run = api.create_flow_run(deployment["id"], parameters={"name": token})

    final = api.wait_for_final_state(run["id"])
    assert final["state"]["type"] == "COMPLETED", final["state"]

    # Forwarded lines may reach the server after the final state.
    greeting = f"Hello, {token}!"
    wait_until(lambda: any(greeting in record["message"] for record in api.logs(run["id"])),
               f"the line {greeting!r} in the logs of flow run {run['id']}")
    # The engine's own console lines on stderr are records it already sent
    # to the API, so they are not forwarded a second time.
    forwarded = [record["message"] for record in api.logs(run["id"])
                 if record["name"] == "prefect.flow_runs.worker"]
    assert not any(re.match(r"\d\d:\d\d:\d\d\.\d{3} \| ", line) for line in forwarded), forwarded


def test_env_job_variable_reaches_flow(api, start_worker, worker_kind, examples_dir):
    worker_kind.require_drover("Prefect's process worker sends no process output to the API")
    worker = start_worker()
    token = uuid.uuid4().hex
    deployment = api.create_deployment("env_echo", worker.pool, examples_dir,
                                       job_variables={"env": {"DROVER_E2E_MARK": token}})
    run = api.create_flow_run(deployment["id"],
                              parameters={"names": ["DROVER_E2E_MARK", "PREFECT__FLOW_RUN_ID"]})

    final = api.wait_for_final_state(run["id"])
    assert final["state"]["type"] == "COMPLETED", final["state"]

    for line in (f"DROVER_E2E_MARK={token}", f"PREFECT__FLOW_RUN_ID={run['id']}"):
        wait_until(lambda: any(line in record["message"] for record in api.logs(run["id"])),
                   f"the line {line!r} in the logs of flow run {run['id']}")


def test_limit_one_runs_one_at_a_time(api, start_worker, examples_dir):
    worker = start_worker(limit=1)
    deployment = api.create_deployment("sleepy", worker.pool, examples_dir)
    runs = [api.create_flow_run(deployment["id"], parameters={"seconds": 3})
            for _ in range(2)]

    finals = [api.wait_for_final_state(run["id"]) for run in runs]
    for final in finals:
        assert final["state"]["type"] == "COMPLETED", final["state"]

    intervals = []
    for run in runs:
        history = api.state_history(run["id"])
        intervals.append((state_time(history, "RUNNING"), state_time(history, "COMPLETED")))
    (first_start, first_end), (second_start, second_end) = sorted(intervals)
    assert first_end <= second_start, \
        f"runs overlapped: {first_start}..{first_end} and {second_start}..{second_end}"


def test_lean_options_skip_optional_writes(api, start_worker, worker_kind, examples_dir):
    worker_kind.require_drover("--no-run-labels and --no-submitting-state are drover options")
    worker = start_worker(extra_args=["--no-run-labels", "--no-submitting-state"])
    deployment = api.create_deployment("hello", worker.pool, examples_dir)
    run = api.create_flow_run(deployment["id"], parameters={"name": "lean"})

    final = api.wait_for_final_state(run["id"])
    names = [state["name"] for state in api.state_history(run["id"])]

    assert final["state"]["type"] == "COMPLETED", final["state"]
    assert final["infrastructure_pid"], final
    assert "prefect.worker.name" not in final["labels"], final["labels"]
    assert "prefect.work-pool.name" not in final["labels"], final["labels"]
    assert "Pending" in names, names
    assert "Submitting" not in names, names
