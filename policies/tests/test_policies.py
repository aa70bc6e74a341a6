"""Policies: rules and their validation, effective values and where they come from, versions,
and each decision the engine asks for at its points of action."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from agents import ledger
from agents import services as agent_services
from agents.models import InferenceEndpoint, ModelCall
from agents.selectors import cloud_budgets, spend_refusal
from agents.techlead.client import CallContext, TechLeadClient
from haao.audit import Actor
from haao.models import AuditEvent
from policies import rules
from policies.enforcement import (
    GuardrailRefused,
    audit_wanted,
    command_refusal,
    edits_refusal,
    path_refusal,
    refusal_record,
)
from policies.models import PolicyVersion
from policies.rules import PolicyInvalid
from policies.selectors import effective_policy, policy_row_values
from policies.services import policy_update
from sample_models import AnthropicServer
from sample_models import anthropic as anth
from tests.factories import TicketFactory
from tests.fixtures import tech_lead_endpoint
from tickets.models import Ticket

pytestmark = pytest.mark.django_db


def update(cast: Any, project: Any = None, **changes: Any) -> Any:
    return policy_update(organization=cast.org, project=project, actor=Actor.of(cast.admin),
                         changes=changes)


# --- Globs and the default paths ---------------------------------------------------------------

@pytest.mark.parametrize(("path", "pattern", "matches"), [
    ("src/app.py", "src/*.py", True),
    ("src/pkg/app.py", "src/*.py", False),  # '*' stays within a folder
    ("src/pkg/app.py", "src/**", True),
    ("app.py", "**/*.py", True),  # '**/' may be no folder at all
    ("a/b/c/app.py", "**/*.py", True),
    ("src/app.pyc", "src/*.py", False),
    ("src/a?.py", "src/a?.py", True),
])
def test_globs_match_the_way_the_console_explains_them(path: str, pattern: str,
                                                        matches: bool) -> None:
    assert (rules.path_matches(path, [pattern]) is not None) is matches


@pytest.mark.parametrize("path", [
    ".github/workflows/ci.yml", ".gitlab-ci.yml", "Jenkinsfile", ".env", "config/.env",
    "deploy/.env.production", "deploy/server.key", "certs/ca.pem", "home/.ssh/id_rsa",
    "keys/id_ed25519.pub", ".circleci/config.yml", "frontend/.npmrc", ".git/config",
])
def test_the_defaults_deny_ci_configuration_environment_files_and_keys(cast: Any,
                                                                         path: str) -> None:
    refusal = path_refusal(effective_policy(organization=cast.org), path)
    assert refusal is not None and refusal.rule == "denied_paths"


def test_ordinary_code_is_allowed_by_the_defaults(cast: Any) -> None:
    policy = effective_policy(organization=cast.org)
    assert edits_refusal(policy, ["src/app.py", "tests/test_app.py", "README.md"]) is None


def test_never_wins_over_may(cast: Any) -> None:
    update(cast, allowed_paths=["config/**"], denied_paths=["config/secrets/**"])
    policy = effective_policy(organization=cast.org)
    assert path_refusal(policy, "config/app.yaml") is None
    refusal = path_refusal(policy, "config/secrets/prod.yaml")
    assert refusal is not None and (refusal.rule, refusal.value) == (
        "denied_paths", "config/secrets/**")
    outside = path_refusal(policy, "src/app.py")
    assert outside is not None and outside.rule == "allowed_paths"


def test_a_change_of_too_many_files_is_refused(cast: Any) -> None:
    update(cast, max_changed_files=2)
    policy = effective_policy(organization=cast.org)
    assert edits_refusal(policy, ["a.py", "b.py"]) is None
    refusal = edits_refusal(policy, ["a.py", "b.py", "c.py"])
    assert refusal is not None and (refusal.rule, refusal.value) == ("max_changed_files", 2)


def test_commands_run_only_allowed_programs(cast: Any) -> None:
    policy = effective_policy(organization=cast.org)
    assert command_refusal(policy, ["pytest", "-q"]) is None
    for argv in (["env"], ["sh", "-c", "pytest"], ["/usr/bin/pytest"], []):
        refusal = command_refusal(policy, argv)
        assert refusal is not None and refusal.rule == "allowed_programs", argv


def test_a_sampled_audit_is_drawn_once_per_ticket_at_the_stated_share(cast: Any) -> None:
    update(cast, audit_mode="sampled", audit_sample_percent=20)
    policy = effective_policy(organization=cast.org)
    ids = [f"00000000-0000-0000-0000-{n:012d}" for n in range(2000)]
    share = sum(audit_wanted(policy, ticket_id=i) for i in ids) / len(ids)
    assert 0.16 < share < 0.24
    assert [audit_wanted(policy, ticket_id=i) for i in ids[:50]] == [
        audit_wanted(policy, ticket_id=i) for i in ids[:50]]


# --- Changing a policy -------------------------------------------------------------------------

def test_a_change_is_a_numbered_version_and_an_audit_event_with_its_diff(cast: Any) -> None:
    update(cast, retry_budget=5)
    policy = update(cast, retry_budget=2, escalation_allowed=False)
    assert (policy.retry_budget, policy.escalation_allowed, policy.version) == (2, False, 2)
    assert policy.sources["retry_budget"] == "organization"
    latest = PolicyVersion.objects.for_org(cast.org).get(number=2)
    assert latest.changes == {"escalation_allowed": [None, False], "retry_budget": [5, 2]}
    assert latest.author == cast.admin
    event = AuditEvent.objects.filter(organization=cast.org, type="policy.changed").last()
    assert event is not None and event.actor_user == cast.admin
    assert event.data["changes"]["retry_budget"] == [5, 2] and event.data["version"] == 2
    # Saving the same values again changes nothing, and no version is written.
    assert update(cast, retry_budget=2).version == 2


@pytest.mark.parametrize(("changes", "field", "says"), [
    ({"denied_paths": ["src/[ab].py"]}, "denied_paths", "wildcards"),
    ({"allowed_paths": ["/etc/passwd"]}, "allowed_paths", "relative"),
    ({"allowed_paths": ["src/../.."]}, "allowed_paths", "'..'"),
    ({"allowed_paths": "src/**"}, "allowed_paths", "list"),
    ({"retry_budget": -1}, "retry_budget", "from 0 to 20"),
    ({"retry_budget": "3"}, "retry_budget", "whole number"),
    ({"allowed_programs": ["pytest", "foo-runner"]}, "allowed_programs", "not a program HAAO"),
    ({"allowed_programs": ["bash"]}, "allowed_programs", "any command"),
    ({"allowed_programs": ["../x"]}, "allowed_programs", "not a program name"),
    ({"ticket_cloud_cap_usd": "-5"}, "ticket_cloud_cap_usd", "zero or more"),
    ({"ticket_cloud_cap_usd": "1.005"}, "ticket_cloud_cap_usd", "two decimal"),
    ({"ticket_cloud_cap_usd": "lots"}, "ticket_cloud_cap_usd", "not an amount"),
    ({"audit_mode": "sometimes"}, "audit_mode", "one of all, sampled, off"),
    ({"sandbox_network": True}, "sandbox_network_reason", "state why"),
    ({"wip_limit": None}, "wip_limit", "may not be empty"),
    ({"max_retries": 3}, "max_retries", "not a policy rule"),
])
def test_bad_input_names_the_field_and_stores_nothing(cast: Any, changes: dict[str, Any],
                                                       field: str, says: str) -> None:
    update(cast, retry_budget=4)
    before = policy_row_values(organization=cast.org, project=None)
    with pytest.raises(PolicyInvalid) as raised:
        update(cast, max_changed_files=7, **changes)
    assert field in raised.value.details and says in " ".join(raised.value.details[field])
    assert field in raised.value.message
    assert policy_row_values(organization=cast.org, project=None) == before
    assert PolicyVersion.objects.for_org(cast.org).count() == 1


def test_the_network_turns_on_with_a_reason(cast: Any) -> None:
    policy = update(cast, sandbox_network=True,
                    sandbox_network_reason="Checks install from the internal mirror.")
    assert policy.sandbox_network and policy.sandbox_network_reason.startswith("Checks")


def test_a_project_overrides_rules_adds_denied_paths_and_can_inherit_again(cast: Any) -> None:
    update(cast, retry_budget=4, denied_paths=["secrets/**"])
    project = cast.project
    policy = update(cast, project, retry_budget=1, denied_paths=["vendor/**"])
    assert (policy.retry_budget, policy.sources["retry_budget"]) == (1, "project")
    assert policy.denied_paths == ["secrets/**", "vendor/**"]
    assert policy.sources["denied_paths"] == "organization + project"
    assert policy.sources["wip_limit"] == "default"
    # The organization's own view is unchanged by the project's override.
    assert effective_policy(organization=cast.org).retry_budget == 4
    back = policy_update(organization=cast.org, project=project, actor=Actor.of(cast.admin),
                         changes={}, inherit=["retry_budget"])
    assert (back.retry_budget, back.sources["retry_budget"]) == (4, "organization")
    assert policy_row_values(organization=cast.org, project=project) == {
        "denied_paths": ["vendor/**"]}


def test_another_organizations_project_cannot_be_given_a_policy(cast: Any) -> None:
    with pytest.raises(PolicyInvalid):
        update(cast, cast.other_project, retry_budget=1)
    assert not PolicyVersion.objects.exists()


# --- Spend caps --------------------------------------------------------------------------------

@pytest.fixture
def cloud_endpoint(cast: Any, settings: Any) -> InferenceEndpoint:
    settings.HAAO_ENDPOINT_ALLOWLIST = ["127.0.0.1"]
    return tech_lead_endpoint(cast.org, cast.admin, base_url="http://127.0.0.1:9")


def spend(cast: Any, endpoint: InferenceEndpoint, tokens: int, *, at: Any = None,
          **owners: Any) -> ModelCall:
    return ledger.model_call_record(
        organization=cast.org, endpoint=endpoint, role="audit", outcome="ok",
        model=endpoint.model, input_tokens=tokens, at=at, **owners)


def test_caps_count_cloud_spend_of_the_ticket_the_requirement_and_the_month(
        cast: Any, cloud_endpoint: InferenceEndpoint) -> None:
    ticket = TicketFactory(requirement__project=cast.project)
    other = TicketFactory(requirement__project=cast.project)
    # Sonnet input at $3 per million tokens: 1M tokens is $3.
    spend(cast, cloud_endpoint, 1_000_000, ticket=ticket)
    spend(cast, cloud_endpoint, 1_000_000, ticket=other)
    spend(cast, cloud_endpoint, 5_000_000, at=timezone.now() - timedelta(days=40))
    policy = update(cast, ticket_cloud_cap_usd="4.00", requirement_cloud_cap_usd=None,
                    monthly_cloud_cap_usd="8.00")
    org = cast.org
    assert spend_refusal(policy, organization=org, ticket=ticket,
                         estimate=Decimal("0.99")) is None
    refusal = spend_refusal(policy, organization=org, ticket=ticket, estimate=Decimal("1.01"))
    assert refusal is not None and (refusal.rule, refusal.value) == (
        "ticket_cloud_cap_usd", Decimal("4.00"))
    # $6 this month (last month's $15 does not count): $2.50 more would pass $8.
    monthly = spend_refusal(policy, organization=org, estimate=Decimal("2.50"))
    assert monthly is not None and monthly.rule == "monthly_cloud_cap_usd"
    assert "6.0000 USD spent" in monthly.message


def test_every_cap_of_a_call_is_summed_in_one_query(
        cast: Any, cloud_endpoint: InferenceEndpoint, django_assert_num_queries: Any) -> None:
    ticket = TicketFactory(requirement__project=cast.project)
    spend(cast, cloud_endpoint, 1_000_000, ticket=ticket)  # $3
    policy = update(cast, ticket_cloud_cap_usd="4.00", requirement_cloud_cap_usd="10.00",
                    monthly_cloud_cap_usd="8.00")
    ticket = Ticket.objects.get(pk=ticket.pk)
    with django_assert_num_queries(1):
        budgets = cloud_budgets(policy, organization=cast.org, ticket=ticket)
    assert [(b.rule, b.spent) for b in budgets] == [
        ("ticket_cloud_cap_usd", Decimal("3")), ("requirement_cloud_cap_usd", Decimal("3")),
        ("monthly_cloud_cap_usd", Decimal("3"))]


def test_a_cap_refusal_is_an_event_and_mails_the_admins_after_commit(
        cast: Any, django_capture_on_commit_callbacks: Any) -> None:
    policy = update(cast, ticket_cloud_cap_usd="0.00")
    ticket = TicketFactory(requirement__project=cast.project)
    refusal = spend_refusal(policy, organization=cast.org, ticket=ticket,
                            estimate=Decimal("0.01"))
    assert refusal is not None
    with django_capture_on_commit_callbacks(execute=True):
        refusal_record(organization=cast.org, refusal=refusal, policy=policy, ticket=ticket,
                       point="cloud call")
    event = AuditEvent.objects.get(type="guardrail.refused", target_id=str(ticket.pk))
    assert (event.data["rule"], event.data["value"], event.data["policy_version"]) == (
        "ticket_cloud_cap_usd", "0.00", policy.version)
    [message] = mail.outbox
    assert message.to == [cast.admin.email] and "spend cap" in message.subject.lower()


# --- The cloud call's gate, with the real SDK over HTTP --------------------------------------

@pytest.fixture
def server() -> Iterator[AnthropicServer]:
    with AnthropicServer() as running:
        yield running


@pytest.fixture
def claude(cast: Any, settings: Any, server: AnthropicServer) -> InferenceEndpoint:
    settings.HAAO_ENDPOINT_ALLOWLIST = ["127.0.0.1"]
    return tech_lead_endpoint(cast.org, cast.admin, base_url=server.url)


def call(cast: Any, endpoint: InferenceEndpoint, text: str, *, ticket: Any = None,
         max_tokens: int = 1000) -> Any:
    context = CallContext(organization=cast.org, role="audit", key=f"t:{text[:20]}",
                          project=cast.project, ticket=ticket)
    return TechLeadClient(endpoint, backoff_base=0.01, timeout=5.0).create(
        context=context, max_tokens=max_tokens,
        messages=[{"role": "user", "content": text}])


def test_secrets_and_the_organizations_own_keys_are_redacted_before_the_call(
        cast: Any, claude: InferenceEndpoint, server: AnthropicServer) -> None:
    coder_key = "lmstudio-key-" + "Zq81xW4vT0pL7sK2"
    agent_services.endpoint_create(
        organization=cast.org, actor=cast.admin, api_key=coder_key,
        values={"name": "Box", "kind": "openai_compatible", "base_url": "http://127.0.0.1:9",
                "model": "qwen", "role": "coder"})
    server.enqueue(anth.text_reply("Looks fine."))
    aws = "AKIA" + "QX7PL2M9RT4KZW3N"
    call(cast, claude, f"The config sets aws_access_key_id = {aws} and the coder's key is "
                       f"{coder_key}; review it.")
    sent = str(server.requests_to("/v1/messages")[0].body)
    assert aws not in sent and coder_key not in sent and "[REDACTED" in sent
    assert ModelCall.objects.get(outcome="ok").redactions == 2


def test_a_spent_cap_refuses_before_any_request(cast: Any, claude: InferenceEndpoint,
                                                server: AnthropicServer) -> None:
    ticket = TicketFactory(requirement__project=cast.project)
    update(cast, ticket_cloud_cap_usd="0.00")
    with pytest.raises(GuardrailRefused) as refused:
        call(cast, claude, "Audit this.", ticket=ticket)
    assert refused.value.refusal.rule == "ticket_cloud_cap_usd"
    assert server.requests == []
    blocked = ModelCall.objects.get(ticket=ticket)
    assert (blocked.outcome, blocked.cost, blocked.input_tokens) == ("blocked", 0, 0)
    assert AuditEvent.objects.filter(type="guardrail.refused", target_id=str(ticket.pk)).exists()


def test_a_call_that_might_go_over_the_cap_is_counted_first_and_refused(
        cast: Any, claude: InferenceEndpoint, server: AnthropicServer) -> None:
    ticket = TicketFactory(requirement__project=cast.project)
    # 100k output tokens at $15 per million could cost $1.50; the cap leaves $1.
    update(cast, ticket_cloud_cap_usd="1.00")
    with pytest.raises(GuardrailRefused):
        call(cast, claude, "Audit this.", ticket=ticket, max_tokens=100_000)
    assert [r.path for r in server.requests] == ["/v1/messages/count_tokens"]
    # The same call with room for its output goes out (the bound fits: no count needed).
    server.enqueue(anth.text_reply("Fine."))
    call(cast, claude, "Audit this, briefly.", ticket=ticket, max_tokens=1_000)
    assert [r.path for r in server.requests][-1] == "/v1/messages"
    assert len(server.requests) == 2


def test_data_residency_refuses_a_cloud_endpoint_without_a_request(
        cast: Any, claude: InferenceEndpoint, server: AnthropicServer) -> None:
    update(cast, cast.project, data_residency=True)
    with pytest.raises(GuardrailRefused) as refused:
        call(cast, claude, "Decompose this.")
    assert refused.value.refusal.rule == "data_residency" and server.requests == []



def test_every_rule_is_documented() -> None:
    from django.conf import settings

    text = (settings.BASE_DIR / "docs" / "policies.md").read_text()
    missing = [rule.name for rule in rules.RULES if f"`{rule.name}`" not in text]
    assert missing == []


def test_a_project_inherits_the_organizations_network_reason(cast: Any) -> None:
    update(cast, sandbox_network_reason="The organization's checks reach the mirror.")
    update(cast, cast.project, sandbox_network=True,
           sandbox_network_reason="This project's checks call the stub.")
    policy = policy_update(organization=cast.org, project=cast.project,
                           actor=Actor.of(cast.admin), changes={},
                           inherit=["sandbox_network_reason"])
    assert policy.sandbox_network and policy.sources["sandbox_network_reason"] == "organization"


@pytest.mark.parametrize(("field", "value"), [
    ("sandbox_network_reason", "a\x00b"), ("sandbox_network_reason", "x" * 1_000_001),
    ("denied_paths", ["src/a\x00b"]), ("denied_paths", ["x" * 1_000_000]),
    ("allowed_programs", ["pytest\x00"]), ("audit_mode", "all\x00"),
    ("ticket_cloud_cap_usd", "1\x00"), ("ticket_cloud_cap_usd", "9" * 1_000_000),
])
def test_nul_bytes_and_huge_values_are_refused_naming_the_field(cast: Any, field: str,
                                                                value: Any) -> None:
    with pytest.raises(PolicyInvalid) as raised:
        update(cast, **{field: value})
    assert field in raised.value.details
    assert len(raised.value.message) < 1000  # the input is not echoed back
    assert not PolicyVersion.objects.exists()


@pytest.mark.parametrize(("path", "denied"), [
    ("SECRETS/prod.yaml", True), ("secrets./prod.yaml", True), ("secrets /prod.yaml", True),
    ("deploy/Server.KEY", True), ("deploy/server.key.", True), ("deploy/server.key .", True),
    (".ENV", True), (".Github/workflows/ci.yml", True), ("src/app.py", False),
])
def test_denied_paths_match_whatever_case_and_trailing_dots_or_spaces(cast: Any, path: str,
                                                                      denied: bool) -> None:
    update(cast, denied_paths=["secrets/**", "**/*.key", ".env", ".github/**"],
           allowed_paths=["**"])
    refusal = path_refusal(effective_policy(organization=cast.org), path)
    assert (refusal is not None and refusal.rule == "denied_paths") is denied



@pytest.mark.parametrize(("argv", "option"), [
    (["python", "-c", "import os"], "-c"),
    (["python3.12", "-Bc", "print(1)"], "-c"),
    (["python", "-I", "-c", "print(1)"], "-c"),
    (["node", "--eval=process.exit(0)"], "--eval"),
    (["node", "-p", "1"], "-p"),
    (["python", "-m", "pytest", "-q"], None),
    (["python", "scripts/check.py", "-c", "x"], None),
    (["pytest", "-c", "setup.cfg"], None),  # pytest's -c names a config file
])
def test_code_typed_on_a_checks_command_line_is_recognised(argv, option) -> None:
    assert rules.inline_code_option(argv) == option


@pytest.mark.django_db
def test_a_check_running_inline_code_is_refused_until_the_policy_allows_it(cast) -> None:
    refusal = command_refusal(effective_policy(organization=cast.org), ["python", "-c", "1"])
    assert refusal is not None and refusal.rule == "inline_code"
    assert "python -c" in refusal.message
    assert command_refusal(effective_policy(organization=cast.org),
                           ["python", "-m", "pytest"]) is None
    policy_update(organization=cast.org, actor=Actor.of(cast.admin),
                  changes={"inline_code": True})
    assert command_refusal(effective_policy(organization=cast.org),
                           ["python", "-c", "1"]) is None
