"""URLs in specs: the one way to show a URL without its secrets, and the one ``URL@MODEL`` parser.

:func:`public_url` is what every message, repr and cache key shows of an endpoint URL; :func:`parse_url_at_model`
splits the ``URL@MODEL`` argument of ``endpoint:`` LMs (:mod:`ns_dspy.lms.factory`) and simulators
(:mod:`ns_dspy.simulators.endpoint`).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigError, NsDspyError

__all__ = ["public_url", "parse_url_at_model"]

_USER_INFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")
_HTTP = re.compile(r"^https?://[^/]")


def public_url(url: str) -> str:
    """``url`` without user info (``user:password@``), query or fragment, so that no secret reaches a message,
    a repr or a cache key.

    A URL is also normalised (host in lower case, no trailing slash): ``http://u:pw@Host:8000/v1/?key=s3cret``
    shows as ``http://host:8000/v1``. Any other text (a spec such as ``endpoint:URL@MODEL``, a malformed URL)
    loses the user info after every ``SCHEME://`` in it and everything from its first ``?`` or ``#``.
    """
    text = url or ""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:  # a malformed host or port
        parts = None
    if parts is not None and parts.scheme and parts.netloc:
        host = parts.hostname or ""
        netloc = f"{host}:{port}" if port else host
        return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return _USER_INFO.sub(r"\1", text).split("?")[0].split("#")[0]


def parse_url_at_model(arg: str, what: str, *, error: type[NsDspyError] = ConfigError) -> tuple[str, str]:
    """``URL@MODEL`` -> ``(URL, MODEL)``, split at the last ``@`` (a URL path may hold one, e.g. ``/v1/@org/m``).

    The URL must start with ``http://`` or ``https://`` and a host. Otherwise raises ``error`` with one line
    naming the fix and ``what`` (``"LM"``, ``"simulator"``), without the URL's secrets.
    """
    url, sep, model = (arg or "").rpartition("@")
    if not sep or not model or not _HTTP.match(url):
        raise error(f"bad endpoint {what} 'endpoint:{public_url(arg)}': write endpoint:URL@MODEL, e.g. "
                    "endpoint:http://127.0.0.1:8000/v1@my-model")
    return url, model
