"""Compares the default base job template that drover derives for the
process executor ("drover template process") with the one Prefect's own
process worker generates, field by field.  Descriptions are drover's own
words and are not compared.

    python prefect_template.py DROVER_BINARY     (run with Prefect installed)
"""
import json
import subprocess
import sys

from prefect.workers.process import ProcessWorker


def main():
    drover = json.loads(subprocess.run([sys.argv[1], "template", "process"], capture_output=True,
                                       check=True, text=True).stdout)
    prefect = ProcessWorker.get_default_base_job_template()
    failures = []

    if drover["job_configuration"] != prefect["job_configuration"]:
        failures.append(f"job_configuration: drover {drover['job_configuration']}, "
                        f"Prefect {prefect['job_configuration']}")
    ours = drover["variables"]["properties"]
    theirs = prefect["variables"]["properties"]
    if sorted(ours) != sorted(theirs):
        failures.append(f"variables: drover {sorted(ours)}, Prefect {sorted(theirs)}")
    for name in sorted(set(ours) & set(theirs)):
        a = {k: v for k, v in ours[name].items() if k != "description"}
        b = {k: v for k, v in theirs[name].items() if k != "description"}
        if a != b:
            failures.append(f"variable {name}: drover {a}, Prefect {b}")

    for f in failures:
        print("FAIL " + f)
    print(f"{1 if not failures else 0} passed, {1 if failures else 0} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
