"""Example Prefect flows for trying drover and for its end-to-end tests.

Each flow is a deployment entrypoint such as ``flows.py:hello``.  Deployments
that use them pull nothing and only change into this folder with the pull
step ``prefect.deployments.steps.set_working_directory``, so the worker's
machine needs this folder and a Python environment with Prefect installed.

The flows write with plain ``print`` to standard output on purpose: Prefect
itself sends nothing of it to the API, so any of these lines found in a run's
logs was forwarded by the worker from the process output.

    hello(name)            prints a greeting and returns it
    fail(message)          raises RuntimeError, so the run ends FAILED
    sleepy(seconds)        sleeps for the given number of seconds
    env_echo(names)        prints NAME=value for each named environment variable
"""

import os
import time

from prefect import flow


@flow(name="hello")
def hello(name: str = "world") -> str:
    greeting = f"Hello, {name}!"
    print(greeting, flush=True)
    return greeting


@flow(name="fail")
def fail(message: str = "this flow fails on purpose") -> None:
    raise RuntimeError(message)


@flow(name="sleepy")
def sleepy(seconds: float = 5.0) -> float:
    print(f"sleeping for {seconds} s", flush=True)
    time.sleep(seconds)
    print("awake", flush=True)
    return seconds


@flow(name="env_echo")
def env_echo(names: list[str] | None = None) -> dict[str, str | None]:
    """Print NAME=value for each variable in names, NAME unset when missing."""
    if names is None:
        names = ["PREFECT__FLOW_RUN_ID", "PREFECT_API_URL"]
    values = {name: os.environ.get(name) for name in names}
    for name, value in values.items():
        print(f"{name}={value}" if value is not None else f"{name} unset", flush=True)
    return values


if __name__ == "__main__":
    hello()
