"""``jrs web``: serve the search page (search box, modes, filters, photo grid, query by photo)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import click

from toolkit.cli.common import user_errors
from toolkit.cli.options import default_from, index_option, model_option
from toolkit.device import DEVICE_HELP
from toolkit.errors import ToolkitError


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
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8000, show_default=True)
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
    model_dir: Path, index: str, dataset_root: Path | None, host: str, port: int, stack: str, device: str
) -> None:
    """Serve the search page and its API until interrupted (Ctrl-C); the API is described at /docs."""
    from toolkit.device import describe, resolve_device
    from toolkit.es.client import make_client
    from toolkit.model import SearchModel
    from toolkit.search.engine import Searcher
    from toolkit.viz.space import dataset_root_for
    from toolkit.web.app import SearchApp
    from toolkit.web.server import SearchServer

    device = resolve_device(device)  # before any work: a bad spec or a missing GPU is a clear error
    root = dataset_root_for(model_dir, dataset_root)
    app = SearchApp(Searcher(make_client(), SearchModel.load(model_dir, device), index), root)
    try:
        if stack == "fastapi":
            from toolkit.web.api import ApiServer

            server = ApiServer(app, host, port)
        else:
            server = SearchServer(app, host, port)
    except OSError as e:
        raise ToolkitError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
    if not _is_loopback(host):
        click.echo(
            f"warning: listening on {host}: anyone who can reach it can search and see the photos", err=True
        )
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


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


commands = [web_cmd]
