"""A small client for the Prefect REST API calls the end-to-end tests make.

Every helper returns the server's own JSON records, so that the tests assert
on what the server stored and not on what a worker reports.  Waiting
helpers take a deadline only to bound the wait; they never assert that
something happened within a given time.
"""

import time
import uuid
from pathlib import Path

import httpx

FINAL_STATE_TYPES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})

# Upper bound on any single wait.  A flow run on a loaded two-core machine
# spends most of its time importing Prefect, so this is deliberately large.
DEFAULT_DEADLINE_SECONDS = 180.0

# Attempts of one request while the server returns 503 Service Unavailable.
RETRIES_ON_503 = 10


class WaitTimeout(AssertionError):
    """A waited-for condition did not hold before the deadline."""


def unique_name(prefix: str) -> str:
    """Return prefix followed by a short random suffix, for per-test names."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_until(predicate, what: str, deadline: float = DEFAULT_DEADLINE_SECONDS,
               interval: float = 0.5):
    """Call predicate until it returns a truthy value and return that value.

    Raises WaitTimeout naming `what` when the deadline passes first.
    """
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= end:
            raise WaitTimeout(f"timed out after {deadline:.0f} s waiting for {what}")
        time.sleep(interval)


class PrefectApi:
    """Synchronous helpers over one Prefect server's REST API."""

    def __init__(self, api_url: str):
        self.api_url = api_url.rstrip("/")
        self.http = httpx.Client(base_url=self.api_url + "/", timeout=30.0)

    def close(self) -> None:
        self.http.close()

    def _request(self, method: str, path: str, missing_ok: bool = False, **kwargs):
        """Send a request and return the decoded JSON body, None for an empty one.

        With missing_ok, a 404 Not Found returns None as well.
        The server returns 503 when SQLite is busy or locked and has rolled
        the transaction back, so the request is retried a bounded number of
        times.  Any other error status fails the test.
        """
        for attempt in range(RETRIES_ON_503):
            response = self.http.request(method, path.lstrip("/"), **kwargs)
            if response.status_code != 503:
                break
            time.sleep(min(0.5 * (attempt + 1), 5.0))
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code >= 400:
            raise AssertionError(
                f"{method} {path} returned {response.status_code}: {response.text}")
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    # Work pools and workers

    def create_pool(self, name: str, pool_type: str = "process",
                    base_job_template: dict | None = None) -> dict:
        body = {"name": name, "type": pool_type}
        if base_job_template is not None:
            body["base_job_template"] = base_job_template
        return self._request("POST", "/work_pools/", json=body)

    def read_pool(self, name: str) -> dict | None:
        """Return the pool, or None when the server has no pool of that name."""
        return self._request("GET", f"/work_pools/{name}", missing_ok=True)

    def pool_workers(self, pool: str) -> list[dict]:
        return self._request("POST", f"/work_pools/{pool}/workers/filter", json={})

    # Flows, deployments and flow runs

    def create_flow(self, name: str) -> dict:
        """Create the flow, or return the existing one of that name."""
        return self._request("POST", "/flows/", json={"name": name})

    def create_deployment(self, flow_name: str, pool: str, examples_dir: Path,
                          entrypoint: str | None = None,
                          job_variables: dict | None = None,
                          parameters: dict | None = None,
                          work_queue: str | None = None) -> dict:
        """Create a deployment of examples/flows.py:<flow_name> on pool.

        Runs go to work_queue, which the server creates when missing, or to
        the pool's default queue.  The deployment's only pull step changes into examples_dir, so the
        flow run process loads the flow from the working tree.
        """
        flow = self.create_flow(flow_name)
        body = {
            "name": unique_name(flow_name),
            "flow_id": flow["id"],
            "work_pool_name": pool,
            "entrypoint": entrypoint or f"flows.py:{flow_name}",
            "path": str(examples_dir),
            "pull_steps": [{
                "prefect.deployments.steps.set_working_directory": {
                    "directory": str(examples_dir),
                },
            }],
            "job_variables": job_variables or {},
            "parameters": parameters or {},
            "enforce_parameter_schema": False,
        }
        if work_queue is not None:
            body["work_queue_name"] = work_queue
        return self._request("POST", "/deployments/", json=body)

    def create_flow_run(self, deployment_id: str, job_variables: dict | None = None,
                        parameters: dict | None = None) -> dict:
        body = {"job_variables": job_variables or {}}
        if parameters is not None:
            body["parameters"] = parameters
        return self._request("POST", f"/deployments/{deployment_id}/create_flow_run",
                             json=body)

    def read_flow_run(self, flow_run_id: str) -> dict:
        return self._request("GET", f"/flow_runs/{flow_run_id}")

    def state_history(self, flow_run_id: str) -> list[dict]:
        """Return the run's states, oldest first."""
        states = self._request("GET", "/flow_run_states/",
                               params={"flow_run_id": flow_run_id})
        return sorted(states, key=lambda state: state["timestamp"])

    def logs(self, flow_run_id: str, limit: int = 200) -> list[dict]:
        """Return up to limit of the run's log records, oldest first."""
        body = {
            "logs": {"flow_run_id": {"any_": [flow_run_id]}},
            "sort": "TIMESTAMP_ASC",
            "limit": limit,
        }
        return self._request("POST", "/logs/filter", json=body)

    # Waiting

    def wait_for_final_state(self, flow_run_id: str,
                             deadline: float = DEFAULT_DEADLINE_SECONDS) -> dict:
        """Wait until the run is in a final state and return the run."""
        def final_run():
            run = self.read_flow_run(flow_run_id)
            state = run.get("state") or {}
            return run if state.get("type") in FINAL_STATE_TYPES else None

        return wait_until(final_run, f"flow run {flow_run_id} to reach a final state",
                          deadline)

    def wait_for_state(self, flow_run_id: str, state_type: str,
                       deadline: float = DEFAULT_DEADLINE_SECONDS) -> dict:
        """Wait until the run's state has been state_type at least once."""
        def reached():
            return any(state["type"] == state_type
                       for state in self.state_history(flow_run_id))

        wait_until(reached, f"flow run {flow_run_id} to reach {state_type}", deadline)
        return self.read_flow_run(flow_run_id)
