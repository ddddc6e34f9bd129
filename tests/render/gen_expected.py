"""Write expected.json for every golden case from Prefect's own code.

    .venv/bin/python tests/render/gen_expected.py [CASE_DIR ...]

Without arguments every folder under tests/render/cases/ is regenerated.
A case where drover intentionally differs from Prefect has a file
`differs` explaining why; its expected.json is written by hand and is
left alone here.
"""
import sys
from pathlib import Path

from prefect_reference import dumps, load_case, render_case

HERE = Path(__file__).resolve().parent


def main(argv):
    folders = [Path(a) for a in argv] or sorted(p for p in (HERE / "cases").iterdir() if p.is_dir())
    for folder in folders:
        if (folder / "differs").exists():
            print(f"skip   {folder.name} (drover differs on purpose)")
            continue
        result = render_case(load_case(folder))
        (folder / "expected.json").write_text(dumps(result), encoding="utf-8")
        kind = "error" if isinstance(result, dict) and "$error" in result else "output"
        print(f"{kind:6} {folder.name}")


if __name__ == "__main__":
    main(sys.argv[1:])
