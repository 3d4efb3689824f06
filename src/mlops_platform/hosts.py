"""From a bind address to the address that reaches it from this machine.

A leaf without settings: the stack, ``db`` and ``health`` all turn ``MLOPS_SERVER_HOST`` or
``MLOPS_PROXY_HOST`` into a URL the same way.
"""

from __future__ import annotations

WILDCARDS = ("0.0.0.0", "::", "")  # bind to every interface; reached here on loopback


def reachable(host: str) -> str:
    """The address to connect to a service bound to ``host``: loopback for a wildcard
    bind, ``host`` itself otherwise."""
    return "127.0.0.1" if host in WILDCARDS else host


def url_host(host: str) -> str:
    """``reachable(host)`` as it goes in a URL: an IPv6 address in brackets."""
    host = reachable(host)
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
