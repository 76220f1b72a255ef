"""The search page and its API on FastAPI (served by uvicorn), with an OpenAPI description at ``/docs``.

The same :class:`SearchApp` as the standard-library server: the same searches, the same parameter checks
(:func:`toolkit.web.params.parse_search`: a 400 naming the parameter and the reason, word for word the
stdlib server's), the same photo-path safety (photos only from the dataset root), the same upload limit and
stall timeout and request-head timeout, the same ``Host`` and cross-site checks (:mod:`toolkit.web.hosts`) and
404, and ``HEAD`` like ``GET`` without the body; FastAPI adds the documented schema.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from toolkit.data.paths import UnsafePathError
from toolkit.errors import ToolkitError
from toolkit.es.client import es_failure
from toolkit.web.app import MAX_UPLOAD_BYTES, NotFound, SearchApp
from toolkit.web.hosts import CROSS_SITE, LOOPBACK_ONLY, MISDIRECTED, HostCheck, cross_site_refusal
from toolkit.web.params import PHOTO_PARAMS, TEXT_PARAMS, openapi_parameters, query_params
from toolkit.web.server import (
    HEAD_TIMEOUT_S,
    READ_TIMEOUT_S,
    SECURITY_HEADERS,
    error_status,
    not_found_message,
    page_html,
    stalled_message,
    visible,
)

log = logging.getLogger(__name__)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"Cache-Control": "no-store"})


class HeadAsGet:
    """ASGI middleware: ``HEAD`` runs the ``GET`` route and sends its status and headers, no body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


class HostGuard:
    """ASGI middleware: a request whose ``Host`` ``check`` refuses is answered
    :data:`~toolkit.web.hosts.MISDIRECTED` before any route (the docs included)."""

    def __init__(self, app: ASGIApp, check: HostCheck) -> None:
        self.app = app
        self.check = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hosts = [value.decode("latin-1") for name, value in scope["headers"] if name == b"host"]
        why = self.check.refusal(hosts)
        if why is None:
            await self.app(scope, receive, send)
            return
        log.warning("refused a request from %s: %s", scope.get("client"), visible(why))
        response = _error(MISDIRECTED, why)
        response.headers.update({**SECURITY_HEADERS, "Connection": "close"})
        await response(scope, receive, send)


class CrossSiteGuard:
    """ASGI middleware: a request other than ``GET`` or ``HEAD`` that another site's page had a browser send
    (:func:`~toolkit.web.hosts.cross_site_refusal`) is answered :data:`~toolkit.web.hosts.CROSS_SITE` before
    any route."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.allowed = allowed  # jrs web --allowed-host: the names a reverse proxy's pages have

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, list[str]] = {b"host": [], b"origin": [], b"sec-fetch-site": []}
        for name, value in scope["headers"]:
            if name in headers:
                headers[name].append(value.decode("latin-1"))
        hosts, origins, sites = headers.values()
        why = cross_site_refusal(scope["method"], hosts, origins, sites, self.allowed)
        if why is None:
            await self.app(scope, receive, send)
            return
        log.warning("refused a request from %s: %s", scope.get("client"), visible(why))
        response = _error(CROSS_SITE, why)
        response.headers.update({**SECURITY_HEADERS, "Connection": "close"})  # its body is left unread
        await response(scope, receive, send)


def _raw_path(request: Request) -> str:
    """The path as it came, percent-encoded (what the stdlib server's 404 shows)."""
    raw = request.scope.get("raw_path")
    return raw.decode("latin-1").partition("?")[0] if raw else request.url.path


class UploadFailed(Exception):
    """The upload could not be read: ``status`` and ``message`` say why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _raw_query(request: Request) -> dict[str, list[str]]:
    """The query string as it came (the stdlib server reads the request line as latin-1 too)."""
    return query_params(request.scope.get("query_string", b"").decode("latin-1"))


async def _read_upload(request: Request, timeout: float) -> bytes:
    """The body, up to :data:`MAX_UPLOAD_BYTES`; :class:`UploadFailed` when too big, stalled or cut short."""
    too_big = UploadFailed(413, f"photos up to {MAX_UPLOAD_BYTES} bytes")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_UPLOAD_BYTES:
        raise too_big
    data = bytearray()
    chunks = request.stream()
    while True:
        try:
            data += await asyncio.wait_for(chunks.__anext__(), timeout)
        except StopAsyncIteration:
            return bytes(data)
        except asyncio.TimeoutError:
            log.warning("upload from %s stalled for %s s", request.client, timeout)
            raise UploadFailed(408, stalled_message(timeout)) from None
        except ClientDisconnect:
            raise UploadFailed(400, f"the upload ended after {len(data)} of {length or '?'} bytes") from None
        if len(data) > MAX_UPLOAD_BYTES:
            raise too_big


#: where ``/docs`` loads Swagger UI's script and style from: this server (the ``swagger-ui-bundle`` package), so
#: the page works offline; FastAPI's default fetches them from a CDN
DOCS_ASSETS = "/docs-assets"


def _serve_docs(api: FastAPI) -> None:
    """``/docs``: Swagger UI over ``/openapi.json``, its assets served locally when ``swagger-ui-bundle`` is
    installed (else from FastAPI's CDN, with a warning: blank offline)."""
    from fastapi.openapi.docs import get_swagger_ui_html

    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        swagger_ui_path = None
        log.warning("swagger-ui-bundle is not installed: /docs loads Swagger UI from a CDN (blank offline)")
    assets: dict[str, Any] = {}
    if swagger_ui_path is not None:
        from starlette.staticfiles import StaticFiles

        api.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")
        assets = {
            "swagger_js_url": f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            "swagger_css_url": f"{DOCS_ASSETS}/swagger-ui.css",
            "swagger_favicon_url": f"{DOCS_ASSETS}/favicon-32x32.png",
        }

    @api.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="jrecipe-search API", **assets)


def create_api(
    app: SearchApp, read_timeout: float = READ_TIMEOUT_S, host_check: HostCheck | None = LOOPBACK_ONLY
) -> FastAPI:
    """A FastAPI application over ``app``: ``/``, ``/api/info``, ``/api/search``, ``/api/search/photo``,
    ``/photo/{path}``, ``/assets/font.ttf``; ``/docs`` and ``/openapi.json`` describe the API. The query
    parameters are read by :func:`toolkit.web.params.parse_search` (documented from its table), an upload
    that stalls for ``read_timeout`` seconds is answered 408, a ``Host`` that ``host_check`` refuses 421
    (default: loopback names only; None: any)."""
    api = FastAPI(title="jrecipe-search", version="1", description=__doc__, docs_url=None)
    # inside HostGuard: a request for another host is refused first
    allowed = host_check.allowed if host_check is not None else frozenset()
    api.add_middleware(CrossSiteGuard, allowed=allowed)
    if host_check is not None:  # before any route (inside HeadAsGet: a refused HEAD has no body either)
        api.add_middleware(HostGuard, check=host_check)
    api.add_middleware(HeadAsGet)
    _serve_docs(api)

    @api.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        docs = request.url.path.startswith(("/docs", "/openapi.json"))
        for name, value in SECURITY_HEADERS.items():
            if not (docs and name == "Content-Security-Policy"):  # the docs page loads its own assets
                response.headers[name] = value
        return response

    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(x) for x in e['loc'][1:])}: {e['msg']}" for e in exc.errors()]
        return _error(400, "; ".join(parts))

    @api.exception_handler(HTTPException)
    async def routing(request: Request, exc: HTTPException) -> JSONResponse:
        # no route (404; FastAPI's own body is {"detail": ...}) or not this method (405): the page's shape
        message = not_found_message(_raw_path(request)) if exc.status_code == 404 else str(exc.detail)
        response = _error(exc.status_code, message)
        response.headers.update(exc.headers or {})
        return response

    @api.exception_handler(UnsafePathError)
    async def unsafe(request: Request, exc: UnsafePathError) -> JSONResponse:
        return _error(403, str(exc))

    @api.exception_handler(NotFound)
    async def missing(request: Request, exc: NotFound) -> JSONResponse:
        return _error(404, str(exc))

    @api.exception_handler(ToolkitError)
    async def bad(request: Request, exc: ToolkitError) -> JSONResponse:
        return _error(error_status(exc), str(exc))

    @api.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        # runs outside the middleware: the security headers are added here
        failure = es_failure(exc)
        if failure is None:
            log.exception("request %s failed", request.url.path)
        status, message = (
            (error_status(failure), str(failure)) if failure else (500, "internal error (see the server log)")
        )
        response = _error(status, message)
        response.headers.update(SECURITY_HEADERS)
        return response

    @api.get("/", include_in_schema=False)
    def page() -> Response:
        return Response(
            page_html(), media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"}
        )

    @api.get("/assets/font.ttf", include_in_schema=False)
    def font() -> Response:
        from toolkit.viz.fonts import japanese_font_path

        return Response(
            japanese_font_path().read_bytes(),
            media_type="font/ttf",
            headers={"Cache-Control": "max-age=86400"},
        )

    @api.get("/api/info", summary="Index, model, the text modes and the common ingredients")
    def info() -> dict[str, Any]:
        return app.info()

    @api.get(
        "/api/search",
        summary="Search by text, or like chosen steps",
        openapi_extra={"parameters": openapi_parameters(TEXT_PARAMS)},
    )
    def search(request: Request) -> dict[str, Any]:
        return app.search(_raw_query(request))

    @api.post(
        "/api/search/photo",
        summary="Search by an uploaded photo (the request body is the photo's bytes)",
        openapi_extra={
            "parameters": openapi_parameters(PHOTO_PARAMS),
            "requestBody": {"content": {"image/*": {"schema": {"type": "string", "format": "binary"}}}},
        },
    )
    async def search_photo(request: Request) -> Response:
        try:
            data = await _read_upload(request, read_timeout)
        except UploadFailed as e:  # the rest of the body is not read: the connection cannot be reused
            response = _error(e.status, str(e))
            response.headers["Connection"] = "close"
            return response
        result = await run_in_threadpool(app.search_by_photo, data, _raw_query(request))
        return JSONResponse(result)

    @api.get("/photo/{rel:path}", include_in_schema=False)
    def photo(rel: str) -> Response:
        path, content_type = app.photo(rel)
        return Response(path.read_bytes(), media_type=content_type, headers={"Cache-Control": "max-age=3600"})

    return api


def head_timeout_protocol(head_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol closing a connection whose request head (request line and headers) has not all
    come ``head_timeout`` seconds after the connection opened or its previous response ended. uvicorn has no
    such limit (its keep-alive timeout ends at the first byte): a client sending its head byte by byte held a
    connection for ever. Its 400 to a request it cannot parse is JSON with the security headers, like every
    other answer."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadTimeoutH11(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            self._arm_head_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            super().connection_lost(exc)

        def _arm_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._head_timer = self.loop.call_later(head_timeout, self._head_timed_out)

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():  # no whole head yet
                log.info(
                    "closed the connection from %s: no whole request head in %g s", self.client, head_timeout
                )
                self.transport.close()

        def send_400_response(self, msg: str) -> None:
            """uvicorn's answer to a request h11 cannot parse, in the page's JSON shape with the security
            headers (uvicorn's own is plain text without them); the connection closes."""
            body = json.dumps({"error": msg}).encode("utf-8")
            headers = [
                (b"content-type", b"application/json; charset=utf-8"),
                (b"content-length", str(len(body)).encode("ascii")),
                (b"cache-control", b"no-store"),
                *(
                    (name.lower().encode("ascii"), value.encode("ascii"))
                    for name, value in SECURITY_HEADERS.items()
                ),
                (b"connection", b"close"),
            ]
            for event in (
                h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                h11.Data(data=body),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event) or b"")
            self.transport.close()

    return HeadTimeoutH11


class ApiServer:
    """uvicorn serving :func:`create_api` on a socket bound here (port 0: any free port), in a thread; on a
    loopback ``host`` only loopback ``Host`` names and ``allowed_hosts`` are answered. A connection whose
    request head has not all come in ``head_timeout`` seconds is closed (:func:`head_timeout_protocol`)."""

    def __init__(
        self,
        app: SearchApp,
        host: str = "127.0.0.1",
        port: int = 0,
        read_timeout: float = READ_TIMEOUT_S,
        allowed_hosts: Iterable[str] = (),
        head_timeout: float = HEAD_TIMEOUT_S,
    ) -> None:
        import socket
        import threading

        import uvicorn

        self.host_check = HostCheck.for_server(host, allowed_hosts)  # first: a bad name binds nothing
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.server_address = self.sock.getsockname()
        api = create_api(app, read_timeout, self.host_check)
        config = uvicorn.Config(
            api, http=head_timeout_protocol(head_timeout), log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def serve_forever(self) -> None:
        self.server.run(sockets=[self.sock])

    def start(self) -> ApiServer:
        import time

        self.thread.start()
        while not self.server.started and self.thread.is_alive():
            time.sleep(0.01)
        return self

    def shutdown(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def server_close(self) -> None:
        self.sock.close()
