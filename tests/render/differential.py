"""Differential test: random rendering cases through Prefect and drover.

    differential.py DROVER_RENDER [--cases N] [--seed S] [--save DIR]

Generates N random cases (default 400, fixed seed): templates with nested
objects and lists, whole-string, inline and unset placeholders, $ENV,
Prefect variables and block references; variable schemas with defaults;
deployment and flow-run job variables with env and dotted keys; and, for
some cases, the prepare step and job-variable validation.  Each case is
rendered by Prefect's own code (prefect_reference.render_case) and by
drover-render, and the printed JSON must be identical byte for byte.  When
Prefect raises, drover must exit with status 1.  With --save, each
disagreement is written as a case folder for tests/render/cases.
"""
import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from prefect_reference import dumps, render_case

NAMES = ["a", "b", "c", "x", "y", "img", "cpu", "opt-1", "ü", "n_2"]
ENV_KEYS = ["A", "B", "C", "PATH_X", "PREFECT_API_KEY", "Ünï"]
STRINGS = ["", "plain", "it's", 'say "hi"', "both ' \"", "tab\tnl\n", "ünïcødé ✓", "😀",
           "\u200b", "back\\slash", "a.b", "0", "True", "None", " ", "x" * 40]
FLOATS = [0.0, -0.0, 1.0, 0.1, 2.5, 1e16, 1e15, 1.5e-07, 1e-05, 0.0001, 1e22, 5e-324,
          1.7976931348623157e308, 123456789.125, -3.75, 1 / 3]
VARIABLES = ["v1", "v2", "v3"]
BLOCKS = {
    "slug:secret/s1": {"value": "s3cr3t"},
    "slug:secret/s2": {"value": {"user": "u", "port": 5432, "list": [1, "two"]}},
    "slug:json/cfg": {"url": "http://h:1", "port": 8080, "tls": False, "nested": {"k": [1, 2]}},
    "document:0b1d2c3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e": {"token": "t", "n": 1},
}
BLOCK_SCALARS = ["prefect.blocks.secret.s1", "prefect.blocks.secret.s2.user",
                 "prefect.blocks.secret.s2.value.port", "prefect.blocks.json.cfg.url",
                 "prefect.blocks.json.cfg.nested.k[1]", "prefect.blocks.json.cfg.tls"]
BLOCK_ANY = BLOCK_SCALARS + ["prefect.blocks.secret.s2", "prefect.blocks.json.cfg.nested",
                             "prefect.blocks.json.missing", "prefect.blocks.json.cfg.nope"]
RUN = {"id": "6f1b0c1e-5a49-4f7e-9a39-3c1d1d4d1a01", "name": "crimson-owl",
       "flow_id": "7b2c6d3e-1f0a-4b6c-8d9e-0a1b2c3d4e5f",
       "deployment_id": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e51",
       "parameters": {"x": 1, "who": "world", "l": [1, 2]}}
FLOW = {"id": "7b2c6d3e-1f0a-4b6c-8d9e-0a1b2c3d4e5f", "name": "etl"}
DEPLOYMENT = {"id": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e51", "name": "nightly",
              "flow_id": FLOW["id"], "updated": "2026-08-21T23:30:00.25-01:00"}
POOL = {"name": "pool-a", "id": "2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f62"}


class Gen:
    def __init__(self, rng: random.Random):
        self.r = rng

    def scalar(self):
        r = self.r
        kind = r.randrange(7)
        if kind == 0:
            return None
        if kind == 1:
            return r.choice([True, False])
        if kind == 2:
            return r.choice([0, 1, -7, 2**53 + 1, 2**63 - 1, -2**63, r.randrange(-1000, 1000)])
        if kind == 3:
            return r.choice(FLOATS + [r.uniform(-1e6, 1e6), r.random() * 10 ** r.randrange(-30, 30)])
        return r.choice(STRINGS)

    def value(self, depth=0):
        r = self.r
        if depth > 3 or r.random() < 0.55:
            return self.scalar()
        if r.random() < 0.5:
            return [self.value(depth + 1) for _ in range(r.randrange(4))]
        return {r.choice(NAMES + ENV_KEYS): self.value(depth + 1) for _ in range(r.randrange(4))}

    def path(self):
        r = self.r
        name = r.choice(NAMES)
        suffix = r.choice(["", "", "", ".a", "[0]", "[-1]", ".0", ".x.y", "[1].b", ".1_0"])
        return name + suffix

    def placeholder(self, inline):
        r = self.r
        kind = r.random()
        if kind < 0.6:
            body = self.path()
        elif kind < 0.72:
            body = "$" + r.choice(["MYVAR", "NOPE_VAR", "ÜMLAUT", "$MYVAR"])
        elif kind < 0.86:
            body = "prefect.variables." + r.choice(VARIABLES + ["missing"])
        else:
            body = r.choice(BLOCK_SCALARS if inline and r.random() < 0.9 else BLOCK_ANY)
        left = r.choice([" ", "", "  ", "\n", " "])
        right = r.choice([" ", "", "\t", " "])
        return "{{" + left + body + right + "}}"

    def template_string(self):
        r = self.r
        kind = r.random()
        if kind < 0.45:
            return self.placeholder(inline=False)
        if kind < 0.85:
            parts = []
            for _ in range(r.randrange(1, 4)):
                parts.append(r.choice(["", "pre-", "/", " ", "é", "x="]))
                parts.append(self.placeholder(inline=True))
            parts.append(r.choice(["", "-post", "}", " {{ a b }}"]))
            return "".join(parts)
        return r.choice(STRINGS + ["{{ not a placeholder }}", "{x}", "{{}}"])

    def template(self, depth=0):
        r = self.r
        kind = r.random()
        if depth > 3 or kind < 0.6:
            return self.template_string() if r.random() < 0.85 else self.scalar()
        if kind < 0.8:
            return [self.template(depth + 1) for _ in range(r.randrange(4))]
        return {r.choice(NAMES + ["k", "{{ a }}"]): self.template(depth + 1)
                for _ in range(r.randrange(4))}

    def default(self):
        r = self.r
        kind = r.random()
        if kind < 0.15:
            return "{{ prefect.variables." + r.choice(VARIABLES) + " }}"
        if kind < 0.22:
            return "{{ " + r.choice(BLOCK_ANY[:8]) + " }}"
        if kind < 0.26:
            return {"$ref": {"block_document_id": "0b1d2c3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"}}
        return self.value()

    def env_object(self):
        r = self.r
        return {r.choice(ENV_KEYS): r.choice(["1", "two", None, "", "{{ a }}", "ü"])
                for _ in range(r.randrange(4))}

    def job_vars(self):
        r = self.r
        out = {}
        for _ in range(r.randrange(5)):
            key = r.choice(NAMES + ["env", "env", "env." + r.choice(ENV_KEYS), "a.b", "x.y.z",
                                    "cpu.n", "name"])
            if key == "env":
                out[key] = self.env_object()
            elif key.startswith("env."):
                out[key] = r.choice(["d", None, "{{ x }}"])
            elif key == "name":
                out[key] = r.choice(["{{ ctx.flow_run.name }}-{{ ctx.flow.name }}",
                                     "job-{{ ctx.flow_run.parameters.who }}",
                                     "{{ ctx.flow_run.nope }}", "", "fixed"])
            else:
                out[key] = self.value()
        return out

    def case(self):
        r = self.r
        config = {}
        config["env"] = r.choice(["{{ env }}", self.env_object()])
        for name in r.sample(["command", "labels", "name"], r.randrange(4)):
            config[name] = "{{ " + name + " }}"
        for _ in range(r.randrange(1, 6)):
            config[r.choice(NAMES + ["field", "nested"])] = self.template()
        properties = {}
        for name in NAMES + ["env", "labels", "name", "command"]:
            schema = {}
            if r.random() < 0.45:
                schema["default"] = self.default() if name not in ("env", "labels") else (
                    self.env_object() if name == "env" else {"team": "t"})
            if name == "name" and r.random() < 0.3:
                schema["default"] = "{{ ctx.flow_run.name }}"
            properties[name] = schema
        case = {
            "template": {"job_configuration": config,
                         "variables": {"type": "object", "properties": properties}},
            "environ": {"MYVAR": "hello", "ÜMLAUT": "ü"},
            "values": {
                "variables": {v: self.value() for v in VARIABLES if r.random() < 0.8},
                "blocks": BLOCKS,
            },
        }
        # Values of variables must not look like placeholders: Prefect
        # substitutes them one after the other, in set order.
        for v, val in case["values"]["variables"].items():
            if isinstance(val, str) and "{{" in val:
                case["values"]["variables"][v] = "plain"
        if r.random() < 0.7:
            case["deployment_vars"] = self.job_vars()
        if r.random() < 0.6:
            case["run_vars"] = self.job_vars()
        options = {}
        if r.random() < 0.45:
            case["flow_run"] = RUN
            case["flow"] = FLOW
            case["deployment"] = DEPLOYMENT
            case["work_pool"] = POOL
            case["settings_env"] = {"PREFECT_API_URL": "http://127.0.0.1:4200/api",
                                    "PREFECT_API_KEY": "k"}
            if r.random() < 0.5:
                options["worker_name"] = "w-1"
        if r.random() < 0.2:
            options["validate"] = True
            for name in r.sample(NAMES, 3):
                properties[name]["type"] = r.choice(["string", "integer", "number", "boolean",
                                                     "object", "array", ["string", "null"]])
        if options:
            case["options"] = options
        return case


FILE_NAMES = {
    "template": "template.json", "deployment_vars": "deployment-vars.json",
    "run_vars": "run-vars.json", "values": "values.json", "flow_run": "flow-run.json",
    "flow": "flow.json", "deployment": "deployment.json", "work_pool": "work-pool.json",
    "settings_env": "settings-env.json", "environ": "environ.json", "options": "options.json",
}
OPTIONS = [("deployment_vars", "--deployment-vars"), ("run_vars", "--run-vars"),
           ("values", "--values"), ("flow_run", "--flow-run"), ("flow", "--flow"),
           ("deployment", "--deployment"), ("work_pool", "--work-pool"),
           ("settings_env", "--settings-env")]


def write_case(case, folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    for key, name in FILE_NAMES.items():
        if key in case:
            (folder / name).write_text(json.dumps(case[key], indent=2, ensure_ascii=False) + "\n",
                                       encoding="utf-8")


def run_drover(tool, case, folder: Path):
    args = [tool, "--template", str(folder / "template.json")]
    for key, flag in OPTIONS:
        if key in case:
            args += [flag, str(folder / FILE_NAMES[key])]
    options = case.get("options") or {}
    if options.get("validate"):
        args.append("--validate")
    if options.get("worker_name"):
        args += ["--worker-name", options["worker_name"]]
    proc = subprocess.run(args, capture_output=True, env=case.get("environ") or {}, timeout=60)
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode(
        "utf-8", "replace")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("tool")
    parser.add_argument("--cases", type=int, default=400)
    parser.add_argument("--seed", type=int, default=20261204)
    parser.add_argument("--save", type=Path)
    args = parser.parse_args()

    gen = Gen(random.Random(args.seed))
    work = Path(tempfile.mkdtemp(prefix="render-diff-"))
    failures = 0
    counts = {"output": 0, "error": 0}
    try:
        for index in range(args.cases):
            case = gen.case()
            folder = work / f"case-{index:04d}"
            write_case(case, folder)
            expected = render_case(case)
            code, out, err = run_drover(args.tool, case, folder)
            if isinstance(expected, dict) and "$error" in expected:
                counts["error"] += 1
                ok = code == 1 and err.strip() != ""
            else:
                counts["output"] += 1
                ok = code == 0 and out == dumps(expected)
            if not ok:
                failures += 1
                print(f"MISMATCH case {index}: drover exit {code}: {err.strip()[:300]}")
                print("  prefect:", json.dumps(expected)[:600])
                print("  drover: ", out.replace("\n", "")[:600])
                if args.save:
                    target = args.save / f"diff-{args.seed}-{index:04d}"
                    write_case(case, target)
                    print(f"  saved as {target}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.cases} cases ({counts['output']} rendered, {counts['error']} errors in both), "
          f"{failures} mismatches")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
