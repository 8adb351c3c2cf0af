"""What the client's objects do when their process forks or exits.

gRPC supports ``fork`` only while no call is in progress (otherwise it skips its fork
handlers, and the child's first channel could abort in gRPC's poller), so every running
metric sender ends its stream just before a fork and opens it again just after. In the child,
each transport sets its parent's channel aside, untouched, and each sender starts empty. At
interpreter exit every sender flushes (``close``), and so does a sender in a multiprocessing
child, which ends with ``os._exit`` and skips atexit.
"""

from __future__ import annotations

import atexit
import os
import sys
import weakref
from typing import Protocol


class ResetInChild(Protocol):
    def _after_fork_in_child(self) -> None: ...


class ForkAwareSender(ResetInChild, Protocol):
    def _before_fork(self) -> None: ...
    def _after_fork_in_parent(self) -> None: ...
    def _at_exit(self) -> None: ...
    def close(self, timeout: float | None = 30.0) -> None: ...


_RESET_IN_CHILD: weakref.WeakSet[ResetInChild] = weakref.WeakSet()
_SENDERS: weakref.WeakSet[ForkAwareSender] = weakref.WeakSet()


def reset_in_child(obj: ResetInChild) -> None:
    """Calls ``obj._after_fork_in_child()`` in every forked child (as long as obj lives)."""
    _RESET_IN_CHILD.add(obj)


def watch_sender(sender: ForkAwareSender) -> None:
    """Pauses ``sender`` around every fork, resets it in the child, closes it at exit."""
    _SENDERS.add(sender)


def flush_at_process_exit(sender: ForkAwareSender) -> None:
    """A multiprocessing child ends with ``os._exit``, skipping atexit; its own exit hooks
    (``multiprocessing.util.Finalize``) still run, so the sender flushes there."""
    if "multiprocessing" not in sys.modules:
        return
    import multiprocessing
    from multiprocessing import util

    if multiprocessing.parent_process() is not None:
        util.Finalize(sender, sender.close, kwargs={"timeout": 30.0}, exitpriority=10)


def _before_fork() -> None:
    for sender in list(_SENDERS):
        sender._before_fork()


def _after_fork_in_parent() -> None:
    for sender in list(_SENDERS):
        sender._after_fork_in_parent()


def _after_fork_in_child() -> None:
    for obj in list(_RESET_IN_CHILD):
        obj._after_fork_in_child()
    for sender in list(_SENDERS):
        sender._after_fork_in_child()


def _at_exit() -> None:
    for sender in list(_SENDERS):
        sender._at_exit()


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)
atexit.register(_at_exit)
