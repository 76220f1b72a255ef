"""An elasticsearch-py client from settings, falling back to the local node started by ``jrs es up``."""

from __future__ import annotations

import base64
import functools
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, ParamSpec, TypeVar

import elasticsearch
from elasticsearch import Elasticsearch
from elasticsearch import exceptions as es_exc
from elasticsearch.serializer import OrjsonSerializer

from toolkit.errors import ConfigError, ToolkitError, check_argument
from toolkit.es import node
from toolkit.es.config import EsSettings, check_ca_certs, settings_from_env, split_url

log = logging.getLogger(__name__)


class EsUnavailable(ToolkitError):
    """Elasticsearch could not be reached or refused the credentials."""


#: The local node (``jrs es up --name``) a client falls back on when no URL is given.
DEFAULT_NODE = "default"


def resolve_settings(settings: EsSettings | None = None, node_name: str = DEFAULT_NODE) -> EsSettings:
    """Use ``ES_URL`` when set; otherwise the running local node ``node_name`` (with its password when
    secured)."""
    s = _located(settings, node_name)
    if not s.url:
        raise _no_cluster(node_name)
    return _with_checked_ca(s)


#: running nodes of other names an error names (each one's URL and how to use it)
NAMED_IN_ERRORS = 3


def _no_cluster(node_name: str) -> ConfigError:
    """The error of a command with no ``ES_URL`` and no local node ``node_name``: how to get one, and how to use
    each other local node that is running (started with ``jrs es up --name``)."""
    up = "jrs es up" if node_name == DEFAULT_NODE else f"jrs es up --name {node_name}"
    message = (
        "no Elasticsearch to talk to: set ES_URL (and ES_API_KEY or ES_USERNAME/ES_PASSWORD) "
        f"or start the local node with `{up}`"
    )
    others = [s for s in node.running_nodes() if s.name != node_name]
    hints = [_how_to_use(s) for s in others[:NAMED_IN_ERRORS]]
    if len(others) > NAMED_IN_ERRORS:
        hints.append(f"{len(others) - NAMED_IN_ERRORS} more (`jrs es status --name NAME`)")
    return ConfigError(message + "".join(f"; {h}" for h in hints))


def _how_to_use(state: node.NodeState) -> str:
    """How to talk to the running local node ``state`` (never a secret: where its password is kept)."""
    env = f"ES_URL={state.url}"
    if state.ca_certs:
        env += f" ES_CA_CERTS={state.ca_certs}"
    if state.security:
        env += f' ES_PASSWORD="$(cat {node.node_dir(state.name) / "elastic-password"})"'
    return (
        f"the local node {state.name!r} is running at {state.url}: use it with {env} "
        f"(Python: make_client(node_name={state.name!r}))"
    )


def resolve_credentials(settings: EsSettings | None = None, node_name: str = DEFAULT_NODE) -> EsSettings:
    """The URL and credentials the client signs in with: ``settings`` (default: ``ES_*`` variables and the
    credentials file) with a ``user:password@`` in the URL as basic auth, else the running local node's URL,
    CA and password; ``url`` stays None when there is neither (Kibana falls back on these credentials).
    The CA certificate is left out (with a warning) for an ``http://`` URL, else :class:`ConfigError` naming
    ``ES_CA_CERTS`` when it is not a file."""
    return _with_checked_ca(_located(settings, node_name))


def _located(settings: EsSettings | None, node_name: str) -> EsSettings:
    """``settings`` (default: from the environment) with their URL's credentials split off, else with the
    running local node's URL, CA and password; the CA certificate not checked yet."""
    s = settings or settings_from_env()
    if s.url:
        url, user, password = split_url(s.url)  # user:password@ in a URL given in code: basic auth too
        if user or password:
            s = replace(s, url=url, username=s.username or user or "elastic", password=s.password or password)
        return s
    state, h = node.status(node_name)
    if state is None or h is None:
        return s
    s = replace(s, url=state.url)
    if state.ca_certs and not s.ca_certs:
        s = replace(s, ca_certs=state.ca_certs)
    if state.security and not (s.api_key or s.password):
        s = replace(s, username="elastic", password=node.node_password(node_name))
    return s


def _with_checked_ca(s: EsSettings) -> EsSettings:
    """``s`` without its CA certificate for an ``http://`` URL (:func:`_without_ca_for_http`), else with it
    checked: :class:`ConfigError` naming ``ES_CA_CERTS`` and the path when it is not a file."""
    s = _without_ca_for_http(s)
    check_ca_certs(s.ca_certs, "ES_CA_CERTS")
    return s


def _without_ca_for_http(s: EsSettings) -> EsSettings:
    """``s`` without its CA certificate when the URL it talks to is ``http://`` (settings built in code, or the
    local node when ``ES_URL`` is unset), with a warning, as :func:`~toolkit.es.config.settings_from_env` does
    for ``ES_URL``: there is nothing to verify, and a CA kept for another cluster (or a missing file) must not
    stop this one."""
    if not (s.ca_certs and s.url and s.url.startswith("http://")):
        return s
    log.warning(
        "ES_CA_CERTS (%s) is ignored: it applies to https:// URLs only, and Elasticsearch is at %s",
        s.ca_certs,
        s.url,
    )
    return replace(s, ca_certs=None)


#: The REST API version every request asks for: 8, which 8.x clusters speak natively and 9.x clusters through
#: REST API compatibility. An 8.x client sends it by itself; a 9.x client is made to (below).
REST_COMPATIBILITY = 8
_PLAIN_MIMETYPE = re.compile(r"application/(json|x-ndjson)")
_COMPAT_MIMETYPE = rf"application/vnd.elasticsearch+\g<1>; compatible-with={REST_COMPATIBILITY}"


def client_major() -> int:
    """The major version of the installed elasticsearch-py client."""
    return int(elasticsearch.__versionstr__.split(".", 1)[0])


class CompatClient(Elasticsearch):
    """An elasticsearch-py client (8.x or 9.x) whose requests all ask for REST API version 8.

    A 9.x client otherwise asks for version 9, which 8.x clusters refuse; version 8 works with both.
    """

    def perform_request(self, method: str, path: str, *, headers: Any = None, **kwargs: Any) -> Any:
        if headers:
            headers = {
                k: _PLAIN_MIMETYPE.sub(_COMPAT_MIMETYPE, v) if k.lower() in ("accept", "content-type") else v
                for k, v in headers.items()
            }
        return super().perform_request(method, path, headers=headers, **kwargs)


def make_client(
    settings: EsSettings | None = None, check: bool = True, node_name: str = DEFAULT_NODE, **kwargs
) -> Elasticsearch:
    """Create a client; with ``check`` fail fast (and clearly) when the cluster does not answer.

    ``settings`` default to the ``ES_*`` variables; when they name no URL, the client talks to the running
    local node ``node_name`` (``jrs es up --name NAME``). ``kwargs`` go to the elasticsearch-py client.
    JSON goes through orjson (several times faster than the stdlib on vectors and large responses)."""
    if settings is not None:
        check_argument(
            "settings", settings, EsSettings, "None or a toolkit.EsSettings (e.g. EsSettings(url=URL))"
        )
    s = resolve_settings(settings, node.check_name(node_name))
    opts: dict = {
        "serializer": OrjsonSerializer(),
        "request_timeout": s.request_timeout,
        "retry_on_timeout": True,
        "max_retries": 3,
        **kwargs,
    }
    if s.api_key:
        opts["api_key"] = s.api_key
    elif s.username:  # encoded here: elasticsearch-py encodes a (user, password) pair as ASCII only
        opts["basic_auth"] = base64.b64encode(f"{s.username}:{s.password or ''}".encode()).decode()
    if s.ca_certs:
        opts["ca_certs"] = s.ca_certs
    if not s.verify_certs:
        opts["verify_certs"] = False
        opts["ssl_show_warn"] = False
    client = (CompatClient if client_major() > REST_COMPATIBILITY else Elasticsearch)(s.url, **opts)
    if check:
        ping(client, s)
    return client


def ping(client: Elasticsearch, settings: EsSettings) -> dict:
    """Cluster health, or :class:`EsUnavailable` naming the URL (never the secrets); a request the node refuses
    is the toolkit error :func:`es_failure` makes of it, as the CLI reports it."""
    try:
        return client.options(request_timeout=10, max_retries=0).cluster.health().body
    except es_exc.AuthenticationException as e:
        raise EsUnavailable(f"Elasticsearch at {settings.url} refused the credentials (HTTP 401)") from e
    except es_exc.AuthorizationException as e:
        raise EsUnavailable(f"Elasticsearch at {settings.url}: the user lacks permission (HTTP 403)") from e
    except es_exc.ApiError as e:
        if not _has_es_error(e):  # another HTTP server (a web server, a proxy) answers at that URL
            raise EsUnavailable(
                f"{settings.url} answered HTTP {e.meta.status} without an Elasticsearch error body: "
                "is it an Elasticsearch server (check ES_URL)?"
            ) from e
        failure = es_failure(e)  # as the CLI reports it: e.g. HTTP 400 for a path prefix the node lacks
        if failure is None:
            raise
        raise failure from e
    except (es_exc.ConnectionError, es_exc.ConnectionTimeout) as e:
        if "CERTIFICATE_VERIFY_FAILED" in str(e) or isinstance(e, es_exc.SSLError):
            raise EsUnavailable(
                f"the TLS certificate of Elasticsearch at {settings.url} could not be verified: "
                "set ES_CA_CERTS to the CA certificate that signed it"
            ) from e
        raise EsUnavailable(f"Elasticsearch at {settings.url} is unreachable: {connection_reason(e)}") from e


def _has_es_error(error: es_exc.ApiError) -> bool:
    """Whether an error response carries Elasticsearch's JSON ``error`` (every error of a node does)."""
    return isinstance(error.body, dict) and "error" in error.body


def connection_reason(error: BaseException) -> str:
    """Why a connection failed, from the innermost cause (``Connection refused``, ``Name or service not known``,
    ``timed out``): its OS error text, never its message, which may quote the URL; else the cause's class."""
    cause, seen = error, {id(error)}
    while True:
        inner = cause.__cause__ or cause.__context__
        if inner is None or id(inner) in seen:
            break
        seen.add(id(inner))
        cause = inner
    if isinstance(cause, OSError) and isinstance(cause.strerror, str) and cause.strerror:
        return cause.strerror
    if isinstance(cause, TimeoutError) or isinstance(error, es_exc.ConnectionTimeout):
        return "timed out"
    return type(cause).__name__


def es_failure(error: BaseException) -> ToolkitError | None:
    """An Elasticsearch failure that reached a command, as the toolkit error it stands for (``None``: it is
    not one): an error response (HTTP 4xx/5xx) names its status and reason (exit 2; refused credentials or
    permissions exit 3, like an unreachable cluster); a connection lost mid-command exits 3."""
    from elastic_transport import TransportError
    from elasticsearch import ApiError

    if isinstance(error, ApiError):
        status = error.meta.status
        body = error.body if isinstance(error.body, dict) else {}
        cause = body.get("error", {}) if isinstance(body.get("error"), dict) else {}
        roots = cause.get("root_cause") or [cause]
        reason = (roots[0] or {}).get("reason") or cause.get("reason") or error.message
        kind = EsUnavailable if status in (401, 403) else ToolkitError
        return kind(f"Elasticsearch refused the request (HTTP {status}): {reason}")
    if isinstance(error, TransportError):
        return EsUnavailable(f"Elasticsearch stopped answering: {connection_reason(error)}")
    return None


P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def es_errors() -> Iterator[None]:
    """Every Elasticsearch failure raised inside as the toolkit error :func:`es_failure` makes of it
    (:class:`EsUnavailable` when the cluster cannot be reached), chained from the original, as the CLI
    reports it; other exceptions (toolkit errors among them) pass unchanged."""
    try:
        yield
    except ToolkitError:
        raise
    except Exception as e:
        failure = es_failure(e)
        if failure is None:
            raise
        raise failure from e


def check_client(es: object) -> None:
    """A :class:`ConfigError` naming the argument ``es`` unless it is an Elasticsearch client."""
    check_argument("es", es, Elasticsearch, "an Elasticsearch client (toolkit.make_client())")


def raising_toolkit_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` run under :func:`es_errors`."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with es_errors():
            return fn(*args, **kwargs)

    return wrapper
