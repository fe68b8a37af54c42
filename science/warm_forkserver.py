"""The CCD workers' fork server, forked from a warm process instead of started as a new Python.

A process with threads (a flow run: Prefect's engine, HTTP clients) starts
its CCD workers through multiprocessing's fork server (:func:`.pipeline._pool`).
multiprocessing starts that server as a new interpreter, which imports numpy,
astropy, sep and the science modules before it forks a worker: 0.3-0.4
core-seconds per exposure (bench/RESULTS.md), on a machine whose cores are
measuring the exposure before.

A pilot's copy (worker/pilot.py) already has all of that imported, and until
Prefect's engine starts it has one thread, so it may fork.  :func:`start`
forks the fork server from it then, and hands it to multiprocessing as the
server it would otherwise have started: the same ``multiprocessing.forkserver.main``
loop, the same socket and "alive" pipe.  multiprocessing has no public way to
adopt a server, so this sets the three attributes that
``ForkServer.ensure_running`` sets after starting one (CPython 3.11,
Lib/multiprocessing/forkserver.py).  Where they are not there, or another
thread runs, nothing is started and the pool starts its own, as before.

The server dies with the process that forked it (as :mod:`.forkserver_preload`
makes a started one do), and its name (``comm``, what ``top`` and ``ps``
show) is ``ccd-workers``, as its workers' are, forked from it.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import traceback
from importlib.machinery import ModuleSpec
from multiprocessing import connection, forkserver, util

from .lifetime import die_with_parent, name_this_process, watch_parent

#: What ``ps`` and ``top`` call the fork server and the CCD workers forked from it.
NAME = b"ccd-workers"
#: What ``ForkServer.ensure_running`` sets once it has started a server.
_STATE = ("_forkserver_address", "_forkserver_alive_fd", "_forkserver_pid")


def start(main_module: str | None = None, close: tuple[int, ...] = ()) -> int | None:
    """Fork this process's CCD fork server now; its pid, or None where that cannot be done here.

    ``main_module`` is what this process will run as ``__main__`` (``python -m``'s
    module): multiprocessing re-runs the parent's main module in each worker
    unless the worker's already bears its name, and the workers run only this
    package's functions.  ``close`` are file descriptors the server must not
    hold (a client's connection).
    """
    server = forkserver._forkserver
    if threading.active_count() != 1 or any(not hasattr(server, name) for name in _STATE):
        return None
    if server._forkserver_pid is not None:
        return None
    parent = os.getpid()
    listener = socket.socket(socket.AF_UNIX)
    alive_r = alive_w = -1
    try:
        address = connection.arbitrary_address("AF_UNIX")
        listener.bind(address)
        if not util.is_abstract_socket_namespace(address):
            os.chmod(address, 0o600)
        listener.listen()
        alive_r, alive_w = os.pipe()
        pid = os.fork()
    except OSError:  # no server here: the pool starts its own, as multiprocessing does
        listener.close()
        for fd in (alive_r, alive_w):
            if fd >= 0:
                os.close(fd)
        return None
    if pid == 0:
        _serve(parent, listener, alive_r, alive_w, main_module, close)
    os.close(alive_r)
    listener.close()
    server._forkserver_address, server._forkserver_alive_fd, server._forkserver_pid = address, alive_w, pid
    return pid


def _serve(parent: int, listener: socket.socket, alive_r: int, alive_w: int, main_module: str | None,
           close: tuple[int, ...]) -> None:
    """In the forked server: multiprocessing's fork server loop, until every client has gone."""
    code = 1
    try:
        os.close(alive_w)  # the clients hold the write ends: when the last one closes, the loop ends
        for fd in close:
            os.close(fd)
        die_with_parent(parent)
        watch_parent(parent)
        name_this_process(NAME)
        if main_module:
            sys.modules["__main__"].__spec__ = ModuleSpec(main_module, None)
        forkserver.main(listener.fileno(), alive_r, preload=[])
    except SystemExit:  # the loop's way of ending
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)
