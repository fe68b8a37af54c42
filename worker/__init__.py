"""The HTCondor worker: Prefect flow runs as HTCondor jobs on CANFAR cloud workers.

Importing this package registers the ``htcondor`` worker type with Prefect
(through the ``prefect.collections`` entry point), so that
``prefect worker start --pool <pool> --type htcondor`` finds it.
"""

from .htcondor import HTCondorJobConfiguration, HTCondorVariables, HTCondorWorker, HTCondorWorkerResult

__all__ = ["HTCondorJobConfiguration", "HTCondorVariables", "HTCondorWorker", "HTCondorWorkerResult"]
