"""``canfar-catalogue submit``: the tutorial's submit file, run as a batch.

    canfar-catalogue submit do_catalogue.sub <image> <flavour> --destination vos:<space>/<path>

takes the same positional arguments as ``canfar_submit`` and the submit file a
CANFAR user already has.  The file is parsed by ``htcondor2.Submit``; the
observation IDs are its queue items (``queue arguments from (...)`` or
``queue id from (...)``), and the batch deployment is started for them with
the image and flavour as job variables of the htcondor work pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..boundaries import ids

#: Submit commands with a meaning here: what becomes of each.
HANDLED = {
    "executable": "replaced by the catalogue flow",
    "arguments": "the observation ID of each job",
    "output": "a per-job file beside the job's user log",
    "error": "a per-job file beside the job's user log",
    "log": "a per-job user log on the submit host",
    "request_cpus": "passed on",
    "request_memory": "passed on",
    "request_disk": "passed on",
    "universe": "always vanilla",
    "should_transfer_files": "always YES",
    "when_to_transfer_output": "always ON_EXIT",
    "transfer_executable": "not needed",
}
RESOURCES = ("request_cpus", "request_memory", "request_disk")


class SubmitFileError(ValueError):
    """The submit file cannot become a batch; the message says why."""


@dataclass
class ImportedSubmit:
    ids: list[str]
    job_variables: dict
    notes: list[str] = field(default_factory=list)


def read_submit_file(path: Path, image: str, flavour: str, project: str = "") -> ImportedSubmit:
    """The IDs and job variables of a tutorial-style submit file, and what was not carried over."""
    import htcondor2

    try:
        text = path.read_text()
    except OSError as exc:
        raise SubmitFileError(f"cannot read the submit file {path}: {exc.strerror}") from None
    try:
        submit = htcondor2.Submit(text)
        items = list(submit.itemdata() or [])
    except Exception as exc:  # htcondor2 raises several types for a malformed file
        raise SubmitFileError(f"{path} is not a submit file HTCondor can read: {exc}") from None
    if not items:
        raise SubmitFileError(
            f"{path} queues no observation IDs: end it with `queue arguments from ( 1056215p ... )` "
            "or `queue id from ( ... )`"
        )
    observation_ids = []
    for item in items:
        value = item.get("arguments", item.get("id"))
        if value is None:
            names = ", ".join(sorted(item))
            raise SubmitFileError(f"{path}: the queue items are named {names}; name them arguments or id")
        observation_ids.append(value.strip())
    try:
        observation_ids = ids.check_all(observation_ids, limit=100_000)
    except ids.InvalidID as exc:
        raise SubmitFileError(f"{path}: {exc}") from None

    notes = []
    if "executable" in submit:
        notes.append(f"executable {submit['executable']} is replaced by the catalogue flow (same science, one job per ID)")
    if any(key in submit for key in ("output", "error", "log")):
        notes.append("output, error and log become per-job files beside each job's user log on the submit host")
    unsupported = sorted(key for key in submit.keys() if key.lower() not in HANDLED)
    if unsupported:
        notes.append(f"not carried over (unsupported here): {', '.join(unsupported)}")
    variables: dict = {"image": image, "flavour": flavour, "project": project}
    for key in RESOURCES:
        if key in submit:
            variables[key] = int(submit[key]) if key == "request_cpus" else submit[key]
    return ImportedSubmit(observation_ids, variables, notes)
