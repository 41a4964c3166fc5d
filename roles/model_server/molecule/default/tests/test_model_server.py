"""model_server: one unit per model running `vllm serve` with the model's settings, each
answering its health endpoint and serving its model; a stop drains (the listener closes, the
request in flight finishes) before the process ends."""

from __future__ import annotations

import json
import time

import pytest

HOST = "gpufleet-mol-model_server-default"
testinfra_hosts = [f"podman://{HOST}"]
ON_FAILURE = ["journalctl -u 'gpufleet-model-server-*' --no-pager -n 40"]
UNITS = {"model-a": 8000, "model-b": 8001}

# On the node: GET or POST one URL, print status and body as JSON.
HTTP = r"""
import json, sys, urllib.request, urllib.error
url, body = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
req = urllib.request.Request(url, data=body.encode() if body else None,
                             headers={"Content-Type": "application/json"})
try:
    r = urllib.request.urlopen(req, timeout=30)
    print(json.dumps({"status": r.status, "body": r.read().decode()}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": e.read().decode()}))
except OSError as e:
    print(json.dumps({"status": 0, "body": repr(e)}))
"""


def http(host, url: str, body: dict | None = None) -> dict:
    host.run_expect([0], "cat > /tmp/ms_client.py << 'EOF'\n" + HTTP + "EOF")
    arg = f" '{json.dumps(body)}'" if body is not None else ""
    return json.loads(host.check_output(f"python3 /tmp/ms_client.py {url}{arg}"))


@pytest.mark.parametrize(("model", "port"), UNITS.items())
def test_a_unit_per_model_with_its_command_line(host, model, port):
    unit = f"gpufleet-model-server-{port}.service"
    svc = host.service(unit)
    assert svc.is_enabled and svc.is_running
    start = host.check_output(f"systemctl show -p ExecStart --value {unit}")
    tp = "1"
    for part in (f"/usr/local/bin/vllm ; argv[]=/usr/local/bin/vllm serve /srv/models/{model}",
                 f"--port {port}", f"--served-model-name {model}",
                 f"--tensor-parallel-size {tp}", "--host 127.0.0.1"):  # fmt: skip
        assert part in start, start
    assert host.check_output(f"systemctl show -p User --value {unit}") == "gpufleet-model"


@pytest.mark.parametrize(("model", "port"), UNITS.items())
def test_each_server_is_healthy_and_serves_its_model(host, model, port):
    assert http(host, f"http://127.0.0.1:{port}/health")["status"] == 200
    listed = json.loads(http(host, f"http://127.0.0.1:{port}/v1/models")["body"])
    assert [m["id"] for m in listed["data"]] == [model]
    got = http(host, f"http://127.0.0.1:{port}/v1/completions",
               {"model": model, "prompt": "hi", "max_tokens": 3})  # fmt: skip
    assert got["status"] == 200 and json.loads(got["body"])["model"] == model


def test_a_stop_drains_the_request_in_flight(host):
    """An 800-token stream (about 8 s) started, then the unit stopped: the stream ends with
    [DONE], the stop waited for it, and no new connection was accepted meanwhile."""
    body = json.dumps({"model": "model-a", "prompt": "w", "max_tokens": 800, "stream": True})
    host.run_expect([0], "cat > /tmp/stream.sh << 'EOF'\n"
                    "python3 /tmp/ms_client.py http://127.0.0.1:8000/v1/completions "
                    f"'{body}' > /tmp/stream.out\nEOF")  # fmt: skip
    http(host, "http://127.0.0.1:8000/health")  # writes /tmp/ms_client.py
    host.run_expect([0], "rm -f /tmp/stream.out; nohup sh /tmp/stream.sh > /dev/null 2>&1 &")
    time.sleep(0.8)
    started = time.monotonic()
    host.run_expect([0], "nohup systemctl stop gpufleet-model-server-8000 > /dev/null 2>&1 &")
    time.sleep(0.3)
    during = http(host, "http://127.0.0.1:8000/health")
    # "deactivating" while it drains: wait for "inactive".
    state = "systemctl show -p ActiveState --value gpufleet-model-server-8000"
    host.run_expect([0], f'while [ "$({state})" != inactive ]; do sleep 0.1; done')
    took = time.monotonic() - started
    # The client prints once it has read the whole stream, just after the server ends.
    deadline = time.monotonic() + 10
    while not host.file("/tmp/stream.out").content_string.strip():
        assert time.monotonic() < deadline, "the streaming client wrote nothing"
        time.sleep(0.2)
    out = json.loads(host.file("/tmp/stream.out").content_string)
    try:
        assert during["status"] in (0, 503), during  # refused, or 503 on a kept-alive socket
        assert out["status"] == 200 and out["body"].rstrip().endswith("data: [DONE]")
        assert out["body"].count("data: {") == 800
        assert took >= 2.0, f"the stop took {took:.1f} s: it did not wait for the stream"
    finally:
        host.run_expect([0], "systemctl start gpufleet-model-server-8000")
    deadline = time.monotonic() + 20
    while http(host, "http://127.0.0.1:8000/health")["status"] != 200:
        assert time.monotonic() < deadline, "model-a did not come back"
        time.sleep(0.5)
