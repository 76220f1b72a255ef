"""The search page and its API on FastAPI (served by uvicorn), with an OpenAPI description at ``/docs``.

The same :class:`SearchApp` as the standard-library server: the same searches, the same photo-path safety
(photos only from the dataset root) and the same upload limit; FastAPI adds request validation (4xx with
the parameter and the reason) and the documented schema.
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from toolkit.data.paths import UnsafePathError
from toolkit.errors import ToolkitError
from toolkit.es.client import es_failure
from toolkit.web.app import MAX_K, MAX_PER_GROUP, MAX_QUERY_CHARS, MAX_UPLOAD_BYTES, NotFound, SearchApp
from toolkit.web.server import SECURITY_HEADERS, error_status, page_html

log = logging.getLogger(__name__)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"Cache-Control": "no-store"})


def create_api(app: SearchApp) -> FastAPI:
    """A FastAPI application over ``app``: ``/``, ``/api/info``, ``/api/search``, ``/api/search/photo``,
    ``/photo/{path}``, ``/assets/font.ttf``; ``/docs`` and ``/openapi.json`` describe the API."""
    api = FastAPI(title="jrecipe-search", version="1", description=__doc__)

    @api.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        if not request.url.path.startswith(("/docs", "/openapi.json")):  # the docs page loads its own assets
            for name, value in SECURITY_HEADERS.items():
                response.headers[name] = value
        return response

    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(x) for x in e['loc'][1:])}: {e['msg']}" for e in exc.errors()]
        return _error(400, "; ".join(parts))

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

    @api.get("/api/info", summary="Index, model, modes and the common ingredients")
    def info() -> dict:
        return app.info()

    @api.get("/api/search", summary="Search by text, or like chosen steps")
    def search(
        q: Annotated[
            str, Query(description="the query text (optional with `like`)", max_length=MAX_QUERY_CHARS)
        ] = "",
        mode: Literal["knn", "keyword", "hybrid"] = "knn",
        k: Annotated[int, Query(ge=1, le=MAX_K)] = 12,
        ingredient: Annotated[list[str], Query(description="only recipes with this ingredient")] = [],  # noqa: B006
        recipe: Annotated[list[str], Query(description="only these recipe ids")] = [],  # noqa: B006
        group: Literal["recipe"] | None = None,
        per_group: Annotated[int, Query(ge=1, le=MAX_PER_GROUP)] = 3,
        explain: bool = False,
        like: Annotated[list[str], Query(description="step ids: more like these photos")] = [],  # noqa: B006
    ) -> dict:
        params = {"q": [q], "mode": [mode], "k": [str(k)], "ingredient": ingredient, "recipe": recipe}
        params |= {"per_group": [str(per_group)], "explain": ["1" if explain else "0"], "like": like}
        if group:
            params["group"] = [group]
        return app.search(params)

    @api.post(
        "/api/search/photo",
        summary="Search by an uploaded photo (the request body is the photo's bytes)",
        openapi_extra={
            "requestBody": {"content": {"image/*": {"schema": {"type": "string", "format": "binary"}}}}
        },
    )
    async def search_photo(
        request: Request,
        k: Annotated[int, Query(ge=1, le=MAX_K)] = 12,
        name: str = "uploaded photo",
        group: Literal["recipe"] | None = None,
        ingredient: Annotated[list[str], Query()] = [],  # noqa: B006
        recipe: Annotated[list[str], Query()] = [],  # noqa: B006
    ) -> Response:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_UPLOAD_BYTES:
            return _error(413, f"photos up to {MAX_UPLOAD_BYTES} bytes")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_UPLOAD_BYTES:
                return _error(413, f"photos up to {MAX_UPLOAD_BYTES} bytes")
        params = {"k": [str(k)], "name": [name], "ingredient": ingredient, "recipe": recipe}
        if group:
            params["group"] = [group]
        from starlette.concurrency import run_in_threadpool

        result = await run_in_threadpool(app.search_by_photo, bytes(data), params)
        return JSONResponse(result)

    @api.get("/photo/{rel:path}", include_in_schema=False)
    def photo(rel: str) -> Response:
        path, content_type = app.photo(rel)
        return Response(path.read_bytes(), media_type=content_type, headers={"Cache-Control": "max-age=3600"})

    @api.api_route("/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
    def nowhere(rest: str) -> JSONResponse:
        return _error(404, f"no such page: /{rest}")

    return api


class ApiServer:
    """uvicorn serving :func:`create_api` on a socket bound here (port 0: any free port), in a thread."""

    def __init__(self, app: SearchApp, host: str = "127.0.0.1", port: int = 0) -> None:
        import socket
        import threading

        import uvicorn

        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.server_address = self.sock.getsockname()
        config = uvicorn.Config(create_api(app), log_level="warning", access_log=False)
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
