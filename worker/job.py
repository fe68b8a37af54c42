"""What an HTCondor job runs on the execute node, before Prefect's engine takes over.

    python -m canfar_catalogue.worker.job

It refuses to start when the installed canfar-catalogue is not the version the
deployment expects (a worker image built from another release would compute
different catalogues), points the CADC settings at the credentials HTCondor
transferred into the job's scratch directory, loads secrets sent as files into
this process only, and then replaces itself with ``python -m prefect.engine``,
which runs the flow run named by ``PREFECT__FLOW_RUN_ID``.
"""

from __future__ import annotations

import json
import os
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

VERSION_MISMATCH = 3


def _toml(sections: dict[str, dict]) -> str:
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, (int, float)):
                lines.append(f"{key} = {value}")
            else:
                lines.append(f"{key} = {json.dumps(str(value))}")  # a JSON string is a TOML basic string
    return "\n".join(lines) + "\n"


def credential_settings(scratch: Path, environment: dict[str, str]) -> dict[str, dict] | None:
    """``[cadc]`` settings for the credentials found in the job, or None when there are none."""
    cadc = {}
    if environment.get("X509_USER_PROXY"):
        cadc.update(auth="certificate", certificate=environment["X509_USER_PROXY"])
    if (scratch / "cadc-token").is_file():
        cadc.update(auth="token", token_file=str(scratch / "cadc-token"))
    if (scratch / ".netrc").is_file():
        cadc["netrc"] = str(scratch / ".netrc")
    if not cadc:
        return None
    sections: dict[str, dict] = {}
    current = environment.get("CANFAR_CATALOGUE_SETTINGS")
    if current and Path(current).is_file():
        sections = tomllib.loads(Path(current).read_text())
    sections.setdefault("cadc", {}).update(cadc)
    return sections


def main() -> int:
    expected = os.environ.get("CANFAR_CATALOGUE_EXPECTED_VERSION", "")
    try:
        installed = version("canfar-catalogue")
    except PackageNotFoundError:
        installed = "none"
    if expected and installed != expected:
        print(
            f"canfar-catalogue {installed} is installed on this execute node, but the deployment expects {expected}: "
            "rebuild the worker image at that version (deployments/worker-cloud-init.yaml) or deploy the version "
            "the image has",
            file=sys.stderr,
        )
        return VERSION_MISMATCH
    scratch = Path(os.environ.get("_CONDOR_SCRATCH_DIR", os.getcwd()))
    environment = dict(os.environ)
    for secret in scratch.glob("*.secret"):
        environment[secret.stem] = secret.read_text()
    sections = credential_settings(scratch, environment)
    if sections is not None:
        settings = scratch / "canfar-catalogue-settings.toml"
        settings.write_text(_toml(sections))
        environment["CANFAR_CATALOGUE_SETTINGS"] = str(settings)
    os.execve(sys.executable, [sys.executable, "-m", "prefect.engine"], environment)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
