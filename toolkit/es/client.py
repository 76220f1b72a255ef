"""An elasticsearch-py client from settings, falling back to the local node started by ``jrs es up``."""

from __future__ import annotations

from dataclasses import replace

from elasticsearch import Elasticsearch
from elasticsearch import exceptions as es_exc
from elasticsearch.serializer import OrjsonSerializer

from toolkit.errors import ConfigError, ToolkitError
from toolkit.es import node
from toolkit.es.config import EsSettings, settings_from_env


class EsUnavailable(ToolkitError):
    """Elasticsearch could not be reached or refused the credentials."""


def resolve_settings(settings: EsSettings | None = None, node_name: str = "default") -> EsSettings:
    """Use ``ES_URL`` when set; otherwise the running local node (with its password when secured)."""
    s = settings or settings_from_env()
    if s.url:
        return s
    state, h = node.status(node_name)
    if state is None or h is None:
        raise ConfigError(
            "no Elasticsearch to talk to: set ES_URL (and ES_API_KEY or ES_USERNAME/ES_PASSWORD) "
            "or start the local node with `jrs es up`"
        )
    s = replace(s, url=state.url)
    if state.ca_certs and not s.ca_certs:
        s = replace(s, ca_certs=state.ca_certs)
    if state.security and not (s.api_key or s.password):
        s = replace(s, username="elastic", password=node.node_password(node_name))
    return s


def make_client(settings: EsSettings | None = None, check: bool = True, **kwargs) -> Elasticsearch:
    """Create a client; with ``check`` fail fast (and clearly) when the cluster does not answer.

    JSON goes through orjson (several times faster than the stdlib on vectors and large responses)."""
    s = resolve_settings(settings)
    opts: dict = {
        "serializer": OrjsonSerializer(),
        "request_timeout": s.request_timeout,
        "retry_on_timeout": True,
        "max_retries": 3,
        **kwargs,
    }
    if s.api_key:
        opts["api_key"] = s.api_key
    elif s.username:
        opts["basic_auth"] = (s.username, s.password or "")
    if s.ca_certs:
        opts["ca_certs"] = s.ca_certs
    if not s.verify_certs:
        opts["verify_certs"] = False
        opts["ssl_show_warn"] = False
    client = Elasticsearch(s.url, **opts)
    if check:
        ping(client, s)
    return client


def ping(client: Elasticsearch, settings: EsSettings) -> dict:
    """Cluster health, or :class:`EsUnavailable` naming the URL (never the secrets)."""
    try:
        return client.options(request_timeout=10, max_retries=0).cluster.health().body
    except es_exc.AuthenticationException as e:
        raise EsUnavailable(f"Elasticsearch at {settings.url} refused the credentials (HTTP 401)") from e
    except es_exc.AuthorizationException as e:
        raise EsUnavailable(f"Elasticsearch at {settings.url}: the user lacks permission (HTTP 403)") from e
    except (es_exc.ConnectionError, es_exc.ConnectionTimeout) as e:
        if "CERTIFICATE_VERIFY_FAILED" in str(e) or isinstance(e, es_exc.SSLError):
            raise EsUnavailable(
                f"the TLS certificate of Elasticsearch at {settings.url} could not be verified: "
                "set ES_CA_CERTS to the CA certificate that signed it"
            ) from e
        raise EsUnavailable(f"Elasticsearch at {settings.url} is unreachable: {type(e).__name__}") from e
