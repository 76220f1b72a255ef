"""Kibana saved objects (a data view over the alias, a saved search) and their import."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import ssl
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from toolkit.errors import ConfigError, ToolkitError
from toolkit.es.config import check_ca_certs, check_credentials, settings_from_env, split_url
from toolkit.index.template import DEFAULT_ALIAS

logger = logging.getLogger(__name__)

SAVED_OBJECTS = Path(__file__).resolve().parent / "es_mappings" / "kibana" / "saved_objects.ndjson"
DATA_VIEW_ID = "jrs-recipes-data-view"
DEFAULT_URL = "http://localhost:5601"
#: How much of an unexpected answer an error message quotes
EXCERPT_BYTES = 200
#: The flag of an override whose name is not ``--<name>`` (``jrs kibana import``)
FLAGS = {"password": "--password-prompt"}
#: What Kibana accepts as a space id
SPACE_ID = re.compile(r"[a-z0-9_-]+")


@dataclass(frozen=True)
class KibanaSettings:
    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    ca_certs: str | None = None
    space: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> KibanaSettings:
        """``KIBANA_*`` variables, then flag overrides (errors name the flag or the variable given); a
        ``user:password@`` in the URL is basic auth and leaves the URL. Without Kibana credentials of their own,
        the ones the Elasticsearch client signs in with (Kibana signs in the same users); a password without a
        user is the ``elastic`` user's, as for Elasticsearch."""
        e = dict(os.environ if env is None else env)
        given = {k: v for k, v in overrides.items() if v is not None}
        values = {
            "url": e.get("KIBANA_URL") or DEFAULT_URL,
            "username": e.get("KIBANA_USERNAME") or None,
            "password": e.get("KIBANA_PASSWORD") or None,
            "api_key": e.get("KIBANA_API_KEY") or None,
            "ca_certs": e.get("KIBANA_CA_CERTS") or None,
            "space": e.get("KIBANA_SPACE") or None,
            **given,
        }
        named = {
            k: FLAGS.get(k, f"--{k.replace('_', '-')}") if k in given else f"KIBANA_{k.upper()}"
            for k in values
        }
        _check(values, named)
        values["url"], user, password = split_url(values["url"], name=named["url"])
        values["ca_certs"] = _ca_for(values["url"], values["ca_certs"], named["ca_certs"], named["url"])
        values["username"] = values["username"] or user
        values["password"] = values["password"] or password
        if not (values["api_key"] or values["username"] or values["password"]):
            values.update(_es_credentials(e))
        if values["password"] and not values["username"]:
            values["username"] = "elastic"
        return cls(**values)

    def headers(self) -> dict[str, str]:
        h = {"kbn-xsrf": "true"}
        if self.api_key:
            h["Authorization"] = f"ApiKey {self.api_key}"
        elif self.username:
            token = base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode()
            h["Authorization"] = f"Basic {token}"
        return h


def _check(values: dict[str, Any], named: dict[str, str]) -> None:
    """A clear error, naming the flag or variable, for a setting that cannot work (the URL: :func:`split_url`)."""
    for key, value in values.items():
        if isinstance(value, str) and _not_utf8(value):  # an argument of bytes that are not UTF-8
            raise ConfigError(f"{named[key]} is not valid UTF-8 text")
    if values["space"] and not SPACE_ID.fullmatch(values["space"]):
        raise ConfigError(
            f"{named['space']} must be a Kibana space id (a-z, 0-9, '_' and '-'), got {values['space']!r}"
        )
    check_credentials(
        values["api_key"],
        values["username"],
        values["password"],
        (named["api_key"], named["username"], named["password"]),
    )


def _ca_for(url: str, ca_certs: str | None, name: str, url_name: str) -> str | None:
    """The CA certificate to verify ``url`` with: ``ca_certs`` for an ``https://`` URL (:class:`ConfigError`
    naming ``name`` when it is not a file); none for an ``http://`` one, with a warning when one was given
    (nothing to verify: a CA kept for another Kibana, or a missing file, must not stop a plain-HTTP one), as
    ``ES_CA_CERTS`` with an ``http://`` ``ES_URL``."""
    if ca_certs and url.startswith("http://"):
        logger.warning(
            "%s (%s) is ignored: it applies to https:// URLs only, and %s is %s",
            name,
            ca_certs,
            url_name,
            url,
        )
        return None
    check_ca_certs(ca_certs, name)
    return ca_certs


def _es_credentials(env: dict[str, str]) -> dict[str, str | None]:
    """The credentials the Elasticsearch client signs in with (variables, credentials file, ``ES_URL``'s
    ``user:password@``, else the local node's password)."""
    from toolkit.es.client import resolve_credentials

    try:
        es = resolve_credentials(settings_from_env(env))
    except ConfigError as e:  # an Elasticsearch setting Kibana does not need (a CA file, the URL) is off
        logger.warning("not signing in to Kibana with the Elasticsearch credentials: %s", e)
        return {}
    return {"api_key": es.api_key, "username": es.username, "password": es.password}


def _not_utf8(text: str) -> int:
    """The position (from 1) of the first character of ``text`` that UTF-8 cannot hold (a byte that was not
    UTF-8 in an argument, which Python keeps as a lone surrogate); 0: none."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return e.start + 1
    return 0


def _check_alias(alias: str) -> None:
    if _not_utf8(alias):
        raise ConfigError(f"the alias is not valid UTF-8 text (character {_not_utf8(alias)})")
    if not alias.strip():
        raise ConfigError("the alias must not be empty")


def saved_objects(alias: str = DEFAULT_ALIAS) -> list[dict[str, Any]]:
    """The saved objects, with the data view pointed at ``alias``."""
    _check_alias(alias)
    objs = [
        json.loads(line) for line in SAVED_OBJECTS.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    for o in objs:
        if o["type"] == "index-pattern":
            o["attributes"]["title"] = alias
            o["attributes"]["name"] = f"Recipe steps ({alias})"
    return objs


def to_ndjson(objs: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs).encode()


def _excerpt(data: bytes) -> str:
    """The start of an HTTP body on one line."""
    text = " ".join(data[:EXCERPT_BYTES].decode(errors="replace").split())
    return f"{text}..." if len(data) > EXCERPT_BYTES else text


def _innermost(error: BaseException) -> BaseException:
    """The root cause of a urllib3 failure (``MaxRetryError`` > ``NewConnectionError`` > ``OSError``)."""
    seen = {id(error)}
    while True:
        reason = getattr(error, "reason", None)
        inner = reason if isinstance(reason, BaseException) else error.__cause__ or error.__context__
        if inner is None or id(inner) in seen:
            return error
        seen.add(id(inner))
        error = inner


def _unreachable(url: str, error: Exception) -> ToolkitError:
    """Kibana could not be asked: say why (connection refused, an unknown host, a certificate)."""
    cause = _innermost(error)
    if isinstance(cause, ssl.SSLCertVerificationError):
        return ToolkitError(
            f"the TLS certificate of Kibana at {url} could not be verified ({cause.verify_message}): "
            "give the CA certificate that signed it with --ca-certs or KIBANA_CA_CERTS"
        )
    reason = cause.strerror if isinstance(cause, OSError) and isinstance(cause.strerror, str) else str(cause)
    reason = re.sub(r"<[^>]* at 0x[0-9a-f]+>: ", "", reason) or type(cause).__name__
    return ToolkitError(f"Kibana at {url} is unreachable: {reason}")


def _why(error: Any) -> str:
    """The type of error Kibana gives for one refused object."""
    return str(error.get("type", "refused")) if isinstance(error, dict) else "refused"


def _resolved(settings: KibanaSettings) -> KibanaSettings:
    """``settings`` with a ``user:password@`` in a URL given in code as basic auth (the URL then printable), and
    without a CA certificate for an ``http://`` URL (with a warning)."""
    url, user, password = split_url(settings.url, name="the Kibana URL")
    ca_certs = _ca_for(url, settings.ca_certs, "the Kibana CA certificate", "the Kibana URL")
    if user or password:
        return replace(
            settings,
            url=url,
            username=settings.username or user or "elastic",
            password=settings.password or password,
            ca_certs=ca_certs,
        )
    return replace(settings, url=url, ca_certs=ca_certs)


def import_saved_objects(
    settings: KibanaSettings, alias: str = DEFAULT_ALIAS, overwrite: bool = True
) -> dict[str, Any]:
    """POST the NDJSON to ``/api/saved_objects/_import``; a clear error when Kibana says no."""
    import urllib3  # here: the CLI imports this module for its defaults

    settings = _resolved(settings)
    body = to_ndjson(saved_objects(alias))
    prefix = f"/s/{settings.space}" if settings.space else ""
    url = f"{settings.url.rstrip('/')}{prefix}/api/saved_objects/_import?overwrite={str(overwrite).lower()}"
    http = urllib3.PoolManager(ca_certs=settings.ca_certs) if settings.ca_certs else urllib3.PoolManager()
    logger.debug("importing %d bytes of saved objects into %s", len(body), settings.url)
    try:
        resp = http.request(
            "POST",
            url,
            fields={"file": ("jrecipe-search.ndjson", body, "application/ndjson")},
            headers=settings.headers(),
            timeout=30,
        )
    except urllib3.exceptions.HTTPError as e:
        raise _unreachable(settings.url, e) from e
    if resp.status >= 300:
        raise ToolkitError(f"Kibana import failed: HTTP {resp.status}: {_excerpt(resp.data)}")
    try:
        result = json.loads(resp.data)
    except ValueError:
        result = None
    if not isinstance(result, dict):
        raise ToolkitError(
            f"Kibana at {settings.url} answered HTTP {resp.status} without a JSON result (a login page or "
            f"a proxy in between?): {_excerpt(resp.data)}"
        )
    if result.get("success") is False:  # HTTP 200 with objects refused: say which and why
        errors = [err for err in result.get("errors") or [] if isinstance(err, dict)]
        named = "; ".join(
            f"{err.get('type')} {err.get('id')}: {_why(err.get('error'))}" for err in errors[:5]
        )
        raise ToolkitError(
            f"Kibana refused {len(errors)} saved object(s) ({named}); imported {result.get('successCount', 0)}"
        )
    return result
