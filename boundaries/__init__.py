"""The edges of the system: where exposures come from and where catalogues go.

Each boundary is a small interface with one implementation per URI scheme, so
the flows never know whether they talk to a local folder (the embedded
default), the CADC archive or VOSpace.  No Prefect here.
"""
