"""Connection settings from flags and ``ES_*`` environment variables; secrets are never printed."""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from toolkit.errors import ConfigError

ENV_VARS = (
    "ES_URL",
    "ES_API_KEY",
    "ES_USERNAME",
    "ES_PASSWORD",
    "ES_CA_CERTS",
    "ES_VERIFY_CERTS",
    "ES_TIMEOUT",
)


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


def read_credentials_file(path: str | Path) -> dict[str, str]:
    """Read ``KEY=VALUE`` lines from a credentials file that only its owner can read (mode 0600)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"credentials file {p} does not exist")
    mode = stat.S_IMODE(p.stat().st_mode)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"credentials file {p} is readable by others (mode {mode:o}); run: chmod 600 {p}")
    out: dict[str, str] = {}
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ConfigError(f"credentials file {p} line {n}: expected KEY=VALUE")
        k, v = line.split("=", 1)
        out[k.strip()] = v.strip().strip('"').strip("'")
    return out


def settings_from_env(
    env: dict[str, str] | None = None, credentials_file: str | Path | None = None, **overrides
) -> EsSettings:
    """Build settings from ``ES_*`` variables (and an optional 0600 credentials file), then flag overrides."""
    env = dict(os.environ if env is None else env)
    cred_path = credentials_file or env.get("ES_CREDENTIALS_FILE")
    if cred_path:
        for k, v in read_credentials_file(cred_path).items():
            env.setdefault(k, v)
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
    return s


def split_url(url: str | None) -> tuple[str | None, str | None, str | None]:
    """``url`` without its ``user:password@`` part, and that user and password (percent-decoded): the
    credentials travel as basic auth and the URL can be printed. :class:`ConfigError` (the URL shown
    without them) when it is not an ``http(s)://host[:port]`` URL."""
    if url is None:
        return None, None, None
    parts = urlsplit(url.strip())
    netloc = parts.netloc.rpartition("@")[2]
    shown = urlunsplit(parts._replace(netloc=netloc))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"ES_URL must look like http(s)://host:port, got {shown!r}")
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError:
        raise ConfigError(f"ES_URL has an invalid port: {shown!r}") from None
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return shown, user, password


def _timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"ES_TIMEOUT must be a number of seconds > 0, got {value!r}")
    return seconds


def known_secrets(env: dict[str, str] | None = None) -> tuple[str, ...]:
    """Every secret the environment could hold (for scrubbing messages); never raises.

    Unlike :func:`settings_from_env` it also reads a credentials file whose mode is refused, so a
    message about that file cannot leak what is in it.
    """
    env = dict(os.environ if env is None else env)
    found = [env.get("ES_API_KEY", ""), env.get("ES_PASSWORD", "")]
    try:  # a password written into ES_URL, as written and decoded
        in_url = urlsplit(env.get("ES_URL", "")).password or ""
        found += [in_url, unquote(in_url)]
    except ValueError:
        pass
    path = env.get("ES_CREDENTIALS_FILE")
    if path:
        try:
            for line in Path(path).expanduser().read_text(encoding="utf-8").splitlines():
                key, _, value = line.partition("=")
                if key.strip() in ("ES_API_KEY", "ES_PASSWORD"):
                    found.append(value.strip().strip('"').strip("'"))
        except (OSError, UnicodeDecodeError):
            pass
    return tuple(sorted({s for s in found if s}, key=len, reverse=True))
