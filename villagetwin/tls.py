"""The broker's TLS certificate for local use, made with the ``openssl`` command line.

``openssl`` rather than the ``cryptography`` package: it is already on every Debian machine
(Mosquitto links against it), a certificate is one command, and it adds no Python dependency
for a file made once per machine. Production puts a real certificate in its place
(docs/security.md): the broker reads whatever ``server.crt``/``server.key`` hold.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


class CertificateError(RuntimeError):
    pass


def ensure_local_certificate(
    directory: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1"), days: int = 825
) -> tuple[Path, Path]:
    """A self-signed server certificate (ECDSA P-256) for ``hosts``, made once; returns
    ``(certificate, key)``. Clients trust it with ``--cafile <certificate>``; the key is
    readable by its owner only. Raises ``CertificateError`` when openssl is missing or fails."""
    cert, key = directory / "server.crt", directory / "server.key"
    if cert.exists() and key.exists():
        return cert, key
    if not shutil.which("openssl"):
        raise CertificateError("openssl is not installed; run scripts/install-system.sh")
    directory.mkdir(parents=True, exist_ok=True)
    names = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() else f"DNS:{h}" for h in hosts)
    command = [
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", str(days),
        "-subj", f"/CN={hosts[0]}/O=villagetwin local broker",
        "-addext", f"subjectAltName={names}",
        "-addext", "basicConstraints=critical,CA:TRUE",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise CertificateError(f"openssl could not make the certificate: {result.stderr.strip()}")
    os.chmod(key, 0o600)
    return cert, key
