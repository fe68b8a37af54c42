"""A fake HTCondor schedd with ``htcondor2.Schedd``'s surface that really runs jobs.

``submit``, ``query``, ``history`` and ``act`` behave like the real ones for
what the worker and the provisioning flow use.  Each job runs as a local
process in its own scratch directory (``_CONDOR_SCRATCH_DIR``), its input files
(and ``x509userproxy``) copied in, under a small supervisor process that plays
the shadow and the starter: it writes a genuine HTCondor user log, so the
worker's log-following code is exercised through the real
``htcondor2.JobEventLog`` parser.

What it models of a real schedd, and where each fact comes from
(``../shared/notes/boundaries.md``: a real HTCondor 25.14 pool, measured;
HTCondor's ``condor_event.cpp`` for the text of each event):

* **Signals.**  Hold, remove and vacate of a running job send the job's
  ``kill_sig`` (SIGTERM unless the submit description names another) to the
  job's process group, then SIGKILL to every process of the job after a grace
  period (``MachineMaxVacateTime`` on a real pool; :meth:`FakeSchedd.set_grace`
  here, two seconds by default so that tests stay short).  Processes the job
  leaves behind when it exits are killed too, as HTCondor kills the job's
  process family.
* **Event sequences** in the user log (040 and 006 events, which the real pool
  writes in between, are left out):

  | action | events |
  |---|---|
  | hold of a running job | ``004 Job was evicted. Code <hold code> Subcode 0`` with ``Reason: <hold reason>``, then ``012`` |
  | vacate (``condor_vacate_job``) | ``004 ... Code 1022`` ("Job vacated by schedd"), then ``001`` again for the same cluster, then ``005`` |
  | remove of a running job | ``004 ... Code 1023``, then ``009`` |
  | remove racing the job's own exit | ``005 ... (return value N)``, then ``009`` (:meth:`FakeSchedd.race_removal_with_exit`) |
  | hold or remove of an idle job | ``012`` or ``009`` alone |

  The 004 text is what HTCondor 25.14's formatter writes, so ``JobEventLog``
  reads ``ReasonCode`` and ``Reason`` from it.
* **What a job is told of its slot** (HTCondor manual, "Environment
  variables for jobs"): ``_CONDOR_MACHINE_AD`` names ``.machine.ad`` in the
  scratch directory, whose ``Cpus`` is the cores provisioned (here
  ``request_cpus``, as a partitionable slot carves a dynamic one); the
  ``STARTER_NUM_THREADS_ENV_VARS`` (``OMP_NUM_THREADS``, ``PYTHON_CPU_COUNT``
  ...) hold the same number; ``BATCH_SYSTEM`` is ``HTCondor``.  As on a real
  execute node, the job is not pinned to its cores: its CPU affinity is the
  whole machine.
* **The queue.**  ``query`` sees the jobs still in the queue (idle, running,
  held); completed and removed jobs leave it for ``history``, as on a real
  schedd.  A held or removed job shows its new status at once, while its
  processes are still being stopped.

State lives in a folder, so the worker (which submits) and a test (which
holds or vacates a running job) can be different processes, and jobs outlive a
worker restart, as they do in HTCondor.  A schedd named ``NAME`` (the work
pool's ``schedd`` variable) keeps its state in ``<folder>/schedds/NAME``.
Test code, not a product feature.

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
IN_QUEUE = (IDLE, RUNNING, HELD)
#: The 004 event's reason codes a real 25.14 schedd wrote for these actions (a hold writes its hold code).
VACATED, REMOVED_CODE = 1022, 1023
DEFAULT_GRACE_SECONDS = 2.0
_USAGE = "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  {} Usage\n"
USAGE = _USAGE.format("Run Remote") + _USAGE.format("Run Local")
TOTAL_USAGE = _USAGE.format("Total Remote") + _USAGE.format("Total Local")


def from_environment(name: str = "") -> "FakeSchedd":
    """The factory named in the tests' settings: the state folder comes from the environment."""
    state = Path(os.environ["FAKE_SCHEDD_STATE"])
    return FakeSchedd(state / "schedds" / name if name else state)


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
        while (self.state / "submit-hangs").exists():  # a test kills the submitting worker meanwhile
            time.sleep(0.2)
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
        """Jobs still in the queue: idle, running or held."""
        return self._matching([ad for ad in self._ads() if ad["JobStatus"] in IN_QUEUE], constraint, projection, limit)

    def history(self, constraint="True", projection=(), match=-1, since=None) -> list[classad2.ClassAd]:
        """Jobs that have left the queue: completed or removed."""
        return self._matching([ad for ad in self._ads() if ad["JobStatus"] not in IN_QUEUE], constraint, projection, match)

    def act(self, action: htcondor2.JobAction, job_spec, reason: str | None = None) -> classad2.ClassAd:
        constraint = job_spec if not isinstance(job_spec, int) else f"ClusterId == {job_spec}"
        done = 0
        for found in self.query(constraint):
            cluster = found["ClusterId"]
            if action == htcondor2.JobAction.Hold:
                done += self.hold(cluster, reason or "via condor_hold (by user jdoe)", code=1, subcode=0)
            elif action == htcondor2.JobAction.Release:
                done += self._release(cluster)
            elif action in (htcondor2.JobAction.Remove, htcondor2.JobAction.RemoveX):
                done += self._remove(cluster, reason or "via condor_rm (by user jdoe)")
            elif action in (htcondor2.JobAction.Vacate, htcondor2.JobAction.VacateFast):
                done += self.vacate(cluster)
        return classad2.ClassAd({"TotalSuccess": done, "TotalJobAds": done})

    # -- what a test (or an administrator) does to a job -------------------------------------------
    def hold(self, cluster: int, reason: str, code: int = 13, subcode: int = 2) -> int:
        with self._locked():
            ad = self._load(cluster)
            if ad["JobStatus"] not in (IDLE, RUNNING):
                return 0
            ad["JobStatus"], ad["HoldReason"], ad["HoldReasonCode"] = HELD, reason, code
            if ad.get("JobPid"):  # the supervisor writes 004 then 012 once the job's processes are gone
                self._stop(ad, {"action": "hold", "reason": reason, "code": code, "subcode": subcode})
            else:
                self._save(ad)
                self._held_event(ad, reason, code, subcode)
        return 1

    def vacate(self, cluster: int) -> int:
        """``condor_vacate_job``: the job leaves its execute node, goes back to idle and runs again."""
        with self._locked():
            ad = self._load(cluster)
            if ad["JobStatus"] != RUNNING:
                return 0
            self._stop(ad, {"action": "vacate", "reason": "Job vacated by schedd", "code": VACATED, "subcode": 0})
        return 1

    def race_removal_with_exit(self, cluster: int) -> None:
        """The next removal of this job crosses its own exit: the job is not signalled, it ends on its
        own, and the log says ``005`` (its return value) then ``009``, as a real schedd wrote it."""
        with self._locked():
            ad = self._load(cluster)
            ad["RemovalRacesExit"] = True
            self._save(ad)

    def hang_submissions(self, hang: bool = True) -> None:
        """While set, ``submit`` does not return (a schedd that does not answer): a worker killed
        meanwhile has claimed a run and never submitted its job."""
        flag = self.state / "submit-hangs"
        flag.touch() if hang else flag.unlink(missing_ok=True)

    def set_grace(self, seconds: float) -> None:
        """Time between the job's kill_sig and SIGKILL (a pool's MachineMaxVacateTime)."""
        (self.state / "grace-seconds").write_text(str(seconds))

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
            if ad["JobStatus"] == status and "Stopping" not in ad:
                return ad
            time.sleep(0.2)
        raise TimeoutError(f"job {cluster} did not reach status {status}: {self._load(cluster)}")

    def ads(self) -> list[dict]:
        """Every job this schedd has seen, in the queue or not (for tests)."""
        return self._ads()

    # -- internals ------------------------------------------------------------------------------
    def _matching(self, ads: list[dict], constraint, projection, limit) -> list[classad2.ClassAd]:
        expression = classad2.ExprTree(str(constraint))
        found = []
        for ad in ads:
            classad = classad2.ClassAd(_classad_values(ad))
            if expression.eval(classad) is True:
                if projection:
                    classad = classad2.ClassAd({k: classad[k] for k in projection if k in classad})
                found.append(classad)
        return found[:limit] if limit > 0 else found

    def _release(self, cluster: int) -> int:
        with self._locked():
            ad = self._load(cluster)
            if ad["JobStatus"] != HELD or "Stopping" in ad:
                return 0
            ad["JobStatus"] = IDLE
            self._save(ad)
            self._event(ad, "013", "Job was released.", "\tvia condor_release (by user jdoe)\n")
        self._start(cluster)
        return 1

    def _remove(self, cluster: int, reason: str) -> int:
        with self._locked():
            ad = self._load(cluster)
            if ad["JobStatus"] not in IN_QUEUE or ad.get("Stopping", {}).get("action") == "remove":
                return 0
            ad["JobStatus"] = REMOVED
            if ad.get("Stopping"):  # a hold still stopping the job: it ends held, then removed
                ad["Stopping"]["then_removed"] = reason
                self._save(ad)
            elif ad.get("JobPid"):  # the supervisor writes 004 (or 005) then 009 once the job is gone
                stopping = {"action": "remove", "reason": reason, "code": REMOVED_CODE, "subcode": 0}
                self._stop(ad, stopping, signal_job=not ad.get("RemovalRacesExit"))
            else:
                ad.pop("Stopping", None)
                self._save(ad)
                self._event(ad, "009", "Job was aborted.", f"\t{reason}\n")
        return 1

    def _stop(self, ad: dict, stopping: dict, signal_job: bool = True) -> None:
        """Ask the running job to stop: its kill_sig now, SIGKILL after the grace (from the supervisor)."""
        ad["Stopping"] = {**stopping, "since": time.time()}
        self._save(ad)
        if signal_job:
            try:
                os.killpg(ad["JobPid"], _kill_signal(ad))
            except ProcessLookupError:
                pass

    def _grace(self) -> float:
        setting = self.state / "grace-seconds"
        return float(setting.read_text()) if setting.exists() else DEFAULT_GRACE_SECONDS

    def _start(self, cluster: int) -> None:
        subprocess.Popen(
            [sys.executable, "-m", "tests.fake_schedd", str(self.state), str(cluster)],
            cwd=Path(__file__).parents[1], start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=open(self.state / f"supervisor-{cluster}.log", "ab"),
        )

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

    def _evicted_event(self, ad: dict, reason: str, code: int, subcode: int) -> None:
        self._event(ad, "004", f"Job was evicted. Code {code} Subcode {subcode}",
                    "\t(0) CPU times\n" + USAGE + _BYTES + f"\tReason: {reason}\n")

    def _held_event(self, ad: dict, reason: str, code: int, subcode: int) -> None:
        self._event(ad, "012", "Job was held.", f"\t{reason}\n\tCode {code} Subcode {subcode}\n")

    def _terminated_event(self, ad: dict, code: int) -> None:
        self._event(ad, "005", "Job terminated.", f"\t(1) Normal termination (return value {code})\n"
                    + USAGE + TOTAL_USAGE + _BYTES + _TOTAL_BYTES)

    # -- the supervisor of one run of one job (the shadow and the starter) -------------------------
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
            environment.update(_provisioned(scratch, ad))
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
        code = self._wait(cluster, process)
        _kill_session(process.pid)  # what the job left behind goes with it
        with self._locked():
            ad = self._load(cluster)
            ad.pop("JobPid", None)
            stopping = ad.pop("Stopping", None)
            if ad.get("RemoteServer"):  # give the cores back to the execute node
                pool = FakePool(self.state)
                for node in pool.ads():
                    if node["NovaServerId"] == ad["RemoteServer"]:
                        node["Cpus"] += ad["RequestCpus"]
                        pool.save(node)
            action = stopping["action"] if stopping else None
            if action is None:
                ad["JobStatus"], ad["ExitCode"] = COMPLETED, code
            elif action == "vacate" and not stopping.get("then_removed"):
                ad["JobStatus"] = IDLE
            self._save(ad)
            if action is None:
                self._terminated_event(ad, code)
            elif action == "remove" and ad.get("RemovalRacesExit"):
                ad["ExitCode"] = code
                self._save(ad)
                self._terminated_event(ad, code)
                self._event(ad, "009", "Job was aborted.", f"\t{stopping['reason']}\n")
            else:
                self._evicted_event(ad, stopping["reason"], stopping["code"], stopping["subcode"])
                if action == "hold":
                    self._held_event(ad, stopping["reason"], stopping["code"], stopping["subcode"])
                if action == "remove" or stopping.get("then_removed"):
                    self._event(ad, "009", "Job was aborted.", f"\t{stopping.get('then_removed') or stopping['reason']}\n")
        if ad["JobStatus"] == IDLE and not (self.state / "matchmaking").exists():
            self._start(cluster)

    def _wait(self, cluster: int, process: subprocess.Popen) -> int:
        """The job's exit code; SIGKILL for all its processes once a stop request is older than the grace."""
        grace = self._grace()
        while True:
            try:
                return process.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
            stopping = self._load(cluster).get("Stopping")
            if stopping and time.time() - stopping["since"] > grace and not self._load(cluster).get("RemovalRacesExit"):
                _kill_session(process.pid)


_BYTES = "\t0  -  Run Bytes Sent By Job\n\t0  -  Run Bytes Received By Job\n"
_TOTAL_BYTES = "\t0  -  Total Bytes Sent By Job\n\t0  -  Total Bytes Received By Job\n"


def _kill_signal(ad: dict) -> int:
    """The job's ``kill_sig`` (a name such as SIGTERM or a number), SIGTERM by default."""
    value = str(ad.get("kill_sig", "SIGTERM")).strip()
    if value.isdigit():
        return int(value)
    return int(getattr(signal, value if value.startswith("SIG") else f"SIG{value}"))


def _kill_session(session: int) -> None:
    """SIGKILL every process of a job: it was started as the leader of its own session, and its
    children stay in that session even in process groups of their own (HTCondor tracks the family)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:
            try:
                os.kill(int(stat.parent.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


#: What a 25.x starter sets to the cores it provisioned (the default STARTER_NUM_THREADS_ENV_VARS).
THREADS_VARIABLES = ("CUBACORES", "GOMAXPROCS", "JULIA_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                     "OMP_NUM_THREADS", "OMP_THREAD_LIMIT", "OPENBLAS_NUM_THREADS", "PYTHON_CPU_COUNT",
                     "ROOT_MAX_THREADS", "TF_LOOP_PARALLEL_ITERATIONS", "TF_NUM_THREADS")


def _provisioned(scratch: Path, ad: dict) -> dict[str, str]:
    """What the starter tells a job of its slot: the machine ad in ``.machine.ad`` (a dynamic slot
    carved to the request: ``Cpus`` is ``request_cpus``), the thread variables, ``BATCH_SYSTEM``."""
    cpus = int(ad.get("RequestCpus", 1))
    machine_ad = scratch / ".machine.ad"
    machine_ad.write_text(f"Cpus = {cpus}\nSlotID = 1\n")
    return {"_CONDOR_MACHINE_AD": str(machine_ad), "BATCH_SYSTEM": "HTCondor",
            **{name: str(cpus) for name in THREADS_VARIABLES}}


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
