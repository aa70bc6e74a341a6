"""Secret redaction before cloud calls: planted secrets vanish, ordinary code passes untouched."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from detect_secrets.plugins.keyword import DENYLIST

from policies.redaction import GATE_WORDS, Redaction, redact, redact_payload

CORPUS = Path(__file__).resolve().parents[2] / "samples" / "secrets"
PLANTED = [line for line in (CORPUS / "SECRETS.txt").read_text().splitlines() if line]

# How many secrets each corpus file holds (a PEM block is one secret).
EXPECTED = {
    "config/settings.py": 2,
    "config/app.yaml": 3,
    "deploy/app.env": 4,
    "deploy/id_deploy": 1,
    "src/client.py": 2,
    "tests/fixtures.json": 1,
}

ENDPOINT_KEY = "sk-or-acme-7Hq2LmX9vR4tB8nZ"

CLEAN_DIFF = """\
diff --git a/invoice_calc/totals.py b/invoice_calc/totals.py
index 3f2a1b4..9c8d7e6 100644
--- a/invoice_calc/totals.py
+++ b/invoice_calc/totals.py
@@ -1,12 +1,13 @@
 \"\"\"Totals for invoices.\"\"\"

-from decimal import Decimal
+from decimal import ROUND_HALF_UP, Decimal

 from invoice_calc.models import Line

+CENTS = Decimal("0.01")

 def round_money(amount: Decimal) -> Decimal:
     \"\"\"Round an amount to whole cents.\"\"\"
-    return Decimal(str(round(float(amount), 2)))
+    return amount.quantize(CENTS, rounding=ROUND_HALF_UP)


 def total(lines: list[Line]) -> Decimal:
diff --git a/tests/test_totals.py b/tests/test_totals.py
index 0b1c2d3..4e5f6a7 100644
--- a/tests/test_totals.py
+++ b/tests/test_totals.py
@@ -20,6 +20,10 @@ def test_total_of_no_lines_is_zero():
     assert total([]) == Decimal("0.00")
+
+
+def test_half_a_cent_rounds_up():
+    assert total([Line(amount=Decimal("0.125"))]) == Decimal("0.13")
"""

CLEAN_PYTEST = """\
============================= test session starts ==============================
platform linux -- Python 3.11.7, pytest-8.3.4, pluggy-1.5.0
rootdir: /work/checkouts/acme/invoice-calc
configfile: pyproject.toml
collected 17 items

tests/test_totals.py ........F.......                                    [ 94%]
tests/test_tax.py .                                                      [100%]

=================================== FAILURES ===================================
__________________________ test_half_a_cent_rounds_up __________________________

    def test_half_a_cent_rounds_up():
>       assert total([Line(amount=Decimal("0.125"))]) == Decimal("0.13")
E       AssertionError: assert Decimal('0.12') == Decimal('0.13')
E        +  where Decimal('0.12') = total([Line(amount=Decimal('0.125'))])

tests/test_totals.py:24: AssertionError
=========================== short test summary info ============================
FAILED tests/test_totals.py::test_half_a_cent_rounds_up - AssertionError: assert...
========================= 1 failed, 16 passed in 0.07s =========================
"""

CLEAN_SOURCE = '''\
"""Model calls with retries and a ledger row per request."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from accounts.crypto import Secret

DEFAULT_MAX_TOKENS = 4096
TOKEN_HEADER = "x-api-key"
REQUEST_ID = "7b0c5e2a-4f3d-4c1b-9a8e-2d6f1e0c3b5a"
BASE_COMMIT = "9ae2f17c3b0d4e5f6a7b8c9d0e1f2a3b4c5d6e7f"


@dataclass
class Endpoint:
    base_url: str
    api_key: Secret | None = None
    secret: Secret | None = None
    token: str = ""


def headers(endpoint: Endpoint, token: str) -> dict[str, str]:
    api_key = endpoint.api_key.reveal() if endpoint.api_key else ""
    password_hash = make_password(token)
    return {"x-api-key": api_key, "authorization": f"Bearer {token}", "hash": password_hash}


def usage(answer: dict[str, int]) -> tuple[int, int]:
    body = {"model": "claude-sonnet-4-6", "max_tokens": DEFAULT_MAX_TOKENS,
            "input_tokens": answer["input_tokens"], "id": str(uuid.uuid4())}
    secret_name = "ANTHROPIC_API_KEY"
    return body["input_tokens"], len(secret_name)


def test_it_refuses_a_revoked_token(client, cast):
    token = cast.token_for("acme", scopes=["tickets:read"])
    response = client.get("/api/v1/orgs/acme/tickets/PAY-12", HTTP_AUTHORIZATION=token)
    assert response.status_code == 401
'''


def corpus_files() -> list[str]:
    return sorted(str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*")
                  if p.is_file() and p.name not in {"SECRETS.txt", "README.md", "ruff.toml"}
                  and not any(part.startswith((".", "__")) for part in p.relative_to(CORPUS).parts))


def test_every_corpus_file_has_an_expected_count():
    assert corpus_files() == sorted(EXPECTED)


def test_every_planted_secret_is_in_some_corpus_file():
    texts = [(CORPUS / name).read_text() for name in EXPECTED]
    assert PLANTED
    assert [s for s in PLANTED if not any(s in text for text in texts)] == []


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_planted_secrets_are_gone_from_each_file(name):
    text = (CORPUS / name).read_text()
    planted_here = [s for s in PLANTED if s in text]
    assert planted_here

    result = redact(text)

    assert [s for s in planted_here if s in result.text] == []
    assert result.count == EXPECTED[name]
    assert sum(result.kinds.values()) == result.count
    assert result.text.count("[REDACTED ") == result.count


def test_the_kinds_map_names_kinds_and_never_a_value():
    text = "\n".join((CORPUS / name).read_text() for name in EXPECTED)
    result = redact(text)
    assert result.count == sum(EXPECTED.values())
    assert {"private key", "AWS key", "Anthropic key", "JWT", "Slack token",
            "GitHub token", "Stripe key", "URL password"} <= set(result.kinds)
    assert not any(s in repr(result) .replace(result.text, "") for s in PLANTED)


def test_every_detect_secrets_keyword_passes_the_line_gate():
    # Lines without a gate word skip the assignment checks; a new keyword upstream must not.
    assert [k for k in DENYLIST if not any(word in k for word in GATE_WORDS)] == []


def test_assignments_keep_the_key_and_lose_the_value():
    text = "\n".join([
        "DB_PASSWORD=hunter2-very-secret",
        "export API_TOKEN=Zx81kQp0Lr7mWc2v",
        'password: "correct-horse-battery"',
        '  "api_key": "k3y-f0r-the-billing-api",',
        "client_secret = 9f8e7d6c5b4a",
        "DATABASE_URL=postgres://billing:pg-Secr3t-pass@db:5432/billing",
    ])
    result = redact(text)
    assert result.text.splitlines() == [
        "DB_PASSWORD=[REDACTED secret value]",
        "export API_TOKEN=[REDACTED secret value]",
        'password: "[REDACTED secret value]"',
        '  "api_key": "[REDACTED secret value]",',
        "client_secret = [REDACTED secret value]",
        "DATABASE_URL=postgres://billing:[REDACTED URL password]@db:5432/billing",
    ]
    assert result.count == 6


def test_an_assignment_inside_a_sentence_loses_its_value():
    text = ("The job failed with aws_secret_access_key = Q8uuoeInxkoi6g55zXl6A5XMuce3dHSOyu9bSh22"
            " and api_key: 9f8e7d6c5b4a39281726354abcdef, see the log.")
    assert redact(text).text == (
        "The job failed with aws_secret_access_key = [REDACTED secret value] and api_key: "
        "[REDACTED secret value], see the log.")
    for code in ("token = get_token(user_id_1234567890) if retry else None",
                 "limits = {'max_token_count': 1234567890123456}",
                 "secret_name: projects/123/secrets/db-password/versions/2"):
        assert redact(code).count == 0, code


def test_text_whose_lowercase_changes_length_is_still_redacted_in_place():
    # "İ".lower() is two characters: offsets come from the original text, not its lowercase.
    text = 'İstanbul office\npassword: "hunter2-very-secret"\nİzmir'
    assert redact(text).text == 'İstanbul office\npassword: "[REDACTED secret value]"\nİzmir'


def test_provider_keys_are_redacted_wherever_they_appear():
    anthropic = "sk-ant-api03-" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tV9wX1yZ" * 3 + "-Ab1AA"
    openai = "sk-proj-" + "Qw3Er5Ty7Ui9Op1As3Df5Gh7Jk9Lz1Xc3Vb5Nm7" + "T3BlbkFJ" + "x" * 4
    stripe = "sk_test_" + "4eC39HqLyjWDarjtT1zdp7dc"
    text = (f"curl -H 'x-api-key: {anthropic}' https://api.anthropic.com\n"
            f"OPENAI={openai} python run.py\n"
            f"stripe.api_key = {stripe!r}\n")
    result = redact(text)
    for value in (anthropic, openai, stripe):
        assert value not in result.text
    assert result.kinds["Anthropic key"] == 1
    assert result.kinds["OpenAI key"] == 1
    assert result.text.startswith("curl -H 'x-api-key: [REDACTED Anthropic key]' https://")


def test_a_jwt_loses_its_signature_too():
    jwt = next(s for s in PLANTED if s.startswith("eyJ"))
    signature = jwt.rsplit(".", 1)[1]
    result = redact(f"Authorization: Bearer {jwt}\nSERVICE_JWT={jwt}\n")
    assert signature not in result.text
    assert result.text == ("Authorization: Bearer [REDACTED JWT]\n"
                           "SERVICE_JWT=[REDACTED JWT]\n")


def test_haao_api_tokens_and_bearer_tokens_are_redacted():
    from accounts.tokens import new_api_token

    token = new_api_token()
    opaque = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA-_x"
    result = redact(f"curl -H 'Authorization: Token {token}' …\n"
                    f"Authorization: Bearer {opaque}\n")
    assert token not in result.text and opaque not in result.text
    assert result.kinds == {"HAAO API token": 1, "bearer token": 1}


def test_known_endpoint_keys_are_replaced_wherever_they_occur():
    text = (f"key={ENDPOINT_KEY}\n"
            f"the log said: auth failed for {ENDPOINT_KEY}.\n"
            f"glued:prefix{ENDPOINT_KEY}suffix and again {ENDPOINT_KEY}")
    result = redact(text, known=[ENDPOINT_KEY])
    assert ENDPOINT_KEY not in result.text
    assert result.kinds == {"HAAO endpoint key": 4}
    assert "glued:prefix[REDACTED HAAO endpoint key]suffix" in result.text
    assert result.text.startswith("key=[REDACTED HAAO endpoint key]\n")


def test_short_known_values_are_ignored():
    text = "the admin password is pass1234 and the demo key is sk-demo"
    result = redact(text, known=["sk-demo", "admin", "", "pass123"])
    assert result == Redaction(text=text, count=0, kinds={})


def test_a_known_key_inside_a_longer_known_key_does_not_split_it():
    longer = ENDPOINT_KEY + "-rotated"
    result = redact(f"old {ENDPOINT_KEY} new {longer}", known=[ENDPOINT_KEY, longer])
    assert result.text == "old [REDACTED HAAO endpoint key] new [REDACTED HAAO endpoint key]"


@pytest.mark.parametrize("text", [CLEAN_DIFF, CLEAN_PYTEST, CLEAN_SOURCE],
                         ids=["diff", "pytest-output", "python-source"])
def test_ordinary_code_diffs_and_test_output_come_back_byte_identical(text):
    result = redact(text)
    assert result.text == text
    assert result.count == 0
    assert result.kinds == {}


def test_this_repositorys_own_recent_diff_passes_untouched():
    # A real diff of HAAO's redaction-free code paths (tickets app): nothing to redact in it.
    diff = subprocess.run(["git", "-C", str(CORPUS.parents[1]), "log", "-p", "-5", "--",
                           "tickets/selectors.py"], capture_output=True, text=True).stdout
    if not diff:
        pytest.skip("no git history here")
    assert redact(diff).count == 0


def test_a_pem_block_over_many_lines_is_replaced_as_one():
    key = (CORPUS / "deploy" / "id_deploy").read_text().strip()
    assert key.count("\n") > 20
    text = f"before the key\n{key}\nafter the key\n"
    result = redact(text)
    assert result.text == "before the key\n[REDACTED private key]\nafter the key\n"
    assert result.kinds == {"private key": 1}


def test_a_pem_block_in_a_diff_or_json_string_is_replaced_as_one():
    key = (CORPUS / "deploy" / "id_deploy").read_text().strip()
    added = "\n".join("+" + line for line in key.splitlines())
    diff = f"--- /dev/null\n+++ b/deploy/id_deploy\n@@ -0,0 +1,27 @@\n{added}\n"
    result = redact(diff)
    assert result.text == ("--- /dev/null\n+++ b/deploy/id_deploy\n@@ -0,0 +1,27 @@\n"
                           "+[REDACTED private key]\n")

    escaped = '{"private_key": "' + key.replace("\n", "\\n") + '\\n", "type": "service_account"}'
    result = redact(escaped)
    assert result.text == ('{"private_key": "[REDACTED private key]\\n", '
                           '"type": "service_account"}')


def test_a_truncated_key_loses_its_key_lines_but_not_what_follows():
    lines = (CORPUS / "deploy" / "id_deploy").read_text().splitlines()
    text = "$ head -5 deploy/id_deploy\n" + "\n".join(lines[:5]) + "\n$ echo done\ndone\n"
    result = redact(text)
    assert result.text == "$ head -5 deploy/id_deploy\n[REDACTED private key]\n$ echo done\ndone\n"


def test_redacting_twice_changes_nothing_more():
    for name in EXPECTED:
        once = redact((CORPUS / name).read_text(), known=[ENDPOINT_KEY])
        twice = redact(once.text, known=[ENDPOINT_KEY])
        assert twice.text == once.text, name
        assert twice.count == 0, name


def test_redact_payload_keeps_structure_and_redacts_every_string():
    env = (CORPUS / "deploy" / "app.env").read_text()
    messages = [
        {"role": "user", "content": f"Fix the deploy. Key {ENDPOINT_KEY} is ours."},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Reading the environment file."},
            {"type": "tool_use", "id": "toolu_01", "name": "read_file",
             "input": {"path": "deploy/app.env", "options": {"lines": [1, 20],
                                                              "env": {"TOKEN": ENDPOINT_KEY}}}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01", "content": env,
             "is_error": False},
            {"type": "tool_result", "tool_use_id": "toolu_02",
             "content": [{"type": "text", "text": env}]},
        ]},
    ]
    system = [{"type": "text", "text": "You are the Tech Lead.",
               "cache_control": {"type": "ephemeral"}}]

    redacted, totals = redact_payload(messages, known=[ENDPOINT_KEY])
    system_out, system_totals = redact_payload(system, known=[ENDPOINT_KEY])

    assert system_out == system and system_totals.count == 0
    assert isinstance(totals, Redaction) and totals.text == ""
    assert totals.kinds == {"HAAO endpoint key": 2, "AWS key": 2, "secret value": 4,
                            "Stripe key": 2}
    assert totals.count == 10
    assert [m["role"] for m in redacted] == ["user", "assistant", "user"]
    tool_use = redacted[1]["content"][1]
    assert tool_use["input"]["options"] == {"lines": [1, 20],
                                            "env": {"TOKEN": "[REDACTED HAAO endpoint key]"}}
    assert tool_use["id"] == "toolu_01" and tool_use["input"]["path"] == "deploy/app.env"
    first, second = redacted[2]["content"]
    assert first["is_error"] is False
    assert first["content"] == second["content"][0]["text"] == redact(env).text
    assert "[REDACTED AWS key]" in first["content"]
    flat = repr(redacted)
    assert ENDPOINT_KEY not in flat
    assert not any(s in flat for s in PLANTED)
    # A deep copy: the caller's request is left as it was.
    assert messages[2]["content"][0]["content"] == env


def test_redact_payload_keeps_non_strings_and_tuples():
    value = {"n": 3, "ok": True, "none": None, "ratio": 0.5, "pair": ("a", ENDPOINT_KEY)}
    redacted, totals = redact_payload(value, known=[ENDPOINT_KEY])
    assert redacted == {"n": 3, "ok": True, "none": None, "ratio": 0.5,
                        "pair": ("a", "[REDACTED HAAO endpoint key]")}
    assert totals.count == 1


def test_dict_keys_are_kept_even_when_they_look_secret():
    redacted, totals = redact_payload({ENDPOINT_KEY: "value"}, known=[ENDPOINT_KEY])
    assert redacted == {ENDPOINT_KEY: "value"} and totals.count == 0


def test_threads_redacting_at_once_get_the_same_answers():
    texts = [(CORPUS / name).read_text() for name in EXPECTED] * 8
    expected = [redact(text).text for text in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(lambda t: redact(t).text, texts)) == expected


@pytest.mark.parametrize(("text", "secret"), [
    ("login with password=hunter2 and retry", "hunter2"),
    ("https://example.com/cb?user=ada&password=hunter2&next=/", "hunter2"),
    ("curl -d token=9f8e7d6c5b4aZQ https://example.com", "9f8e7d6c5b4aZQ"),
])
def test_a_short_parameter_secret_inside_a_line_is_redacted(text, secret) -> None:
    redacted = redact(text)
    assert secret not in redacted.text and "[REDACTED secret value]" in redacted.text


@pytest.mark.parametrize("code", [
    "connect(password=self.password)", "f(password=pw)", "password=get_password()",
    "token=token_value",
])
def test_a_parameter_that_reads_as_code_is_left_alone(code) -> None:
    assert redact(code).text == code
