"""Cutting a client's live TCP connections the way a lost network does: no close frame, no FIN.

``ss -K`` has the kernel abort the client's end of each socket (the program's next read or
write fails, the server gets a reset). It needs root and a kernel built with
CONFIG_INET_DIAG_DESTROY, as the test machines are; elsewhere it fails loudly.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable

PEER = re.compile(r"^\S+\s+\S+\s+(?P<local>\S+):(?P<lport>\d+)\s+(?P<peer>\S+):(?P<pport>\d+)(?P<rest>.*)$")


def connections_to(port: int, pid: int | None = None) -> set[int]:
    """Local ports of the established connections to 127.0.0.1:``port`` (of process ``pid`` only)."""
    command = ["ss", "-Htn", *(["-p"] if pid is not None else []), "state", "established",
               "dst", "127.0.0.1", "dport", "=", f":{port}"]
    listing = subprocess.run(command, capture_output=True, text=True, check=True, timeout=10).stdout
    ports = set()
    for line in listing.splitlines():
        # Without a state column in the filtered listing: Recv-Q Send-Q Local:Port Peer:Port [users:…]
        match = PEER.match(line)
        if match and (pid is None or f"pid={pid}," in match.group("rest")):
            ports.add(int(match.group("lport")))
    return ports


def cut(port: int, local_ports: Iterable[int]) -> None:
    """Aborts the client ends of these connections to 127.0.0.1:``port``."""
    ports = sorted(set(local_ports))
    assert ports, "no connection to cut"
    for local in ports:
        subprocess.run(
            ["ss", "-K", "dst", "127.0.0.1", "dport", "=", f":{port}", "sport", "=", f":{local}"],
            capture_output=True, text=True, check=False, timeout=10,
        )
    left = connections_to(port) & set(ports)
    if left:
        raise RuntimeError(
            f"ss -K could not cut the connections from ports {sorted(left)}: it needs root and a kernel "
            "with CONFIG_INET_DIAG_DESTROY"
        )
