"""``jrs kibana import``: the data view and saved search, through Kibana's saved-objects API."""

from __future__ import annotations

import click

from toolkit.cli.common import emit, json_option, user_errors
from toolkit.index.template import DEFAULT_ALIAS
from toolkit.kibana import DEFAULT_URL


@click.group("kibana")
def kibana_group() -> None:
    """Kibana saved objects (data view with photo thumbnails, saved search)."""


@kibana_group.command("import")
@click.option("--url", default=None, help=f"Kibana URL (env KIBANA_URL, default {DEFAULT_URL}).")
@click.option("--username", default=None, help="Basic-auth user (env KIBANA_USERNAME).")
@click.option("--password-prompt", is_flag=True, help="Ask for the password (else env KIBANA_PASSWORD).")
@click.option("--space", default=None, help="Kibana space (env KIBANA_SPACE).")
@click.option("--ca-certs", default=None, help="CA certificate (env KIBANA_CA_CERTS).")
@click.option("--alias", default=DEFAULT_ALIAS, show_default=True, help="Alias the data view covers.")
@json_option
@user_errors
def import_cmd(
    url: str | None,
    username: str | None,
    password_prompt: bool,
    space: str | None,
    ca_certs: str | None,
    alias: str,
    as_json: bool,
) -> None:
    """Import es_mappings/kibana/saved_objects.ndjson (API key from KIBANA_API_KEY)."""
    from toolkit.kibana import KibanaSettings, import_saved_objects

    password = click.prompt("Kibana password", hide_input=True) if password_prompt else None
    settings = KibanaSettings.from_env(
        url=url, username=username, password=password, space=space, ca_certs=ca_certs
    )
    result = import_saved_objects(settings, alias=alias)
    emit(result, as_json, f"imported {result.get('successCount', 0)} saved objects into {settings.url}")


@kibana_group.command("export")
@click.option("--alias", default=DEFAULT_ALIAS, show_default=True, help="Alias the data view covers.")
@user_errors
def export_cmd(alias: str) -> None:
    """Print the saved objects as NDJSON (for Kibana's Stack Management > Saved objects > Import)."""
    from toolkit.kibana import saved_objects, to_ndjson

    click.echo(to_ndjson(saved_objects(alias)).decode(), nl=False)


commands = [kibana_group]
