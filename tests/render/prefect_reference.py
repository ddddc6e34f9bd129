"""Render a drover render case with Prefect's own Python code.

A case is a folder (or a dict with the same keys) holding the inputs of
`drover render`:

    template.json|yaml       base job template
    deployment-vars.json     the deployment's job_variables
    run-vars.json            the flow run's job_variables
    values.json              {"variables": {...}, "blocks": {"slug:T/N"|"document:ID": data}}
    flow-run.json flow.json deployment.json work-pool.json settings-env.json
    environ.json             the environment seen by {{ $NAME }}
    options.json             {"validate", "no_prepare", "worker_name", "worker_id",
                              "prefect_version"}

render_case() runs BaseJobConfiguration.resolve_for_flow_run (which calls
from_template_and_values, apply_values, resolve_block_document_references,
resolve_variables and prepare_for_flow_run) with a fake client serving the
case's data, and, with "validate", the server's job-variable validation.  It
returns the object drover must print, or {"$error": text} when Prefect
raises.
"""
import asyncio
import copy
import json
import os
import uuid
from pathlib import Path
from typing import Any

import yaml
from pydantic import ConfigDict

import prefect
import prefect.exceptions
from prefect.client.schemas.objects import Flow, FlowRun, WorkPool
from prefect.client.schemas.responses import DeploymentResponse
from prefect.workers.base import BaseJobConfiguration

FILES = {
    "template": "template",
    "deployment_vars": "deployment-vars",
    "run_vars": "run-vars",
    "values": "values",
    "flow_run": "flow-run",
    "flow": "flow",
    "deployment": "deployment",
    "work_pool": "work-pool",
    "settings_env": "settings-env",
    "environ": "environ",
    "options": "options",
}

DUMMY_FLOW_ID = "00000000-0000-4000-8000-0000000000f1"
DUMMY_RUN_ID = "00000000-0000-4000-8000-0000000000a1"


def load_case(folder: Path) -> dict:
    case = {}
    for key, stem in FILES.items():
        for ext in (".json", ".yaml", ".yml"):
            path = folder / (stem + ext)
            if path.exists():
                text = path.read_text(encoding="utf-8")
                case[key] = json.loads(text) if ext == ".json" else yaml.safe_load(text)
                break
    return case


class _Doc:
    def __init__(self, data):
        self.data = copy.deepcopy(data)


class _Var:
    def __init__(self, value):
        self.value = copy.deepcopy(value)


class FakeClient:
    """The PrefectClient calls the rendering path makes, served from the case."""

    def __init__(self, case: dict):
        values = case.get("values") or {}
        self.blocks = values.get("blocks") or {}
        self.variables = values.get("variables") or {}
        self.flow = case.get("flow")

    async def read_block_document(self, block_document_id):
        key = f"document:{block_document_id}"
        if key not in self.blocks:
            raise prefect.exceptions.ObjectNotFound(http_exc=Exception("404"))
        return _Doc(self.blocks[key])

    async def read_block_document_by_name(self, name, block_type_slug, include_secrets=True):
        key = f"slug:{block_type_slug}/{name}"
        if key not in self.blocks:
            raise prefect.exceptions.ObjectNotFound(http_exc=Exception("404"))
        return _Doc(self.blocks[key])

    async def read_variable_by_name(self, name):
        if name not in self.variables:
            return None
        return _Var(self.variables[name])

    async def read_flow(self, flow_id):
        return Flow.model_validate(self.flow or {"id": str(flow_id), "name": "dummy-flow"})

    async def read_deployment(self, deployment_id):
        raise AssertionError("the case must provide its deployment")


def _make_config_class(settings_env: dict, captured: list):
    class CaseConfiguration(BaseJobConfiguration):
        # Fields beyond the four base ones are kept as rendered, as a
        # worker-specific configuration class would carry them.
        model_config = ConfigDict(extra="allow")

        def __init__(self, **data: Any):
            captured.append(copy.deepcopy(data))
            super().__init__(**data)

        @classmethod
        def _base_environment(cls) -> dict:
            return dict(settings_env)

    return CaseConfiguration


async def _validate(case: dict) -> None:
    import prefect.server.api.validation as validation

    blocks = (case.get("values") or {}).get("blocks") or {}

    async def hydrate(variable, session):
        # The server reads the referenced block document from its database.
        ref = variable.get("$ref", {})
        block_id = ref.get("block_document_id")
        if block_id is None:
            return None
        return copy.deepcopy(blocks[f"document:{block_id}"])

    validation._resolve_default_reference = hydrate
    await validation._validate_work_pool_job_variables(
        None,
        "pool",
        case["template"],
        case.get("deployment_vars") or {},
        case.get("run_vars") or {},
        ignore_required=False,
        ignore_invalid_defaults=True,
    )


async def _render(case: dict) -> Any:
    options = case.get("options") or {}
    if options.get("validate"):
        await _validate(case)

    captured: list = []
    cls = _make_config_class(case.get("settings_env") or {}, captured)
    client = FakeClient(case)
    prepare = "flow_run" in case and not options.get("no_prepare")

    run_json = dict(case.get("flow_run") or {"id": DUMMY_RUN_ID, "name": "dummy-run",
                                              "flow_id": DUMMY_FLOW_ID})
    run_json["job_variables"] = copy.deepcopy(case.get("run_vars"))
    flow_run = FlowRun.model_validate(run_json)

    deployment = None
    if "deployment" in case or "deployment_vars" in case:
        dep_json = dict(case.get("deployment") or {"id": str(uuid.uuid4()), "name": "dummy",
                                                   "flow_id": DUMMY_FLOW_ID})
        if prepare and "deployment" not in case:
            raise AssertionError("a prepared case with deployment variables needs deployment.json")
        dep_json["job_variables"] = copy.deepcopy(case.get("deployment_vars") or {})
        deployment = DeploymentResponse.model_validate(dep_json)

    if prepare and "work_pool" not in case:
        raise AssertionError("a prepared case needs work-pool.json")
    pool_json = dict(case.get("work_pool") or {"name": "pool"})
    pool_json.setdefault("type", "drover")
    pool_json["base_job_template"] = copy.deepcopy(case["template"])
    work_pool = WorkPool.model_validate(pool_json)

    try:
        configuration = await cls.resolve_for_flow_run(
            flow_run,
            client=client,
            work_pool=work_pool,
            worker_name=options.get("worker_name"),
            worker_id=options.get("worker_id"),
            deployment=deployment,
        )
    except Exception:
        # Without the prepare step drover prints the dict that
        # from_template_and_values hands to the configuration class.
        if not prepare and captured:
            return captured[0]
        raise
    if not prepare:
        return captured[0]
    return configuration.model_dump(mode="json")


def render_case(case: dict) -> Any:
    """The object drover must print for the case, or {"$error": text}."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(case.get("environ") or {})
    try:
        return asyncio.run(_render(case))
    except AssertionError:
        raise
    except Exception as exc:  # every Prefect failure is an expected error
        return {"$error": f"{type(exc).__name__}: {exc}"}
    finally:
        os.environ.clear()
        os.environ.update(saved)


def dumps(value: Any) -> str:
    """The canonical text drover prints: json.dumps(indent=2) and a newline."""
    return json.dumps(value, indent=2) + "\n"
