"""TCP connect scan run inside a probe container: which ports of ADDRESS answer at all.

Usage: python3 scan.py ADDRESS [FIRST LAST]. Prints JSON {"open": [...], "refused": [...]}:
open = handshake completed, refused = RST came back; silent (dropped) ports are not listed.
"""

import errno
import json
import resource
import select
import socket
import sys

address = sys.argv[1]
first, last = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (1, 65535)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
batch = max(256, min(4000, hard - 64))
found = {"open": [], "refused": []}
ports = list(range(first, last + 1))
for start in range(0, len(ports), batch):
    pending = {}
    for port in ports[start : start + batch]:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex((address, port))
        pending[s] = port
    waiting = set(pending)
    while waiting:
        _, writable, _ = select.select([], list(waiting), [], 1.5)
        if not writable:
            break
        for s in writable:
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err == 0:
                found["open"].append(pending[s])
            elif err == errno.ECONNREFUSED:
                found["refused"].append(pending[s])
            waiting.discard(s)
    for s in pending:
        s.close()
print(json.dumps(found))
