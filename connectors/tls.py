"""TLS for the listeners: one certificate and key (and optionally a client CA) from PEM files, served by the
OTLP/gRPC receiver and by the uvicorn servers (OTLP/HTTP, the API), and read again on SIGHUP.

The HTTP servers share one `ssl.SSLContext`; `load_cert_chain` on it again makes every new handshake serve
the new certificate (connections already open keep theirs). gRPC cannot take an `SSLContext`: its
credentials are `grpc.dynamic_ssl_server_credentials`, whose fetcher gRPC calls before each new handshake;
it hands over the new files' contents once after a reload, `None` (no change) otherwise. A reload reads and
checks the whole set first and keeps the old one if any file is missing or the pair does not match.
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc

from dataflow.config import TlsConfig
from dataflow.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Pem:
    """One checked set of files' contents."""

    cert: bytes
    key: bytes
    client_ca: bytes | None


class ServerTls:
    """The listeners' TLS material. `reload` is thread-safe; the fetcher runs on gRPC's threads."""

    def __init__(self, config: TlsConfig) -> None:
        if config.cert_file is None or config.key_file is None:
            msg = "tls: cert_file and key_file are needed"
            raise ConfigError(msg)
        self._cert_file: Path = config.cert_file
        self._key_file: Path = config.key_file
        self._ca_file = config.client_ca_file
        self._lock = threading.Lock()
        try:
            self._pem = self._read()
        except (OSError, ssl.SSLError) as exc:
            msg = f"tls: cannot load {self._cert_file} / {self._key_file}: {exc}"
            raise ConfigError(msg) from exc
        self.context = self._context()
        self._generation = 0
        self._fetched = 0

    @property
    def mutual(self) -> bool:
        return self._ca_file is not None

    def _read(self) -> _Pem:
        """The files' contents, checked by loading them into a throwaway context (a key that does not match
        its certificate fails here)."""
        _load(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), self._cert_file, self._key_file, self._ca_file)
        ca = self._ca_file.read_bytes() if self._ca_file is not None else None
        return _Pem(self._cert_file.read_bytes(), self._key_file.read_bytes(), ca)

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        _load(ctx, self._cert_file, self._key_file, self._ca_file)
        if self._ca_file is not None:
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def reload(self) -> bool:
        """Read the files again; new handshakes serve them. On a failure log it, keep the old set, False."""
        try:
            pem = self._read()
            with self._lock:
                _load(self.context, self._cert_file, self._key_file, self._ca_file)
                self._pem = pem
                self._generation += 1
        except (OSError, ssl.SSLError) as exc:
            logger.error("TLS reload failed; still serving the previous certificate: %s", exc)
            return False
        logger.info("TLS certificate reloaded from %s", self._cert_file)
        return True

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Server credentials whose certificate follows `reload`."""
        return grpc.dynamic_ssl_server_credentials(
            self._grpc_config(self._pem),
            self._fetch,
            require_client_authentication=self.mutual,
        )

    @staticmethod
    def _grpc_config(pem: _Pem) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(pem.key, pem.cert)], root_certificates=pem.client_ca
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            if self._fetched == self._generation:
                return None
            self._fetched = self._generation
            pem = self._pem
        return self._grpc_config(pem)


def _load(ctx: ssl.SSLContext, cert: Path, key: Path, client_ca: Path | None) -> None:
    ctx.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        ctx.load_verify_locations(cafile=str(client_ca))
