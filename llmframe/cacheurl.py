"""A shared store's address (postgresql://...), carried through plans and reports with its password hidden."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from . import constants
from .errors import ConfigError

_SECRET_PARAMS = ("password", "sslpassword")  # libpq's query parameters that hold a secret


def is_url(value: object) -> bool:
    """True for a string naming a shared store: postgresql://... or postgres://..."""
    return isinstance(value, str) and value.split("://", 1)[0].lower() in constants.CACHE_URL_SCHEMES and "://" in value


def redacted(url: str) -> str:
    """The URL with its password (in the netloc or a password= parameter) replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://***"  # not parseable: show nothing of it
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        if ":" in user:
            user = user.split(":", 1)[0] + ":***"
        netloc = f"{user}@{host}"
    query = "&".join(f"{k}=***" if k in _SECRET_PARAMS else f"{k}={v}" for k, v in parse_qsl(parts.query, True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def secrets_of(url: str) -> list[str]:
    """The secret parts of a URL (its password, raw and decoded), to strip from any message that might echo them."""
    found: list[str] = []
    try:
        parts = urlsplit(url)
        if parts.password:
            found += [parts.password, unquote(parts.password)]
        found += [v for k, v in parse_qsl(parts.query, True) if k in _SECRET_PARAMS]
    except ValueError:
        found.append(url)
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """text with the URL's secrets replaced by *** (a driver's message could quote the connection string)."""
    for secret in secrets_of(url):
        text = text.replace(secret, "***")
    return re.sub(r"password=\S+", "password=***", text)


@dataclass(frozen=True)
class CacheURL:
    """cache="postgresql://..." as a plan carries it: the URL itself never shows in a repr or a message."""

    url: str = field(repr=False)

    def __post_init__(self):
        if not is_url(self.url):
            raise ConfigError(f"a shared cache is named by a postgresql:// URL, got {redacted(str(self.url))!r}")

    @property
    def shown(self) -> str:
        """The URL as logs, reports and errors show it: without its password."""
        return redacted(self.url)

    def __repr__(self) -> str:
        return f"CacheURL({self.shown!r})"

    def __str__(self) -> str:  # f-strings and str() show the redacted form too
        return self.shown
