"""Pick a boundary's implementation from a URI's scheme."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Generic, TypeVar
from urllib.parse import urlparse

from .errors import PermanentError

T = TypeVar("T")


class Registry(Generic[T]):
    """Factories by URI scheme (``file``, ``cadc``, ``vos``...), for one kind of boundary."""

    def __init__(self, kind: str, factories: dict[str, Callable[[str], T]]):
        self.kind = kind
        self.factories = dict(factories)

    def register(self, scheme: str, factory: Callable[[str], T]) -> None:
        self.factories[scheme] = factory

    def open(self, uri: str) -> T:
        scheme = urlparse(uri).scheme
        if scheme not in self.factories:
            known = ", ".join(f"{s}:" for s in sorted(self.factories))
            named = f"{scheme}:" if scheme else "(none)"
            raise PermanentError(f"{self.kind} {uri!r}: unknown scheme {named}; use one of {known}")
        return self.factories[scheme](uri)


def load_factory(section: str, key: str) -> Callable[..., Any]:
    """The ``module:callable`` a setting names, e.g. ``[htcondor] schedd_factory``."""
    from .. import config

    path = config.settings()[section][key]
    module_name, _, attribute = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise PermanentError(f"[{section}] {key} {path!r} cannot be loaded: {exc}") from None
