"""Prometheus credentials and redaction (metrics/auth.py, metrics/prometheus.py, config/controller.py).

- URLs: ``user:password@`` is split off (percent-decoded) and never shown; known secrets are blanked;
- PrometheusSource over an httpx MockTransport: URL userinfo becomes an Authorization header and leaves
  ``base_url``; an error whose text carries the password is scrubbed; a 401 names how we authenticated;
- the bearer-token file: sent as a header, read again after ``token_refresh_s`` (an injected clock)
  and on a 401 (a rotated token: the request is sent once more), the old token kept while the file is gone;
- the config: one clear line naming the field for a missing, empty or malformed file, for two ways to
  authenticate, for tls on an http:// URL; the URL in a config error carries no password;
- ``controller --check`` reads the files and prints the URL without its userinfo.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from heteroscale.cli.live import main as live_main
from heteroscale.clock import ManualClock
from heteroscale.config.controller import load_controller_config, prometheus_credentials
from heteroscale.errors import ConfigError, MetricsUnavailable
from heteroscale.metrics.auth import BearerTokenFile, Credentials, TlsFiles, redact_url, scrub, split_userinfo
from heteroscale.metrics.prometheus import PrometheusSource
from heteroscale.metrics.promql import MetricMapping

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    ("url", "clean", "user", "password"),
    [
        ("http://p:9090", "http://p:9090", None, None),
        (f"https://bob:{SECRET}@p:9090/prom", "https://p:9090/prom", "bob", SECRET),
        ("http://bob%40corp:p%3Ass%40w@p:9090", "http://p:9090", "bob@corp", "p:ss@w"),
        ("http://bob@p:9090?x=1", "http://p:9090?x=1", "bob", None),
        ("http://bob:@p", "http://p", "bob", ""),
    ],
)
def test_split_userinfo(url: str, clean: str, user: str | None, password: str | None) -> None:
    assert split_userinfo(url) == (clean, user, password)
    assert redact_url(url) == clean


def test_scrub_blanks_known_secrets_only() -> None:
    text = f"failed for {SECRET} and {SECRET}x with abc"
    assert scrub(text, (SECRET, None, "abc")) == "failed for <redacted> and <redacted>x with abc"  # ≥ 4 chars


# --- PrometheusSource over a mock transport -------------------------------------------------------


def vector(value: str = "5") -> httpx.Response:
    return httpx.Response(
        200,
        json={"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, value]}]}},
    )


def source(url: str, handler: Any, credentials: Credentials | None = None, clock: Any = None) -> PrometheusSource:
    return PrometheusSource(
        url,
        MetricMapping(),
        timeout_s=0.5,
        clock=clock,
        credentials=credentials,
        transport=httpx.MockTransport(handler),
    )


def test_url_userinfo_becomes_basic_auth_and_leaves_the_url() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return vector()

    src = source(f"http://bob:{SECRET}@127.0.0.1:9", handler)
    assert src.base_url == "http://127.0.0.1:9" and SECRET not in repr(src.credentials)
    src.query("up", 1.0, "probe")
    expected = "Basic " + base64.b64encode(f"bob:{SECRET}".encode()).decode()
    assert seen[0].headers["Authorization"] == expected
    assert SECRET not in str(seen[0].url)


def test_an_error_text_carrying_the_password_is_scrubbed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"refused by proxy for http://bob:{SECRET}@127.0.0.1:9", request=request)

    with pytest.raises(MetricsUnavailable) as caught:
        source(f"http://bob:{SECRET}@127.0.0.1:9", handler).observe("chat", 1000.0, 60.0)
    message = str(caught.value)
    assert SECRET not in message and "<redacted>" in message and "prometheus http://127.0.0.1:9" in message


def test_unauthorised_names_how_we_authenticated_without_the_secret() -> None:
    with pytest.raises(MetricsUnavailable) as caught:
        source(f"http://bob:{SECRET}@127.0.0.1:9", lambda r: httpx.Response(401)).observe("chat", 1000.0, 60.0)
    message = str(caught.value)
    assert "HTTP 401 (refused with basic auth as bob" in message and SECRET not in message


def test_credentials_in_the_url_and_a_token_file_exclude_each_other(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t0ken-one\n")
    with pytest.raises(ValueError, match="exclude each other"):
        source("http://bob:pw@127.0.0.1:9", lambda r: vector(), Credentials(bearer_token_file=token))


# --- the bearer-token file --------------------------------------------------------------------------


class Rotating:
    """A server that accepts only ``accepted``; records the Authorization header of every request."""

    def __init__(self, accepted: str) -> None:
        self.accepted = accepted
        self.headers: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        got = request.headers.get("Authorization", "")
        self.headers.append(got)
        return vector() if got == f"Bearer {self.accepted}" else httpx.Response(401)


def test_a_rotated_token_is_read_again_on_401_and_the_request_sent_once_more(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t0ken-one\n")
    server = Rotating("t0ken-one")
    src = source("http://127.0.0.1:9", server, Credentials(bearer_token_file=token, token_refresh_s=3600.0))
    assert src.query("up", 1.0, "probe") == 5.0
    token.write_text("t0ken-two\n")
    server.accepted = "t0ken-two"
    assert src.query("up", 1.0, "probe") == 5.0
    assert server.headers == ["Bearer t0ken-one", "Bearer t0ken-one", "Bearer t0ken-two"]
    # refused with a token that did not change: no second try, a clear error without the token
    server.accepted = "t0ken-three"
    with pytest.raises(MetricsUnavailable, match=r"HTTP 401 \(refused with bearer token from") as caught:
        src.query("up", 1.0, "probe")
    assert "t0ken-two" not in str(caught.value) and server.headers[3:] == ["Bearer t0ken-two"]


def test_the_token_file_is_read_again_after_token_refresh_s(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t0ken-one")
    clock = ManualClock(100.0)
    auth = BearerTokenFile(token, refresh_s=60.0, clock=clock)
    server = Rotating("t0ken-one")
    client = httpx.Client(transport=httpx.MockTransport(server), auth=auth)
    token.write_text("t0ken-two")
    client.get("http://127.0.0.1:9/")
    clock.advance_to(159.0)
    client.get("http://127.0.0.1:9/")
    assert server.headers == ["Bearer t0ken-one", "Bearer t0ken-one"] and auth.reads == 1
    clock.advance_to(160.0)
    server.accepted = "t0ken-two"
    client.get("http://127.0.0.1:9/")
    assert server.headers[-1] == "Bearer t0ken-two" and auth.reads == 2
    token.unlink()  # mid-rotation: the old token is kept, not dropped
    clock.advance_to(300.0)
    client.get("http://127.0.0.1:9/")
    assert server.headers[-1] == "Bearer t0ken-two"


# --- the config ------------------------------------------------------------------------------------


def write_config(tmp_path: Path, prometheus: dict[str, Any]) -> Path:
    config = {
        "kind": "controller",
        "prometheus": prometheus,
        "services": [
            {
                "name": "chat",
                "model": "llama-3.1-8b",
                "roles": {
                    "prefill": {"shapes": [{"sku": "h100-sxm", "tp": 1}]},
                    "decode": {"shapes": [{"sku": "h20", "tp": 1}]},
                },
                "pd_ratio": 1.0,
                "slo": {"ttft_s": 2.0, "tbt_s": 0.1},
                "policy": {"name": "fixed", "prefill": 1, "decode": 1},
                "workload": {"image": "vllm/vllm-openai:v0.8.5"},
            }
        ],
    }
    path = tmp_path / "controller.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def credentials_of(tmp_path: Path, prometheus: dict[str, Any]) -> Credentials:
    config, doc = load_controller_config(write_config(tmp_path, prometheus))
    return prometheus_credentials(config.prometheus, doc)


def test_files_are_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(f"{SECRET}\n")
    creds = credentials_of(tmp_path, {"url": "http://p:9090", "basic_auth": {"username": "bob", "password_file": "pw"}})
    assert (creds.username, creds.password) == ("bob", SECRET) and SECRET not in repr(creds)
    creds = credentials_of(tmp_path, {"url": f"http://bob:{SECRET}@p:9090"})
    assert (creds.username, creds.password) == ("bob", SECRET)
    (tmp_path / "token").write_text("t0ken")
    creds = credentials_of(tmp_path, {"url": "http://p:9090", "bearer_token_file": "token"})
    assert creds.bearer_token_file == tmp_path / "token" and creds.tls == TlsFiles()


@pytest.mark.parametrize(
    ("prometheus", "files", "field", "problem"),
    [
        ({"bearer_token_file": "gone"}, {}, "prometheus.bearer_token_file", "no such file"),
        ({"bearer_token_file": "empty"}, {"empty": "\n"}, "prometheus.bearer_token_file", "the file is empty"),
        (
            {"basic_auth": {"username": "bob", "password_file": "gone"}},
            {},
            "prometheus.basic_auth.password_file",
            "no such file",
        ),
        (
            {"url": "https://p", "tls": {"ca_file": "ca.pem"}},
            {"ca.pem": "not a cert\n"},
            "prometheus.tls.ca_file",
            "not a PEM",
        ),
        ({"url": "https://p", "tls": {"ca_file": "gone.pem"}}, {}, "prometheus.tls.ca_file", "no such file"),
        (
            {"url": "https://p", "tls": {"cert_file": "c.pem", "key_file": "k.pem"}},
            {"c.pem": "junk\n", "k.pem": "junk\n"},
            "prometheus.tls.cert_file",
            "not a PEM certificate and key",
        ),
    ],
)
def test_a_bad_file_is_one_line_naming_the_field(
    tmp_path: Path, prometheus: dict[str, Any], files: dict[str, str], field: str, problem: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as caught:
        credentials_of(tmp_path, {"url": "http://p:9090", **prometheus})
    message = str(caught.value)
    assert "\n" not in message and "controller.yaml" in message and field in message and problem in message


@pytest.mark.parametrize(
    ("prometheus", "problem"),
    [
        ({"url": f"ftp://bob:{SECRET}@p"}, "must start with http:// or https:// (got 'ftp://p')"),
        ({"url": f"http://bob:{SECRET}@p", "bearer_token_file": "t"}, "exclude each other"),
        (
            {"url": "http://p", "bearer_token_file": "t", "basic_auth": {"username": "a", "password_file": "p"}},
            "exclude",
        ),
        ({"url": "http://p", "tls": {"ca_file": "ca.pem"}}, "tls applies to an https:// url only"),
        ({"url": "https://p", "tls": {"key_file": "k.pem"}}, "key_file needs cert_file"),
    ],
)
def test_config_errors_are_clear_and_carry_no_secret(tmp_path: Path, prometheus: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_controller_config(write_config(tmp_path, prometheus))
    assert problem in str(caught.value) and SECRET not in str(caught.value)


def test_check_reads_the_files_and_shows_the_url_without_userinfo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, {"url": f"http://bob:{SECRET}@127.0.0.1:9090"})
    assert live_main(["controller", "--config", str(config), "--check"]) == 0
    out, err = capsys.readouterr()
    assert "prometheus http://127.0.0.1:9090 (basic auth as bob)" in out and SECRET not in out + err
    config = write_config(tmp_path, {"url": "http://127.0.0.1:9090", "bearer_token_file": "missing-token"})
    assert live_main(["controller", "--config", str(config), "--check"]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "prometheus.bearer_token_file" in lines[0] and "no such file" in lines[0]
