"""Work pools as the worker creates and serves them."""

from processes import prefect_process_template
from prefect_api import unique_name, wait_until


def worker_online(api, worker) -> bool:
    return any(record["name"] == worker.name and record["status"] == "ONLINE"
               for record in api.pool_workers(worker.pool))


def test_created_pool_has_default_template(api, start_worker, worker_kind, tmp_path):
    worker = start_worker()

    pool = api.read_pool(worker.pool)
    expected = worker_kind.default_template(tmp_path)

    assert pool["type"] == "process", pool
    assert pool["base_job_template"] == expected


def test_worker_shows_online(api, start_worker):
    worker = start_worker()

    wait_until(lambda: worker_online(api, worker),
               f"worker {worker.name} to show ONLINE in pool {worker.pool}")

    records = [record for record in api.pool_workers(worker.pool)
               if record["name"] == worker.name]
    assert len(records) == 1, records
    assert records[0]["status"] == "ONLINE", records[0]


def test_prefect_template_served_unchanged(api, start_worker, worker_kind, examples_dir,
                                           tmp_path):
    template = prefect_process_template(worker_kind.venv, tmp_path)
    pool_name = unique_name("pool")
    api.create_pool(pool_name, "process", template)

    worker = start_worker(pool=pool_name)
    deployment = api.create_deployment("hello", worker.pool, examples_dir)
    run = api.create_flow_run(deployment["id"])
    final = api.wait_for_final_state(run["id"])

    assert final["state"]["type"] == "COMPLETED", final["state"]
    assert api.read_pool(pool_name)["base_job_template"] == template


def test_worker_serves_only_its_queues(api, start_worker, examples_dir):
    pool_name = unique_name("pool")
    api.create_pool(pool_name)
    served = api.create_deployment("hello", pool_name, examples_dir, work_queue="served")
    ignored = api.create_deployment("hello", pool_name, examples_dir, work_queue="ignored")
    # The run on the other queue is created first, so the worker's polls
    # could have claimed it before the served run ended.
    ignored_run = api.create_flow_run(ignored["id"])
    served_run = api.create_flow_run(served["id"])

    start_worker(pool=pool_name, queues=["served"])
    served_final = api.wait_for_final_state(served_run["id"])
    ignored_now = api.read_flow_run(ignored_run["id"])

    assert served_final["state"]["type"] == "COMPLETED", served_final["state"]
    assert ignored_now["state"]["type"] == "SCHEDULED", ignored_now["state"]
    assert ignored_now["infrastructure_pid"] is None, ignored_now
