"""Job configuration rendering against the real server: Prefect variables,
secret blocks, missing blocks and job variables that no longer validate."""

from prefect_api import unique_name, wait_until


def create_variable(api, name: str, value) -> dict:
    return api._request("POST", "/variables/", json={"name": name, "value": value})


def create_secret_block(api, name: str, value: str) -> dict:
    """Create a document of the built-in secret block type holding value."""
    block_type = api._request("GET", "/block_types/slug/secret")
    schemas = api._request("POST", "/block_schemas/filter", json={
        "block_schemas": {"block_type_id": {"any_": [block_type["id"]]}},
    })
    return api._request("POST", "/block_documents/", json={
        "name": name,
        "block_type_id": block_type["id"],
        "block_schema_id": schemas[0]["id"],
        "data": {"value": value},
    })


def log_messages(api, flow_run_id: str) -> list[str]:
    return [record["message"].strip() for record in api.logs(flow_run_id, limit=200)]


def test_variable_and_secret_reach_env(api, start_worker, worker_kind, examples_dir):
    worker = start_worker()
    variable = unique_name("tag").replace("-", "_")
    block = unique_name("token")
    create_variable(api, variable, "1.2")
    create_secret_block(api, block, "s3cr3t-value")
    deployment = api.create_deployment(
        "env_echo", worker.pool, examples_dir,
        job_variables={"env": {
            "IMAGE_TAG": f"img:{{{{ prefect.variables.{variable} }}}}",
            "API_TOKEN": f"{{{{ prefect.blocks.secret.{block} }}}}",
            "MISSING_VAR": "[{{ prefect.variables.no_such_variable }}]",
        }},
        parameters={"names": ["IMAGE_TAG", "API_TOKEN", "MISSING_VAR"]})
    run = api.create_flow_run(deployment["id"])

    final = api.wait_for_final_state(run["id"])
    assert final["state"]["type"] == "COMPLETED", final["state"]
    if worker_kind.name != "drover":
        return
    # Forwarded output reaches the API in batches, after the final state.
    wait_until(lambda: "MISSING_VAR=[]" in log_messages(api, run["id"]),
               "the flow's output in the run's logs")
    messages = log_messages(api, run["id"])

    assert "IMAGE_TAG=img:1.2" in messages, messages
    assert "API_TOKEN=s3cr3t-value" in messages, messages
    assert "MISSING_VAR=[]" in messages, messages


def test_missing_block_crashes_run(api, start_worker, examples_dir):
    worker = start_worker()
    deployment = api.create_deployment(
        "hello", worker.pool, examples_dir,
        job_variables={"env": {"TOKEN": "{{ prefect.blocks.secret.no-such-block }}"}})
    run = api.create_flow_run(deployment["id"])

    final = api.wait_for_final_state(run["id"])
    message = final["state"]["message"] or ""

    assert final["state"]["type"] == "CRASHED", final["state"]
    assert message.startswith("Failed to submit flow run to infrastructure"), message
    assert "no-such-block" in message, message


def test_invalid_job_variables_crash_run(api, start_worker, worker_kind, examples_dir):
    worker_kind.require_drover("Prefect's worker does not validate job variables")
    first = start_worker()
    first.process.stop()
    deployment = api.create_deployment("hello", first.pool, examples_dir,
                                       job_variables={"working_dir": "/tmp"})
    run = api.create_flow_run(deployment["id"])
    # With the run created and no worker polling, the pool's schema changes
    # so that the run's job variables no longer validate: the server checks
    # them only when a deployment or a run is created.
    template = api.read_pool(first.pool)["base_job_template"]
    template["variables"]["properties"]["working_dir"] = {
        "type": "string", "enum": ["/srv"], "default": "/srv"}
    api._request("PATCH", f"/work_pools/{first.pool}", json={"base_job_template": template})
    start_worker(pool=first.pool)

    final = api.wait_for_final_state(run["id"])
    message = final["state"]["message"] or ""

    assert final["state"]["type"] == "CRASHED", final["state"]
    assert "working_dir" in message, message
    assert "/tmp" in message, message
