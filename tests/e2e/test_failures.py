"""Failure handling against real Prefect servers.

A supervisor killed mid-run, cancellation, start-up configuration errors,
executors that speak the protocol wrongly, wrong credentials and a server
that stops responding for a while.  Every test asserts on the server's own
records or on drover's exit status and messages.
"""

import os
import signal
import socket
import time

import pytest

import processes
from failure_helpers import (MSG_ACK, MSG_REJECT, MSG_WELCOME, RawPeer, drover_env,
                             drover_program, drover_template, executor_program, hello,
                             process_schema, run_drover, start_private_server)
from prefect_api import PrefectApi, unique_name, wait_until

EXIT_DEADLINE_SECONDS = 60.0
# How long the private server stays stopped while drover serves a run.
SERVER_PAUSE_SECONDS = 20


def infrastructure_pid(api, run_id: str) -> int | None:
    """Return the pid part of the run's infrastructure_pid (host:pid), or None while unset."""
    value = api.read_flow_run(run_id).get("infrastructure_pid")
    if not value:
        return None
    host, _, pid = value.rpartition(":")
    assert host == socket.gethostname(), value
    return int(pid)


def crash_deployment(api, pool: str, examples_dir, command: str) -> dict:
    return api.create_deployment("hello", pool, examples_dir, job_variables={"command": command})


# A supervisor killed while a run is running


def test_sigkilled_supervisor_run_is_readopted(api, start_worker, start_process, worker_kind,
                                               prefect_server, examples_dir, tmp_path):
    worker_kind.require_drover("re-adoption from an executor's inventory is drover's")
    state_dir = tmp_path / "state"
    worker = start_worker(extra_args=["--state-dir", str(state_dir)])
    deployment = crash_deployment(api, worker.pool, examples_dir,
                                  '/bin/sh -c "sleep 8; exit 5"')
    run = api.create_flow_run(deployment["id"])
    wait_until(lambda: infrastructure_pid(api, run["id"]),
               f"flow run {run['id']} to get its infrastructure_pid")

    os.kill(worker.pid, signal.SIGKILL)
    assert processes.wait_for_exit(worker.process, EXIT_DEADLINE_SECONDS) == -signal.SIGKILL

    argv = worker_kind.worker_argv(worker.pool, worker.name, None, [], None,
                                   ["--state-dir", str(state_dir)])
    env = drover_env(prefect_server.api_url, tmp_path / "home-second")
    second = start_process(argv, env, "drover second supervisor")
    final = api.wait_for_final_state(run["id"])
    wait_until(lambda: f"flow_run={run['id']}" in second.log_text()
               and "event=adopted" in second.log_text(),
               "the second supervisor to log the adoption")

    assert final["state"]["type"] == "CRASHED", final["state"]
    assert "status code 5" in final["state"]["message"], final["state"]
    assert second.running(), second.log_text()


# Cancellation


def test_cancelling_run_is_cancelled_and_process_gone(api, start_worker, worker_kind,
                                                      examples_dir):
    worker_kind.require_drover("infrastructure_pid is host:pid only with drover")
    worker = start_worker()
    deployment = crash_deployment(api, worker.pool, examples_dir, "sleep 300")
    run = api.create_flow_run(deployment["id"])
    pid = wait_until(lambda: infrastructure_pid(api, run["id"]),
                     f"flow run {run['id']} to get its infrastructure_pid")
    assert processes.pid_alive(pid), f"pid {pid} of the run is not alive before cancelling"

    api._request("POST", f"/flow_runs/{run['id']}/set_state",
                 json={"state": {"type": "CANCELLING", "name": "Cancelling"}})
    final = api.wait_for_final_state(run["id"])
    wait_until(lambda: not processes.pid_alive(pid), f"pid {pid} of the cancelled run to end")

    assert final["state"]["type"] == "CANCELLED", final["state"]
    assert worker.process.running(), worker.log_text()


# Start-up configuration errors


def test_pool_of_other_type_with_explicit_type_exits(api, prefect_server, worker_kind,
                                                     tmp_path):
    worker_kind.require_drover("drover's start-up messages")
    pool = unique_name("docker-pool")
    api.create_pool(pool, "docker", {
        "job_configuration": {"image": "{{ image }}", "command": "{{ command }}"},
        "variables": {"type": "object", "properties": {
            "image": {"type": "string", "default": "python:3.12"},
            "command": {"type": "string"}}},
    })

    status, output = run_drover(["worker", "start", "--pool", pool, "--type", "process"],
                                drover_env(prefect_server.api_url, tmp_path / "home"))

    assert status not in (0, None), output
    assert f"'{pool}' has type 'docker'" in output, output
    assert "--type docker" in output, output


def test_bad_base_job_template_file_exits(prefect_server, worker_kind, tmp_path):
    """A --base-job-template the server refuses must stop drover with the reason.

    The server refuses a template using a variable it does not declare, and
    drover's render_check_template finds the same fault before sending it.
    """
    worker_kind.require_drover("drover's start-up messages")
    template = tmp_path / "template.json"
    template.write_text('{"job_configuration": {"command": "{{ undeclared_var }}"},'
                        ' "variables": {"type": "object", "properties": {}}}')

    status, output = run_drover(["worker", "start", "--pool", unique_name("pool"),
                                 "--base-job-template", str(template)],
                                drover_env(prefect_server.api_url, tmp_path / "home"))

    assert status not in (0, None), f"status {status}: {output}"
    assert "undeclared_var" in output, output


def test_pool_template_with_huge_integer_is_served(api, start_worker, worker_kind,
                                                   examples_dir):
    """A template the server stores with an integer above 64 bits, which
    jansson cannot hold: drover reads it as a float, says so, and serves."""
    worker_kind.require_drover("drover's JSON replies")
    pool = unique_name("bigint-pool")
    template = drover_template()
    template["job_configuration"]["big_number"] = 123456789012345678901234567890
    api.create_pool(pool, "process", template)
    worker = start_worker(pool=pool)
    deployment = crash_deployment(api, pool, examples_dir, '/bin/sh -c "exit 4"')
    run = api.create_flow_run(deployment["id"])

    final = api.wait_for_final_state(run["id"])

    assert final["state"]["type"] == "CRASHED", final["state"]
    assert "status code 4" in final["state"]["message"], final["state"]
    assert "event=api_reply_integer_widened" in worker.process.log_text()


@pytest.mark.parametrize("argv,named", [
    (["--limit", "0"], "--limit 0"),
    (["--pool", "a/b"], "'a/b'"),
], ids=["limit-0", "pool-with-slash"])
def test_bad_start_option_exits(prefect_server, worker_kind, tmp_path, argv, named):
    worker_kind.require_drover("drover's start-up messages")
    base = ["worker", "start"] + ([] if "--pool" in argv else ["--pool", unique_name("pool")])

    status, output = run_drover(base + argv, drover_env(prefect_server.api_url,
                                                        tmp_path / "home"))

    assert status not in (0, None), output
    assert named in output, output


# Executors that speak the protocol wrongly


def test_protocol_errors_rejected_and_supervisor_keeps_serving(api, start_worker,
                                                                start_process, worker_kind,
                                                                examples_dir, tmp_path):
    worker_kind.require_drover("the executor protocol is drover's")
    endpoint = f"tcp://127.0.0.1:{processes.free_loopback_port()}"
    pool = unique_name("pool")
    api.create_pool(pool, "process", drover_template())
    worker = start_worker(pool=pool, extra_args=["--bind", endpoint, "--no-local-executor"])
    schema = process_schema()

    peer = RawPeer(endpoint)
    try:
        peer.send(hello("raw-v2", schema, version=2))
        version_reject = peer.receive()
        peer.send(hello("raw-bad-schema", "{not json"))
        schema_reject = peer.receive_type({MSG_REJECT, MSG_WELCOME})
        peer.send(hello("raw-docker", schema, infra_type="docker"))
        type_reject = peer.receive_type({MSG_REJECT, MSG_WELCOME})
    finally:
        peer.close()

    assert version_reject is not None, "no reply to a version 2 HELLO"
    assert version_reject[:2] == [1, MSG_REJECT], version_reject
    assert "version 2" in version_reject[2], version_reject
    assert "version 1" in version_reject[2], version_reject
    assert schema_reject is not None and schema_reject[1] == MSG_REJECT, schema_reject
    assert "schema" in schema_reject[2], schema_reject
    assert "JSON" in schema_reject[2], schema_reject
    assert type_reject is not None and type_reject[1] == MSG_REJECT, type_reject
    assert "'docker'" in type_reject[2], type_reject
    assert worker.process.running(), worker.log_text()

    start_process([str(executor_program()), "--id", "real-1", "--connect", endpoint,
                   "--state-dir", str(tmp_path / "executor-state")],
                  processes.clean_environment(), "real executor")
    deployment = crash_deployment(api, pool, examples_dir, '/bin/sh -c "exit 3"')
    run = api.create_flow_run(deployment["id"])
    final = api.wait_for_final_state(run["id"])

    assert final["state"]["type"] == "CRASHED", final["state"]
    assert "status code 3" in final["state"]["message"], final["state"]
    assert "executor=real-1 event=connected" in worker.log_text(), worker.log_text()


# Credentials


def test_wrong_credentials_exit_and_right_ones_serve(start_process, worker_kind, examples_dir,
                                                     tmp_path):
    worker_kind.require_drover("drover's start-up messages")
    api_url, _ = start_private_server(start_process, tmp_path, "auth-server",
                                      {"PREFECT_SERVER_API_AUTH_STRING": "user:secret"})
    pool = unique_name("pool")

    status, output = run_drover(["worker", "start", "--pool", pool],
                                drover_env(api_url, tmp_path / "home-wrong",
                                           {"PREFECT_API_AUTH_STRING": "user:wrong"}))

    assert status not in (0, None), output
    assert "PREFECT_API_AUTH_STRING" in output, output
    assert "PREFECT_API_KEY" in output, output
    assert "secret" not in output, output
    assert "user:wrong" not in output, output

    env = drover_env(api_url, tmp_path / "home-right",
                     {"PREFECT_API_AUTH_STRING": "user:secret"})
    worker = start_process([str(drover_program()), "worker", "start", "--pool", pool],
                           env, "drover with credentials")
    auth_api = PrefectApi(api_url)
    auth_api.http.auth = ("user", "secret")
    try:
        wait_until(lambda: auth_api.read_pool(pool), f"drover to create pool {pool}")
        deployment = auth_api.create_deployment("hello", pool, examples_dir)
        run = auth_api.create_flow_run(deployment["id"])
        final = auth_api.wait_for_final_state(run["id"])
    finally:
        auth_api.close()

    assert final["state"]["type"] == "COMPLETED", final["state"]
    assert worker.running(), worker.log_text()
    assert "secret" not in worker.log_text(), worker.log_text()


# The API going away and coming back


def test_paused_server_run_still_reaches_final_state(start_process, worker_kind, examples_dir,
                                                     tmp_path):
    worker_kind.require_drover("drover's API retries")
    api_url, server = start_private_server(start_process, tmp_path, "paused-server")
    pool = unique_name("pool")
    worker = start_process([str(drover_program()), "worker", "start", "--pool", pool],
                           drover_env(api_url, tmp_path / "home"), "drover on paused server")
    private_api = PrefectApi(api_url)
    try:
        wait_until(lambda: private_api.read_pool(pool), f"drover to create pool {pool}")
        # The command ends while the server is stopped, so drover has to
        # keep the final state until the server takes it.
        deployment = crash_deployment(private_api, pool, examples_dir,
                                      '/bin/sh -c "sleep 4; exit 6"')
        run = private_api.create_flow_run(deployment["id"])
        wait_until(lambda: infrastructure_pid(private_api, run["id"]),
                   f"flow run {run['id']} to get its infrastructure_pid")

        os.kill(server.pid, signal.SIGSTOP)
        try:
            time.sleep(SERVER_PAUSE_SECONDS)
        finally:
            os.kill(server.pid, signal.SIGCONT)
        final = private_api.wait_for_final_state(run["id"])
    finally:
        private_api.close()

    assert final["state"]["type"] == "CRASHED", final["state"]
    assert "status code 6" in final["state"]["message"], final["state"]
    assert worker.running(), worker.log_text()


# Defects found by feeding drover odd input; each test states what must hold.


def test_executor_inventory_cannot_claim_run_of_other_pool(api, start_worker, worker_kind,
                                                           examples_dir):
    """An executor's HELLO inventory naming a run drover never claimed, of
    another pool and still SCHEDULED, must not change that run."""
    worker_kind.require_drover("the executor protocol is drover's")
    endpoint = f"tcp://127.0.0.1:{processes.free_loopback_port()}"
    pool = unique_name("pool")
    api.create_pool(pool, "process", drover_template())
    worker = start_worker(pool=pool, extra_args=["--bind", endpoint, "--no-local-executor"])
    other_pool = unique_name("other-pool")
    api.create_pool(other_pool, "process", drover_template())
    victim = api.create_flow_run(
        crash_deployment(api, other_pool, examples_dir, "sleep 1")["id"])

    peer = RawPeer(endpoint)
    try:
        peer.send(hello("inventory-1", process_schema(),
                        inventory=[[victim["id"], f"{socket.gethostname()}:1", True, 3]]))
        welcome = peer.receive_type({MSG_WELCOME, MSG_REJECT})
        # The supervisor sends the ACK of the inventory's EXITED after it has
        # reported a state for the run or decided to ignore it.  When no ACK
        # comes, the wait ends at the deadline.
        peer.receive_type({MSG_ACK})
    finally:
        peer.close()
    history = [state["type"] for state in api.state_history(victim["id"])]

    assert welcome is not None, "no reply to the HELLO"
    assert history == ["SCHEDULED"], (history, worker.log_text())


def test_huge_integer_parameter_blocks_nothing(api, start_worker, worker_kind,
                                                             examples_dir):
    """A parameter above 64 bits is valid JSON that the server stores; the
    pool's other runs must still be served."""
    worker_kind.require_drover("drover's JSON replies")
    pool = unique_name("pool")
    api.create_pool(pool, "process", drover_template())
    deployment = crash_deployment(api, pool, examples_dir, '/bin/sh -c "exit 4"')
    api.create_flow_run(deployment["id"], parameters={"name": 123456789012345678901234567890})
    plain = api.create_flow_run(deployment["id"])
    worker = start_worker(pool=pool)

    final = api.wait_for_final_state(plain["id"], deadline=60)

    assert final["state"]["type"] == "CRASHED", final["state"]
    assert "status code 4" in final["state"]["message"], (final["state"], worker.log_text())


def test_nul_in_job_variable_gives_clear_reason(api, start_worker, worker_kind, examples_dir):
    """The server stores a NUL character in a job variable; the run may crash
    but its message must give the reason, not a failed deployment read."""
    worker_kind.require_drover("drover's crash messages")
    worker = start_worker()
    deployment = api.create_deployment("hello", worker.pool, examples_dir,
                                       job_variables={"env": {"WITH_NUL": "a\u0000b"}})
    run = api.create_flow_run(deployment["id"])

    final = api.wait_for_final_state(run["id"])
    message = final["state"]["message"] or ""

    assert final["state"]["type"] in ("CRASHED", "COMPLETED"), final["state"]
    assert "HTTP 200" not in message, message


def test_duplicate_executor_id_keeps_runs(api, start_worker, worker_kind,
                                                                 examples_dir):
    """A second connection claiming the id of a live executor, with an empty
    inventory, must not crash the runs the live executor is running."""
    worker_kind.require_drover("the executor protocol is drover's")
    endpoint = f"tcp://127.0.0.1:{processes.free_loopback_port()}"
    worker = start_worker(extra_args=["--bind", endpoint])
    deployment = crash_deployment(api, worker.pool, examples_dir,
                                  '/bin/sh -c "sleep 15; exit 2"')
    run = api.create_flow_run(deployment["id"])
    wait_until(lambda: infrastructure_pid(api, run["id"]),
               f"flow run {run['id']} to get its infrastructure_pid")

    peer = RawPeer(endpoint)
    try:
        peer.send(hello(f"{worker.name}-process-1", process_schema()))
        reply = peer.receive_type({MSG_WELCOME, MSG_REJECT})
    finally:
        peer.close()
    final = api.wait_for_final_state(run["id"])

    assert reply is not None, "no reply to the HELLO"
    assert final["state"]["type"] == "CRASHED", final["state"]
    assert "status code 2" in final["state"]["message"], (final["state"], worker.log_text())
