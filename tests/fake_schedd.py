"""A fake HTCondor schedd with ``htcondor2.Schedd``'s surface that really runs jobs.

``submit``, ``query`` and ``act`` behave like the real ones for what the
worker and the provisioning flow use.  Each job runs as a local process in its
own scratch directory (``_CONDOR_SCRATCH_DIR``), its input files (and
``x509userproxy``) copied in, under a small supervisor process that writes a
genuine HTCondor user log (000 submit, 001 execute, 004 evicted, 005
terminated, 009 aborted, 012 held, 013 released), so the worker's log-following
code is exercised through the real ``htcondor2.JobEventLog`` parser.

State lives in a folder, so the worker (which submits) and a test (which
holds or evicts a running job) can be different processes, and jobs outlive a
worker restart, as they do in HTCondor.  Test code, not a product feature.

    python -m tests.fake_schedd <state folder> <cluster>     # the supervisor of one job
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import classad2
import htcondor2

IDLE, RUNNING, REMOVED, COMPLETED, HELD = 1, 2, 3, 4, 5
_USAGE = "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  {} Usage\n"
USAGE = _USAGE.format("Run Remote") + _USAGE.format("Run Local")
TOTAL_USAGE = _USAGE.format("Total Remote") + _USAGE.format("Total Local")


def from_environment() -> "FakeSchedd":
    """The factory named in the tests' settings: the state folder comes from the environment."""
    return FakeSchedd(Path(os.environ["FAKE_SCHEDD_STATE"]))


def pool_from_environment() -> "FakePool":
    return FakePool(Path(os.environ["FAKE_SCHEDD_STATE"]))


class FakePool:
    """The pool's execute nodes, in the fake schedd's state folder.

    A VM "joins" when a test says its cloud-init ran (:meth:`join`); jobs are
    matched to free cores by :meth:`FakeSchedd.negotiate`, as HTCondor's
    negotiator would, when the state folder is in matchmaking mode.
    """

    def __init__(self, state: Path):
        self.state = Path(state)
        (self.state / "startds").mkdir(parents=True, exist_ok=True)

    def _path(self, server_id: str) -> Path:
        return self.state / "startds" / f"{server_id}.json"

    def join(self, server_id: str, vm_type: str, cpus: int = 2) -> None:
        ad = {"Machine": f"vm-{server_id[:8]}.cloud", "NovaServerId": server_id, "VMType": vm_type,
              "TotalSlotCpus": cpus, "Cpus": cpus, "Draining": False}
        self._path(server_id).write_text(json.dumps(ad))

    def leave(self, server_id: str) -> None:
        self._path(server_id).unlink(missing_ok=True)

    def ads(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted((self.state / "startds").glob("*.json"))]

    def save(self, ad: dict) -> None:
        self._path(ad["NovaServerId"]).write_text(json.dumps(ad))

    def startds(self):
        from canfar_catalogue.boundaries.pool import Startd

        return [Startd(a["Machine"], a["NovaServerId"], a["TotalSlotCpus"], a["Cpus"], a["Draining"]) for a in self.ads()]

    def drain(self, machine: str) -> None:
        for ad in self.ads():
            if ad["Machine"] == machine:
                ad["Draining"] = True
                self.save(ad)


class FakeSchedd:
    def __init__(self, state: Path):
        self.state = Path(state)
        (self.state / "jobs").mkdir(parents=True, exist_ok=True)
        self.submitted = 0  # submissions through this object, for tests

    # -- the htcondor2.Schedd surface --------------------------------------------------------
    def submit(self, description: htcondor2.Submit, count: int = 0, spool: bool = False, itemdata=None, queue=None):
        with self._locked():
            counter = self.state / "next-cluster"
            cluster = int(counter.read_text()) if counter.exists() else 1
            counter.write_text(str(cluster + 1))
            ad = {"ClusterId": cluster, "ProcId": 0, "JobStatus": IDLE, "QDate": int(time.time()), "Runs": 0}
            for key in description.keys():
                value = description.expand(key)
                if key.startswith("MY.") or key.startswith("+"):
                    ad[key.split(".", 1)[-1].lstrip("+")] = classad2.ExprTree(value).eval()
                else:
                    ad[key] = value
            # the attributes a real schedd keeps these in
            if "log" in ad:
                ad["UserLog"] = ad["log"]
            ad["RequestCpus"] = int(ad.get("request_cpus", 1))
            self._save(ad)
            self._event(ad, "000", "Job submitted from host: <127.0.0.1:9618>")
        self.submitted += 1
        if not (self.state / "matchmaking").exists():
            self._start(cluster)
        return htcondor2.SubmitResult(cluster, 0, 1, classad2.ClassAd({"ClusterId": cluster}), None)

    def query(self, constraint="True", projection=(), callback=None, limit=-1, opts=None) -> list[classad2.ClassAd]:
        expression = classad2.ExprTree(str(constraint))
        found = []
        for ad in self._ads():
            classad = classad2.ClassAd(_classad_values(ad))
            if expression.eval(classad) is True:
                if projection:
                    classad = classad2.ClassAd({k: classad[k] for k in projection if k in classad})
                found.append(classad)
        return found[:limit] if limit > 0 else found

    def act(self, action: htcondor2.JobAction, job_spec, reason: str | None = None) -> classad2.ClassAd:
        constraint = job_spec if not isinstance(job_spec, int) else f"ClusterId == {job_spec}"
        done = 0
        for found in self.query(constraint):
            cluster = found["ClusterId"]
            if action == htcondor2.JobAction.Hold:
                done += self.hold(cluster, reason or "via condor_hold (by user jdoe)", code=1)
            elif action == htcondor2.JobAction.Release:
                done += self._release(cluster)
            elif action in (htcondor2.JobAction.Remove, htcondor2.JobAction.RemoveX):
                done += self._remove(cluster, reason or "via condor_rm (by user jdoe)")
        return classad2.ClassAd({"TotalSuccess": done, "TotalJobAds": done})

    # -- what a test does to a running job ---------------------------------------------------------
    def hold(self, cluster: int, reason: str, code: int = 13, subcode: int = 2) -> int:
        with self._locked():
            ad = self._load(cluster)
            if ad["JobStatus"] not in (IDLE, RUNNING):
                return 0
            self._kill(ad)
            ad["JobStatus"], ad["HoldReason"], ad["HoldReasonCode"] = HELD, reason, code
            self._save(ad)
            self._event(ad, "012", "Job was held.", f"\t{reason}\n\tCode {code} Subcode {subcode}\n")
        return 1

    def evict(self, cluster: int) -> None:
        """The execute node went away: the job goes back to idle and runs again."""
        with self._locked():
            ad = self._load(cluster)
            self._kill(ad)
            ad["JobStatus"] = IDLE
            self._save(ad)
            self._event(ad, "004", "Job was evicted.", "\t(0) Job was not checkpointed.\n" + USAGE + _BYTES)
        self._start(cluster)

    def negotiate(self) -> int:
        """Start idle jobs on free cores of matching, undrained execute nodes; returns how many."""
        pool = FakePool(self.state)
        started = []
        with self._locked():
            nodes = pool.ads()
            for ad in self._ads():
                if ad["JobStatus"] != IDLE:
                    continue
                need = ad["RequestCpus"]
                for node in nodes:
                    if node["VMType"] == ad.get("VMType") and not node["Draining"] and node["Cpus"] >= need:
                        node["Cpus"] -= need
                        pool.save(node)
                        ad["RemoteServer"] = node["NovaServerId"]
                        self._save(ad)
                        started.append(ad["ClusterId"])
                        break
        for cluster in started:
            self._start(cluster)
        return len(started)

    def wait_for(self, cluster: int, status: int, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ad = self._load(cluster)
            if ad["JobStatus"] == status:
                return ad
            time.sleep(0.2)
        raise TimeoutError(f"job {cluster} did not reach status {status}: {self._load(cluster)}")

    def ads(self) -> list[dict]:
        return self._ads()

    # -- internals ------------------------------------------------------------------------------
    def _release(self, cluster: int) -> int:
        with self._locked():
            ad = self._load(cluster)
            if ad["JobStatus"] != HELD:
                return 0
            ad["JobStatus"] = IDLE
            self._save(ad)
            self._event(ad, "013", "Job was released.", "\tvia condor_release (by user jdoe)\n")
        self._start(cluster)
        return 1

    def _remove(self, cluster: int, reason: str) -> int:
        with self._locked():
            ad = self._load(cluster)
            if ad["JobStatus"] in (REMOVED, COMPLETED):
                return 0
            self._kill(ad)
            ad["JobStatus"] = REMOVED
            self._save(ad)
            self._event(ad, "009", "Job was aborted.", f"\t{reason}\n")
        return 1

    def _start(self, cluster: int) -> None:
        subprocess.Popen(
            [sys.executable, "-m", "tests.fake_schedd", str(self.state), str(cluster)],
            cwd=Path(__file__).parents[1], start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=open(self.state / f"supervisor-{cluster}.log", "ab"),
        )

    def _kill(self, ad: dict) -> None:
        pid = ad.pop("JobPid", None)
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    @contextmanager
    def _locked(self):
        with open(self.state / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _path(self, cluster: int) -> Path:
        return self.state / "jobs" / f"{cluster}.json"

    def _load(self, cluster: int) -> dict:
        return json.loads(self._path(cluster).read_text())

    def _save(self, ad: dict) -> None:
        partial = self._path(ad["ClusterId"]).with_suffix(".tmp")
        partial.write_text(json.dumps(ad))
        partial.replace(self._path(ad["ClusterId"]))

    def _ads(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted((self.state / "jobs").glob("*.json"))]

    def _event(self, ad: dict, code: str, title: str, body: str = "") -> None:
        log = ad.get("log")
        if not log:
            return
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        with open(log, "a") as out:
            out.write(f"{code} ({ad['ClusterId']:03d}.000.000) {stamp} {title}\n{body}...\n")

    # -- the supervisor of one run of one job ------------------------------------------------
    def supervise(self, cluster: int) -> None:
        with self._locked():
            ad = self._load(cluster)
            if ad["JobStatus"] != IDLE:
                return
            ad["Runs"] += 1
            scratch = self.state / "scratch" / f"{cluster}.{ad['Runs']}"
            scratch.mkdir(parents=True)
            environment = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(scratch))}
            environment.update(_environment(ad.get("environment", "")))
            environment["_CONDOR_SCRATCH_DIR"] = str(scratch)
            for name in filter(None, (n.strip() for n in ad.get("transfer_input_files", "").split(","))):
                shutil.copy(name, scratch / Path(name).name)
            if ad.get("x509userproxy"):
                shutil.copy(ad["x509userproxy"], scratch / Path(ad["x509userproxy"]).name)
                environment["X509_USER_PROXY"] = str(scratch / Path(ad["x509userproxy"]).name)
            command = [ad["executable"], *shlex.split(ad.get("arguments", ""))]
            process = subprocess.Popen(
                command, cwd=scratch, env=environment, start_new_session=True,
                stdout=open(ad.get("output") or os.devnull, "ab"), stderr=open(ad.get("error") or os.devnull, "ab"),
            )
            ad["JobStatus"], ad["JobPid"] = RUNNING, process.pid
            self._save(ad)
            self._event(ad, "001", "Job executing on host: <127.0.0.1:9618>")
        code = process.wait()
        with self._locked():
            ad = self._load(cluster)
            if ad["JobStatus"] != RUNNING or ad.get("JobPid") != process.pid:
                return  # held, evicted or removed meanwhile: that wrote its own event
            ad["JobStatus"], ad["ExitCode"] = COMPLETED, code
            ad.pop("JobPid")
            self._save(ad)
            if ad.get("RemoteServer"):  # give the cores back to the execute node
                pool = FakePool(self.state)
                for node in pool.ads():
                    if node["NovaServerId"] == ad["RemoteServer"]:
                        node["Cpus"] += ad["RequestCpus"]
                        pool.save(node)
            self._event(ad, "005", "Job terminated.", f"\t(1) Normal termination (return value {code})\n" + USAGE + TOTAL_USAGE + _BYTES + _TOTAL_BYTES)


_BYTES = "\t0  -  Run Bytes Sent By Job\n\t0  -  Run Bytes Received By Job\n"
_TOTAL_BYTES = "\t0  -  Total Bytes Sent By Job\n\t0  -  Total Bytes Received By Job\n"


def _environment(value: str) -> dict[str, str]:
    """The submit language's quoted ``environment = "A=1 B='x y'"``."""
    value = value.strip()
    if value.startswith('"') and value.endswith('"'):
        value = value[1:-1]
    return dict(item.split("=", 1) for item in shlex.split(value.replace("''", "\\'")))


def _classad_values(ad: dict) -> dict:
    return {k: v for k, v in ad.items() if isinstance(v, (int, float, str, bool))}


if __name__ == "__main__":
    FakeSchedd(Path(sys.argv[1])).supervise(int(sys.argv[2]))
