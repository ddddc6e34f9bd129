"""An executor on another host: a network namespace of the test's own,
joined to the supervisor's over a veth pair, speaking CURVE."""

import random
import subprocess
import uuid
from pathlib import Path

import pytest

import processes
from prefect_api import unique_name, wait_until


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def namespace():
    """Yield (namespace name, supervisor address, executor address) of a new
    namespace linked to this one by a veth pair on a private /24."""
    suffix = uuid.uuid4().hex[:6]
    name = f"drover-{suffix}"
    host_end, ns_end = f"dvh{suffix}", f"dvn{suffix}"
    subnet = f"10.{random.randint(64, 127)}.{random.randint(0, 255)}"
    ip("netns", "add", name)
    try:
        ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        ip("link", "set", ns_end, "netns", name)
        ip("addr", "add", f"{subnet}.1/24", "dev", host_end)
        ip("link", "set", host_end, "up")
        ip("-n", name, "addr", "add", f"{subnet}.2/24", "dev", ns_end)
        ip("-n", name, "link", "set", ns_end, "up")
        ip("-n", name, "link", "set", "lo", "up")
        yield name, f"{subnet}.1", f"{subnet}.2"
    finally:
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def keygen(path: Path) -> str:
    """Write a CURVE secret key to path and return its public key."""
    drover = processes.build_dir() / "bin" / "drover"
    result = subprocess.run([str(drover), "keygen", str(path)], check=True,
                            capture_output=True, text=True)
    return result.stdout.strip()


def drover_template() -> dict:
    import json
    drover = processes.build_dir() / "bin" / "drover"
    result = subprocess.run([str(drover), "template", "process"], check=True,
                            capture_output=True, text=True)
    return json.loads(result.stdout)


def start_remote_executor(start_process, namespace_name: str, endpoint: str,
                          server_key: str, secret_file: Path, state_dir: Path, label: str):
    program = processes.build_dir() / "bin" / "drover-executor-process"
    argv = ["ip", "netns", "exec", namespace_name, str(program),
            "--id", label, "--connect", endpoint,
            "--curve-server-key", server_key, "--curve-secret-key-file", str(secret_file),
            "--state-dir", str(state_dir)]
    return start_process(argv, processes.clean_environment(), label)


def test_remote_executor_over_curve(api, start_worker, start_process, worker_kind,
                                    examples_dir, namespace, tmp_path):
    worker_kind.require_drover("executors on other hosts are drover's")
    ns_name, supervisor_address, _ = namespace
    port = processes.free_loopback_port()
    endpoint = f"tcp://{supervisor_address}:{port}"
    server_key = keygen(tmp_path / "supervisor.key")
    executor_key = keygen(tmp_path / "executor.key")
    stranger_key = keygen(tmp_path / "stranger.key")
    (tmp_path / "allowed.pub").write_text(f"# executors allowed in\n{executor_key}\n")
    pool = unique_name("pool")
    api.create_pool(pool, "process", base_job_template=drover_template())

    start_remote_executor(start_process, ns_name, endpoint, server_key,
                          tmp_path / "executor.key", tmp_path / "state", "remote-1")
    start_remote_executor(start_process, ns_name, endpoint, server_key,
                          tmp_path / "stranger.key", tmp_path / "state-stranger", "stranger-1")
    worker = start_worker(pool=pool, extra_args=[
        "--no-local-executor", "--bind", endpoint,
        "--curve-secret-key-file", str(tmp_path / "supervisor.key"),
        "--curve-allow-file", str(tmp_path / "allowed.pub")])
    deployment = api.create_deployment("hello", pool, examples_dir)
    run = api.create_flow_run(deployment["id"], job_variables={
        "command": '/bin/sh -c "echo from the namespace; exit 4"'})

    final = api.wait_for_final_state(run["id"])
    wait_until(lambda: any(record["message"].strip() == "from the namespace"
                           for record in api.logs(run["id"])),
               "the remote executor's output in the run's logs")
    log = worker.process.log_text()

    assert final["state"]["type"] == "CRASHED", final["state"]
    assert "status code 4" in final["state"]["message"], final["state"]
    assert "executor=remote-1 event=connected" in log, log
    assert "stranger-1 event=connected" not in log, log
    assert f"event=executor_refused mechanism=CURVE public_key={stranger_key}" in log, log


def test_plaintext_remote_bind_rejected(start_process, worker_kind, prefect_server,
                                        namespace, tmp_path):
    worker_kind.require_drover("executors on other hosts are drover's")
    _, supervisor_address, _ = namespace
    drover = processes.build_dir() / "bin" / "drover"
    env = processes.worker_environment(prefect_server.api_url, tmp_path, worker_kind.venv)
    process = start_process([str(drover), "worker", "start", "--pool", unique_name("pool"),
                             "--bind", f"tcp://{supervisor_address}:5999"], env, "drover")

    status = processes.wait_for_exit(process, 30)

    assert status not in (0, None), status
    assert "CURVE" in process.log_text(), process.log_text()
