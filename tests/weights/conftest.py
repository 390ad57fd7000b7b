"""Fixtures for the weights manager: a real HTTP server on 127.0.0.1 and throw-away registries pointing at it."""

from __future__ import annotations

import hashlib
import json
import random
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from facerest_cli.weights.cache import WeightsConfig, WeightsStore
from facerest_cli.weights.registry import parse_registry

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def payload(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class FileServer:
    """Serves ``files`` by path; ``modes[path]`` picks a misbehaviour. Every request is logged with its headers.

    Modes: ``404``; ``html`` (a text/html page); ``html-body`` (an HTML page labelled octet-stream);
    ``cut-once`` (the first answer stops halfway and drops the connection); ``stall`` (sends 1 KiB, then
    nothing); ``503-once``; ``slow`` (``delay_s`` between 32 KiB chunks). Any other: Range-aware 200/206.
    """

    files: dict[str, bytes] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    log: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    finished: list[tuple[str, float]] = field(default_factory=list)  # (path, time.monotonic()) of full answers
    stop: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def hits(self, path: str) -> list[dict[str, str]]:
        return [h for p, h in list(self.log) if p == path]


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            path = self.path.lstrip("/")
            server.log.append((path, {k.lower(): v for k, v in self.headers.items()}))
            seen = len(server.hits(path))
            mode = server.modes.get(path, "")
            if mode == "404" or (path not in server.files and not mode.startswith("html")):
                self.send_error(404, "Not Found")
                return
            if mode in ("html", "html-body"):
                body = b"<!DOCTYPE html><html><body>Google Drive can't scan this file for viruses.</body></html>"
                self.send_response(200)
                ctype = "text/html; charset=utf-8" if mode == "html" else "application/octet-stream"
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if mode == "503-once" and seen == 1:
                self.send_error(503, "Busy")
                return
            data = server.files[path]
            if mode == "stall":
                self._head(200, len(data))
                self.wfile.write(data[:1024])
                self.wfile.flush()
                server.stop.wait(20)
                return
            start = 0
            m = re.match(r"bytes=(\d+)-$", self.headers.get("Range", ""))
            if m:
                start = int(m.group(1))
                if start >= len(data):
                    self.send_error(416, "Range Not Satisfiable")
                    return
                self._head(206, len(data) - start, f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self._head(200, len(data))
            body = data[start:]
            if mode == "cut-once" and seen == 1:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            step = 32 * 1024
            for i in range(0, len(body), step):
                self.wfile.write(body[i : i + step])
                if mode == "slow":
                    self.wfile.flush()
                    server.stop.wait(server.delay_s)
            self.wfile.flush()
            server.finished.append((path, time.monotonic()))

        def _head(self, code: int, length: int, content_range: str | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes")
            if content_range:
                self.send_header("Content-Range", content_range)
            self.end_headers()

    return Handler


@pytest.fixture
def no_proxy(monkeypatch) -> None:
    for v in _PROXY_VARS:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def no_network(monkeypatch) -> list:
    """Every attempt to reach the network fails and is recorded."""
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


@pytest.fixture
def http_server(no_proxy) -> Iterator[FileServer]:
    state = FileServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def entry_toml(name: str, files: list[dict], **fields) -> str:
    """One registry table; values are written as JSON, which TOML reads the same for strings, ints and lists."""
    head = {"role": "detector", "arch": "yunet", "license": "test licence", "source": "tests"} | fields
    lines = [f"[{json.dumps(name)}]"] + [f"{k} = {json.dumps(v)}" for k, v in head.items()]
    for f in files:
        lines.append(f"[[{json.dumps(name)}.files]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in f.items()]
    return "\n".join(lines) + "\n"


def one_file(name: str, file: str, urls: list[str], data: bytes | None = None, **fields) -> str:
    """An entry with one file; its sha256 and size are those of ``data``, or unknown (``""``) without it."""
    known = {"sha256": sha(data), "size": len(data)} if data is not None else {"sha256": ""}
    return entry_toml(name, [{"name": file, "url": urls} | known], **fields)


def make_store(tmp_path: Path, toml_text: str, **config) -> WeightsStore:
    settings = {"timeout_s": 2.0, "retries": 1, "backoff_s": 0.01} | config
    cfg = WeightsConfig(home=tmp_path / "home" / "weights", **settings)
    return WeightsStore(cfg, registry=parse_registry(toml_text, "test-weights.toml"))


def write_registry(tmp_path: Path, toml_text: str) -> Path:
    p = tmp_path / "test-weights.toml"
    parse_registry(toml_text, str(p))  # fail here, not inside the CLI, if a test writes a broken registry
    p.write_text(toml_text, encoding="utf-8")
    return p
