"""openapi/openapi.yaml passes `redocly lint` (Redocly's strict recommended ruleset, see
redocly.yaml) with no errors. Needs the npm packages of package.json (`npm ci`)."""
import os
import subprocess

from harness import run
from test_contract import ROOT, require_node_modules


def test_openapi_lint(_make):
    require_node_modules()
    p = subprocess.run(["npx", "--no-install", "redocly", "lint", "openapi/openapi.yaml"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, REDOCLY_TELEMETRY="off", NO_COLOR="1",
                                REDOCLY_SUPPRESS_UPDATE_NOTICE="true"))
    out = p.stdout + p.stderr
    assert p.returncode == 0, "redocly lint failed:\n" + out[-6000:]
    assert "Your API description is valid" in out, out[-6000:]


if __name__ == "__main__":
    run([test_openapi_lint])
