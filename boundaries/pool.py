"""The HTCondor pool's execute nodes: which VMs joined, how busy they are, and draining them.

Each VM's cloud-init advertises its Nova server id as the startd attribute
``NovaServerId``; cloud and pool are joined on it.  Production reads the
collector's startd ads with ``htcondor2``; which pool is used is a
``module:callable`` in the ``[htcondor]`` settings, like the schedd, so the
tests can name a fake that shares its state with the fake schedd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .errors import TransientError
from .registry import load_factory

SERVER_ATTRIBUTE = "NovaServerId"


@dataclass(frozen=True)
class Startd:
    machine: str
    server_id: str
    total_cpus: int
    free_cpus: int
    draining: bool = False


class Pool(Protocol):
    def startds(self) -> list[Startd]:
        """The execute nodes that advertise a Nova server id."""

    def drain(self, machine: str) -> None:
        """Stop the node from accepting jobs (the ones running may finish)."""


class CollectorPool:
    """The pool as its collector sees it."""

    def __init__(self, collector: str = ""):
        import htcondor2

        self.htcondor = htcondor2
        self.collector = htcondor2.Collector(collector) if collector else htcondor2.Collector()

    def startds(self) -> list[Startd]:
        htcondor2 = self.htcondor
        try:
            ads = self.collector.query(
                htcondor2.AdType.Startd,
                constraint=f"{SERVER_ATTRIBUTE} =!= undefined && PartitionableSlot =?= true",
                projection=["Machine", SERVER_ATTRIBUTE, "TotalSlotCpus", "Cpus", "Draining"],
            )
        except htcondor2.HTCondorException as exc:
            raise TransientError(f"cannot query the HTCondor collector: {exc}") from None
        return [
            Startd(ad["Machine"], ad[SERVER_ATTRIBUTE], int(ad.get("TotalSlotCpus", 0)), int(ad.get("Cpus", 0)),
                   bool(ad.get("Draining", False)))
            for ad in ads
        ]

    def drain(self, machine: str) -> None:
        htcondor2 = self.htcondor
        try:
            location = self.collector.locate(htcondor2.DaemonType.Startd, machine)
            htcondor2.Startd(location).drainJobs(htcondor2.DrainType.Graceful, reason="retired by canfar-catalogue")
        except htcondor2.HTCondorException as exc:
            raise TransientError(f"cannot drain {machine}: {exc}") from None


def collector_pool() -> Pool:
    return CollectorPool()


def open_pool() -> Pool:
    """The pool the ``[htcondor] pool_factory`` setting names."""
    return load_factory("htcondor", "pool_factory")()
