"""A pool of the Python example executor's type, served by the C supervisor."""

from prefect_api import wait_until


def test_shell_pool_runs_flow(api, start_worker, worker_kind, examples_dir):
    worker_kind.require_drover("the shell type is drover's Python example executor")
    worker = start_worker(pool_type="shell")
    pool = api.read_pool(worker.pool)
    deployment = api.create_deployment("hello", worker.pool, examples_dir,
                                       parameters={"name": "shell"})
    run = api.create_flow_run(deployment["id"])

    final = api.wait_for_final_state(run["id"])
    # Forwarded output reaches the API in batches, after the final state.
    wait_until(lambda: any(record["message"].strip() == "Hello, shell!"
                           for record in api.logs(run["id"])),
               "the flow's output in the run's logs")

    assert pool["type"] == "shell", pool
    assert "timeout_seconds" in pool["base_job_template"]["variables"]["properties"], pool
    assert final["state"]["type"] == "COMPLETED", final["state"]
    assert final["labels"].get("prefect.worker.type") == "shell", final["labels"]


def test_shell_pool_time_limit(api, start_worker, worker_kind, examples_dir):
    worker_kind.require_drover("the shell type is drover's Python example executor")
    worker = start_worker(pool_type="shell")
    deployment = api.create_deployment("hello", worker.pool, examples_dir)
    run = api.create_flow_run(deployment["id"], job_variables={
        "command": "sleep 60", "timeout_seconds": 1})

    final = api.wait_for_final_state(run["id"])
    message = final["state"]["message"] or ""

    assert final["state"]["type"] == "CRASHED", final["state"]
    assert "status code -15" in message or "status code -9" in message, message
