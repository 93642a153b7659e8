"""Test certificates made with the openssl command line, and a Prometheus web config that uses them.

``make_pki(dir)`` writes a CA, a server certificate for 127.0.0.1 signed by it, a client certificate
signed by it, and a second, unrelated CA (the "wrong" one), all P-256 keys valid for two days.
``web_config(...)`` writes a ``--web.config.file`` with ``tls_server_config`` (optionally requiring a
client certificate) and ``basic_auth_users`` with a bcrypt hash (Python's ``crypt`` module and the
system's libcrypt make it; None when either is missing, and the caller skips basic auth).
Every command is bounded by a time-out.
"""

from __future__ import annotations

import shutil
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

OPENSSL_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    wrong_ca: Path


def openssl_binary() -> str | None:
    return shutil.which("openssl")


def _run(*args: str, cwd: Path) -> None:
    binary = openssl_binary()
    if binary is None:
        raise RuntimeError("openssl is not on PATH")
    subprocess.run(
        [binary, *args], cwd=cwd, check=True, capture_output=True, timeout=OPENSSL_TIMEOUT_S, stdin=subprocess.DEVNULL
    )


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    _run(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN=heteroscale test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
        cwd=directory,
    )  # fmt: skip
    return key, cert


def _leaf(directory: Path, name: str, ca_key: Path, ca_cert: Path, usage: str) -> tuple[Path, Path]:
    key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.crt"
    ext = directory / f"{name}.ext"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        f"extendedKeyUsage={usage}\n"
        "subjectAltName=IP:127.0.0.1\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n",
        encoding="utf-8",
    )
    _run(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}",
        cwd=directory,
    )  # fmt: skip
    _run(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", "2", "-extfile", str(ext),
        cwd=directory,
    )  # fmt: skip
    return key, cert


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = _ca(directory, "ca")
    server_key, server_cert = _leaf(directory, "server", ca_key, ca, "serverAuth")
    client_key, client_cert = _leaf(directory, "client", ca_key, ca, "clientAuth")
    _, wrong_ca = _ca(directory, "wrong-ca")
    return Pki(ca, server_cert, server_key, client_cert, client_key, wrong_ca)


def bcrypt_hash(password: str) -> str | None:
    """A bcrypt hash of ``password`` (cost 4: a test) or None where this Python or libc cannot make one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
        except ImportError:
            return None
    try:
        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    except (ValueError, OSError):
        return None
    return hashed if hashed and hashed.startswith("$2") else None


def web_config(
    path: Path,
    pki: Pki | None,
    *,
    require_client_cert: bool = False,
    users: dict[str, str] | None = None,
) -> Path:
    """Write a Prometheus ``--web.config.file``: TLS with ``pki`` (if given), basic auth for ``users``
    (name → bcrypt hash)."""
    lines: list[str] = []
    if pki is not None:
        lines += ["tls_server_config:", f"  cert_file: {pki.server_cert}", f"  key_file: {pki.server_key}"]
        if require_client_cert:
            lines += ["  client_auth_type: RequireAndVerifyClientCert", f"  client_ca_file: {pki.ca}"]
    if users:
        lines.append("basic_auth_users:")
        lines += [f"  {name}: '{hashed}'" for name, hashed in users.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
