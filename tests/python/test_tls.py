"""TLS and mutual TLS on both faces, with a CA made in the test: ADBC over grpc+tls, the HTTP
API over https, and clients without the CA or without a client certificate refused."""

import datetime
import ipaddress
import ssl
import urllib.request

import adbc_driver_manager
import pytest
from adbc_driver_flightsql import dbapi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import Server


def _name(common):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _certificate(subject, issuer, public_key, signing_key, ca=False, server=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    return builder.sign(signing_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    out = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Test CA", "Test CA", ca_key.public_key(), ca_key, ca=True)
    files = {"ca.pem": ca.public_bytes(serialization.Encoding.PEM)}
    for who, server in [("server", True), ("client", False)]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(who, "Test CA", key.public_key(), ca_key, server=server)
        files[f"{who}.pem"] = cert.public_bytes(serialization.Encoding.PEM)
        files[f"{who}-key.pem"] = _pem(key)
    for name, data in files.items():
        (out / name).write_bytes(data)
    return out


def tls_uri(srv):
    return f"grpc+tls://{srv.address}"


def tls_server(tmp_path, pki, mutual=False):
    args = ["--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server-key.pem")]
    if mutual:
        args += ["--tls-client-ca", str(pki / "ca.pem")]
    return Server(tmp_path / "data", args=args).start()


def health(srv, context):
    """GET /health over HTTPS with this TLS context."""
    host, port = srv.http_address.rsplit(":", 1)
    with urllib.request.urlopen(f"https://{host}:{port}/health", context=context, timeout=30) as r:
        return r.read()


def query(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def test_tls_on_flight_sql_and_http(tmp_path, pki):
    srv = tls_server(tmp_path, pki)
    try:
        ca = (pki / "ca.pem").read_text()
        conn = dbapi.connect(tls_uri(srv), db_kwargs={"adbc.flight.sql.client_option.tls_root_certs": ca},
                             autocommit=True)
        assert query(conn, "SELECT 40 + 2") == [(42,)]
        conn.close()
        # A client that does not trust the CA is refused at the handshake.
        with pytest.raises(adbc_driver_manager.Error):
            query(dbapi.connect(tls_uri(srv), autocommit=True), "SELECT 1")
        # Plain text is not answered.
        with pytest.raises(adbc_driver_manager.Error):
            query(dbapi.connect(srv.uri, autocommit=True), "SELECT 1")
        context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        assert health(srv, context) == b"ok"
    finally:
        srv.stop()


def test_mutual_tls_needs_a_client_certificate(tmp_path, pki):
    srv = tls_server(tmp_path, pki, mutual=True)
    try:
        ca = (pki / "ca.pem").read_text()
        with pytest.raises(adbc_driver_manager.Error):
            query(dbapi.connect(tls_uri(srv), db_kwargs={"adbc.flight.sql.client_option.tls_root_certs": ca},
                                autocommit=True), "SELECT 1")
        conn = dbapi.connect(tls_uri(srv), autocommit=True, db_kwargs={
            "adbc.flight.sql.client_option.tls_root_certs": ca,
            "adbc.flight.sql.client_option.mtls_cert_chain": (pki / "client.pem").read_text(),
            "adbc.flight.sql.client_option.mtls_private_key": (pki / "client-key.pem").read_text(),
        })
        assert query(conn, "SELECT 7") == [(7,)]
        conn.close()
        context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        with pytest.raises(Exception):
            health(srv, context)
        context.load_cert_chain(str(pki / "client.pem"), str(pki / "client-key.pem"))
        assert health(srv, context) == b"ok"
    finally:
        srv.stop()


def test_bad_tls_files_fail_the_start(tmp_path, pki):
    srv = Server(tmp_path / "data", args=["--tls-cert", str(pki / "ca.pem"),
                                          "--tls-key", str(tmp_path / "missing.pem")])
    with pytest.raises(RuntimeError):
        srv.start()


def test_tributary_sql_connects_with_the_ca(tmp_path, pki):
    import subprocess
    from conftest import BINARY
    srv = tls_server(tmp_path, pki)
    try:
        result = subprocess.run([BINARY, "sql", "--server", srv.address, "--tls-ca", str(pki / "ca.pem"),
                                 "-c", "SELECT 6 * 7 AS answer"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "42" in result.stdout
    finally:
        srv.stop()
