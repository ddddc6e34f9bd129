"""Default base job templates: drover's derivation against Prefect's.

    declared_test.py DROVER_RENDER

For worker classes defined here with Prefect's own base classes, the
declared executor schema is built from the class (one field per
configuration property, its JSON schema, its template), then
`drover render --declared FILE --print-template` must print exactly what
BaseWorker.get_default_base_job_template() returns.  Also checks
render_check_template (`--template FILE --print-template`) against the
server's validate_base_job_template on valid and invalid templates.
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

from pydantic import Field

from prefect.server.schemas.actions import validate_base_job_template
from prefect.workers.base import BaseJobConfiguration, BaseVariables, BaseWorker
from prefect.workers.process import ProcessWorker


class CustomConfiguration(BaseJobConfiguration):
    image: str = Field(default="busybox", description="Image to run.")
    memory: Optional[int] = Field(default=None, json_schema_extra={"template": "{{ memory_mb }}"})
    retries: int = Field(default=3, ge=0)


class CustomVariables(BaseVariables):
    image: str = Field(default="busybox")
    memory_mb: Optional[int] = Field(default=None)
    retries: int = Field(default=3)


class InferredWorker(BaseWorker):
    type = "inferred"
    job_configuration = CustomConfiguration


class ExplicitWorker(BaseWorker):
    type = "explicit"
    job_configuration = CustomConfiguration
    job_configuration_variables = CustomVariables


def declared_schema(worker) -> dict:
    """The schema an executor declares for a worker class."""
    props = worker.job_configuration.model_json_schema()["properties"]
    fields = []
    for name, schema in props.items():
        schema = dict(schema)
        template = schema.pop("template", None)
        field = {"name": name, "schema": schema}
        if template:
            field["template"] = template
        fields.append(field)
    variables = None
    if worker.job_configuration_variables is not None:
        variables = worker.job_configuration_variables.model_json_schema()
    return {"type": worker.type, "fields": fields, "variables": variables}


def run(tool, *args):
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


def main(tool) -> int:
    failures = 0
    work = Path(tempfile.mkdtemp(prefix="render-declared-"))
    for worker in (ProcessWorker, InferredWorker, ExplicitWorker):
        path = work / f"{worker.type}.json"
        path.write_text(json.dumps(declared_schema(worker)))
        expected = json.dumps(worker.get_default_base_job_template(), indent=2) + "\n"
        proc = run(tool, "--declared", str(path), "--print-template")
        if proc.returncode != 0 or proc.stdout != expected:
            failures += 1
            print(f"FAIL default template of {worker.type}: exit {proc.returncode} {proc.stderr}")
            print("expected:", expected)
            print("drover:  ", proc.stdout)
        else:
            print(f"ok   default template of {worker.type}")

    templates = {
        "valid": ProcessWorker.get_default_base_job_template(),
        "empty": {},
        "undeclared": {"job_configuration": {"a": "{{ x }}", "b": {"{{ k }}": "{{ y }}"}},
                       "variables": {"properties": {"y": {}}}},
        "escaped": {"job_configuration": {"a": "{{\nx }}", "b": "{{ héllo }}"},
                    "variables": {"properties": {}}},
        "prefect-variable": {"job_configuration": {"a": "{{ prefect.variables.v }}"},
                             "variables": {"properties": {"y": {}}}},
        "no-variables": {"job_configuration": {"a": 1}},
        "empty-variables": {"job_configuration": {"a": 1}, "variables": {}},
    }
    for name, template in templates.items():
        path = work / f"template-{name}.json"
        path.write_text(json.dumps(template))
        try:
            validate_base_job_template(template)
            prefect_ok = True
        except ValueError:
            prefect_ok = False
        proc = run(tool, "--template", str(path), "--print-template")
        drover_ok = proc.returncode == 0
        if drover_ok != prefect_ok:
            failures += 1
            print(f"FAIL template check {name}: Prefect accepts={prefect_ok}, drover "
                  f"accepts={drover_ok} {proc.stderr.strip()}")
        else:
            print(f"ok   template check {name}")
    print(f"{failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
