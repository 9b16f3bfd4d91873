"""The validator's local HTTP API (docs/VALIDATOR_API.md): 127.0.0.1 only, bearer-token auth.

The port and a random token are written to ``<data dir>/validator/api.json`` (mode 0600) while
the API runs: whoever can read the data directory may use it (``magnet task create`` does). The
server runs in its own thread (stdlib ``ThreadingHTTPServer``); task creation checks and splits
the data in that thread and stores the task, which the service's loop then announces.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from protocol import strict_json
from validator.db import ValidatorDB
from validator.lifecycle import TaskEngine
from validator.report import full_report, task_summaries
from validator.tasks import TaskInputError

log = logging.getLogger("magnet.validator.api")
API_FILE = "api.json"
MAX_BODY = 64 * 1024
EPOCH_FILE_NAME = re.compile(r"epoch-[0-9]{1,20}-0x[0-9a-fA-F]{40}\.json")


def api_file(root: Path) -> Path:
    return root / API_FILE


def write_api_file(path: Path, port: int, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"url": f"http://127.0.0.1:{port}", "port": port, "token": token, "pid": os.getpid()}, f)
    os.replace(path.with_suffix(".tmp"), path)


class ValidatorApi:
    def __init__(self, engine: TaskEngine, db: ValidatorDB, root: Path, port: int = 0) -> None:
        self.engine = engine
        self.db = db
        self.root = root
        self.token = secrets.token_urlsafe(32)
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread: threading.Thread | None = None

    def start(self) -> ValidatorApi:
        write_api_file(api_file(self.root), self.port, self.token)
        self._thread = threading.Thread(target=self.server.serve_forever, name="validator-api", daemon=True)
        self._thread.start()
        log.info("validator API on http://127.0.0.1:%d (token in %s)", self.port, api_file(self.root))
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        api_file(self.root).unlink(missing_ok=True)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # never log headers (the token)
                log.debug("api %s %s", self.command, self.path.split("?")[0])

            def do_GET(self) -> None:
                api.dispatch(self, "GET")

            def do_POST(self) -> None:
                api.dispatch(self, "POST")

        return Handler

    # --- requests -------------------------------------------------------------------------------
    def dispatch(self, request: BaseHTTPRequestHandler, method: str) -> None:
        supplied = request.headers.get("Authorization", "")
        if not hmac.compare_digest(supplied.encode(), f"Bearer {self.token}".encode()):
            _json(
                request,
                HTTPStatus.UNAUTHORIZED,
                {"error": f"missing or wrong bearer token: read it from {api_file(self.root)}"},
            )
            return
        parts = [p for p in request.path.split("?")[0].split("/") if p]
        try:
            if method == "GET" and parts == ["v1", "status"]:
                _json(request, HTTPStatus.OK, full_report(self._query, self.engine.cfg))
            elif method == "POST" and parts == ["v1", "tasks"]:
                _json(request, HTTPStatus.CREATED, self.create_task(_read_json(request)))
            elif method == "GET" and len(parts) == 3 and parts[:2] == ["v1", "tasks"]:
                _json(request, HTTPStatus.OK, self.task(parts[2]))
            elif (
                method == "GET"
                and len(parts) == 4
                and parts[:2] == ["v1", "tasks"]
                and parts[3] == "artifact"
            ):
                self.send_artifact(request, parts[2])
            elif method == "GET" and parts == ["v1", "epochs"]:
                _json(request, HTTPStatus.OK, self.epochs())
            elif method == "GET" and len(parts) == 3 and parts[:2] == ["v1", "epochs"]:
                self.send_epoch_file(request, parts[2])
            else:
                _json(request, HTTPStatus.NOT_FOUND, {"error": "unknown endpoint: see docs/VALIDATOR_API.md"})
        except (TaskInputError, ValueError) as exc:
            _json(request, HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except LookupError as exc:
            _json(request, HTTPStatus.NOT_FOUND, {"error": str(exc).strip("'\"")})

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return self.db.rows(sql, params)

    def create_task(self, body: dict[str, Any]) -> dict[str, Any]:
        kind, data, model = body.get("kind", "instruct"), body.get("data_file"), body.get("model", "bundled")
        hours = body.get("hours")
        if not isinstance(data, str) or not isinstance(kind, str) or not isinstance(model, str):
            raise ValueError(
                'send {"kind": "instruct", "data_file": "/path/data.jsonl", "model": "bundled", "hours": 2}'
            )
        if hours is not None and not isinstance(hours, int | float):
            raise ValueError("hours must be a number")
        params = body.get("params")
        if params is not None and not isinstance(params, dict):
            raise ValueError('params must be an object, e.g. {"rewards": "exact_answer:1.0,format:0.2"}')
        task_id = self.engine.create_task(
            Path(data).expanduser(), kind, model, None if hours is None else float(hours), params=params
        )
        return {"task_id": task_id}

    def task(self, task_id: str) -> dict[str, Any]:
        found = [t for t in task_summaries(self._query) if t["id"] == task_id.lower()]
        if not found:
            raise LookupError(f"no task {task_id} on this validator")
        return found[0]

    def send_artifact(self, request: BaseHTTPRequestHandler, task_id: str) -> None:
        task = self.db.task(task_id.lower())
        if task is None:
            raise LookupError(f"no task {task_id} on this validator")
        if task.phase != "finished" or not task.winner:
            raise LookupError(f"task {task_id} has no winning artifact yet (phase {task.phase})")
        path = Path(self.db.reveals(task.id)[task.winner]["path"])
        request.send_response(HTTPStatus.OK)
        request.send_header("Content-Type", "application/octet-stream")
        request.send_header("Content-Length", str(path.stat().st_size))
        request.send_header("Content-Disposition", f'attachment; filename="{task.id[:18]}-winner.bundle"')
        request.end_headers()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                request.wfile.write(chunk)

    def epochs(self) -> list[dict[str, Any]]:
        """The published epoch files (``<root>/epochs``): name, size and sha256 of each."""
        found = []
        for path in sorted((self.root / "epochs").glob("epoch-*.json")):
            if EPOCH_FILE_NAME.fullmatch(path.name):
                data = path.read_bytes()
                found.append(
                    {"name": path.name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                )
        return found

    def send_epoch_file(self, request: BaseHTTPRequestHandler, name: str) -> None:
        path = self.root / "epochs" / name
        if not EPOCH_FILE_NAME.fullmatch(name) or not path.is_file():
            raise LookupError(f"no epoch file {name!r} on this validator: GET /v1/epochs lists them")
        data = path.read_bytes()
        request.send_response(HTTPStatus.OK)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)


def _read_json(request: BaseHTTPRequestHandler) -> dict[str, Any]:
    length = int(request.headers.get("Content-Length") or 0)
    if not 0 < length <= MAX_BODY:
        raise ValueError(f"send a JSON body of at most {MAX_BODY} bytes")
    try:
        body = strict_json.loads(request.rfile.read(length), "request body", floats=True)
    except ValueError:
        raise ValueError("the body is not JSON") from None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def _json(request: BaseHTTPRequestHandler, status: HTTPStatus, body: Any) -> None:
    data = json.dumps(body, default=str).encode()
    request.send_response(status)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(data)))
    request.end_headers()
    request.wfile.write(data)
