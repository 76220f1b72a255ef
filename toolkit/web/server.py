"""The search page over HTTP (standard library server, one thread per request).

Routes: ``GET /`` the page, ``GET /assets/font.ttf`` the shipped Japanese font, ``GET /api/info``,
``GET /api/search?q=&mode=&k=&ingredient=&recipe=``, ``POST /api/search/photo`` (body: the photo's
bytes), ``GET /photo/<path under the dataset root>``; ``HEAD`` answers like ``GET`` without the body. Every
read and write on a connection gives up after :data:`READ_TIMEOUT_S` seconds without progress, and a request
head (request line and headers) that has not all come :data:`HEAD_TIMEOUT_S` seconds after it began closes the
connection (a client sending it byte by byte held a thread for ever). A server on a
loopback address answers only loopback ``Host`` names and the allowed ones, and a request other than ``GET`` or
``HEAD`` that another site's page had a browser send is refused (:mod:`toolkit.web.hosts`).
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import unquote, urlsplit

from toolkit.chars import visible
from toolkit.data.paths import UnsafePathError
from toolkit.errors import ToolkitError
from toolkit.es.client import EsUnavailable, es_failure
from toolkit.search.modes import MODE_HELP, TEXT_MODES
from toolkit.web.app import MAX_UPLOAD_BYTES, NotFound, SearchApp
from toolkit.web.hosts import CROSS_SITE, MISDIRECTED, HostCheck, cross_site_refusal
from toolkit.web.params import query_params

log = logging.getLogger(__name__)

#: where the page's own script is (the only inline one)
PAGE = "static/index.html"


def script_hashes(page: bytes) -> str:
    """The CSP source of each inline ``<script>`` of ``page`` (``'sha256-...'``): the page's own scripts run,
    and no other inline script or event handler would, should recipe text ever get into the page as markup."""
    scripts = re.findall(rb"<script>(.*?)</script>", page, re.DOTALL)
    return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s).digest()).decode()}'" for s in scripts)


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; "
        f"script-src {script_hashes(resources.files('toolkit.web').joinpath(PAGE).read_bytes())}; "
        "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
}
#: seconds a connection may stay silent mid-request (both servers): then 408 (a stalled upload) or closed
READ_TIMEOUT_S = 30.0
#: seconds a request head (request line and headers) may take in all (both servers): then the connection closes
HEAD_TIMEOUT_S = 30.0
#: where the page's mode switch goes (filled from :data:`toolkit.search.modes.TEXT_MODES`)
MODES_MARK = b"<!-- modes -->"


def error_status(error: ToolkitError) -> int:
    """The HTTP status of a toolkit error on either server: 503 while Elasticsearch cannot be used (it may come
    back: the same request then works), else 400."""
    return HTTPStatus.SERVICE_UNAVAILABLE if isinstance(error, EsUnavailable) else HTTPStatus.BAD_REQUEST


def stalled_message(timeout: float) -> str:
    return f"the upload stalled: no data for {timeout:g} s"


def not_found_message(raw_path: str) -> str:
    """The 404 of both servers: the path as requested (percent-encoded as sent), control characters escaped."""
    return f"no such page: {visible(raw_path)}"


def page_html() -> bytes:
    """The search page, its mode switch offering every text mode (the first checked)."""
    page = resources.files("toolkit.web").joinpath(PAGE).read_bytes()
    return page.replace(MODES_MARK, mode_switch().encode("utf-8"))


def mode_switch() -> str:
    """One radio button per text mode, titled with what it does."""
    return "\n".join(
        f'<label title="{html.escape(MODE_HELP[m])}"><input type="radio" name="mode" value="{html.escape(m)}"'
        f"{' checked' if i == 0 else ''}> {html.escape(m)}</label>"
        for i, m in enumerate(TEXT_MODES)
    )


class DeadlineReader(io.RawIOBase):
    """A connection's reads: each gives up (:class:`TimeoutError`) after ``timeout`` seconds without data and,
    while ``deadline`` (a :func:`time.monotonic` time) is set, at that time too."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        super().__init__()
        self.sock = sock
        self.timeout = timeout
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        timeout = self.timeout
        if self.deadline is not None:
            timeout = min(timeout, self.deadline - time.monotonic())
            if timeout <= 0:
                raise TimeoutError("the request head did not all come in time")
        self.sock.settimeout(timeout)
        return self.sock.recv_into(buffer)


class Handler(BaseHTTPRequestHandler):
    """Routes requests to the :class:`SearchApp` set on the server."""

    server: SearchServer
    server_version = "jrs-web"
    sys_version = ""

    def setup(self) -> None:
        # socket timeout for every read and write (typeshed declares it a ClassVar; socketserver reads it
        # from the instance)
        self.timeout = self.server.read_timeout  # type: ignore[misc]
        super().setup()
        self.rfile.close()  # replaced by a reader that also keeps the request head's deadline
        self.reader = DeadlineReader(self.connection, self.timeout)
        self.rfile = io.BufferedReader(self.reader)

    def handle_one_request(self) -> None:
        """One request, its head read within :attr:`SearchServer.head_timeout` (a :class:`TimeoutError` then:
        the base class closes the connection)."""
        self.reader.deadline = time.monotonic() + self.server.head_timeout
        super().handle_one_request()

    def parse_request(self) -> bool:
        """Parse the request head (its headers read here); then only ``read_timeout`` applies again. A request
        for another host, or sent by another site's page, is answered here, before any route (False)."""
        try:
            parsed = super().parse_request()
        finally:
            self.reader.deadline = None
            self.connection.settimeout(self.timeout)  # for the writes too
        return parsed and not self._host_refused() and not self._cross_site_refused()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler API
        log.info("%s %s", self.address_string(), visible(format % args))

    # --- responses -------------------------------------------------------------------------------
    def _send(
        self, status: int, body: bytes, content_type: str, cache: str = "no-store", close: bool = False
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")  # and the connection closes after this response
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The base class's own refusals (a request line too long, a malformed request, a method with no route)
        in the page's JSON shape with the security headers, not its HTML page; the connection closes."""
        self.log_error("code %d, message %s", code, visible(message or ""))
        reason = message or (self.responses[code][0] if code in self.responses else "error")
        body = json.dumps({"error": visible(reason)}, ensure_ascii=False).encode("utf-8")
        self._send(code, body, "application/json; charset=utf-8", close=True)

    def _json(self, status: int, data: Any, close: bool = False) -> None:
        body = json.dumps(data, ensure_ascii=False).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8", close=close)

    def _error(self, status: int, message: str, close: bool = False) -> None:
        self._json(status, {"error": message}, close)

    def _host_refused(self) -> bool:
        """Answer :data:`~toolkit.web.hosts.MISDIRECTED` (and close) for a ``Host`` this server does not
        serve; False when it does."""
        check = self.server.host_check
        why = check.refusal(self.headers.get_all("Host") or []) if check else None
        if why is None:
            return False
        log.warning("refused a request from %s: %s", self.address_string(), visible(why))
        self.close_connection = True  # an upload's body is left unread
        self._error(MISDIRECTED, why, close=True)
        return True

    def _cross_site_refused(self) -> bool:
        """Answer :data:`~toolkit.web.hosts.CROSS_SITE` (and close) for a request other than ``GET`` or
        ``HEAD`` that another site's page had a browser send; False when it is not one."""
        why = cross_site_refusal(
            self.command,
            self.headers.get_all("Host") or [],
            self.headers.get_all("Origin") or [],
            self.headers.get_all("Sec-Fetch-Site") or [],
            self.server.host_check.allowed if self.server.host_check else frozenset(),
        )
        if why is None:
            return False
        log.warning("refused a request from %s: %s", self.address_string(), visible(why))
        self.close_connection = True  # its body is left unread
        self._error(CROSS_SITE, why, close=True)
        return True

    def _guard(self, fn) -> None:
        """Map errors to status codes: bad input 400, unsafe path 403, missing 404, else 500."""
        try:
            fn()
        except UnsafePathError as e:
            self._error(HTTPStatus.FORBIDDEN, str(e))
        except NotFound as e:
            self._error(HTTPStatus.NOT_FOUND, str(e))
        except ToolkitError as e:
            self._error(HTTPStatus(error_status(e)), str(e))
        except ValueError as e:
            self._error(HTTPStatus.BAD_REQUEST, str(e))
        except Exception as e:  # report without leaking internals to the page
            failure = es_failure(e)
            if failure is not None:  # Elasticsearch unreachable or refusing: say so
                self._error(HTTPStatus(error_status(failure)), str(failure))
                return
            log.exception("request %s failed", self.path)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error (see the server log)")

    # --- routes ----------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        app = self.server.app
        if url.path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, page_html(), "text/html; charset=utf-8")
        elif url.path == "/assets/font.ttf":
            from toolkit.viz.fonts import japanese_font_path

            self._send(HTTPStatus.OK, japanese_font_path().read_bytes(), "font/ttf", "max-age=86400")
        elif url.path == "/api/info":
            self._guard(lambda: self._json(HTTPStatus.OK, app.info()))
        elif url.path == "/api/search":
            self._guard(lambda: self._json(HTTPStatus.OK, app.search(query_params(url.query))))
        elif url.path.startswith("/photo/"):
            self._guard(lambda: self._photo(unquote(url.path[len("/photo/") :])))
        else:
            self._error(HTTPStatus.NOT_FOUND, not_found_message(url.path))

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/api/search/photo":
            self._error(HTTPStatus.NOT_FOUND, not_found_message(url.path))
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._error(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
            return
        if length > MAX_UPLOAD_BYTES or length < 0:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"photos up to {MAX_UPLOAD_BYTES} bytes")
            self.close_connection = True
            return
        data = self._read_body(length)
        if data is None:
            return
        params = query_params(url.query)
        self._guard(lambda: self._json(HTTPStatus.OK, self.server.app.search_by_photo(data, params)))

    def _read_body(self, length: int) -> bytes | None:
        """The upload's ``length`` bytes; None after answering 408 (stalled) or 400 (cut short)."""
        try:
            data = self.rfile.read(length)
        except TimeoutError:
            log.warning("upload from %s stalled for %s s", self.address_string(), self.server.read_timeout)
            self.close_connection = True
            self._error(HTTPStatus.REQUEST_TIMEOUT, stalled_message(self.server.read_timeout))
            return None
        if len(data) < length:
            self.close_connection = True
            self._error(HTTPStatus.BAD_REQUEST, f"the upload ended after {len(data)} of {length} bytes")
            return None
        return data

    def _photo(self, rel: str) -> None:
        path, content_type = self.server.app.photo(rel)
        self._send(HTTPStatus.OK, path.read_bytes(), content_type, "max-age=3600")


class SearchServer(ThreadingHTTPServer):
    """One thread per request; a connection silent for ``read_timeout`` seconds is answered or closed, and one
    whose request head has not all come in ``head_timeout`` seconds is closed. On a loopback ``host`` only
    loopback ``Host`` names and ``allowed_hosts`` are answered (:meth:`HostCheck.for_server`)."""

    daemon_threads = True

    def __init__(
        self,
        app: SearchApp,
        host: str = "127.0.0.1",
        port: int = 8000,
        read_timeout: float = READ_TIMEOUT_S,
        allowed_hosts: Iterable[str] = (),
        head_timeout: float = HEAD_TIMEOUT_S,
    ) -> None:
        self.app = app
        self.read_timeout = read_timeout
        self.head_timeout = head_timeout
        self.host_check = HostCheck.for_server(host, allowed_hosts)
        super().__init__((host, port), Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"  # type: ignore[str-bytes-safe]  # bytes only for AF_UNIX


def start_in_thread(
    app: SearchApp,
    host: str = "127.0.0.1",
    port: int = 0,
    read_timeout: float = READ_TIMEOUT_S,
    allowed_hosts: Iterable[str] = (),
    head_timeout: float = HEAD_TIMEOUT_S,
) -> tuple[SearchServer, threading.Thread]:
    """Serve in a background thread (port 0: any free port); stop with ``server.shutdown()``."""
    server = SearchServer(app, host, port, read_timeout, allowed_hosts, head_timeout)
    thread = threading.Thread(target=server.serve_forever, name="jrs-web", daemon=True)
    thread.start()
    return server, thread
