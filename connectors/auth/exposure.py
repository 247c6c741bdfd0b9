"""The start-up refusal: no listening on a network address while anyone could call without a key."""

from __future__ import annotations

import ipaddress
import logging

from dataflow.errors import ConfigError

logger = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_exposure(host: str, auth_on: bool, insecure: bool) -> None:
    """Refuse (ConfigError) to listen on a non-loopback `host` with authentication off, unless `insecure`."""
    if auth_on or is_loopback(host):
        return
    if insecure:
        logger.warning(
            "listening on %s with no API key (--insecure): anyone who reaches it may send and read everything",
            host,
        )
        return
    msg = (
        f"refusing to listen on {host} with no API key: anyone who reaches it could send and read everything. "
        "Create a key first (`tracejudge keys create --name admin --scopes admin`, with the service stopped), "
        "or pass --insecure (auth.insecure: true) to run it open anyway"
    )
    raise ConfigError(msg)
