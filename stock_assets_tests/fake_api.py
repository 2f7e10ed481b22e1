"""A real HTTP server on loopback, in a thread, answering with recorded provider payloads.

Routes match a path prefix and optional query values; each route answers its responses in
order and repeats the last. Every request is recorded (path, query, headers, time).
"""

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


@dataclass
class Reply:
    body: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering: a slow or hung server


@dataclass
class Route:
    path: str
    query: dict[str, str]
    replies: list[Reply]
    served: int = 0


@dataclass
class Request:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float
    method: str = "GET"
    body: bytes = b""


class FakeApi:
    def __init__(self):
        self.routes: list[Route] = []
        self.requests: list[Request] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                api.requests.append(Request(parts.path, query, dict(self.headers), time.monotonic()))
                reply = api.answer(parts.path, query)
                time.sleep(reply.delay)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def do_POST(self):
                parts = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                api.requests.append(Request(parts.path, {}, dict(self.headers), time.monotonic(), "POST", body))
                reply = api.answer(parts.path, {})
                self.send_response(reply.status)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.polygon_actions()  # every ticker: no split, no dividend, unless a test routes its own

    def route(self, path: str, *replies: Reply | bytes, **query: str) -> None:
        self.routes.insert(0, Route(path, query, [r if isinstance(r, Reply) else Reply(r) for r in replies]))

    def polygon_actions(self, splits: Reply | bytes | None = None, dividends: Reply | bytes | None = None, **query: str) -> None:
        """Polygon's reference endpoints (`ticker=` in `query` for one symbol): the given answers,
        else a page with no result (fixtures/polygon/reference_empty_results_documented_shape.json)."""
        empty = (Path(__file__).parent / "fixtures/polygon/reference_empty_results_documented_shape.json").read_bytes()
        self.route("/v3/reference/splits", splits or empty, **query)
        self.route("/v3/reference/dividends", dividends or empty, **query)

    def answer(self, path: str, query: dict[str, str]) -> Reply:
        for route in self.routes:
            if path.startswith(route.path) and all(query.get(k) == v for k, v in route.query.items()):
                reply = route.replies[min(route.served, len(route.replies) - 1)]
                route.served += 1
                return reply
        return Reply(b'{"error": "no route"}', status=404)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
