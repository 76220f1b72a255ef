"""``jrs es up|down|status``: the local single-node Elasticsearch."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

import click

from toolkit.cli.common import emit, json_option, user_errors
from toolkit.es import node
from toolkit.versions import ES_VERSION

if TYPE_CHECKING:
    from toolkit.es.config import EsSettings


def _node_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--name``: a safe node name (it names a directory under the toolkit's ``nodes/``)."""
    try:
        return node.check_name(value)
    except node.NodeError as e:
        raise click.BadParameter(str(e), ctx, param) from None


name_option = click.option(
    "--name",
    default="default",
    show_default=True,
    callback=_node_name,
    help="Node name (several can run): letters, digits, '_', '.', '-'.",
)


@click.group("es")
def es_group() -> None:
    """Run a local Elasticsearch node (integ-test distribution from Maven Central on the machine's JDK).

    Not needed when ES_URL names an existing cluster.
    """


@es_group.command("up")
@name_option
@click.option(
    "--version",
    "version",
    envvar="JRS_ES_VERSION",
    default=ES_VERSION,
    show_default=True,
    help="Elasticsearch version (env JRS_ES_VERSION); 9.x runs on a JDK 21+.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="HTTP port (default: 9200 for the node 'default' when free, else any free port).",
)
@click.option(
    "--security/--no-security",
    default=False,
    show_default=True,
    help="Enable x-pack security: a password for `elastic` and HTTPS with a CA made for the node.",
)
@click.option(
    "--tls/--no-tls",
    default=None,
    help="HTTPS on/off (default: on with --security; --tls needs --security, without which Elasticsearch "
    "serves plain HTTP).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=180,
    show_default=True,
    help="Seconds from launch to a healthy node (downloads not counted); a node not healthy by then is stopped.",
)
@json_option
@user_errors
def up_cmd(
    name: str, version: str, port: int | None, security: bool, tls: bool | None, timeout: float, as_json: bool
) -> None:
    """Start the node (or reuse the running one) and print its URL."""
    if (
        tls and not security
    ):  # Elasticsearch ignores its HTTPS settings then: the node never answered https://
        raise click.UsageError("--tls needs --security: without security Elasticsearch serves plain HTTP")
    state = node.up(
        name=name,
        version=version,
        port=port,
        security=security,
        tls=tls,
        timeout=timeout,
    )
    info = asdict(state)
    if state.security:
        info["password_file"] = str(node.node_dir(name) / "elastic-password")
    emit(info, as_json, state.url)


@es_group.command("down")
@name_option
@json_option
@user_errors
def down_cmd(name: str, as_json: bool) -> None:
    """Stop the node this toolkit started (by its PID)."""
    stopped = node.down(name)
    emit({"stopped": stopped}, as_json, "stopped" if stopped else "no running node")


@es_group.command("status")
@name_option
@json_option
@user_errors
def status_cmd(name: str, as_json: bool) -> None:
    """Show the local node's URL and health; exit status 1 when it is not running."""
    state, health = node.status(name)
    running = health is not None
    data = {"running": running, "node": asdict(state) if state else None, "health": health}
    emit(data, as_json, f"{state.url} {health['status']}" if health is not None and state else "not running")
    raise SystemExit(0 if running else 1)


@es_group.command("ping")
@click.option(
    "--name",
    default="default",
    show_default=True,
    callback=_node_name,
    help="The local node to ping when ES_URL is unset; given, that node (started by `jrs es up --name`) "
    "whatever ES_URL says.",
)
@json_option
@user_errors
@click.pass_context
def ping_cmd(ctx: click.Context, name: str, as_json: bool) -> None:
    """Check that the configured cluster (ES_URL, else the local node) answers with these credentials.

    With --name NAME, the local node NAME with its own URL, CA and password (ES_* settings are not used).
    Exit status 3 with one line naming the URL (never a secret) when it does not (2: bad settings).
    """
    from toolkit.cli.options import given_on_command_line
    from toolkit.es.client import make_client, ping, resolve_settings

    settings = _local_node_settings(name) if given_on_command_line(ctx, "name") else resolve_settings()
    health = ping(make_client(settings, check=False), settings)
    data = {"url": settings.url, "auth": settings.describe(), "status": health.get("status")}
    emit(data, as_json, f"{settings.describe()}: {health.get('status')}")


def _local_node_settings(name: str) -> EsSettings:
    """The settings of the running local node ``name`` alone; :class:`EsUnavailable` (exit 3) when it does not
    answer."""
    from toolkit.es.client import EsUnavailable, resolve_settings
    from toolkit.es.config import EsSettings

    state, health = node.status(name)
    if health is None:
        why = "is not running" if state is None else f"does not answer at {state.url}"
        raise EsUnavailable(f"the local node {name!r} {why}: start it with `jrs es up --name {name}`")
    return resolve_settings(EsSettings(), name)


commands = [es_group]
