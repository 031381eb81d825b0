"""A webhook receiver a test runs: an HTTP server in a thread that keeps every JSON body POSTed to it."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Receiver:
    url: str
    payloads: list[Any] = field(default_factory=list)
    status: int = 200  # what the receiver answers (a test sets 500 to play a broken webhook)


@contextlib.contextmanager
def receiving(path: str = "/hooks/T000/B000/secret") -> Iterator[Receiver]:
    """A receiver on a free port of 127.0.0.1 at ``path`` (a Slack-like secret path), until the block ends."""
    receiver = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == path and receiver.status == 200:
                receiver.payloads.append(json.loads(body))
            self.send_response(receiver.status if self.path == path else 404)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (quiet)
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
