"""Tests of the OpenID Connect provider test server and its Python helper.

The flows are driven by Chromium (Playwright) against the real provider; the
relying party is a tiny loopback HTTP listener that receives the callback, and
the test itself exchanges the code and verifies the ID token with PyJWT.
"""

from __future__ import annotations

import http.server
import secrets
import threading
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import jwt
import pytest

from tests.browser import launched_chromium

from .oidc_provider import MODES, OIDCProvider, OIDCProviderError, node_available

pytestmark = pytest.mark.skipif(not node_available(), reason="node >= 20 / npm not available")

ALICE = {
    "sub": "alice-0001",
    "email": "alice@example.com",
    "email_verified": True,
    "name": "Alice Example",
    "given_name": "Alice",
    "family_name": "Example",
    "password": "correct horse",
}
BOB = {
    "sub": "bob-0002",
    "email": "bob@example.com",
    "email_verified": False,
    "name": "Bob Example",
    "password": "bobpass",
}


# ------------------------------------------------------------------ fixtures


class _CallbackHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        body = b"<!DOCTYPE html><title>RP callback</title><p id=rp>callback received</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class RelyingParty:
    base_url: str
    hits: list[str]

    @property
    def redirect_uri(self) -> str:
        return f"{self.base_url}/callback"


@pytest.fixture(scope="module")
def rp():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CallbackHandler)
    server.hits = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield RelyingParty(f"http://127.0.0.1:{server.server_address[1]}", server.hits)  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def clients(rp):
    return {
        "basic": {
            "client_id": "rp-basic",
            "client_secret": "basic-secret-123",
            "redirect_uris": [rp.redirect_uri],
            "token_endpoint_auth_method": "client_secret_basic",
        },
        "post": {
            "client_id": "rp-post",
            "client_secret": "post-secret-456",
            "redirect_uris": [rp.redirect_uri],
            "token_endpoint_auth_method": "client_secret_post",
        },
        "relaxed": {
            "client_id": "rp-relaxed",
            "client_secret": "relaxed-secret-789",
            "redirect_uris": [rp.redirect_uri],
            "token_endpoint_auth_method": "client_secret_post",
            "strict_auth_method": False,
        },
    }


@pytest.fixture(scope="module")
def op(clients):
    with OIDCProvider(clients=list(clients.values()), accounts=[ALICE, BOB]) as provider:
        yield provider


@pytest.fixture(autouse=False)
def normal_mode(op):
    op.set_mode("normal")
    yield
    op.set_mode("normal")


@pytest.fixture(scope="module")
def discovery(op):
    resp = httpx.get(op.discovery_url, timeout=10)
    resp.raise_for_status()
    return resp.json()


@pytest.fixture(scope="module")
def chromium(request):
    with launched_chromium(request) as browser:
        yield browser


@pytest.fixture
def page(chromium):
    context = chromium.new_context()
    context.set_default_timeout(10_000)
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()


# ------------------------------------------------------------------ helpers


def authorize_in_browser(page, discovery, rp, client, *, login, password, nonce, state):
    params = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": rp.redirect_uri,
        "scope": "openid email profile",
        "state": state,
        "nonce": nonce,
    }
    page.goto(f"{discovery['authorization_endpoint']}?{urlencode(params)}")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def run_code_flow(page, discovery, rp, client, account=ALICE):
    nonce = secrets.token_urlsafe(16)
    state = secrets.token_urlsafe(16)
    authorize_in_browser(
        page,
        discovery,
        rp,
        client,
        login=account["email"],
        password=account["password"],
        nonce=nonce,
        state=state,
    )
    page.wait_for_url(f"{rp.redirect_uri}?**")
    query = parse_qs(urlparse(page.url).query)
    assert query["state"] == [state]
    assert query["iss"] == [discovery["issuer"]]
    code = query["code"][0]

    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": rp.redirect_uri}
    auth = None
    if client["token_endpoint_auth_method"] == "client_secret_basic":
        auth = (client["client_id"], client["client_secret"])
    else:
        data |= {"client_id": client["client_id"], "client_secret": client["client_secret"]}
    resp = httpx.post(discovery["token_endpoint"], data=data, auth=auth, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json(), nonce


def signing_key(discovery, id_token):
    jwks = httpx.get(discovery["jwks_uri"], timeout=10).json()
    kid = jwt.get_unverified_header(id_token)["kid"]
    return jwt.PyJWKSet.from_dict(jwks)[kid].key


def verify(id_token, discovery, client):
    return jwt.decode(
        id_token,
        key=signing_key(discovery, id_token),
        algorithms=["RS256"],
        audience=client["client_id"],
        issuer=discovery["issuer"],
    )


# ------------------------------------------------------------------ tests


def test_discovery_and_jwks(op, discovery):
    assert op.issuer.startswith("http://127.0.0.1:")
    assert discovery["issuer"] == op.issuer
    for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        assert discovery[key].startswith(op.issuer + "/")
    assert {"openid", "email", "profile"} <= set(discovery["scopes_supported"])
    assert {"client_secret_basic", "client_secret_post"} <= set(
        discovery["token_endpoint_auth_methods_supported"]
    )
    jwks = httpx.get(discovery["jwks_uri"], timeout=10).json()
    assert len(jwks["keys"]) >= 1
    key = jwks["keys"][0]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["kid"]
    assert "d" not in key  # public part only
    assert op.startup_seconds is not None and op.startup_seconds < 20


@pytest.mark.browser
@pytest.mark.usefixtures("normal_mode")
@pytest.mark.parametrize("method", ["basic", "post"])
def test_code_flow(op, discovery, rp, clients, page, method):
    client = clients[method]
    op.clear_token_log()
    tokens, nonce = run_code_flow(page, discovery, rp, client)
    claims = verify(tokens["id_token"], discovery, client)
    assert claims["sub"] == ALICE["sub"]
    assert claims["nonce"] == nonce
    assert claims["email"] == ALICE["email"]
    assert claims["email_verified"] is True
    assert claims["name"] == ALICE["name"]

    userinfo = httpx.get(
        discovery["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    )
    assert userinfo.status_code == 200, userinfo.text
    info = userinfo.json()
    assert info["sub"] == ALICE["sub"]
    assert info["email"] == ALICE["email"]
    assert info["given_name"] == "Alice"

    log = op.token_log()
    assert len(log) == 1
    assert log[0]["client_id"] == client["client_id"]
    assert log[0]["grant_type"] == "authorization_code"
    assert log[0]["client_auth"] == ("basic" if method == "basic" else "body")
    assert log[0]["nonce"] == nonce
    assert log[0]["sub"] == ALICE["sub"]
    assert log[0]["status"] == 200


@pytest.mark.browser
@pytest.mark.usefixtures("normal_mode")
def test_second_account_and_email_verified_false(op, discovery, rp, clients, page):
    tokens, _ = run_code_flow(page, discovery, rp, clients["basic"], account=BOB)
    claims = verify(tokens["id_token"], discovery, clients["basic"])
    assert claims["sub"] == BOB["sub"]
    assert claims["email_verified"] is False


EXPECTED_ERROR = {
    "wrong_audience": jwt.InvalidAudienceError,
    "bad_signature": jwt.InvalidSignatureError,
    "wrong_issuer": jwt.InvalidIssuerError,
}


@pytest.mark.browser
@pytest.mark.usefixtures("normal_mode")
@pytest.mark.parametrize("mode", sorted(EXPECTED_ERROR))
def test_failure_modes(op, discovery, rp, clients, page, mode):
    client = clients["basic"]
    op.set_mode(mode)
    assert op.get_mode() == mode
    tokens, nonce = run_code_flow(page, discovery, rp, client)
    id_token = tokens["id_token"]

    with pytest.raises(EXPECTED_ERROR[mode]):
        verify(id_token, discovery, client)

    # Otherwise well-formed: same kid, and every other check still passes.
    assert (
        jwt.get_unverified_header(id_token)["kid"]
        == (httpx.get(discovery["jwks_uri"], timeout=10).json()["keys"][0]["kid"])
    )
    claims = jwt.decode(
        id_token,
        key=signing_key(discovery, id_token),
        algorithms=["RS256"],
        audience=client["client_id"],
        issuer=discovery["issuer"],
        options={
            "verify_signature": mode != "bad_signature",
            "verify_aud": mode != "wrong_audience",
            "verify_iss": mode != "wrong_issuer",
        },
    )
    assert claims["nonce"] == nonce
    assert claims["email"] == ALICE["email"]
    if mode == "wrong_audience":
        assert claims["aud"] != client["client_id"]
    if mode == "wrong_issuer":
        assert claims["iss"] != discovery["issuer"]
    assert op.token_log()[-1]["mode"] == mode

    # The access token and userinfo stay valid.
    userinfo = httpx.get(
        discovery["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    )
    assert userinfo.status_code == 200


@pytest.mark.browser
@pytest.mark.usefixtures("normal_mode")
def test_wrong_password_shows_error_and_does_not_redirect(discovery, rp, clients, page):
    hits_before = len(rp.hits)
    authorize_in_browser(
        page,
        discovery,
        rp,
        clients["basic"],
        login=ALICE["email"],
        password="not the password",
        nonce="n",
        state="s",
    )
    page.wait_for_selector("#error")
    assert "Invalid login or password" in page.inner_text("#error")
    assert page.url.startswith(discovery["issuer"] + "/interaction/")
    assert page.is_visible("input[name=password]")
    page.wait_for_load_state("networkidle")  # no redirect is still on its way
    assert len(rp.hits) == hits_before

    # The same form then accepts the right password.
    page.fill("input[name=password]", ALICE["password"])
    page.click("button[type=submit]")
    page.wait_for_url(f"{rp.redirect_uri}?**")
    assert "code" in parse_qs(urlparse(page.url).query)


@pytest.mark.browser
@pytest.mark.usefixtures("normal_mode")
def test_cancel_returns_access_denied(discovery, rp, clients, page):
    params = {
        "response_type": "code",
        "client_id": clients["basic"]["client_id"],
        "redirect_uri": rp.redirect_uri,
        "scope": "openid email",
        "state": "st",
        "nonce": "nn",
    }
    page.goto(f"{discovery['authorization_endpoint']}?{urlencode(params)}")
    page.click("#cancel")
    page.wait_for_url(f"{rp.redirect_uri}?**")
    query = parse_qs(urlparse(page.url).query)
    assert query["error"] == ["access_denied"]
    assert query["state"] == ["st"]


def test_client_auth_method_is_enforced(op, discovery, clients):
    token_url = discovery["token_endpoint"]
    data = {"grant_type": "authorization_code", "code": "bogus", "redirect_uri": "http://x/"}
    post = clients["post"]
    basic = clients["basic"]
    # Registered for client_secret_post, authenticating with Basic: rejected.
    r = httpx.post(token_url, data=data, auth=(post["client_id"], post["client_secret"]))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert "registered for client_secret_post" in r.json()["error_description"]
    assert op.token_log()[-1]["error"] == "invalid_client"
    # Registered for client_secret_basic, secret in the body: rejected.
    r = httpx.post(
        token_url,
        data=data | {"client_id": basic["client_id"], "client_secret": basic["client_secret"]},
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    # Right method, bad code: the client is accepted and the grant refused.
    r = httpx.post(token_url, data=data, auth=(basic["client_id"], basic["client_secret"]))
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert op.token_log()[-1]["error"] == "invalid_grant"
    # Wrong secret.
    r = httpx.post(token_url, data=data, auth=(basic["client_id"], "wrong"))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    # strict_auth_method=False: either method is accepted (oidc-provider's own behaviour).
    relaxed = clients["relaxed"]
    r = httpx.post(token_url, data=data, auth=(relaxed["client_id"], relaxed["client_secret"]))
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_set_mode_rejects_unknown(op):
    with pytest.raises(ValueError):
        op.set_mode("nonsense")
    with pytest.raises(OIDCProviderError):
        op._control("POST", "mode", {"mode": "nonsense"})


def test_add_client_and_account_at_runtime(op, discovery):
    op.add_client(
        {
            "client_id": "late-client",
            "client_secret": "late-secret",
            "redirect_uris": ["http://localhost:1234/cb"],
            "token_endpoint_auth_method": "client_secret_post",
        }
    )
    op.add_account({"sub": "carol", "email": "carol@example.com", "password": "x"})
    data = {
        "grant_type": "authorization_code",
        "code": "bogus",
        "redirect_uri": "http://localhost:1234/cb",
        "client_id": "late-client",
        "client_secret": "late-secret",
    }
    r = httpx.post(discovery["token_endpoint"], data=data)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    with pytest.raises(OIDCProviderError):
        op.add_client({"client_id": "broken", "token_endpoint_auth_method": "client_secret_post"})


def test_issuer_path_and_process_lifecycle():
    provider = OIDCProvider(issuer_path="/realms/test", mode="wrong_issuer")
    with provider as op:
        proc = op.process
        assert proc is not None
        assert op.issuer.endswith("/realms/test")
        doc = httpx.get(op.discovery_url, timeout=10).json()
        assert doc["issuer"] == op.issuer
        assert doc["token_endpoint"] == op.issuer + "/token"
        assert httpx.get(doc["jwks_uri"], timeout=10).json()["keys"]
        assert op.get_mode() == "wrong_issuer"
    assert proc.poll() is not None  # terminated on exit
    assert not provider.running


def test_server_exits_when_stdin_closes():
    op = OIDCProvider()
    op.start()
    try:
        proc = op.process
        assert proc is not None and proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=5)
        assert proc.returncode == 0
    finally:
        op.stop()


def test_bad_config_reports_stderr():
    bad = OIDCProvider(clients=[{"client_id": "x", "redirect_uris": []}])
    with pytest.raises(OIDCProviderError, match="client_secret"):
        bad.start()
    assert not bad.running


def test_modes_constant():
    assert set(MODES) == {"normal", *EXPECTED_ERROR}
