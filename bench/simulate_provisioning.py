"""Simulate a night of bursts against the provisioning policy, and against a naive one.

    python bench/simulate_provisioning.py [--seeds 10] [--cycle 60]

20 bursts of 500 exposures over 10 hours; job runtime lognormal, median 120 s
(sigma 0.5); VM boot lognormal, median 240 s; 5% of boots hang until the
come-alive timeout; quota 32 VMs of 2 cores (one job per core).  The
provisioning flow's own :func:`decide` runs every ``--cycle`` seconds; HTCondor
matches idle jobs to free slots every step.

Reported, median over the seeds, for our policy and for "boot one VM per idle
job, delete a VM as soon as it is idle":
  makespan / ideal, where ideal = max(total job-seconds / quota slots, last arrival + its runtime)
  idle VM time = VM-seconds in the pool with no job / all VM-seconds from boot request to deletion
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
try:
    from canfar_catalogue.flows.provision_policy import VM, Flavour, Group, Quota, Settings, decide
except ImportError:  # run from a checkout without the package installed
    sys.exit("install the project first (make venv), then run .venv/bin/python bench/simulate_provisioning.py")

GROUP = Group("megapipe:canfar-catalogue", "c2-7.5gb-30")
FLAVOUR = Flavour(cores=2, ram_mb=7680)
QUOTA_VMS = 32
SLOTS = 2
DELETE_SECONDS = 15.0


@dataclass
class SimVM:
    vm: VM
    ready_at: float | None  # None: the boot hangs
    jobs: list[float] = field(default_factory=list)  # end times of running jobs
    deleted_at: float | None = None
    idle_seconds: float = 0.0


def run(seed: int, policy: str, cycle: float, step: float = 2.0, drain_target: float = 1800.0) -> dict:
    rng = np.random.default_rng(seed)
    arrivals = []
    for burst in range(20):
        start = burst * 1800.0
        runtimes = rng.lognormal(np.log(120.0), 0.5, 500)
        arrivals += [(start, r) for r in runtimes]
    total_work = sum(r for _, r in arrivals)
    ideal = max(total_work / (QUOTA_VMS * SLOTS), max(a + r for a, r in arrivals))
    settings = Settings(max_vms=QUOTA_VMS, drain_target_seconds=drain_target)
    queue: list[tuple[float, float]] = []  # (arrival, runtime) of idle jobs, FIFO
    pending = sorted(arrivals)
    next_arrival = 0
    vms: list[SimVM] = []
    finished_last = 0.0
    done = 0
    now = 0.0
    next_cycle = 0.0
    counter = 0
    while done < len(arrivals):
        while next_arrival < len(pending) and pending[next_arrival][0] <= now:
            queue.append(pending[next_arrival])
            next_arrival += 1
        for sim in vms:
            if sim.deleted_at is not None:
                continue
            vm = sim.vm
            if vm.status == "BUILD" and sim.ready_at is not None and now >= sim.ready_at:
                vm.status, vm.status_since, vm.registered, vm.idle_since = "ACTIVE", now, True, now
            if vm.status == "BUILD" and sim.ready_at is None and now - vm.created >= 60:
                vm.status, vm.status_since = "ACTIVE", now  # up, but its startd never arrives
            if vm.status == "DELETING" and now >= vm.status_since + DELETE_SECONDS:
                sim.deleted_at = now
                continue
            ended = [t for t in sim.jobs if t <= now]
            if ended:
                finished_last = max(finished_last, max(ended))
                done += len(ended)
                sim.jobs = [t for t in sim.jobs if t > now]
            if vm.registered and not vm.draining and vm.status == "ACTIVE":
                while len(sim.jobs) < vm.slots and queue:
                    _, runtime = queue.pop(0)
                    sim.jobs.append(now + runtime)
            vm.busy = len(sim.jobs)
            if vm.registered and vm.status == "ACTIVE":
                if vm.busy == 0:
                    vm.idle_since = vm.idle_since if vm.idle_since is not None else now
                    sim.idle_seconds += step
                else:
                    vm.idle_since = None
        if now >= next_cycle:
            next_cycle += cycle
            live = [s for s in vms if s.deleted_at is None]
            ours = [s.vm for s in live]
            used = len([v for v in ours if v.status != "DELETED"])
            quota = Quota(QUOTA_VMS - used, (QUOTA_VMS - used) * FLAVOUR.cores, (QUOTA_VMS - used) * FLAVOUR.ram_mb)
            idle = {GROUP: len(queue)}
            if policy == "ours":
                plan = decide(now, idle, ours, quota, {GROUP.flavour: FLAVOUR}, {GROUP: SLOTS}, settings, runtime_seconds=120.0)
                boots, retire = plan.boot.get(GROUP, 0), [vm_id for vm_id, _ in plan.retire]
            else:
                booting = len([v for v in ours if not v.registered])
                boots = max(min(len(queue) - booting, quota.instances), 0)
                retire = [v.id for v in ours if v.registered and v.busy == 0 and v.status == "ACTIVE"]
                retire += [v.id for v in ours if not v.registered and now - v.created >= settings.come_alive_seconds]
            for sim in live:
                if sim.vm.id in retire and sim.vm.status != "DELETING":
                    sim.vm.status, sim.vm.status_since, sim.vm.registered = "DELETING", now, False
                    queue[:0] = [(now, t - now) for t in sim.jobs]  # a deleted VM's jobs run again
                    sim.jobs = []
            for _ in range(boots):
                counter += 1
                hangs = rng.random() < 0.05
                ready = None if hangs else now + rng.lognormal(np.log(240.0), 0.3)
                vm = VM(f"vm-{counter}", GROUP, "BUILD", created=now, status_since=now, slots=SLOTS)
                vms.append(SimVM(vm, ready))
        now += step
    for sim in vms:
        if sim.deleted_at is None:
            sim.deleted_at = now
    vm_seconds = sum(s.deleted_at - s.vm.created for s in vms)
    return {
        "makespan_ratio": finished_last / ideal,
        "idle_fraction": sum(s.idle_seconds for s in vms) / vm_seconds,
        "vms_booted": len(vms),
        "vm_hours": vm_seconds / 3600,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--cycle", type=float, default=60.0, help="seconds between provisioning cycles (default 60)")
    parser.add_argument(
        "--drain-targets", type=float, nargs="+", default=[Settings().drain_target_seconds, 600, 1200, 2400],
        help="our policy's drain_target_seconds to try (the first is the default)",
    )
    args = parser.parse_args()
    print(f"{args.seeds} seeds, a provisioning cycle every {args.cycle:g} s; medians:")
    print(f"{'policy':<28} {'makespan/ideal':>15} {'idle VM time':>13} {'VMs booted':>11} {'VM-hours':>9}")
    variants = [(f"ours, drain target {t:g} s", "ours", t) for t in args.drain_targets]
    variants.append(("one VM per idle job", "naive", 0.0))
    for label, policy, target in variants:
        results = [run(seed, policy, args.cycle, drain_target=target) for seed in range(args.seeds)]
        median = {k: statistics.median(r[k] for r in results) for k in results[0]}
        print(
            f"{label:<28} {median['makespan_ratio']:>15.3f} {median['idle_fraction']:>12.1%} "
            f"{median['vms_booted']:>11.0f} {median['vm_hours']:>9.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
