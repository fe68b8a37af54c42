"""Prefect tasks: thin wrappers around the science library and the boundaries.

Tasks are stage-sized (download, detect, write, upload), never per CCD: the
Prefect server spends tens of milliseconds of CPU on every task run.
"""
