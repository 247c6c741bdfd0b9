"""TLS on the three listeners (issue 13, item 2), with a throwaway CA made here: the OTel SDK's gRPC and HTTP
exporters send through it, the API answers over it, and after SIGHUP new connections get the new certificate."""

from __future__ import annotations

import signal
import socket
import ssl
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import requests
import trustme
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

from connectors.otlp.grpc_server import EXPORT_METHOD
from tests.integration.service import ServiceProcess, http
from tests.integration.test_receivers import emit
from tests.waiting import eventually


class TlsService(ServiceProcess):
    """The service with TLS on: its URLs are https (the test's opener trusts the throwaway CA)."""

    @property
    def api(self) -> str:
        return f"https://localhost:{self.ports['api']}"

    @property
    def otlp_http(self) -> str:
        return f"https://localhost:{self.ports['http']}"


def _write(cert: trustme.LeafCert, directory: Path) -> None:
    cert.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    cert.private_key_pem.write_to_path(str(directory / "key.pem"))


def _der(cert: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA) -> Path:
    directory = tmp_path_factory.mktemp("tls")
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    _write(ca.issue_cert("localhost", "127.0.0.1"), directory)
    return directory


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA, tls_dir: Path) -> Iterator[TlsService]:
    client = ssl.create_default_context()
    ca.configure_trust(client)
    urllib.request.install_opener(urllib.request.build_opener(urllib.request.HTTPSHandler(context=client)))
    env = {
        "TRACEJUDGE_TLS__CERT_FILE": str(tls_dir / "cert.pem"),
        "TRACEJUDGE_TLS__KEY_FILE": str(tls_dir / "key.pem"),
    }
    service = TlsService(tmp_path_factory.mktemp("tls-svc") / "data", env=env)
    try:
        service.start()
        yield service
        assert service.stop() == 0, service.output
    finally:
        service.kill()
        urllib.request.install_opener(None)  # type: ignore[arg-type]


def test_the_sdk_exporters_send_over_tls(svc: TlsService, tls_dir: Path) -> None:
    project = f"tls-{uuid.uuid4().hex[:8]}"
    ca_pem = (tls_dir / "ca.pem").read_bytes()
    grpc_exporter = GrpcExporter(
        endpoint=f"localhost:{svc.ports['grpc']}", credentials=grpc.ssl_channel_credentials(ca_pem)
    )
    emit(grpc_exporter, project, 2)
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (set on CI machines) win over the exporter's own
    # certificate_file unless the session ignores the environment
    session = requests.Session()
    session.trust_env = False
    http_exporter = HttpExporter(
        endpoint=svc.otlp_http + "/v1/traces", certificate_file=str(tls_dir / "ca.pem"), session=session
    )
    emit(http_exporter, project, 3)
    svc.wait_for(f"SELECT count() FROM otel_traces WHERE Project = '{project}'", 10)


def test_plaintext_is_not_served(svc: TlsService) -> None:
    with pytest.raises((ConnectionError, OSError)):
        http("GET", f"http://127.0.0.1:{svc.ports['api']}/healthz", timeout=10)
    with (
        grpc.insecure_channel(f"127.0.0.1:{svc.ports['grpc']}") as channel,
        pytest.raises(grpc.RpcError) as refused,
    ):
        channel.unary_unary(EXPORT_METHOD)(b"", timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]


def _served(port: int, ca_file: Path) -> bytes:
    """The certificate a new TLS connection to `port` gets (offering h2 too, as a gRPC client does)."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_sighup_serves_the_new_certificate(svc: TlsService, ca: trustme.CA, tls_dir: Path) -> None:
    ports = [svc.ports[k] for k in ("grpc", "http", "api")]
    before = {_served(p, tls_dir / "ca.pem") for p in ports}
    assert len(before) == 1
    new = ca.issue_cert("localhost", "127.0.0.1")
    _write(new, tls_dir)
    assert svc.proc is not None
    svc.proc.send_signal(signal.SIGHUP)
    for port in ports:
        eventually(lambda port=port: _served(port, tls_dir / "ca.pem") == _der(new), timeout=30)  # type: ignore[misc]
    assert before != {_der(new)}
    assert svc.ready()  # still serving, over the new certificate
