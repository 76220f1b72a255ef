"""``jrs web``: serve the search page (search box, modes, filters, photo grid, query by photo)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from toolkit.cli.common import user_errors
from toolkit.cli.options import default_from, index_option, model_option
from toolkit.device import DEVICE_HELP
from toolkit.errors import ToolkitError
from toolkit.web.hosts import ALLOWED_HOSTS_ENV, HostCheck, is_loopback

if TYPE_CHECKING:
    from toolkit.web.api import ApiServer
    from toolkit.web.server import SearchServer


def _host(value: str) -> str:
    """``--host``: an empty address listens on every interface; that takes saying so (0.0.0.0)."""
    if not value.strip():
        raise click.BadParameter(
            "empty address: give one, e.g. 127.0.0.1 (0.0.0.0 listens on every interface)"
        )
    return value


@click.command("web")
@model_option
@index_option
@click.option(
    "--dataset",
    "dataset_root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Dataset root: the only place photos are served from [default: the model's dataset].",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    callback=lambda ctx, param, value: _host(value),
    help="Address to listen on (0.0.0.0: every interface).",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0: any free port."
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    envvar=ALLOWED_HOSTS_ENV,
    show_envvar=True,
    metavar="HOST",
    help="Another Host name or address the page answers to (repeatable; the variable: separated by spaces). "
    "On a loopback --host only localhost, 127.0.0.1 and [::1] are answered (421 otherwise: DNS rebinding).",
)
@click.option(
    "--server",
    "stack",
    type=click.Choice(["fastapi", "stdlib"]),
    default="fastapi",
    show_default=True,
    help="fastapi: FastAPI on uvicorn, OpenAPI at /docs; stdlib: the standard-library threaded server.",
)
@default_from(
    "toolkit.model:SearchModel.device", "--device", help="Where uploaded photos are encoded: " + DEVICE_HELP
)
@user_errors
def web_cmd(
    model_dir: Path,
    index: str,
    dataset_root: Path | None,
    host: str,
    port: int,
    allowed_hosts: tuple[str, ...],
    stack: str,
    device: str,
) -> None:
    """Serve the search page and its API until interrupted (Ctrl-C); the API is described at /docs.

    The model (and the index's photo hubness bank) is warmed up before it listens; an index that does not exist
    yet is a warning, and is searched once `jrs index` has made it."""
    from toolkit.device import describe, resolve_device
    from toolkit.es.client import make_client
    from toolkit.model import SearchModel
    from toolkit.search.engine import Searcher
    from toolkit.viz.space import dataset_root_for
    from toolkit.web.app import SearchApp
    from toolkit.web.server import SearchServer

    check = HostCheck.for_server(host, allowed_hosts)  # before any work: a bad name is a clear error
    device = resolve_device(device)  # so is a bad device spec or a missing GPU
    root = dataset_root_for(model_dir, dataset_root)
    # warmed up now, not on the first request; an index that does not exist yet is read when it does
    searcher = Searcher(make_client(), SearchModel.load(model_dir, device), index, warm=True, missing_ok=True)
    app = SearchApp(searcher, root)
    server: ApiServer | SearchServer
    try:
        if stack == "fastapi":
            from toolkit.web.api import ApiServer

            server = ApiServer(app, host, port, allowed_hosts=allowed_hosts)
        else:
            server = SearchServer(app, host, port, allowed_hosts=allowed_hosts)
    except OSError as e:
        raise ToolkitError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
    if not is_loopback(host):
        click.echo(
            f"warning: listening on {host}: anyone who can reach it can search and see the photos", err=True
        )
    if check is not None and check.allowed:
        click.echo(f"answering the Host names {check.describe()}", err=True)
    click.echo(
        f"serving {index} with photos from {root} at {server.url}, uploads encoded on {describe(device)} "
        "(Ctrl-C to stop)",
        err=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        searcher.close()


commands = [web_cmd]
