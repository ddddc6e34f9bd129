"""Start-up errors: the worker exits non-zero and names the value to fix."""

from processes import free_loopback_port, wait_for_exit, worker_environment
from prefect_api import unique_name

EXIT_DEADLINE_SECONDS = 120.0


def start_and_wait(start_process, worker_kind, env, tmp_path):
    argv = worker_kind.worker_argv(unique_name("pool"), unique_name("worker"), None, [], None,
                                   [])
    process = start_process(argv, env, f"{worker_kind.name} worker")
    status = wait_for_exit(process, EXIT_DEADLINE_SECONDS)
    assert status is not None, \
        f"worker still running {EXIT_DEADLINE_SECONDS:.0f} s after a start-up error"
    return status, process.log_text()


def test_unreachable_api_url_exits(start_process, worker_kind, tmp_path):
    worker_kind.require_drover("Prefect's worker retries an unreachable server")
    # Nothing listens on this loopback port once the probe socket is closed.
    api_url = f"http://127.0.0.1:{free_loopback_port()}/api"
    env = worker_environment(api_url, tmp_path, worker_kind.venv)

    status, output = start_and_wait(start_process, worker_kind, env, tmp_path)

    assert status != 0, output
    assert api_url in output, output
    assert "PREFECT_API_URL" in output, output


def test_missing_api_url_exits(start_process, worker_kind, tmp_path):
    worker_kind.require_drover("Prefect's worker starts a temporary server instead")
    env = worker_environment(None, tmp_path, worker_kind.venv)

    status, output = start_and_wait(start_process, worker_kind, env, tmp_path)

    assert status != 0, output
    assert "PREFECT_API_URL" in output, output
