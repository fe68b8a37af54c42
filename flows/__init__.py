"""Prefect flows: one exposure, a batch of exposures, the nightly discovery."""
