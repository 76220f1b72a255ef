"""Which ``Host`` headers the search page answers: the defence against DNS rebinding.

A web page elsewhere can point a name of its own at 127.0.0.1 and have the browser send requests to a loopback
server under that name; they carry it in ``Host``. A server on a loopback address therefore answers only
loopback names (``localhost``, ``127.0.0.1``, ``[::1]``, any port) and the hosts allowed explicitly
(``jrs web --allowed-host``, :data:`ALLOWED_HOSTS_ENV`); any other ``Host``, or none, gets
:data:`MISDIRECTED`. A server on another address checks only when hosts are allowed explicitly.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from toolkit.errors import ConfigError

#: the environment variable of ``jrs web --allowed-host`` (names separated by spaces)
ALLOWED_HOSTS_ENV = "JRS_WEB_ALLOWED_HOSTS"
#: the status of a request for another host: 421 Misdirected Request (this server does not serve that name)
MISDIRECTED = 421
#: characters of a refused ``Host`` shown in the error
SHOWN_CHARS = 100


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
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None if value.startswith("[") else host


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
