"""Prometheus over HTTPS with client certificates and basic auth, and no secret in any output.

A real Prometheus serves ``--web.config.file`` with ``tls_server_config`` (a server certificate for
127.0.0.1 from a CA made in the test with the openssl command line; client certificates required) and
``basic_auth_users`` (a bcrypt hash made with Python's ``crypt`` module; where that is unavailable the
test is skipped, and the unit tests still cover basic auth against a mock transport).

- PrometheusSource: verification is on by default (the system CAs do not know the test CA: a clear
  error naming ``prometheus.tls.ca_file``), the CA bundle makes it pass, a wrong CA fails the same way,
  ``insecure_skip_verify`` passes without one, no client certificate fails the handshake, a wrong
  password is an HTTP 401 naming how we authenticated, ``user:password@`` in the URL works as basic auth;
- the live controller with ``user:password@`` in its URL: the decisions observe, and neither the
  journal, nor the log, nor stdout, nor ``--check`` ever shows the password — also when it is wrong
  (401) and when the server cannot be reached.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from heteroscale.clock import WallClock
from heteroscale.errors import MetricsUnavailable
from heteroscale.metrics.auth import Credentials, TlsFiles, ssl_context
from heteroscale.metrics.prometheus import PrometheusSource
from heteroscale.metrics.promql import MetricMapping
from tests.support.engine_exporter import EngineExporter
from tests.support.kube_fake import KubeFakeServer
from tests.support.live_env import controller_config, journal_records, run_controller
from tests.support.prometheus_server import PrometheusServer, free_port, prometheus_binary
from tests.support.tls import Pki, bcrypt_hash, make_pki, openssl_binary, web_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLOCK = WallClock()
USER = "alice"
PASSWORD = "Sup3r-s3cret-pw"
WRONG = "Wr0ng-s3cret-pw"
GEN = 'rate({__name__="vllm:generation_tokens_total"}[5s])'


@dataclass
class Secured:
    pki: Pki
    prometheus: PrometheusServer

    def tls(self, ca: Path | None = None, client: bool = True, skip_verify: bool = False) -> TlsFiles:
        cert, key = (self.pki.client_cert, self.pki.client_key) if client else (None, None)
        return TlsFiles(ca, cert, key, skip_verify)


@pytest.fixture
def secured(tmp_path: Path, exporter: EngineExporter) -> Iterator[Secured]:
    if prometheus_binary() is None or openssl_binary() is None:
        pytest.skip("prometheus or openssl not on PATH")
    hashed = bcrypt_hash(PASSWORD)
    if hashed is None:
        pytest.skip("no bcrypt in this Python/libc: basic auth is covered by the unit tests only")
    pki = make_pki(tmp_path / "pki")
    config = web_config(tmp_path / "web.yml", pki, require_client_cert=True, users={USER: hashed})
    probe = {"verify": ssl_context(TlsFiles(pki.ca, pki.client_cert, pki.client_key)), "auth": (USER, PASSWORD)}
    server = PrometheusServer(
        tmp_path / "prometheus", [f"127.0.0.1:{exporter.port}"], web_config=config, tls=True, client=probe
    ).start()
    try:
        yield Secured(pki, server)
    finally:
        server.stop()


def observe(url: str, credentials: Credentials) -> str:
    """``ok`` or the MetricsUnavailable text of one observation."""
    source = PrometheusSource(url, MetricMapping(), timeout_s=2.0, clock=CLOCK, credentials=credentials)
    try:
        source.observe("chat", CLOCK.now_s(), 5.0)
    except MetricsUnavailable as exc:
        return str(exc)
    finally:
        source.close()
    return "ok"


def test_tls_verification_client_certificates_and_basic_auth(secured: Secured) -> None:
    url, pki = secured.prometheus.url, secured.pki
    assert url.startswith("https://127.0.0.1:")
    good = Credentials(username=USER, password=PASSWORD, tls=secured.tls(pki.ca))
    assert observe(url, good) == "ok"
    for tls in (secured.tls(None), secured.tls(pki.wrong_ca)):  # verification on by default; a wrong CA
        error = observe(url, Credentials(username=USER, password=PASSWORD, tls=tls))
        assert "TLS verification failed" in error and "prometheus.tls.ca_file" in error, error
    assert observe(url, Credentials(username=USER, password=PASSWORD, tls=secured.tls(skip_verify=True))) == "ok"
    error = observe(url, Credentials(username=USER, password=PASSWORD, tls=secured.tls(pki.ca, client=False)))
    assert "TLS handshake failed" in error and "prometheus.tls.cert_file" in error, error
    error = observe(url, Credentials(username=USER, password=WRONG, tls=secured.tls(pki.ca)))
    assert f"HTTP 401 (refused with basic auth as {USER}" in error and WRONG not in error, error
    with_userinfo = url.replace("https://", f"https://{USER}:{PASSWORD}@")
    assert observe(with_userinfo, Credentials(tls=secured.tls(pki.ca))) == "ok"


def live_config(tmp_path: Path, url: str, kube: KubeFakeServer, pki: Pki, journal: str) -> Path:
    path = controller_config(tmp_path, url, kube.url, identity="ctl-a", journal=journal, name=f"{journal}.yaml")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["prometheus"]["tls"] = {
        "ca_file": str(pki.ca),
        "cert_file": str(pki.client_cert),
        "key_file": str(pki.client_key),
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_no_output_of_a_live_run_shows_the_password(tmp_path: Path, kube: KubeFakeServer, secured: Secured) -> None:
    port = secured.prometheus.port
    outputs: list[str] = []
    runs = {
        "right": f"https://{USER}:{PASSWORD}@127.0.0.1:{port}",
        "wrong": f"https://{USER}:{WRONG}@127.0.0.1:{port}",
        "down": f"https://{USER}:{PASSWORD}@127.0.0.1:{free_port()}",
    }
    journals: dict[str, list[dict[str, object]]] = {}
    for name, url in runs.items():
        config = live_config(tmp_path, url, kube, secured.pki, f"{name}.jsonl")
        check = run_controller(config, "--check")
        assert check.returncode == 0 and "prometheus https://127.0.0.1:" in check.stdout, check.stderr
        result = run_controller(config, "--cycles", "2")
        assert result.returncode == 0, result.stderr[-3000:]
        outputs += [check.stdout, check.stderr, result.stdout, result.stderr]
        outputs.append((tmp_path / f"{name}.jsonl").read_text(encoding="utf-8"))
        journals[name] = journal_records(tmp_path / f"{name}.jsonl")
    assert all(len(records) == 2 for records in journals.values())
    assert all("error" not in r["observation"] for r in journals["right"])  # the userinfo authenticated
    assert all("HTTP 401" in str(r["observation"]["error"]) for r in journals["wrong"])
    assert all("cannot reach the server" in str(r["observation"]["error"]) for r in journals["down"])
    text = "\n".join(outputs)
    assert f"https://127.0.0.1:{port}" in text  # the server is named …
    assert PASSWORD not in text and WRONG not in text  # … never with its password
