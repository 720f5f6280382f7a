"""A stand-in model provider on 127.0.0.1, for running the real agent CLIs in tests without a network.

It speaks just enough of three wire protocols for each agent to finish a short
non-interactive run, streaming (SSE) or not:

- OpenAI Chat Completions, ``POST /v1/chat/completions`` (opencode's
  OpenAI-compatible provider, pi's ``openai-completions``);
- OpenAI Responses, ``POST /v1/responses`` (Codex);
- Anthropic Messages, ``POST /v1/messages`` and ``/v1/messages/count_tokens`` (Claude Code, pi);
- ``GET /v1/models`` lists whatever model ids it was asked to (any id is answered).

Every answer is plain text and deterministic: ``REPLY_MARKER`` followed by a
digest of the last user message (so a test can tell replies apart), with the
fixed token counts :data:`INPUT_TOKENS` / :data:`OUTPUT_TOKENS`. Tools offered
in the request are never called: one answer ends the agent's turn.

Controls, written anywhere in the last user message (so a resumed run without
them behaves normally):

- ``[[mock:delay=2.5]]``: wait that many seconds before answering;
- ``[[mock:hold=NAME]]``: answer only once the test calls ``server.release(NAME)``
  (at most :data:`HOLD_LIMIT` seconds): an agent that runs exactly as long as
  the test needs, however slow the machine;
- ``[[mock:status=401]]``: answer with that HTTP status and the protocol's own
  error body (``authentication_error`` for 401, and so on);
- ``[[mock:reply=some text]]``: answer with exactly this text.

Each request is appended to :attr:`ModelServer.requests` (and, with ``log``,
to a JSONL file): time, path, protocol, model, stream, status, the last user
text, the headers an agent identifies itself with, and the usage answered.

Run it by hand with ``python tests/model_server.py [--port N] [--log FILE]``;
it prints ``http://127.0.0.1:PORT`` and serves until interrupted.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPLY_MARKER = "MODEL-SERVER-REPLY"
INPUT_TOKENS = 120
OUTPUT_TOKENS = 12
_CONTROL = re.compile(r"\[\[mock:(delay|status|reply|hold)=([^\]]*)\]\]")
#: The longest a held answer waits for its release.
HOLD_LIMIT = 300.0
_HEADERS_KEPT = ("user-agent", "x-api-key", "authorization", "anthropic-version", "session_id", "conversation_id",
                 "x-claude-code-session-id", "originator", "x-session-affinity")


@dataclass
class Reply:
    """What one request is answered with, after the controls in its last user message."""

    text: str
    status: int = 200
    delay: float = 0.0
    hold: str | None = None  # answer once the test releases this name


def plan_reply(last_user: str) -> Reply:
    controls = dict(_CONTROL.findall(last_user))
    digest = hashlib.sha256(last_user.encode()).hexdigest()[:8]
    reply = Reply(text=controls.get("reply") or f"{REPLY_MARKER} {digest}")
    if "delay" in controls:
        reply.delay = float(controls["delay"])
    if "status" in controls:
        reply.status = int(controls["status"])
    reply.hold = controls.get("hold")
    return reply


def text_of(content: Any) -> str:
    """The text of a message's content in any of the three protocols (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, dict) and isinstance(part.get("content"), (str, list)):
                texts.append(text_of(part["content"]))
        return "\n".join(texts)
    return ""


def last_user_text(body: dict[str, Any]) -> str:
    """The last user message of a Chat Completions, Messages or Responses request."""
    if isinstance(body.get("messages"), list):
        users = [m for m in body["messages"] if isinstance(m, dict) and m.get("role") == "user"]
        return text_of(users[-1].get("content")) if users else ""
    items = body.get("input")
    if isinstance(items, str):
        return items
    if isinstance(items, list):
        users = [i for i in items if isinstance(i, dict) and i.get("role") == "user"]
        return text_of(users[-1].get("content")) if users else ""
    return ""


@dataclass
class ModelServer:
    """The server, run on a thread: ``with ModelServer() as server: server.url``."""

    host: str = "127.0.0.1"
    port: int = 0
    log: Path | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._gates: dict[str, threading.Event] = {}
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def gate(self, name: str) -> threading.Event:
        """The event a ``[[mock:hold=NAME]]`` answer waits on."""
        with self._lock:
            return self._gates.setdefault(name, threading.Event())

    def release(self, name: str) -> None:
        """Let the answers held under ``name`` (and any later ones) go."""
        self.gate(name).set()

    def start(self) -> ModelServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="model-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(entry)
            if self.log is not None:
                with open(self.log, "a") as handle:
                    handle.write(json.dumps(entry) + "\n")

    def answered(self, protocol: str | None = None) -> list[dict[str, Any]]:
        """The requests answered with a model reply (status 200), of one protocol if given."""
        with self._lock:
            return [r for r in self.requests
                    if r.get("status") == 200 and r.get("protocol") and (protocol is None or r["protocol"] == protocol)]


class _Handler(BaseHTTPRequestHandler):
    server_state: ModelServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the request log says what happened
        pass

    # -- routing -----------------------------------------------------------------

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path.endswith("/models"):
            self._json(200, {"object": "list", "data": [
                {"id": "test-model", "object": "model", "created": 0, "owned_by": "model-server"}]})
        else:
            self._json(404, {"error": {"message": f"no such path {path}", "type": "not_found"}})
        self._record({"method": "GET", "path": path, "status": 200 if path.endswith("/models") else 404})

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else self._read_chunked()
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._json(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
            return
        if path.endswith("/messages/count_tokens"):
            self._json(200, {"input_tokens": INPUT_TOKENS})
            self._record({"method": "POST", "path": path, "status": 200, "protocol": None})
            return
        protocol = ("anthropic" if path.endswith("/messages") else "responses" if path.endswith("/responses")
                    else "chat" if path.endswith("/chat/completions") else None)
        if protocol is None:
            self._json(404, {"error": {"message": f"no such path {path}", "type": "not_found"}})
            self._record({"method": "POST", "path": path, "status": 404})
            return
        user = last_user_text(body)
        reply = plan_reply(user)
        stream = bool(body.get("stream"))
        entry = {"method": "POST", "path": path, "protocol": protocol, "model": body.get("model"), "stream": stream,
                 "status": reply.status, "delay": reply.delay, "user": user[-2000:], "reply": reply.text,
                 "tools": len(body.get("tools") or []),
                 # Where Codex names its thread (it sends no session header): the Responses API's cache key.
                 "prompt_cache_key": body.get("prompt_cache_key"),
                 "usage": {"input": INPUT_TOKENS, "output": OUTPUT_TOKENS} if reply.status == 200 else None}
        if reply.delay:
            time.sleep(reply.delay)
        if reply.hold:
            self.server_state.gate(reply.hold).wait(HOLD_LIMIT)
        try:
            if reply.status != 200:
                self._error(protocol, reply.status)
            else:
                getattr(self, f"_{protocol}")(body, reply.text, stream)
        except (BrokenPipeError, ConnectionResetError):
            entry["client_gone"] = True
        self._record(entry)

    def _record(self, entry: dict[str, Any]) -> None:
        entry["at"] = time.time()
        entry["headers"] = {k: self.headers[k] for k in _HEADERS_KEPT if self.headers.get(k)}
        self.server_state.record(entry)

    def _read_chunked(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return b""
        data = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return data
            data += self.rfile.read(size)
            self.rfile.readline()

    # -- plumbing ----------------------------------------------------------------

    def _json(self, status: int, value: Any) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", f"req_{uuid.uuid4().hex[:24]}")
        self.end_headers()
        self.wfile.write(data)

    def _sse(self, events: list[tuple[str | None, Any]]) -> None:
        """Stream ``events`` (name, data) as Server-Sent Events, then end the response."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        for name, data in events:
            chunk = (f"event: {name}\n" if name else "") + "data: " + (
                data if isinstance(data, str) else json.dumps(data)) + "\n\n"
            self.wfile.write(chunk.encode())
            self.wfile.flush()

    def _error(self, protocol: str, status: int) -> None:
        kinds = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "not_found_error", 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}
        kind = kinds.get(status, "api_error")
        message = {401: "invalid x-api-key (model-server: status 401 asked for)"}.get(
            status, f"model-server: status {status} asked for")
        if protocol == "anthropic":
            self._json(status, {"type": "error", "error": {"type": kind, "message": message}})
        else:
            self._json(status, {"error": {"message": message, "type": kind, "code": kind, "param": None}})

    # -- the three protocols -----------------------------------------------------

    def _chat(self, body: dict[str, Any], text: str, stream: bool) -> None:
        ident, created, model = f"chatcmpl-{uuid.uuid4().hex[:20]}", int(time.time()), body.get("model") or "test-model"
        usage = {"prompt_tokens": INPUT_TOKENS, "completion_tokens": OUTPUT_TOKENS,
                 "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS, "prompt_tokens_details": {"cached_tokens": 0}}
        if not stream:
            self._json(200, {"id": ident, "object": "chat.completion", "created": created, "model": model,
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": text}}], "usage": usage})
            return
        base = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
        events: list[tuple[str | None, Any]] = [
            (None, {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                         "finish_reason": None}]}),
            (None, {**base, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}),
            (None, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        ]
        if (body.get("stream_options") or {}).get("include_usage", True):
            events.append((None, {**base, "choices": [], "usage": usage}))
        events.append((None, "[DONE]"))
        self._sse(events)

    def _anthropic(self, body: dict[str, Any], text: str, stream: bool) -> None:
        ident, model = f"msg_{uuid.uuid4().hex[:24]}", body.get("model") or "test-model"
        usage = {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS,
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        message = {"id": ident, "type": "message", "role": "assistant", "model": model,
                   "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
                   "usage": usage}
        if not stream:
            self._json(200, message)
            return
        self._sse([
            ("message_start", {"type": "message_start", "message": {
                **message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("ping", {"type": "ping"}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": text}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                               "usage": {"output_tokens": OUTPUT_TOKENS}}),
            ("message_stop", {"type": "message_stop"}),
        ])

    def _responses(self, body: dict[str, Any], text: str, stream: bool) -> None:
        ident, model = f"resp_{uuid.uuid4().hex[:24]}", body.get("model") or "test-model"
        item_id = f"msg_{uuid.uuid4().hex[:24]}"
        item = {"type": "message", "id": item_id, "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}
        usage = {"input_tokens": INPUT_TOKENS, "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": OUTPUT_TOKENS, "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS}
        response = {"id": ident, "object": "response", "created_at": int(time.time()), "status": "completed",
                    "model": model, "output": [item], "usage": usage}
        if not stream:
            self._json(200, response)
            return
        pending = {**response, "status": "in_progress", "output": [], "usage": None}
        self._sse([
            ("response.created", {"type": "response.created", "sequence_number": 0, "response": pending}),
            ("response.in_progress", {"type": "response.in_progress", "sequence_number": 1, "response": pending}),
            ("response.output_item.added", {"type": "response.output_item.added", "sequence_number": 2,
                                            "output_index": 0,
                                            "item": {**item, "status": "in_progress", "content": []}}),
            ("response.content_part.added", {"type": "response.content_part.added", "sequence_number": 3,
                                             "item_id": item_id, "output_index": 0, "content_index": 0,
                                             "part": {"type": "output_text", "text": "", "annotations": []}}),
            ("response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": 4,
                                            "item_id": item_id, "output_index": 0, "content_index": 0,
                                            "delta": text}),
            ("response.output_text.done", {"type": "response.output_text.done", "sequence_number": 5,
                                           "item_id": item_id, "output_index": 0, "content_index": 0, "text": text}),
            ("response.content_part.done", {"type": "response.content_part.done", "sequence_number": 6,
                                            "item_id": item_id, "output_index": 0, "content_index": 0,
                                            "part": item["content"][0]}),
            ("response.output_item.done", {"type": "response.output_item.done", "sequence_number": 7,
                                           "output_index": 0, "item": item}),
            ("response.completed", {"type": "response.completed", "sequence_number": 8, "response": response}),
        ])


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="a stand-in model provider on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", type=Path, default=None, help="append each request to this JSONL file")
    args = parser.parse_args()
    server = ModelServer(port=args.port, log=args.log)
    print(server.url, flush=True)
    try:
        server._httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
