"""Serve an ``EmbeddedChain`` as JSON-RPC over HTTP on 127.0.0.1, in a background thread.

Other processes (a miner started apart, the desktop app) then reach the devnet chain with an
ordinary ``HTTPProvider``, exactly as they reach a real one. Requests are capped in size and batch
length; anything malformed gets a JSON-RPC error, never a dropped connection.
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from node.logs import component_logger
from protocol import strict_json
from wallet.devchain import EmbeddedChain

log = component_logger("wallet.rpc")
MAX_REQUEST_BYTES = 4 * 1024 * 1024  # a contract deployment is ~20 KB; claims far less
MAX_BATCH = 100


class RpcServer:
    """``with RpcServer(chain) as server: server.url`` serves ``chain`` until the block ends."""

    def __init__(self, chain: EmbeddedChain, host: str = "127.0.0.1", port: int = 0) -> None:
        self.chain = chain
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(chain))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> RpcServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="chain-rpc", daemon=True)
        self._thread.start()
        log.info("embedded chain JSON-RPC served at %s (chain id %d)", self.url, self.chain.chain_id)
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> RpcServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _handler_for(chain: EmbeddedChain) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; with Nagle on, the client's delayed ACK stalls
        # every answer by ~40 ms.
        disable_nagle_algorithm = True
        timeout = 30  # seconds: a client that stops mid-request cannot hold a thread forever

        def do_POST(self) -> None:
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self._reply(HTTPStatus.LENGTH_REQUIRED, _rpc_error(-32600, "Content-Length is required"))
                return
            if int(length) > MAX_REQUEST_BYTES:
                self.close_connection = True
                self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, _rpc_error(-32600, "request too large"))
                return
            body = self.rfile.read(int(length))
            self._reply(HTTPStatus.OK, answer(chain, body))

        def do_GET(self) -> None:
            self._reply(HTTPStatus.METHOD_NOT_ALLOWED, _rpc_error(-32600, "JSON-RPC needs POST"))

        def _reply(self, status: HTTPStatus, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("rpc %s", format % args)

    return Handler


def answer(chain: EmbeddedChain, body: bytes) -> Any:
    """The JSON-RPC answer to a request body (single request or batch)."""
    try:
        request = strict_json.loads(body, "JSON-RPC request", floats=True)
    except ValueError:
        return _rpc_error(-32700, "parse error: the body is not JSON")
    if isinstance(request, list):
        if not request or len(request) > MAX_BATCH:
            return _rpc_error(-32600, f"a batch holds 1 to {MAX_BATCH} requests")
        return [chain.handle(r) for r in request]
    return chain.handle(request)


def _rpc_error(code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
