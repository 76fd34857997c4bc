"""A private redis-server that speaks only TLS and only to an ACL user, with a CA made on the spot.

For the security tests: ``TLSRedis(tmp_dir).start()`` generates a self-signed CA, a server
certificate for 127.0.0.1/localhost signed by it, and a second, unrelated CA (``rogue_ca``) whose
trust must not be enough; starts redis-server with the plain port disabled, the default user
off, and one user limited to jobqueue's keys and channels. Loopback only; stopped by ``stop()``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from redis_server import free_port

USER = "jobqueue-app"
#: What the application user may do: jobqueue's keys and channels, no admin or dangerous commands.
ACL_RULES = "on ~jobqueue:* &jobqueue:* +@all -@dangerous"


@dataclass(frozen=True)
class Pem:
    cert: Path
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Pem:
    path.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = path / "cert.pem", path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return Pem(cert_path, key_path)


def make_ca(path: Path, cn: str) -> tuple[Pem, x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _write(path, cert, key), cert, key


def make_server_cert(path: Path, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey) -> Pem:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("jobqueue test redis"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return _write(path, cert, key)


class TLSRedis:
    def __init__(self, workdir: Path, password: str | None = None) -> None:
        self.dir = workdir
        self.port = free_port()
        self.user = USER
        self.password = password or f"pw-{secrets.token_urlsafe(18)}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ca, ca_cert, ca_key = make_ca(workdir / "ca", "jobqueue test CA")
        self.rogue_ca, _, _ = make_ca(workdir / "rogue-ca", "some other CA")
        self.server = make_server_cert(workdir / "server", ca_cert, ca_key)

    @property
    def url(self) -> str:
        """rediss:// URL with the user and password (for tests; never log it)."""
        return f"rediss://{self.user}:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> TLSRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found on PATH (Debian: apt-get install redis-server)")
        args = [
            binary,
            "--port", "0",
            "--tls-port", str(self.port),
            "--bind", "127.0.0.1",
            "--tls-cert-file", str(self.server.cert),
            "--tls-key-file", str(self.server.key),
            "--tls-ca-cert-file", str(self.ca.cert),
            "--tls-auth-clients", "no",
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "no",
            "--logfile", str(self.dir / "redis.log"),
            "--user", "default", "off",
            "--user", self.user, *ACL_RULES.split(), f">{self.password}",
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.dir / "redis.log").read_text() if (self.dir / "redis.log").exists() else ""
                raise RuntimeError(f"TLS redis-server exited at start: {log[-2000:]}")
            if self._ping():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"TLS redis-server did not answer on port {self.port} within {timeout_s}s")

    def _ping(self) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.ca.cert))
        try:
            with (
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw,
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s,
            ):
                s.sendall(f"AUTH {self.user} {self.password}\r\nPING\r\n".encode())
                got = b""
                while got.count(b"\r\n") < 2:
                    chunk = s.recv(256)
                    if not chunk:
                        return False
                    got += chunk
                return got == b"+OK\r\n+PONG\r\n"
        except (OSError, ssl.SSLError):
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
