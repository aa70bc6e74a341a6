"""The console's policy pages: admins only, every rule with its source, bad values refused on
their field with nothing stored, project overrides, and the "try it" box."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client

from haao.audit import Actor
from haao.models import AuditEvent
from policies import rules
from policies.forms import PolicyForm
from policies.models import PolicyVersion
from policies.selectors import effective_policy, policy_row_values
from policies.services import policy_update

pytestmark = pytest.mark.django_db
PAGE = "/o/acme/admin/policies/"
AWS_KEY = "AKIAQ3EGRXMPL7T5WZ4K"


def browser(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def project_page(cast) -> str:
    return f"{PAGE}projects/{cast.project.pk}/"


def submission(cast, project=None, **changes: Any) -> dict[str, Any]:
    """What the browser sends when the admin saves the page after changing `changes`."""
    effective = effective_policy(organization=cast.org, project=project)
    own = policy_row_values(organization=cast.org, project=project)
    shown = effective.values()
    if project is not None:
        shown["denied_paths"] = own.get("denied_paths", [])
    data: dict[str, Any] = {}
    for name, value in PolicyForm(shown=shown).initial.items():
        if rules.BY_NAME[name].kind == "bool":
            if value:
                data[name] = "on"
        else:
            data[name] = "" if value is None else value
    for name, value in changes.items():
        if value is False:
            data.pop(name, None)
        else:
            data[name] = "on" if value is True else value
    return data


def stored(cast, project=None) -> tuple[dict[str, Any], int, int]:
    return (policy_row_values(organization=cast.org, project=project),
            PolicyVersion.objects.count(),
            AuditEvent.objects.filter(type="policy.changed").count())


def test_an_admin_sees_every_rule_grouped_with_its_source(cast) -> None:
    policy_update(organization=cast.org, actor=Actor.of(cast.admin),
                  changes={"retry_budget": 5})
    page = browser(cast.admin).get(PAGE)
    assert page.status_code == 200
    html = page.content.decode()
    for rule in rules.RULES:
        assert rule.label in html, rule.name
        assert f'id="rule-{rule.name}"' in html
    for group in ("Paths", "Checks", "Routing", "Cloud", "Audit"):
        assert f">{group}</legend>" in html
    retry = html.split('id="rule-retry_budget"')[1].split('id="rule-')[0]
    assert ">organization</span>" in retry and "In force: <span class=\"font-medium\">5" in retry
    wip = html.split('id="rule-wip_limit"')[1].split('id="rule-')[0]
    assert ">default</span>" in wip
    assert "Secret redaction before cloud calls: always on (cannot be switched off)" in html
    assert "Version 1" in html and "Payments" in html


def test_outsiders_get_404_and_members_without_the_capability_403(cast) -> None:
    urls = [PAGE, project_page(cast)]
    for url in urls:
        assert browser(cast.outsider).get(url).status_code == 404
        for user in (cast.member, cast.manager, cast.product_owner):
            assert browser(user).get(url).status_code == 403
    for url in (PAGE, project_page(cast), f"{PAGE}try/", f"{project_page(cast)}try/"):
        assert browser(cast.outsider).post(url, {"retry_budget": "9"}).status_code == 404
        assert browser(cast.member).post(url, {"retry_budget": "9"}).status_code == 403
    other = f"{PAGE}projects/{cast.other_project.pk}/"
    assert browser(cast.admin).get(other).status_code == 404
    assert PolicyVersion.objects.count() == 0


def test_the_nav_links_the_page_for_admins_only(cast) -> None:
    assert PAGE.encode() in browser(cast.admin).get("/o/acme/").content
    assert PAGE.encode() not in browser(cast.member).get("/o/acme/").content


def test_saving_stores_only_the_changed_rules_and_shows_the_new_version(cast) -> None:
    client = browser(cast.admin)
    response = client.post(PAGE, submission(cast, retry_budget="5",
                                            ticket_cloud_cap_usd="7.50"))
    assert response.status_code == 302, response.content.decode()[:3000]
    assert policy_row_values(organization=cast.org, project=None) == {
        "retry_budget": 5, "ticket_cloud_cap_usd": "7.50"}
    version = PolicyVersion.objects.get()
    assert version.number == 1 and version.author == cast.admin
    page = client.get(PAGE).content.decode()
    assert "Policy saved as version 1." in page and "Version 1" in page
    assert "Retry budget</span>: default → 5" in page
    assert "Cloud spend cap per ticket</span>: default → 7.50 USD" in page
    assert client.post(PAGE, submission(cast)).status_code == 302
    assert PolicyVersion.objects.count() == 1
    assert "Nothing changed." in client.get(PAGE).content.decode()


@pytest.mark.parametrize(("field", "changes"), [
    ("allowed_paths", {"allowed_paths": "src/**\nsrc/[a]"}),
    ("ticket_cloud_cap_usd", {"ticket_cloud_cap_usd": "-5"}),
    ("retry_budget", {"retry_budget": "-1"}),
    ("allowed_programs", {"allowed_programs": "pytest\nfoo-runner"}),
    ("allowed_programs", {"allowed_programs": "pytest\nbash"}),
    ("sandbox_network_reason", {"sandbox_network": True}),
    ("monthly_cloud_cap_usd", {"monthly_cloud_cap_usd": "lots"}),
])
def test_a_bad_value_is_refused_on_its_field_and_nothing_is_stored(cast, field,
                                                                   changes) -> None:
    policy_update(organization=cast.org, actor=Actor.of(cast.admin), changes={"wip_limit": 4})
    before = stored(cast)
    # A valid change in the same save is not stored either.
    response = browser(cast.admin).post(PAGE, submission(cast, retry_budget="6", **changes)
                                        if field != "retry_budget" else submission(cast,
                                                                                   **changes))
    assert response.status_code == 400
    html = response.content.decode()
    errors = html.split(f'id="id_{field}_error"')[1].split("</ul>")[0]
    assert "<li>" in errors
    assert stored(cast) == before


def test_a_project_overrides_a_rule_adds_denied_paths_and_inherits_again(cast) -> None:
    client = browser(cast.admin)
    url = project_page(cast)
    page = client.get(url).content.decode()
    assert "The project adds to the organization's list" in page
    response = client.post(url, submission(cast, project=cast.project, retry_budget="7",
                                           denied_paths="secrets/**"))
    assert response.status_code == 302, response.content.decode()[:3000]
    assert policy_row_values(organization=cast.org, project=cast.project) == {
        "retry_budget": 7, "denied_paths": ["secrets/**"]}
    assert policy_row_values(organization=cast.org, project=None) == {}
    effective = effective_policy(organization=cast.org, project=cast.project)
    assert "secrets/**" in effective.denied_paths and ".git/**" in effective.denied_paths
    html = client.get(url).content.decode()
    retry = html.split('id="rule-retry_budget"')[1].split('id="rule-')[0]
    assert ">project</span>" in retry and "Inherit from organization" in retry
    assert ">default + project</span>" in html
    listing = client.get(PAGE).content.decode()
    assert "Paths agents may never change, Retry budget" in listing or \
        "Retry budget, Paths agents may never change" in listing
    inherit = {**submission(cast, project=cast.project), "inherit": "retry_budget"}
    assert client.post(url, inherit).status_code == 302
    assert policy_row_values(organization=cast.org, project=cast.project) == {
        "denied_paths": ["secrets/**"]}
    assert client.post(url, submission(cast, project=cast.project,
                                       denied_paths="")).status_code == 302
    assert policy_row_values(organization=cast.org, project=cast.project) == {}
    assert PolicyVersion.objects.count() == 3


def test_reset_to_default_drops_the_organizations_own_value(cast) -> None:
    policy_update(organization=cast.org, actor=Actor.of(cast.admin), changes={"wip_limit": 9})
    client = browser(cast.admin)
    assert "Reset to default" in client.get(PAGE).content.decode()
    response = client.post(PAGE, {**submission(cast), "inherit": "wip_limit"})
    assert response.status_code == 302
    assert policy_row_values(organization=cast.org, project=None) == {}
    assert effective_policy(organization=cast.org).sources["wip_limit"] == "default"


def test_try_it_shows_refusals_and_the_redacted_payload(cast) -> None:
    response = browser(cast.admin).post(f"{PAGE}try/", {
        "path": ".github/workflows/ci.yml", "command": "curl -s 'https://example.com/x y'",
        "payload": f"deploy with {AWS_KEY} today"})
    assert response.status_code == 200
    html = response.content.decode()
    result = html.split('id="try-result"')[1]
    path, command = result.split("Command")[0], result.split("Command")[1].split("Text:")[0]
    payload = result.split("Text:")[1].split("</pre>")[0]
    assert ">refused</span>" in path and "denied_paths" in path and ".github/workflows/**" in path
    assert ">refused</span>" in command and "allowed_programs" in command and "curl" in command
    assert "1 secret redacted" in payload and "[REDACTED" in payload
    assert AWS_KEY not in payload


def test_try_it_shows_no_secret_anywhere_on_the_page_not_even_in_its_own_form(cast) -> None:
    response = browser(cast.admin).post(f"{PAGE}try/", {
        "path": "config/settings.py",
        "command": 'curl -H "Authorization: Bearer sk-live-abcdefghijklmnop1234" https://x.example',
        "payload": "login with password=hunter2 and token=9f8e7d6c5b4aZQ"})
    assert response.status_code == 200
    html = response.content.decode()
    for secret in ("hunter2", "sk-live-abcdefghijklmnop1234", "9f8e7d6c5b4aZQ"):
        assert secret not in html, secret
    assert "password=[REDACTED" in html and "Bearer [REDACTED" in html
    result = html.split('id="try-result"')[1]
    assert ">refused</span>" in result.split("Command")[1]  # still decided on what was typed


def test_try_it_for_a_project_uses_the_projects_policy(cast) -> None:
    policy_update(organization=cast.org, actor=Actor.of(cast.admin), project=cast.project,
                  changes={"denied_paths": ["docs/**"]})
    client = browser(cast.admin)
    url = f"{project_page(cast)}try/"
    html = client.post(url, {"path": "docs/index.md", "command": "pytest -q"}).content.decode()
    result = html.split('id="try-result"')[1]
    assert ">refused</span>" in result.split("Command")[0]
    assert ">allowed</span>" in result.split("Command")[1]
    org_html = client.post(f"{PAGE}try/", {"path": "docs/index.md"}).content.decode()
    assert ">allowed</span>" in org_html.split('id="try-result"')[1]


def test_try_it_refuses_bad_quoting_and_an_empty_box(cast) -> None:
    client = browser(cast.admin)
    bad = client.post(f"{PAGE}try/", {"command": "pytest 'unclosed"})
    assert bad.status_code == 400
    assert "Could not split the command" in bad.content.decode().split(
        'id="id_command_error"')[1]
    empty = client.post(f"{PAGE}try/", {"path": "", "command": "", "payload": ""})
    assert empty.status_code == 400 and "Give a path, a command or a text" in empty.content.decode()


# --- Endpoints: the self-hosted checkbox ------------------------------------------------------

ENDPOINTS = "/o/acme/admin/endpoints/"
ENDPOINT_FORM = {"name": "GPU box", "kind": "openai_compatible", "flavor": "lm_studio",
                 "base_url": "http://93.184.215.14:1234/v1", "model": "qwen2.5-coder",
                 "role": "coder", "api_key": "", "max_concurrency": "1", "price_input": "",
                 "price_output": "", "dedicated_queue": "", "enabled": "on"}


def test_the_self_hosted_checkbox_round_trips_through_the_console(cast) -> None:
    from agents.models import InferenceEndpoint

    client = browser(cast.admin)
    form = client.get(ENDPOINTS).content.decode()
    assert "Self-hosted: runs on our machines (allowed under data residency)" in form
    assert 'id="id_self_hosted" checked' in form  # a new endpoint is local by default
    response = client.post(ENDPOINTS, {**ENDPOINT_FORM, "self_hosted": "on"})
    assert response.status_code == 302, response.content.decode()[:2000]
    endpoint = InferenceEndpoint.objects.get()
    assert endpoint.self_hosted is True
    edit = f"{ENDPOINTS}{endpoint.pk}/"
    assert 'id="id_self_hosted" checked' in client.get(edit).content.decode()
    assert client.post(edit, ENDPOINT_FORM).status_code == 302  # the box left unticked
    endpoint.refresh_from_db()
    assert endpoint.self_hosted is False
    assert 'id="id_self_hosted" checked' not in client.get(edit).content.decode()


def test_the_console_refuses_anthropics_own_api_as_self_hosted(cast) -> None:
    from agents.models import InferenceEndpoint

    response = browser(cast.admin).post(ENDPOINTS, {
        **ENDPOINT_FORM, "name": "Claude", "kind": "anthropic", "flavor": "", "base_url": "",
        "model": "claude-sonnet-4-5", "role": "tech_lead", "self_hosted": "on"})
    assert response.status_code == 400
    errors = response.content.decode().split('id="id_self_hosted_error"')[1].split("</ul>")[0]
    assert "Anthropic" in errors
    assert not InferenceEndpoint.objects.exists()


def test_the_page_sums_up_every_refused_value_at_the_top_with_links_to_the_fields(cast) -> None:
    response = browser(cast.admin).post(PAGE, submission(cast, retry_budget="-1",
                                                         monthly_cloud_cap_usd="lots"))
    assert response.status_code == 400
    html = response.content.decode()
    summary = html.split('id="form-errors"')[1].split("</div>")[0]
    assert html.index('id="form-errors"') < html.index('id="id_retry_budget"')
    assert "2 problems to fix before saving:" in summary
    assert 'href="#id_retry_budget"' in summary and 'href="#id_monthly_cloud_cap_usd"' in summary


def test_a_valid_page_has_no_error_summary(cast) -> None:
    assert 'id="form-errors"' not in browser(cast.admin).get(PAGE).content.decode()
def test_a_policy_stored_with_an_unpaired_surrogate_still_shows_with_its_history(cast) -> None:
    if connection.vendor == "postgresql":
        pytest.skip("PostgreSQL's jsonb never stored unpaired surrogates")
    # As stored (on SQLite) before the API refused it.
    policy_update(organization=cast.org, actor=Actor.of(cast.admin),
                  changes={"sandbox_network_reason": "why \ud800",
                           "denied_paths": ["secrets/\udc00/**"]})
    response = browser(cast.admin).get(PAGE)
    assert response.status_code == 200
    page = response.content.decode()
    assert "why \ufffd" in page and "secrets/\ufffd/**" in page
