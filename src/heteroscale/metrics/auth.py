"""Credentials and TLS for the Prometheus HTTP API, and keeping secrets out of every message.

* :class:`Credentials` — what the client presents: a bearer token read from a file (a Kubernetes
  service-account token rotates, so the file is read again every ``token_refresh_s`` and on a 401),
  or basic auth (a username and a password read once at start-up), plus :class:`TlsFiles`: a CA bundle
  that verifies the server, a client certificate and key, and ``insecure_skip_verify`` (off by default).
* :func:`split_userinfo` moves ``user:password@`` out of a URL: the password then travels only in the
  Authorization header, never in a URL that errors, logs or journal records would repeat;
  :func:`redact_url` is the URL as it may be shown; :func:`scrub` blanks known secrets in a text.

A file that is missing, unreadable, empty or not PEM raises :class:`CredentialError` naming the
field (``bearer_token_file``, ``tls.ca_file`` …); the config layer turns it into one line that also
names the config file.
"""

from __future__ import annotations

import ssl
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from heteroscale.clock import Clock, WallClock
from heteroscale.errors import ConfigError

REDACTED = "<redacted>"


class CredentialError(ConfigError):
    """A credential or TLS file cannot be used; ``field`` names its config field."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"{field_name}: {problem}")
        self.field = field_name
        self.problem = problem


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca_file: Path | None = None  # PEM bundle of the CAs that may sign the server's certificate
    cert_file: Path | None = None  # client certificate (PEM; may also hold the key)
    key_file: Path | None = None
    insecure_skip_verify: bool = False  # accept any server certificate (tests, never production)


@dataclass(frozen=True, slots=True)
class Credentials:
    bearer_token_file: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # read from password_file or the URL's userinfo
    token_refresh_s: float = 60.0
    tls: TlsFiles = field(default_factory=TlsFiles)

    def __post_init__(self) -> None:
        if self.bearer_token_file is not None and self.username is not None:
            raise ValueError("a bearer token and basic auth exclude each other")
        if not self.token_refresh_s > 0:
            raise ValueError(f"token_refresh_s must be > 0, got {self.token_refresh_s}")

    def describe(self) -> str:
        """How the client authenticates, without a secret (for ``--check`` and logs)."""
        parts = []
        if self.bearer_token_file is not None:
            parts.append(f"bearer token from {self.bearer_token_file}")
        elif self.username is not None:
            parts.append(f"basic auth as {self.username}")
        else:
            parts.append("no authentication")
        t = self.tls
        if t.insecure_skip_verify:
            parts.append("TLS verification OFF")
        elif t.ca_file is not None:
            parts.append(f"CA bundle {t.ca_file}")
        if t.cert_file is not None:
            parts.append(f"client certificate {t.cert_file}")
        return ", ".join(parts)


# --- URLs and messages ------------------------------------------------------------------------------


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """``(url without userinfo, username, password)``; the names are percent-decoded."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, sep, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return clean, unquote(user) or None, unquote(password) if sep else None


def redact_url(url: str) -> str:
    """The URL as it may be shown: without ``user:password@``."""
    return split_userinfo(url)[0]


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every known secret (of 4 characters or more) replaced by ``<redacted>``."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


# --- files ------------------------------------------------------------------------------------------


def read_secret(path: Path, field_name: str) -> str:
    """The stripped text of a secret file; missing, unreadable or empty → :class:`CredentialError`."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError as exc:
        raise CredentialError(field_name, f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialError(field_name, f"{path}: cannot read ({type(exc).__name__}: {exc.args[-1]})") from exc
    if not text:
        raise CredentialError(field_name, f"{path}: the file is empty")
    return text


def ssl_context(tls: TlsFiles) -> ssl.SSLContext:
    """The client's TLS context: the system CAs (or ``ca_file``), the client certificate if given,
    hostname and chain verification on unless ``insecure_skip_verify``."""
    for name, path in (("tls.ca_file", tls.ca_file), ("tls.cert_file", tls.cert_file), ("tls.key_file", tls.key_file)):
        if path is not None:
            read_secret(path, name)  # one clear line for a missing, unreadable or empty file
    try:
        context = ssl.create_default_context(cafile=None if tls.ca_file is None else str(tls.ca_file))
    except ssl.SSLError as exc:
        raise CredentialError("tls.ca_file", f"{tls.ca_file}: not a PEM CA bundle ({exc.reason or exc})") from exc
    if tls.cert_file is not None:
        try:
            context.load_cert_chain(str(tls.cert_file), None if tls.key_file is None else str(tls.key_file))
        except ssl.SSLError as exc:
            where = f"{tls.cert_file}" + ("" if tls.key_file is None else f" with {tls.key_file}")
            problem = f"{where}: not a PEM certificate and key ({exc.reason or exc})"
            raise CredentialError("tls.cert_file", problem) from exc
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class BearerTokenFile(httpx.Auth):
    """``Authorization: Bearer <token>`` from a file, read again every ``refresh_s`` and after a 401
    (a rotated token); a request refused with a token that changed meanwhile is sent once more."""

    def __init__(self, path: Path, refresh_s: float, clock: Clock | None = None) -> None:
        self.path = path
        self.refresh_s = refresh_s
        self.clock: Clock = clock if clock is not None else WallClock()
        self.token = read_secret(path, "bearer_token_file")
        self.read_at_s = self.clock.now_s()
        self.reads = 1

    def _reload(self) -> bool:
        """Read the file again; True when the token changed. A file gone for now keeps the old token."""
        self.read_at_s = self.clock.now_s()
        try:
            fresh = read_secret(self.path, "bearer_token_file")
        except CredentialError:
            return False
        self.reads += 1
        changed = fresh != self.token
        self.token = fresh
        return changed

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.clock.now_s() - self.read_at_s >= self.refresh_s:
            self._reload()
        request.headers["Authorization"] = f"Bearer {self.token}"
        response = yield request
        if response.status_code == 401 and self._reload():
            request.headers["Authorization"] = f"Bearer {self.token}"
            yield request

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.token,)


def client_auth(credentials: Credentials, clock: Clock | None = None) -> BearerTokenFile | httpx.BasicAuth | None:
    """The httpx auth for ``credentials`` (the token file is read here: a bad one raises now)."""
    if credentials.bearer_token_file is not None:
        return BearerTokenFile(credentials.bearer_token_file, credentials.token_refresh_s, clock)
    if credentials.username is not None:
        return httpx.BasicAuth(credentials.username, credentials.password or "")
    return None
