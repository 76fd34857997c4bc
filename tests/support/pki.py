"""Test certificates for the external metrics API: a serving CA and server certificate, the
kube-apiserver's front-proxy CA and client certificates (allowed, wrong name, rogue CA).

Shared by tests/operator_hpa (the server alone) and tests/operator (the server the operator starts).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def write(self, directory: Path, stem: str) -> tuple[str, str]:
        (directory / f"{stem}.crt").write_bytes(self.cert_pem)
        (directory / f"{stem}.key").write_bytes(self.key_pem)
        return str(directory / f"{stem}.crt"), str(directory / f"{stem}.key")


def issue(cn: str, issuer: Issued | None = None, *, ca: bool = False, server: bool = False) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    cert = builder.sign(issuer.key if issuer else key, hashes.SHA256())
    return Issued(cert, key)


@dataclass
class Pki:
    dir: Path
    serving_ca: Issued
    front_proxy_ca: Issued
    server: Issued
    proxy_client: Issued
    wrong_name_client: Issued
    rogue_client: Issued


@contextlib.contextmanager
def make_pki() -> Iterator[Pki]:
    serving_ca = issue("jobqueue-metrics-api-ca", ca=True)
    front_proxy_ca = issue("front-proxy-ca", ca=True)
    rogue_ca = issue("front-proxy-ca", ca=True)  # same name, other key
    # Our own directory: pytest's shared basetemp may be pruned by concurrent runs on this machine.
    with tempfile.TemporaryDirectory(prefix="jobqueue-pki-") as tmp:
        yield Pki(
            dir=Path(tmp),
            serving_ca=serving_ca,
            front_proxy_ca=front_proxy_ca,
            server=issue("jq-jobqueue-metrics-api.jobqueue-system.svc", serving_ca, server=True),
            proxy_client=issue("front-proxy-client", front_proxy_ca),
            wrong_name_client=issue("mallory", front_proxy_ca),
            rogue_client=issue("front-proxy-client", rogue_ca),
        )


def client_ssl(pki: Pki, client: Issued | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=pki.serving_ca.cert_pem.decode())
    if client is not None:
        ctx.load_cert_chain(*client.write(pki.dir, f"client-{client.cert.serial_number}"))
    return ctx
