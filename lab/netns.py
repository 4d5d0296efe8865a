"""Sockets inside another network namespace (a pod's, or the lab's gateway's).

A thread enters the namespace, makes the socket and ends: a socket keeps
the namespace it was made in, and no other thread of the process moves.
Imports the standard library only.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from typing import Final

CLONE_NEWNET: Final = 0x40000000


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def socket_in_netns(netns: str | None) -> socket.socket:
    """A TCP socket created inside the network namespace at ``netns`` (None: this one)."""
    if netns is None:
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    made: list[socket.socket] = []
    failed: list[str] = []

    def enter_and_create() -> None:
        # This thread ends right after; its namespace goes with it, so there
        # is nothing to switch back.
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            failed.append(f"cannot open the network namespace {netns}: {exc.strerror}")
            return
        try:
            if _libc().setns(fd, CLONE_NEWNET) != 0:
                failed.append(f"setns: {os.strerror(ctypes.get_errno())}")
                return
            made.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        finally:
            os.close(fd)

    thread = threading.Thread(target=enter_and_create, name="enter-netns", daemon=True)
    thread.start()
    thread.join()
    if not made:
        raise OSError(failed[0] if failed else f"could not create a socket in {netns}")
    return made[0]
