"""Differential test of job-variable validation against Prefect's server.

    validation_differential.py DROVER_RENDER [--cases N] [--seed S]

Generates random variables schemas (types, enums, anyOf, oneOf, allOf,
required, nested objects and arrays, additionalProperties, $ref to
definitions, valid and invalid defaults, numeric and length bounds) and
random job variables, and requires `drover render --validate` to accept
exactly the inputs that Prefect's _validate_work_pool_job_variables accepts
when a flow run is created.
"""
import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import prefect.server.api.validation as validation

TYPES = ["string", "integer", "number", "boolean", "object", "array", "null"]


class Gen:
    def __init__(self, rng):
        self.r = rng

    def value(self, depth=0):
        r = self.r
        kind = r.randrange(9 if depth < 2 else 6)
        if kind == 0:
            return None
        if kind == 1:
            return r.choice([True, False])
        if kind == 2:
            return r.choice([0, 1, -3, 7, 100, 2**40])
        if kind == 3:
            return r.choice([0.5, 1.0, -2.25, 3.0, 1e10])
        if kind in (4, 5):
            return r.choice(["", "a", "abc", "fast", "slow", "ü", "12", "x" * 12])
        if kind in (6, 7):
            return [self.value(depth + 1) for _ in range(r.randrange(4))]
        return {r.choice(["a", "b", "c", "k"]): self.value(depth + 1) for _ in range(r.randrange(3))}

    def schema(self, depth=0, defs=None):
        r = self.r
        kind = r.randrange(10 if depth < 2 else 6)
        s = {}
        if kind <= 2:
            s["type"] = r.choice(TYPES)
        elif kind == 3:
            s["type"] = r.sample(TYPES, 2)
        elif kind == 4:
            s["enum"] = [self.value(2) for _ in range(r.randrange(1, 4))]
        elif kind == 5:
            if defs:
                s["$ref"] = "#/definitions/" + r.choice(sorted(defs))
            else:
                s["type"] = "string"
        elif kind == 6:
            s["anyOf"] = [self.schema(depth + 1, defs) for _ in range(r.randrange(1, 3))]
        elif kind == 7:
            s[r.choice(["oneOf", "allOf"])] = [self.schema(depth + 1, defs)
                                              for _ in range(r.randrange(1, 3))]
        elif kind == 8:
            s["type"] = "object"
            s["properties"] = {k: self.schema(depth + 1, defs) for k in r.sample("abck", 2)}
            if r.random() < 0.4:
                s["required"] = r.sample(sorted(s["properties"]), 1)
            if r.random() < 0.5:
                s["additionalProperties"] = r.choice([False, True, {"type": "string"}])
        else:
            s["type"] = "array"
            s["items"] = self.schema(depth + 1, defs)
            if r.random() < 0.3:
                s["minItems"] = r.randrange(3)
        t = s.get("type")
        if t in ("integer", "number") and r.random() < 0.4:
            s[r.choice(["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"])] = r.choice([0, 1, 5])
        if t == "string" and r.random() < 0.4:
            s[r.choice(["minLength", "maxLength"])] = r.randrange(4)
        if r.random() < 0.3:
            s["default"] = self.value()
        return s

    def case(self):
        r = self.r
        defs = {}
        for name in r.sample(["Mode", "Limits", "Tag"], r.randrange(3)):
            defs[name] = self.schema(1)
        props = {name: self.schema(0, defs) for name in r.sample(["image", "cpu", "mode", "opts", "tags", "n"], r.randrange(1, 6))}
        variables = {"type": "object", "properties": props}
        if defs:
            variables["definitions"] = defs
        if r.random() < 0.5:
            variables["required"] = r.sample(sorted(props), r.randrange(len(props) + 1))
        job_vars = {}
        for name in props:
            if r.random() < 0.6:
                job_vars[name] = self.value()
        if r.random() < 0.1:
            job_vars["extra"] = 1
        return variables, job_vars


def prefect_accepts(variables, job_vars):
    template = {"job_configuration": {"x": 1}, "variables": variables}
    try:
        asyncio.run(validation._validate_work_pool_job_variables(
            None, "pool", template, job_vars, {}, ignore_required=False,
            ignore_invalid_defaults=True))
        return True, ""
    except Exception as exc:  # HTTPException for a bad schema, ValidationError otherwise
        return False, f"{type(exc).__name__}: {getattr(exc, 'detail', exc)}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("tool")
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--seed", type=int, default=4242)
    args = parser.parse_args()
    gen = Gen(random.Random(args.seed))
    work = Path(tempfile.mkdtemp(prefix="render-validate-"))
    failures = 0
    accepted = 0
    for index in range(args.cases):
        variables, job_vars = gen.case()
        ok, why = prefect_accepts(variables, job_vars)
        accepted += ok
        tpath = work / "template.json"
        vpath = work / "vars.json"
        tpath.write_text(json.dumps({"job_configuration": {"x": 1}, "variables": variables}))
        vpath.write_text(json.dumps(job_vars))
        proc = subprocess.run([args.tool, "--template", str(tpath), "--deployment-vars",
                               str(vpath), "--validate", "--no-prepare"],
                              capture_output=True, text=True, timeout=60)
        drover_ok = proc.returncode == 0
        if proc.returncode not in (0, 1) or drover_ok != ok:
            failures += 1
            print(f"MISMATCH case {index}: Prefect accepts={ok} ({why}); drover exit "
                  f"{proc.returncode}: {proc.stderr.strip()}")
            print("  variables:", json.dumps(variables))
            print("  job vars: ", json.dumps(job_vars))
    print(f"{args.cases} cases ({accepted} accepted by Prefect), {failures} mismatches")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
