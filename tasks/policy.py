"""Which failures a task retries, and how long it waits between tries."""

from __future__ import annotations

from typing import Any

from ..boundaries.errors import PermanentError, TransientError
from ..science.errors import InputError


def is_transient(error: BaseException | None) -> bool:
    """Retry server errors, timeouts and dropped connections; never bad input or missing data."""
    if error is None or isinstance(error, (PermanentError, InputError, ValueError)):
        return False
    if isinstance(error, (PermissionError, FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        return False
    return isinstance(error, (TransientError, TimeoutError, ConnectionError, OSError))


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: the failed state's data is the exception."""
    return is_transient(state.data if isinstance(state.data, BaseException) else None)


def backoff(section: dict[str, Any]) -> list[float]:
    """Exponential delays from a settings section: base, 2·base, 4·base, ..."""
    base = float(section["retry_delay_seconds"])
    return [base * 2**i for i in range(int(section["retries"]))]


def task_options(section: dict[str, Any]) -> dict[str, Any]:
    """Prefect ``@task`` options from a ``pipeline.toml`` section: transient-only
    retries with exponential back-off, and the time limit."""
    return {
        "retries": int(section["retries"]),
        "retry_delay_seconds": backoff(section),
        "retry_jitter_factor": 0.2,
        "retry_condition_fn": retry_transient,
        "timeout_seconds": float(section["timeout_seconds"]),
    }
