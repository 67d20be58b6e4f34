"""On PYTHONPATH while the tests' shared `dvc repro` runs (tests/conftest.py): each
`mlproject <stage>` process that DVC starts records, as it exits, the project modules it
imported, in $MLPROJECT_IMPORT_PROBE/<stage>.json (read by tests/test_dvc_deps.py)."""

import atexit
import json
import os
import sys


def record() -> None:
    if os.path.basename(sys.argv[0]) == "mlproject" and len(sys.argv) > 1:
        modules = sorted(m for m in sys.modules if m.split(".")[0] == "mlproject")
        with open(os.path.join(os.environ["MLPROJECT_IMPORT_PROBE"], f"{sys.argv[1]}.json"), "w") as handle:
            json.dump(modules, handle)


if os.environ.get("MLPROJECT_IMPORT_PROBE"):
    atexit.register(record)
