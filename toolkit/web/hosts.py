"""Which ``Host`` headers the search page answers: the defence against DNS rebinding.

A web page elsewhere can point a name of its own at 127.0.0.1 and have the browser send requests to a loopback
server under that name; they carry it in ``Host``. A server on a loopback address therefore answers only
loopback names (``localhost``, ``127.0.0.1``, ``[::1]``, any port) and the hosts allowed explicitly
(``jrs web --allowed-host``, :data:`ALLOWED_HOSTS_ENV`); any other ``Host``, or none, gets
:data:`MISDIRECTED`. A server on another address checks only when hosts are allowed explicitly.

Cross-site request forgery: a page elsewhere cannot read this server's answers (no CORS header is sent) but can
still make a visitor's browser send it a "simple" ``POST`` (a form, a ``multipart/form-data`` upload), each one
a photo search that costs model inference. Any method but ``GET`` and ``HEAD`` is therefore refused with
:data:`CROSS_SITE` when the browser says it comes from elsewhere (:func:`cross_site_refusal`): an ``Origin``
that is not this server's own, or ``Sec-Fetch-Site: cross-site``. Requests without them (curl, scripts) are
answered.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from toolkit.chars import visible
from toolkit.errors import ConfigError

#: the environment variable of ``jrs web --allowed-host`` (names separated by spaces)
ALLOWED_HOSTS_ENV = "JRS_WEB_ALLOWED_HOSTS"
#: the status of a request for another host: 421 Misdirected Request (this server does not serve that name)
MISDIRECTED = 421
#: characters of a refused ``Host`` shown in the error
SHOWN_CHARS = 100
#: the status of a request another site's page had the browser send: 403 Forbidden
CROSS_SITE = 403
#: the methods any page may have a browser send here: they change nothing and cost little
SAFE_METHODS = frozenset({"GET", "HEAD"})
#: the port of a web origin that names none
DEFAULT_PORTS = {"http": "80", "https": "443"}


def is_loopback(host: str) -> bool:
    """``host`` (a name or an address, IPv6 with or without brackets) is this machine's loopback."""
    host = host.strip("[]").lower()
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(value: str) -> str | None:
    """The host of a ``Host`` header value ``host[:port]`` (IPv6 in brackets), lower-case, without brackets or
    port (an address in its shortest form); None when the value is not of that form."""
    split = host_and_port(value)
    return split[0] if split else None


def host_and_port(value: str) -> tuple[str, str] | None:
    """:func:`host_name` of ``value`` and its port (``""`` when it names none); None when it is not of that
    form."""
    value = value.strip().lower()
    if value.startswith("["):
        host, bracket, port = value[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            return None
        port = port[1:]
    else:
        host, _, port = value.partition(":")
    if not host or (port and not port.isdigit()) or any(c.isspace() or c in "/?#@[]" for c in host):
        return None
    port = port.lstrip("0") or ("0" if port else "")
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        return None if value.startswith("[") else (host, port)


def _origin(origin: str) -> tuple[str, str, str] | None:
    """``(scheme, host, port)`` of an ``Origin`` header value that is a plain http(s) origin (no path, query,
    fragment or user; host and port as :func:`host_and_port` reads them, the port ``""`` when it names none), else
    None."""
    url = urlsplit(origin.strip())
    if url.scheme not in DEFAULT_PORTS or url.path or url.query or url.fragment or "@" in url.netloc:
        return None
    split = host_and_port(url.netloc)
    return None if split is None else (url.scheme, *split)


def is_own_origin(origin: str, host: str) -> bool:
    """``origin`` (an ``Origin`` header value) is that of the server a request with ``Host: host`` came to: the
    same host (as :func:`host_name` reads both) and port, over http (or https, as behind a reverse proxy
    forwarding ``Host``)."""
    theirs, ours = _origin(origin), host_and_port(host)
    if theirs is None or ours is None:
        return False
    scheme, name, port = theirs
    default = DEFAULT_PORTS[scheme]
    return (name, port or default) == (ours[0], ours[1] or default)


def is_allowed_origin(origin: str, allowed: frozenset[str]) -> bool:
    """``origin`` is an http(s) origin (any port) whose host is one of the ``allowed`` names."""
    theirs = _origin(origin)
    return theirs is not None and theirs[1] in allowed


def cross_site_refusal(
    method: str,
    hosts: list[str],
    origins: list[str],
    fetch_sites: list[str],
    allowed: frozenset[str] = frozenset(),
) -> str | None:
    """Why a request with this method and these ``Host``, ``Origin`` and ``Sec-Fetch-Site`` header values looks
    sent by another site's page and is not answered (None: it is answered). ``GET`` and ``HEAD`` always are;
    any other method is refused when an ``Origin`` is not this server's own (:func:`is_own_origin` against the
    one ``Host``: :class:`HostCheck` has already accepted it where the server checks) or the browser says
    ``Sec-Fetch-Site: cross-site``. An ``Origin`` whose host is one of the ``allowed`` names (``jrs web
    --allowed-host``) is this server's too: behind a reverse proxy that rewrites ``Host`` the page's origin is the
    proxy's name, not the ``Host`` the server sees."""
    if method in SAFE_METHODS:
        return None
    shown = visible(method[:SHOWN_CHARS])
    if any(site.strip().lower() == "cross-site" for site in fetch_sites):
        return f"a cross-site {shown} is not answered here (Sec-Fetch-Site: cross-site)"
    for origin in origins:
        if allowed and is_allowed_origin(origin, allowed):
            continue
        if len(hosts) != 1 or not is_own_origin(origin, hosts[0]):
            return (
                f"a {shown} from origin {origin[:SHOWN_CHARS]!r} is not answered here "
                "(only from this server's own pages)"
            )
    return None


def allowed_name(value: str) -> str:
    """``value`` of ``--allowed-host`` (a name or an address, with or without a port) as :func:`host_name`
    gives it; :class:`ConfigError` naming it when it is neither."""
    try:
        return str(ipaddress.ip_address(value.strip()))  # an IPv6 address without brackets too
    except ValueError:
        pass
    name = host_name(value)
    if name is None:
        raise ConfigError(
            f"--allowed-host {value!r} is not a host name or address (host, host:port or [IPv6 address])"
        )
    return name


@dataclass(frozen=True)
class HostCheck:
    """The ``Host`` names a server answers: loopback names and ``allowed``."""

    allowed: frozenset[str] = frozenset()

    @classmethod
    def for_server(cls, bind_host: str, allowed: Iterable[str] = ()) -> HostCheck | None:
        """The check of a server bound to ``bind_host`` allowing ``allowed`` too (:func:`allowed_name`); None
        (any ``Host``) for a server on an address that is not loopback, given none."""
        names = frozenset(allowed_name(h) for h in allowed)
        return cls(names) if names or is_loopback(bind_host) else None

    def refusal(self, headers: list[str]) -> str | None:
        """Why a request with these ``Host`` header values is not answered (None: it is)."""
        if len(headers) != 1:
            return (
                "the Host header is missing"
                if not headers
                else f"the Host header is given {len(headers)} times"
            )
        name = host_name(headers[0])
        if name is not None and (is_loopback(name) or name in self.allowed):
            return None
        return (
            f"host {headers[0][:SHOWN_CHARS]!r} is not served here (only {self.describe()}); "
            "allow it with jrs web --allowed-host"
        )

    def describe(self) -> str:
        """The names answered, for messages."""
        extra = (f"[{h}]" if ":" in h else h for h in sorted(self.allowed))
        return ", ".join(["localhost", "127.0.0.1", "[::1]", *extra])


#: the check of a server on a loopback address allowing no other name
LOOPBACK_ONLY = HostCheck()
