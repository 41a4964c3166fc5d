"""TCP connect scan run inside a probe container: which ports of ADDRESS answer at all.

Usage: python3 scan.py ADDRESS [FIRST LAST]. Prints JSON {"open": [...], "refused": [...]}:
open = handshake completed, refused = RST came back; silent (dropped) ports are not listed.

A dropped port never answers, so each batch of ports waits the full timeout once. A batch
is what one process's descriptor limit allows (1024 under `podman exec`, which also drops
the capability to raise it), so the batches run in parallel worker processes: a full scan
takes a few timeouts, not one per thousand ports.
"""

import errno
import json
import multiprocessing
import resource
import select
import socket
import sys

TIMEOUT_MS = 1500
WORKERS = 24


def scan(ports: list[int]) -> tuple[list[int], list[int]]:
    """(open, refused) among `ports`, all probed at once."""
    opened, refused = [], []
    pending = {}
    poller = select.poll()
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex((address, port))
        pending[s.fileno()] = (s, port)
        poller.register(s, select.POLLOUT)
    waiting = set(pending)
    while waiting:
        events = poller.poll(TIMEOUT_MS)
        if not events:
            break
        for fd, _ in events:
            s, port = pending[fd]
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err == 0:
                opened.append(port)
            elif err == errno.ECONNREFUSED:
                refused.append(port)
            poller.unregister(fd)
            waiting.discard(fd)
    for s, _ in pending.values():
        s.close()
    return opened, refused


address = sys.argv[1]
first, last = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (1, 65535)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
batch = max(256, hard - 64)
ports = list(range(first, last + 1))
chunks = [ports[i : i + batch] for i in range(0, len(ports), batch)]
with multiprocessing.Pool(min(WORKERS, len(chunks))) as pool:
    results = pool.map(scan, chunks, chunksize=1)
found = {
    "open": sorted(p for o, _ in results for p in o),
    "refused": sorted(p for _, r in results for p in r),
}
print(json.dumps(found))
