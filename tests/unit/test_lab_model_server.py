"""The lab's stand-in for vLLM's OpenAI-compatible server (src/gpufleet/lab/modelserver/vllm).

Each test runs the script as the lab runs it, a process of its own (here under `python -I -S`:
no site-packages, so the standard library must be enough), on 127.0.0.1 with a port the kernel
picks (read back from its "Uvicorn running on" line), and talks to it with http.client only.
"""

from __future__ import annotations

import ast
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "src/gpufleet/lab/modelserver/vllm"
_LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+) ")

Reply = tuple[int, http.client.HTTPMessage, bytes]


@dataclass
class StandIn:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def connect(self, timeout: float = 5.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def call(
        self,
        method: str,
        path: str,
        body: object = None,
        headers: dict[str, str] | None = None,
        timeout: float = 5.0,
    ) -> Reply:
        conn = self.connect(timeout)
        try:
            return send(conn, method, path, body, headers)
        finally:
            conn.close()

    def post(self, path: str, body: object, **kwargs: Any) -> tuple[int, Any]:
        status, _, data = self.call("POST", path, body, **kwargs)
        return status, json.loads(data)

    def logged(self) -> str:
        return self.log.read_text()

    def logged_soon(self, pattern: str, timeout: float = 5.0) -> str:
        """The log once `pattern` (a regex) is in it: the server writes a request's line after
        it has sent the reply, so the client can read the reply before the line is there."""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, log := self.logged()):
            assert time.monotonic() < deadline, f"{pattern!r} not logged within {timeout} s:\n{log}"
            time.sleep(0.02)
        return log


Start = Callable[..., StandIn]


def send(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: object = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    payload = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    conn.request(
        method, path, body=payload, headers={"Content-Type": "application/json", **(headers or {})}
    )
    resp = conn.getresponse()
    return resp.status, resp.headers, resp.read()


def events(resp: http.client.HTTPResponse) -> Iterator[str]:
    """The payloads of a server-sent event stream's `data:` lines, as they arrive."""
    while line := resp.readline():
        if line.startswith(b"data: "):
            yield line[len(b"data: ") :].strip().decode()


def vllm(*args: str) -> list[str]:
    return [sys.executable, "-I", "-S", str(SCRIPT), *args]


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "models" / "tiny-llm"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def fault(tmp_path: Path) -> Path:
    return tmp_path / "model-server-fault"


@pytest.fixture
def start(tmp_path: Path, model: Path, fault: Path) -> Iterator[Start]:
    procs: list[subprocess.Popen[bytes]] = []

    def _start(*flags: str, env: dict[str, str] | None = None) -> StandIn:
        log = tmp_path / f"stand-in-{len(procs)}.log"
        args = vllm(
            "serve", str(model), "--host", "127.0.0.1", "--port", "0",
            "--stand-in-fault-file", str(fault), "--stand-in-token-delay", "0.005", *flags,
        )  # fmt: skip
        environ = {k: v for k, v in os.environ.items() if k != "VLLM_API_KEY"}
        with log.open("wb") as out:
            proc = subprocess.Popen(args, stderr=out, env={**environ, **(env or {})})
        procs.append(proc)
        deadline = time.monotonic() + 10
        while not (found := _LISTENING.search(log.read_text())):
            assert proc.poll() is None, f"the stand-in exited {proc.returncode}: {log.read_text()}"
            assert time.monotonic() < deadline, f"the stand-in never listened: {log.read_text()}"
            time.sleep(0.02)
        return StandIn(proc, int(found.group(1)), log)

    yield _start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


# -- the file and its command line -----------------------------------------------------------


def test_one_executable_file_for_debians_python_with_the_standard_library_only() -> None:
    text = SCRIPT.read_text()
    assert text.startswith("#!/usr/bin/python3\n")
    assert os.access(SCRIPT, os.X_OK)
    tree = ast.parse(text)
    doc = ast.get_docstring(tree) or ""
    assert "LAB ONLY" in doc and "no role ever installs it" in doc  # says what it is on a node
    assert "Not imitated" in doc
    modules = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 0
    }
    assert modules - {"__future__"} <= sys.stdlib_module_names


def test_version() -> None:
    done = subprocess.run(vllm("--version"), capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout) == (0, "0.6.3.post1 (gpufleet lab stand-in)\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "{tmp}/no-such-model"], "MODEL_PATH {tmp}/no-such-model: no such directory"),
        (["serve", "{tmp}/a-file"], "MODEL_PATH {tmp}/a-file: no such directory"),
        (["serve", "{tmp}", "--tensor-parallel-size", "0"], "--tensor-parallel-size must be"),
        (["serve", "{tmp}", "--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization"),
        (["serve"], "the following arguments are required: MODEL_PATH"),
        ([], "the following arguments are required: serve"),
        (["chat", "{tmp}"], "invalid choice: 'chat'"),
    ],
)
def test_bad_command_lines_exit_2_naming_the_problem(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "a-file").write_text("")
    argv = [a.format(tmp=tmp_path) for a in args]
    done = subprocess.run(vllm(*argv), capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert message.format(tmp=tmp_path) in done.stderr
    assert "Traceback" not in done.stderr


def test_serves_health_models_and_version_ignoring_flags_it_does_not_imitate(
    start: Start, model: Path
) -> None:
    server = start(
        "--served-model-name", "tiny", "tiny-alias", "--tensor-parallel-size", "2",
        "--max-model-len", "1024", "--gpu-memory-utilization", "0.85",
        "--uvicorn-log-level", "info", "--dtype", "bfloat16", "--enable-prefix-caching",
        "--swap-space", "4",
    )  # fmt: skip
    assert (
        "ignoring what it does not imitate: --dtype bfloat16 --enable-prefix-caching "
        "--swap-space 4\n" in server.logged()
    )
    status, headers, body = server.call("GET", "/health")
    assert (status, body) == (200, b"")
    assert headers["X-Served-By"] == socket.gethostname()
    status, headers, body = server.call("GET", "/v1/models")
    assert status == 200 and headers["Content-Type"] == "application/json"
    listing = json.loads(body)
    assert listing["object"] == "list"
    assert [card["id"] for card in listing["data"]] == ["tiny", "tiny-alias"]
    for card in listing["data"]:
        assert card["object"] == "model" and card["owned_by"] == "vllm"
        assert card["root"] == str(model) and card["max_model_len"] == 1024
        assert isinstance(card["created"], int)
    status, _, body = server.call("GET", "/version")
    assert (status, json.loads(body)) == (200, {"version": "0.6.3.post1"})
    status, headers, body = server.call("GET", "/nowhere")
    assert (status, json.loads(body)) == (404, {"detail": "Not Found"})
    assert headers["X-Served-By"] == socket.gethostname()
    log = server.logged_soon(r'"GET /nowhere" 404 \d+\.\d{3}s\n')
    assert re.search(r'"GET /health" 200 \d+\.\d{3}s\n', log)


def test_serves_model_path_by_default_with_the_context_length_of_its_config(
    start: Start, model: Path
) -> None:
    (model / "config.json").write_text('{"max_position_embeddings": 2048, "n_positions": 1024}')
    server = start("--disable-log-requests")
    status, _, body = server.call("GET", "/v1/models")
    [card] = json.loads(body)["data"]
    assert (status, card["id"], card["max_model_len"]) == (200, str(model), 1024)
    assert '"GET /v1/models"' not in server.logged()


def test_keeps_connections_alive(start: Start, model: Path) -> None:
    server = start()
    conn = server.connect()
    try:
        assert send(conn, "GET", "/health")[0] == 200
        sock = conn.sock
        completion = {"model": str(model), "prompt": "x", "max_tokens": 2}
        assert send(conn, "POST", "/v1/completions", completion)[0] == 200
        stream = {**completion, "stream": True}
        conn.request("POST", "/v1/completions", body=json.dumps(stream).encode())
        assert list(events(conn.getresponse()))[-1] == "[DONE]"
        status, headers, _ = send(conn, "GET", "/v1/models")
        assert status == 200 and headers["Connection"] is None
        assert conn.sock is sock
    finally:
        conn.close()


# -- completions -------------------------------------------------------------------------------


def test_completion_cycles_the_prompts_words(start: Start, model: Path) -> None:
    server = start()
    request = {"model": str(model), "prompt": "the quick brown fox", "max_tokens": 6}
    status, reply = server.post("/v1/completions", request)
    assert status == 200
    assert reply["id"].startswith("cmpl-") and isinstance(reply["created"], int)
    assert (reply["object"], reply["model"]) == ("text_completion", str(model))
    [choice] = reply["choices"]
    assert choice["text"] == "the quick brown fox the quick"
    assert (choice["index"], choice["finish_reason"]) == (0, "length")
    assert reply["usage"] == {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}
    status, again = server.post("/v1/completions", request)
    assert again["choices"] == reply["choices"]
    status, reply = server.post("/v1/completions", {"model": str(model), "prompt": ["a b", ""]})
    assert [c["text"] for c in reply["choices"]] == [
        " ".join(["a", "b"] * 8),
        " ".join(f"token{i}" for i in range(16)),  # max_tokens defaults to 16
    ]
    assert reply["usage"] == {"prompt_tokens": 2, "completion_tokens": 32, "total_tokens": 34}


def test_chat_completion_cycles_the_messages_words(start: Start, model: Path) -> None:
    server = start("--served-model-name", "tiny")
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hello gpu"}]},
    ]
    status, reply = server.post(
        "/v1/chat/completions", {"model": "tiny", "messages": messages, "max_tokens": 5}
    )
    assert status == 200
    assert reply["id"].startswith("chatcmpl-")
    assert (reply["object"], reply["model"]) == ("chat.completion", "tiny")
    [choice] = reply["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "be brief hello gpu be"
    assert choice["finish_reason"] == "length"
    assert reply["usage"] == {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}


@pytest.mark.parametrize("kind", ["completions", "chat/completions"])
def test_streams_one_event_per_token_then_done(start: Start, kind: str) -> None:
    server = start("--served-model-name", "tiny")
    words = {"prompt": "one two three"}
    if kind == "chat/completions":
        words = {"messages": [{"role": "user", "content": "one two three"}]}
    request = {"model": "tiny", "max_tokens": 5, **words}
    _, whole = server.post(f"/v1/{kind}", request)
    conn = server.connect()
    try:
        stream = {**request, "stream": True, "stream_options": {"include_usage": True}}
        conn.request("POST", f"/v1/{kind}", body=json.dumps(stream).encode())
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.headers["Transfer-Encoding"] == "chunked"
        assert resp.headers["X-Served-By"] == socket.gethostname()
        payloads = list(events(resp))
    finally:
        conn.close()
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    tokens = [c["choices"][0] for c in chunks[:-1]]
    if kind == "completions":
        assert {c["object"] for c in chunks} == {"text_completion"}
        text = "".join(t["text"] for t in tokens)
        assert text == whole["choices"][0]["text"] == "one two three one two"
    else:
        assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
        assert tokens.pop(0)["delta"] == {"role": "assistant", "content": ""}
        text = "".join(t["delta"]["content"] for t in tokens)
        assert text == whole["choices"][0]["message"]["content"] == "one two three one two"
    assert len(tokens) == 5
    assert [t["finish_reason"] for t in tokens] == [None] * 4 + ["length"]
    assert len({c["id"] for c in chunks}) == 1


def test_refuses_bad_requests_as_vllm_does(start: Start, model: Path) -> None:
    server = start("--served-model-name", "tiny", "--max-model-len", "8")
    status, reply = server.post("/v1/completions", {"model": "big", "prompt": "hi"})
    assert (status, reply) == (
        404,
        {"object": "error", "message": "The model `big` does not exist.",
         "type": "NotFoundError", "param": None, "code": 404},
    )  # fmt: skip
    status, reply = server.post("/v1/chat/completions", {"model": "big", "messages": []})
    assert (status, reply["type"]) == (404, "NotFoundError")
    for body in ({"prompt": "hi"}, {"model": "tiny"}, {"model": "tiny", "prompt": 3}, b"{"):
        status, reply = server.post("/v1/completions", body)
        assert (status, reply["type"], reply["code"]) == (400, "BadRequestError", 400), body
    status, reply = server.post(
        "/v1/completions", {"model": "tiny", "prompt": "a b c d", "max_tokens": 5}
    )
    assert status == 400
    assert "maximum context length is 8 tokens" in reply["message"]
    status, _, body = server.call("GET", "/v1/completions")
    assert (status, json.loads(body)) == (405, {"detail": "Method Not Allowed"})


@pytest.mark.parametrize("via", ["flag", "environment"])
def test_api_key_guards_v1_only(start: Start, via: str) -> None:
    if via == "flag":
        server = start("--api-key", "s3cret")
    else:  # $VLLM_API_KEY wins over the flag, as in vLLM
        server = start("--api-key", "other", env={"VLLM_API_KEY": "s3cret"})
    assert server.call("GET", "/health")[0] == 200
    assert server.call("GET", "/version")[0] == 200
    for headers in ({}, {"Authorization": "Bearer other"}, {"Authorization": "s3cret"}):
        status, _, body = server.call("GET", "/v1/models", headers=headers)
        assert (status, json.loads(body)) == (401, {"error": "Unauthorized"}), headers
    status, _, _ = server.call("GET", "/v1/models", headers={"Authorization": "Bearer s3cret"})
    assert status == 200


# -- faults ----------------------------------------------------------------------------------


def test_fault_error_fails_health_and_the_api_until_cleared(
    start: Start, model: Path, fault: Path
) -> None:
    server = start()
    fault.write_text("error\n")
    status, headers, body = server.call("GET", "/health")
    assert (status, body) == (503, b"")
    assert headers["X-Served-By"] == socket.gethostname()
    status, _, body = server.call("GET", "/v1/models")
    assert (status, json.loads(body)["type"]) == (500, "InternalServerError")
    status, reply = server.post("/v1/completions", {"model": str(model), "prompt": "x"})
    assert (status, reply["object"], reply["code"]) == (500, "error", 500)
    fault.write_text("")
    assert server.call("GET", "/health")[0] == 200
    fault.write_text("explode")
    assert server.call("GET", "/health")[0] == 200
    assert "unknown fault 'explode'" in server.logged()


def test_fault_slow_multiplies_the_token_delay_by_50(
    start: Start, model: Path, fault: Path
) -> None:
    server = start("--stand-in-token-delay", "0.004")
    request = {"model": str(model), "prompt": "x", "max_tokens": 4}

    def timed() -> float:
        began = time.monotonic()
        assert server.post("/v1/completions", request)[0] == 200
        return time.monotonic() - began

    normal = timed()
    fault.write_text("slow")
    slow = timed()
    assert slow >= 4 * 0.004 * 50 * 0.95
    assert slow > 4 * normal


def test_fault_hang_answers_nothing_until_the_client_gives_up(
    start: Start, model: Path, fault: Path
) -> None:
    server = start("--stand-in-drain-timeout", "10")
    fault.write_text("hang")
    for method, path in (("GET", "/health"), ("POST", "/v1/completions")):
        with pytest.raises(TimeoutError):
            server.call(method, path, {"model": str(model), "prompt": "x"}, timeout=0.4)
    assert server.proc.poll() is None
    fault.unlink()
    assert server.call("GET", "/health")[0] == 200
    # The hung requests ended when their clients hung up: nothing is left to drain.
    time.sleep(0.3)
    began = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=5) == 0
    assert time.monotonic() - began < 2


def test_fault_crash_exits_1_on_the_next_request(start: Start, fault: Path) -> None:
    server = start()
    assert server.call("GET", "/health")[0] == 200
    fault.write_text("crash\n")
    with pytest.raises(ConnectionError):  # RemoteDisconnected or a reset
        server.call("GET", "/health")
    assert server.proc.wait(timeout=5) == 1
    assert "says crash; exiting 1" in server.logged()


# -- graceful drain --------------------------------------------------------------------------


def test_sigterm_lets_a_stream_in_flight_finish_then_exits_0(start: Start, model: Path) -> None:
    server = start("--stand-in-token-delay", "0.05")
    idle = server.connect()  # a keep-alive connection opened before the signal
    stream = server.connect()
    try:
        assert send(idle, "GET", "/health")[0] == 200
        request = {"model": str(model), "prompt": "drain me", "max_tokens": 20, "stream": True}
        stream.request("POST", "/v1/completions", body=json.dumps(request).encode())
        tokens = events(stream.getresponse())
        first = next(tokens)
        server.proc.send_signal(signal.SIGTERM)
        # New connections: refused once the listener closes, reset if the kernel queued one
        # just before; until then 503, or 200 while the signal is still on its way.
        answers: list[int] = []
        deadline = time.monotonic() + 2
        while True:
            try:
                answers.append(server.call("GET", "/health", timeout=1)[0])
            except (ConnectionRefusedError, ConnectionResetError):
                break
            assert time.monotonic() < deadline, f"the listener stayed open: {answers}"
            time.sleep(0.01)
        assert answers == sorted(answers) and set(answers) <= {200, 503}, answers
        status, headers, _ = send(idle, "GET", "/health")
        assert (status, headers["Connection"]) == (503, "close")
        rest = list(tokens)
    finally:
        idle.close()
        stream.close()
    assert rest[-1] == "[DONE]"
    text = "".join(json.loads(p)["choices"][0]["text"] for p in [first, *rest[:-1]])
    assert text == " ".join(["drain", "me"] * 10)
    assert server.proc.wait(timeout=5) == 0
    assert "drained; exiting" in server.logged()


@pytest.mark.parametrize("cut", ["drain timeout", "second signal"])
def test_drain_is_cut_short_with_exit_1(start: Start, model: Path, cut: str) -> None:
    timeout = "0.5" if cut == "drain timeout" else "30"
    server = start("--stand-in-token-delay", "0.05", "--stand-in-drain-timeout", timeout)
    stream = server.connect()
    try:
        request = {"model": str(model), "prompt": "long", "max_tokens": 400, "stream": True}
        stream.request("POST", "/v1/completions", body=json.dumps(request).encode())
        next(events(stream.getresponse()))
        began = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        if cut == "second signal":
            # Signals of one kind coalesce until handled: wait until the first one was.
            while "shutting down;" not in server.logged():
                assert time.monotonic() - began < 5, server.logged()
                time.sleep(0.02)
            time.sleep(0.2)
            assert server.proc.poll() is None  # still draining
            server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=5) == 1
        assert time.monotonic() - began < 3
    finally:
        stream.close()
    assert f"{cut}; exiting with 1 in flight" in server.logged()
