"""The listeners' TLS material (`connectors/tls.py`): checked at start, reloaded in place, mutual TLS; every
handshake here runs in memory (no sockets) against a throwaway trustme CA."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from connectors.tls import ServerTls
from dataflow.config import TlsConfig, load_settings
from dataflow.errors import ConfigError
from tracejudge.cli import main


def _files(directory: Path, cert: trustme.LeafCert) -> TlsConfig:
    cert.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    cert.private_key_pem.write_to_path(str(directory / "key.pem"))
    return TlsConfig(cert_file=directory / "cert.pem", key_file=directory / "key.pem")


def _der(cert: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> bytes:
    """The certificate the server presented; raises the SSLError either side saw."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    done = {"server": False, "client": False}
    for _ in range(20):
        for name, end in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            client.write(b"x")  # TLS 1.3 reports a refused client certificate only after the handshake
            s_in.write(c_out.read())
            server.read(1)
            der = client.getpeercert(binary_form=True)
            assert der is not None
            return der
    raise AssertionError("handshake did not finish")


def _client(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def test_reload_serves_the_new_certificate_and_keeps_the_old_on_a_bad_set(tmp_path: Path) -> None:
    ca = trustme.CA()
    first = ca.issue_cert("localhost")
    tls = ServerTls(_files(tmp_path, first))
    assert _handshake(tls.context, _client(ca)) == _der(first)
    second = ca.issue_cert("localhost")
    _files(tmp_path, second)
    assert tls.reload()
    assert _handshake(tls.context, _client(ca)) == _der(second)
    ca.issue_cert("localhost").private_key_pem.write_to_path(str(tmp_path / "key.pem"))  # not cert.pem's key
    assert not tls.reload()
    assert _handshake(tls.context, _client(ca)) == _der(second)


def test_the_grpc_fetcher_hands_over_a_reload_once(tmp_path: Path) -> None:
    ca = trustme.CA()
    tls = ServerTls(_files(tmp_path, ca.issue_cert("localhost")))
    assert tls._fetch() is None
    tls.reload()
    assert tls._fetch() is not None
    assert tls._fetch() is None


@pytest.mark.parametrize("broken", ["missing", "mismatched"])
def test_bad_files_fail_at_start(tmp_path: Path, broken: str) -> None:
    ca = trustme.CA()
    config = _files(tmp_path, ca.issue_cert("localhost"))
    if broken == "missing":
        (tmp_path / "key.pem").unlink()
    else:
        ca.issue_cert("localhost").private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    with pytest.raises(ConfigError, match="tls: cannot load"):
        ServerTls(config)


def test_mutual_tls_refuses_a_client_without_a_certificate(tmp_path: Path) -> None:
    ca, client_ca = trustme.CA(), trustme.CA()
    client_ca.cert_pem.write_to_path(str(tmp_path / "clients.pem"))
    config = _files(tmp_path, ca.issue_cert("localhost")).model_copy(
        update={"client_ca_file": tmp_path / "clients.pem"}
    )
    tls = ServerTls(config)
    with pytest.raises(ssl.SSLError):
        _handshake(tls.context, _client(ca))
    with_cert = _client(ca)
    client_ca.issue_cert("client@example.com").configure_cert(with_cert)
    assert _handshake(tls.context, with_cert)


def test_the_config_names_the_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tls.cert_file and tls.key_file go together"):
        load_settings(tls={"cert_file": str(tmp_path / "c.pem")})
    with pytest.raises(ConfigError, match=r"tls.client_ca_file needs"):
        load_settings(tls={"client_ca_file": str(tmp_path / "ca.pem")})
    assert not load_settings().tls.enabled


def test_config_check_loads_the_tls_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca = trustme.CA()
    _files(tmp_path, ca.issue_cert("localhost"))
    config = tmp_path / "tj.yaml"
    config.write_text(f"tls:\n  cert_file: {tmp_path / 'cert.pem'}\n  key_file: {tmp_path / 'key.pem'}\n")
    assert main(["config", "check", "--config", str(config)]) == 0
    assert f"tls            {tmp_path / 'cert.pem'}" in capsys.readouterr().out
    ca.issue_cert("localhost").private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    assert main(["config", "check", "--config", str(config)]) == 1
    assert "tls: cannot load" in capsys.readouterr().err
