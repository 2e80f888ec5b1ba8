"""A certificate authority made for one test run with the real ``openssl`` command.

Tests of the HTTPS port and of Kafka over TLS use real PEM files, signed by a CA that
exists only for the run, so nothing trusts them by accident::

    ca = CertificateAuthority(tmp_path / "ca")
    cert, key = ca.issue("worker", hosts=("127.0.0.1", "localhost"))
    curl --cacert ca.cert_path ...

``openssl`` is part of every Debian base image; a missing one fails the test.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

__all__ = ["CertificateAuthority"]


def _openssl(*args: str | Path, cwd: Path) -> None:
    exe = shutil.which("openssl")
    assert exe, "openssl is not installed (Debian package openssl)"
    done = subprocess.run([exe, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, f"openssl {' '.join(map(str, args))}:\n{done.stderr}"


class CertificateAuthority:
    """A CA (RSA 2048, valid 2 days) in ``directory``: ``ca.pem`` and ``ca.key``."""

    def __init__(self, directory: Path, name: str = "autopilot test CA") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.cert_path = directory / "ca.pem"
        self.key_path = directory / "ca.key"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-subj", f"/CN={name} {time.time_ns()}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-keyout", self.key_path, "-out", self.cert_path, cwd=directory)

    def issue(self, name: str, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
              usages: str = "serverAuth,clientAuth") -> tuple[Path, Path]:
        """A certificate for ``hosts`` (IP or DNS subject alternative names) with the
        extended key ``usages``; returns ``(cert.pem, key.pem)`` paths."""
        cert, key, csr, ext = (self.directory / f"{name}.{s}"
                               for s in ("pem", "key", "csr", "ext"))
        sans = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() else f"DNS:{h}"
                        for h in hosts)
        lines = [f"extendedKeyUsage={usages}"] + ([f"subjectAltName={sans}"] if sans else [])
        ext.write_text("\n".join(lines) + "\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", key, "-out", csr, cwd=self.directory)
        _openssl("x509", "-req", "-in", csr, "-CA", self.cert_path, "-CAkey", self.key_path,
                 "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", cert,
                 cwd=self.directory)
        return cert, key
