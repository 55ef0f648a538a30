"""``tqd serve`` as a real process: the loopback rule, TLS, tokens end to end,
and no token in any log line."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.daemon import ROOT, Daemon, tqd_env
from tests.helpers.tls import self_signed
from tqd.config import load_config
from tqd.exposure import tls_context
from tqd.tokens import hash_token

from .conftest import TOKENS, token_config


def run_tqd(*args: str, stdin: str = "", env: dict[str, str] | None = None,
            timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tqd", *args], input=stdin, capture_output=True,
                          text=True, env=tqd_env(env), cwd=ROOT, timeout=timeout)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def tokens_toml(*scopes: str) -> str:
    return "".join(
        f'[[tokens]]\nname = "{t["name"]}"\nhash = "{t["hash"]}"\nscope = "{t["scope"]}"\n\n'
        for t in token_config(*scopes)
    )


def get(url: str, token: str | None = None, context: ssl.SSLContext | None = None,
        method: str = "GET") -> tuple[int, dict]:
    req = urllib.request.Request(url, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_non_loopback_without_tokens_is_refused(tmp_path: Path) -> None:
    out = run_tqd("serve", "--listen", "0.0.0.0:0", "--storage", f"sqlite://{tmp_path}/t.db")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "0.0.0.0:0 is not a loopback address and no [[tokens]] are configured" in lines[0]
    assert "--insecure-no-auth" in lines[0]
    assert not (tmp_path / "t.db").exists()  # refused before anything opened


def test_insecure_no_auth_and_tokens_both_allow_any_address(tmp_path: Path) -> None:
    with Daemon(f"sqlite://{tmp_path}/a.db", listen="0.0.0.0:0", args=["--insecure-no-auth"]) as d:
        port = d.url.rsplit(":", 1)[1]
        status, _ = get(f"http://127.0.0.1:{port}/v1/queues")
        assert status == 200
    config = write_config(tmp_path / "tqd.toml", tokens_toml("read"))
    with Daemon(f"sqlite://{tmp_path}/b.db", listen="0.0.0.0:0", config=config) as d:
        port = d.url.rsplit(":", 1)[1]
        assert get(f"http://127.0.0.1:{port}/v1/queues")[0] == 401
        assert get(f"http://127.0.0.1:{port}/v1/queues", TOKENS["read"])[0] == 200
        # tokens over plain HTTP beyond loopback: said once in the log
        assert "tokens travel in clear text" in d.stderr


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1."""
    return self_signed(tmp_path_factory.mktemp("tls"))


def test_tls_serves_https_with_the_configured_certificate(tmp_path: Path,
                                                          certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    config = write_config(tmp_path / "tqd.toml",
                          f'[tls]\ncert = "{cert}"\nkey = "{key}"\n\n' + tokens_toml("read"))
    with Daemon(f"sqlite://{tmp_path}/t.db", config=config) as d:
        assert d.url.startswith("https://127.0.0.1:")
        trusting = ssl.create_default_context(cafile=str(cert))
        assert get(d.url + "/healthz", context=trusting) == (200, {"status": "ok"})
        assert get(d.url + "/v1/queues", TOKENS["read"], context=trusting)[0] == 200
        # a client that does not trust the certificate is stopped by TLS itself
        with pytest.raises(urllib.error.URLError) as untrusted:
            get(d.url + "/healthz", context=ssl.create_default_context())
        assert "CERTIFICATE_VERIFY_FAILED" in str(untrusted.value)
        # the CLI trusts a private CA through SSL_CERT_FILE
        cli = run_tqd("queues", env={"TQD_URL": d.url, "TQD_TOKEN": TOKENS["read"],
                                     "SSL_CERT_FILE": str(cert)})
        assert cli.returncode == 0, cli.stderr
        assert "default" in cli.stdout
        # plain HTTP to the TLS port gets no answer
        port = int(d.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert b"200" not in s.recv(4096)
    # nothing older than TLS 1.2
    context = tls_context(load_config(str(config), env={}))
    assert context is not None and context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_tls_with_a_key_of_another_certificate_exits_2(tmp_path: Path,
                                                       certificate: tuple[Path, Path]) -> None:
    cert, _ = certificate
    other = tmp_path / "other.key"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-out", str(other)], check=True,
                   capture_output=True)
    for key, expected in ((other, "the key does not belong to the certificate"),
                          (tmp_path / "missing.key", "no such file")):
        config = write_config(tmp_path / "tqd.toml", f'[tls]\ncert = "{cert}"\nkey = "{key}"\n')
        out = run_tqd("serve", "--config", str(config), "--listen", "127.0.0.1:0",
                      "--storage", f"sqlite://{tmp_path}/t.db")
        assert out.returncode == 2
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert expected in out.stderr


def test_token_commands_and_the_cli_client(tmp_path: Path) -> None:
    made = run_tqd("token", "new", "--name", "ci", "--scope", "write")
    assert made.returncode == 0
    token = made.stdout.strip()
    assert token.startswith("tqd_") and len(token.splitlines()) == 1
    assert token not in made.stderr and hash_token(token) in made.stderr
    hashed = run_tqd("token", "hash", "--name", "ci", "--scope", "write", stdin=token + "\n")
    assert hashed.returncode == 0
    assert hashed.stdout == made.stderr
    assert hashed.stdout == f'[[tokens]]\nname = "ci"\nhash = "{hash_token(token)}"\nscope = "write"\n'
    short = run_tqd("token", "hash", stdin="hunter2\n")
    assert short.returncode == 2
    assert short.stderr.strip() == (
        "tqd: token hash: a token needs at least 20 characters (got 7); make one with `tqd token new`"
    )
    config = write_config(tmp_path / "tqd.toml", hashed.stdout)
    with Daemon(f"sqlite://{tmp_path}/t.db", config=config) as d:
        ok = run_tqd("enqueue", "tqd.noop", env={"TQD_URL": d.url, "TQD_TOKEN": token})
        assert ok.returncode == 0, ok.stderr
        refused = run_tqd("queues", env={"TQD_URL": d.url})
        assert refused.returncode == 2
        assert "a token is required" in refused.stderr and "HTTP 401" in refused.stderr
        admin_only = run_tqd("pause", "default", env={"TQD_URL": d.url, "TQD_TOKEN": token})
        assert admin_only.returncode == 2
        assert "needs scope 'admin'" in admin_only.stderr


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_token_in_any_log_line(tmp_path: Path, log_format: str) -> None:
    """Debug logging, good and bad tokens in headers and sub-protocols: none of
    them, nor their digests, reach the log."""
    config = write_config(tmp_path / "tqd.toml", f'log_level = "debug"\nlog_format = "{log_format}"\n\n'
                          + tokens_toml())
    bad = "tqd_not-a-configured-token-000000000000"
    with Daemon(f"sqlite://{tmp_path}/t.db", config=config) as d:
        for token in (*TOKENS.values(), bad):
            get(d.url + "/v1/queues", token)
            get(d.url + "/v1/tasks", token, method="POST")
            get(d.url + "/v1/queues/default/purge", token, method="POST")
            req = urllib.request.Request(d.url + "/v1/queues", headers={
                "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Protocol": f"tqd, bearer.{token}",
            })
            try:
                urllib.request.urlopen(req, timeout=10).close()
            except urllib.error.HTTPError:
                pass
        d.stop()
    log = d.stderr
    assert "refused an unknown token" in log  # the bad one was seen, and logged without itself
    for token in (*TOKENS.values(), bad):
        assert token not in log
        assert hash_token(token).removeprefix("sha256:") not in log
        assert token[4:20] not in log
