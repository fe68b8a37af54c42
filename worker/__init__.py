"""How flow runs start: as HTCondor jobs on CANFAR cloud workers, or forked from a warm pilot on a process pool.

``htcondor`` registers the ``htcondor`` worker type with Prefect (through the
``prefect.collections`` entry point), so that ``prefect worker start --pool
<pool> --type htcondor`` finds it.  Nothing is imported here: the process
pool's command, :mod:`.pilot`, must start in milliseconds.
"""
