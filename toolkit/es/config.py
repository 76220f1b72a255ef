"""Connection settings from flags and ``ES_*`` environment variables; secrets are never printed."""

from __future__ import annotations

import logging
import math
import numbers
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import overload
from urllib.parse import unquote, urlsplit, urlunsplit

from toolkit.errors import ConfigError, given

log = logging.getLogger(__name__)

ENV_VARS = (
    "ES_URL",
    "ES_API_KEY",
    "ES_USERNAME",
    "ES_PASSWORD",
    "ES_CA_CERTS",
    "ES_VERIFY_CERTS",
    "ES_TIMEOUT",
)

#: Variables whose whole value is a secret, and URL variables whose ``user:password@`` is one: Kibana's too,
#: so the one scrubber (:func:`known_secrets`) covers every command.
SECRET_VARS = ("ES_API_KEY", "ES_PASSWORD", "KIBANA_API_KEY", "KIBANA_PASSWORD")
URL_VARS = ("ES_URL", "KIBANA_URL")

#: What a request timeout takes (``EsSettings.request_timeout``, ``ES_TIMEOUT``), in words
_SECONDS = "a number of seconds > 0"

#: The port of an ``http(s)://`` URL that names none
DEFAULT_PORTS = {"http": 80, "https": 443}

#: ``scheme://`` (or ``scheme//``, its colon forgotten) at the start of a URL: a ``user:password@`` follows it
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:?//")


@dataclass(frozen=True)
class EsSettings:
    """Where and how to connect. ``repr`` masks the API key and password."""

    url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_certs: str | None = None
    verify_certs: bool = True
    request_timeout: float = 30.0

    def __post_init__(self) -> None:
        """:class:`ConfigError` naming the field (and the ``ES_*`` variable it is read from) for a value of the
        wrong type or out of range; a secret's value is never shown, only its type."""
        for name, var in (("url", "ES_URL"), ("username", "ES_USERNAME"), ("ca_certs", "ES_CA_CERTS")):
            value = getattr(self, name)
            if name == "ca_certs" and isinstance(value, os.PathLike):
                object.__setattr__(self, name, value := os.fspath(value))  # frozen
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"EsSettings {name} ({var}) must be None or a string, got {given(value)}")
        for name, var in (("api_key", "ES_API_KEY"), ("password", "ES_PASSWORD")):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):  # its type only: the value is a secret
                raise ConfigError(
                    f"EsSettings {name} ({var}) must be None or a string, got {type(value).__name__}"
                )
        if not isinstance(self.verify_certs, bool):
            raise ConfigError(
                f"EsSettings verify_certs (ES_VERIFY_CERTS) must be True or False, got {given(self.verify_certs)}"
            )
        timeout = self.request_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not math.isfinite(timeout):
            raise ConfigError(
                f"EsSettings request_timeout (ES_TIMEOUT) must be {_SECONDS}, got {given(timeout)}"
            )
        if timeout <= 0:
            raise ConfigError(f"EsSettings request_timeout (ES_TIMEOUT) must be {_SECONDS}, got {timeout}")
        if type(timeout) not in (int, float):
            object.__setattr__(self, "request_timeout", float(timeout))  # a NumPy number made plain

    def __repr__(self) -> str:
        return (
            f"EsSettings(url={self.url!r}, api_key={'***' if self.api_key else None}, "
            f"username={self.username!r}, password={'***' if self.password else None}, "
            f"ca_certs={self.ca_certs!r}, verify_certs={self.verify_certs})"
        )

    def describe(self) -> str:
        """A one-line, secret-free description for logs."""
        auth = "api-key" if self.api_key else (f"basic ({self.username})" if self.username else "none")
        return f"{self.url} (auth: {auth})"

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.api_key, self.password) if s)


def _truthy(value: str) -> bool:
    return value.strip().lower() not in ("0", "false", "no", "off", "")


def _expand(path: str | Path) -> Path:
    try:
        return Path(path).expanduser()
    except RuntimeError:  # ~user of no known user: the path as written
        return Path(path)


def _credential_lines(text: str) -> Iterator[tuple[int, str | None, str]]:
    """``(line number, KEY, VALUE)`` of each ``KEY=VALUE`` line (quotes stripped); ``KEY`` None: not one."""
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        yield n, key.strip() if eq else None, value.strip().strip('"').strip("'")


def read_credentials_file(path: str | Path) -> dict[str, str]:
    """Read ``KEY=VALUE`` lines from a credentials file that only its owner can read (mode 0600)."""
    p = _expand(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ConfigError(f"credentials file {p} does not exist") from None
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"credentials file {p} cannot be read: {getattr(e, 'strerror', None) or e}"
        ) from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"credentials file {p} is a directory, not a KEY=VALUE file")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"credentials file {p} is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"credentials file {p} is readable by others (mode {mode:o}); run: chmod 600 {p}")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"credentials file {p} cannot be read: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(f"credentials file {p} is not UTF-8 text (line {line}: {e.reason})") from None
    out: dict[str, str] = {}
    for n, key, value in _credential_lines(text):
        if key is None:
            raise ConfigError(f"credentials file {p} line {n}: expected KEY=VALUE")
        out[key] = value
    return out


def settings_from_env(
    env: dict[str, str] | None = None, credentials_file: str | Path | None = None, **overrides
) -> EsSettings:
    """Build settings from ``ES_*`` variables (and an optional 0600 credentials file), then flag overrides.
    ``ES_CA_CERTS`` with an ``http://`` ``ES_URL`` is left out with a warning (it applies to HTTPS only); without
    ``ES_URL`` its file is not checked here: the local node's URL, known later, says whether it applies."""
    env = dict(os.environ if env is None else env)
    cred_path = credentials_file or env.get("ES_CREDENTIALS_FILE")
    if cred_path:
        for k, v in read_credentials_file(cred_path).items():
            if not env.get(k):  # a variable set (not empty) wins over the file
                env[k] = v
    url, url_user, url_password = split_url(env.get("ES_URL") or None)
    s = EsSettings(
        url=url,
        api_key=env.get("ES_API_KEY") or None,
        username=env.get("ES_USERNAME") or url_user,
        password=env.get("ES_PASSWORD") or url_password,
        ca_certs=env.get("ES_CA_CERTS") or None,
        verify_certs=_truthy(env.get("ES_VERIFY_CERTS", "1")),
        request_timeout=_timeout(env.get("ES_TIMEOUT", "30")),
    )
    clean = {k: v for k, v in overrides.items() if v is not None}
    if clean:
        s = replace(s, **clean)
    if s.password and not s.username:
        s = replace(s, username="elastic")
    check_credentials(s.api_key, s.username, s.password, ("ES_API_KEY", "ES_USERNAME", "ES_PASSWORD"))
    s = _without_ca_for_http(s)
    if s.url:  # no URL yet: checked once the local node's is known (toolkit.es.client.resolve_credentials)
        check_ca_certs(s.ca_certs, "ES_CA_CERTS")
    return s


def _without_ca_for_http(s: EsSettings) -> EsSettings:
    """``s`` without its CA certificate when its URL is ``http://`` (nothing to verify: a CA kept exported for
    another cluster, or a missing file, must not stop a plain-HTTP one), with a warning saying so."""
    if not (s.ca_certs and s.url and s.url.startswith("http://")):
        return s
    log.warning(
        "ES_CA_CERTS (%s) is ignored: it applies to https:// URLs only, and ES_URL is %s", s.ca_certs, s.url
    )
    return replace(s, ca_certs=None)


def check_credentials(
    api_key: str | None, username: str | None, password: str | None, names: tuple[str, str, str]
) -> None:
    """:class:`ConfigError` naming the variable (or flag, ``names``) whose credential no HTTP header can carry:
    an API key that is not printable ASCII, a user or password that is not UTF-8 (bytes of another encoding
    in the environment); the value itself is never shown."""
    if api_key and not (api_key.isascii() and api_key.isprintable()):
        raise ConfigError(f"{names[0]} must be the key Elasticsearch gave (printable ASCII, e.g. base64)")
    for value, name in ((username, names[1]), (password, names[2])):
        try:
            (value or "").encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(f"{name} is not valid UTF-8 text") from None


def check_ca_certs(path: str | None, name: str) -> None:
    """:class:`ConfigError` naming ``name`` when the CA certificate ``path`` is not a file."""
    if not path:
        return
    p = _expand(path)
    if p.is_dir():
        raise ConfigError(f"{name} names a directory, not a CA certificate file: {path}")
    if not p.is_file():
        raise ConfigError(f"{name} file not found: {path}")


def _userinfo(url: str) -> tuple[str, str | None, str]:
    """``url`` cut around its ``user:password@``: what precedes it, it (without the ``@``; None: none) and the
    rest. It runs from after ``//`` (or the start) to the last ``@``, so it is found even in a URL that does
    not parse (a ``/``, ``?`` or ``#`` in the password, no scheme)."""
    m = _SCHEME.match(url)
    start = m.end() if m else 0
    userinfo, at, rest = url[start:].rpartition("@")
    return (url[:start], userinfo, rest) if at else (url[:start], None, url[start:])


def redact_url(url: str) -> str:
    """``url`` with its ``user:password@`` shown as ``***@``: safe to print, even when it does not parse."""
    before, userinfo, rest = _userinfo(url)
    return url if userinfo is None else f"{before}***@{rest}"


def url_secrets(url: str) -> tuple[str, ...]:
    """The ``user:password`` in ``url`` and its password, as written and percent-decoded (none without a
    password); never raises."""
    userinfo = _userinfo(url.strip())[1] or ""
    password = userinfo.partition(":")[2]
    return (userinfo, unquote(userinfo), password, unquote(password)) if password else ()


@overload
def split_url(url: str, name: str = ...) -> tuple[str, str | None, str | None]: ...
@overload
def split_url(url: str | None, name: str = ...) -> tuple[str | None, str | None, str | None]: ...


def split_url(url: str | None, name: str = "ES_URL") -> tuple[str | None, str | None, str | None]:
    """``url`` without its ``user:password@`` part, and that user and password (percent-decoded): the
    credentials travel as basic auth and the URL can be printed. :class:`ConfigError` naming ``name`` (the
    URL shown without them) when it is not an ``http(s)://host[:port]`` URL."""
    if url is None:
        return None, None, None
    url = url.strip()
    before, userinfo, rest = _userinfo(url)
    user, _, password = (userinfo or "").partition(":")
    checked = _checked_url(before + rest, name, redact_url(url), userinfo or "")
    return checked, unquote(user) or None, unquote(password) or None


def _checked_url(bare: str, name: str, shown: str, userinfo: str) -> str:
    """``bare`` (a URL without its ``user:password@``) with its port written out, as elasticsearch-py needs;
    :class:`ConfigError` naming ``name`` and showing ``shown`` when it is not ``http(s)://host[:port]``."""
    expected = f"{name} must look like http(s)://host[:port], got {shown!r}"
    if any(c in userinfo for c in "/?#"):
        raise ConfigError(
            f"{expected}; a '/', '?' or '#' in the user or password must be written %2F, %3F, %23"
        )
    try:
        parts = urlsplit(bare)
    except ValueError as e:  # an unclosed IPv6 bracket, ...
        raise ConfigError(f"{name} is not a valid URL ({e}): {shown!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(expected)
    try:
        port = DEFAULT_PORTS[parts.scheme] if parts.port is None else parts.port
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise ConfigError(f"{name} has an invalid port: {shown!r}")
    if parts.query or parts.fragment:
        raise ConfigError(
            f"{name} must look like http(s)://host[:port][/path prefix], got {shown!r}: a query or fragment is"
            " not supported"
        )
    if not _host_parses(parts.netloc):
        raise ConfigError(f"{name} has an invalid host name: {shown!r}")
    netloc = f"{parts.netloc.rstrip(':')}:{port}" if parts.port is None else parts.netloc
    # a path is a reverse proxy's prefix (kept; the client puts the API path after it), a trailing / dropped
    return urlunsplit(parts._replace(netloc=netloc, path=parts.path.rstrip("/")))


def _host_parses(netloc: str) -> bool:
    """Whether the HTTP clients (urllib3, under elasticsearch-py too) accept ``host[:port]``: no spaces, no
    control characters, no bytes that are not UTF-8."""
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    try:
        parse_url(f"http://{netloc}")
    except (LocationParseError, UnicodeError):
        return False
    return True


def _timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"ES_TIMEOUT must be {_SECONDS}, got {value!r}")
    return seconds


def _credentials_quietly(path: str | None) -> dict[str, str]:
    """The ``KEY=VALUE`` pairs of a credentials file whatever its mode or encoding ({}: none to read)."""
    if not path:
        return {}
    try:
        p = _expand(path)
        if not p.is_file():  # a FIFO would block
            return {}
        text = p.read_bytes().decode("utf-8-sig", errors="replace")
    except (OSError, ValueError):
        return {}
    return {key: value for _, key, value in _credential_lines(text) if key}


def known_secrets(env: dict[str, str] | None = None) -> tuple[str, ...]:
    """Every secret the environment could hold (for scrubbing messages); never raises.

    Unlike :func:`settings_from_env` it also reads a credentials file whose mode is refused, so a
    message about that file cannot leak what is in it; a ``user:password@`` counts even in a URL that
    does not parse.
    """
    env = dict(os.environ if env is None else env)
    found: list[str] = []
    for source in (env, _credentials_quietly(env.get("ES_CREDENTIALS_FILE"))):
        found += [source.get(var, "") for var in SECRET_VARS]
        for var in URL_VARS:
            found += url_secrets(source.get(var, ""))
    return tuple(sorted({s for s in found if s}, key=len, reverse=True))
