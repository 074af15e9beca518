#!/usr/bin/env python3
"""Helm's own engine without the helm binary, through the helm-python-sdk package (a ctypes
binding of Helm's Go SDK). Used by tests/tests/helm.rs when `helm` is not on PATH, run by
$SWITCHBOARD_PYTHON, else python3: scripts/install-test-deps.sh installs the package into a
virtual environment ($SWITCHBOARD_VENV, default /var/tmp/switchboard-venv), never into the
system Python, and scripts/test.sh points SWITCHBOARD_PYTHON at its python.

  helm_sdk.py lint CHART_DIR VALUES_JSON NAMESPACE      -> JSON lint report
  helm_sdk.py template CHART_DIR VALUES_JSON RELEASE NAMESPACE -> JSON {file: manifest}

Exit 3 when the package is missing.
"""
import json
import sys

try:
    import helm_python
except ImportError:
    print("the helm-python-sdk package is not installed", file=sys.stderr)
    sys.exit(3)


def main(argv):
    cmd, chart, values = argv[1], argv[2], json.loads(argv[3])
    if cmd == "lint":
        report = helm_python.lint(chart, values, strict=True, namespace=argv[4])
        print(json.dumps(report))
    elif cmd == "template":
        c = helm_python.Chart.load(chart)
        c.validate_schema(values)
        out = c.render(values, name=argv[4], namespace=argv[5], is_install=True)
        print(json.dumps(out))
    else:
        print(f"unknown command {cmd}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
