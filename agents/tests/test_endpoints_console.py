"""The console's model endpoints page: admins only, the key never rendered, errors on fields."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from agents import ledger, services
from agents.models import InferenceEndpoint
from haao.models import AuditEvent

pytestmark = pytest.mark.django_db
PAGE = "/o/acme/admin/endpoints/"
FORM = {"name": "GPU box", "kind": "openai_compatible", "flavor": "lm_studio",
        "base_url": "http://93.184.215.14:1234/v1", "model": "qwen2.5-coder", "role": "coder",
        "api_key": "sk-local-SECRET", "max_concurrency": "2", "price_input": "",
        "price_output": "", "dedicated_queue": "", "enabled": "on"}


def browser(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def claude(cast) -> InferenceEndpoint:
    return services.endpoint_create(
        organization=cast.org, actor=cast.admin, api_key="sk-ant-SECRET",
        values={"name": "Claude", "kind": "anthropic", "base_url": "http://93.184.215.14",
                "model": "claude-sonnet-4-5", "role": "tech_lead"})


def test_outsider_404_member_403_admin_200(cast) -> None:
    endpoint = claude(cast)
    pages = [PAGE, f"{PAGE}{endpoint.pk}/"]
    for url in pages:
        assert browser(cast.outsider).get(url).status_code == 404
        for user in (cast.member, cast.manager, cast.product_owner):
            assert browser(user).get(url).status_code == 403
        assert browser(cast.admin).get(url).status_code == 200
    for action in ("check", "enabled", "delete"):
        url = f"{PAGE}{endpoint.pk}/{action}/"
        assert browser(cast.outsider).post(url).status_code == 404
        assert browser(cast.member).post(url).status_code == 403
    assert InferenceEndpoint.objects.filter(enabled=True).count() == 1


def test_the_nav_links_the_page_for_admins_only(cast) -> None:
    assert PAGE.encode() in browser(cast.admin).get("/o/acme/").content
    assert PAGE.encode() not in browser(cast.member).get("/o/acme/").content


def test_an_admin_adds_an_endpoint_and_the_key_is_never_rendered(cast) -> None:
    client = browser(cast.admin)
    response = client.post(PAGE, FORM)
    assert response.status_code == 302, response.content.decode()[:2000]
    page = client.get(PAGE)
    assert b"GPU box" in page.content and b"SECRET" not in page.content
    endpoint = InferenceEndpoint.objects.get()
    assert endpoint.reveal_api_key() == "sk-local-SECRET" and endpoint.max_concurrency == 2
    edit = client.get(f"{PAGE}{endpoint.pk}/")
    assert b"SECRET" not in edit.content and b"An API key is stored" in edit.content
    assert AuditEvent.objects.filter(type="endpoint.created").exists()


def test_the_edit_form_is_prefilled_with_the_table_price_and_keeps_following_it(cast) -> None:
    endpoint = claude(cast)
    client = browser(cast.admin)
    edit = client.get(f"{PAGE}{endpoint.pk}/").content.decode()
    assert 'name="price_input" value="3' in edit and 'name="price_output" value="15' in edit
    form = {**FORM, "name": "Claude", "kind": "anthropic", "flavor": "", "api_key": "",
            "base_url": "http://93.184.215.14", "model": "claude-sonnet-4-5",
            "role": "tech_lead", "price_input": "3.000000", "price_output": "15"}
    assert client.post(f"{PAGE}{endpoint.pk}/", form).status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.price_input is None and endpoint.price_output is None
    assert endpoint.reveal_api_key() == "sk-ant-SECRET"  # blank keeps the key
    client.post(f"{PAGE}{endpoint.pk}/", {**form, "price_input": "2.5"})
    endpoint.refresh_from_db()
    assert str(endpoint.price_input) == "2.500000"
    client.post(f"{PAGE}{endpoint.pk}/", {**form, "clear_api_key": "on"})
    endpoint.refresh_from_db()
    assert not endpoint.has_api_key


@pytest.mark.parametrize(("field", "value", "text"), [
    ("base_url", "http://169.254.169.254/", "link-local"),
    ("base_url", "http://192.168.1.10:1234/v1", "private"),
    ("base_url", "http://admin:pw@93.184.215.14/", "password"),
    ("price_input", "-1", "greater than or equal to 0"),
    ("max_concurrency", "100", "less than or equal to 64"),
    ("name", "x" * 1_000_000, "at most 100 characters"),
    ("model", "a\x00b", "Null characters are not allowed"),
    ("dedicated_queue", "UPPER case", "lowercase"),
])
def test_bad_input_is_shown_on_its_field_and_stores_nothing(cast, field, value, text) -> None:
    response = browser(cast.admin).post(PAGE, {**FORM, field: value})
    assert response.status_code == 400
    html = response.content.decode()
    assert f'id="id_{field}_error"' in html and text in html
    assert "SECRET" not in html
    assert not InferenceEndpoint.objects.exists()
    assert not AuditEvent.objects.filter(type__startswith="endpoint.").exists()


def test_disable_check_and_delete_from_the_list(cast, settings) -> None:
    endpoint = claude(cast)
    client = browser(cast.admin)
    client.post(f"{PAGE}{endpoint.pk}/enabled/", {"enabled": "0"})
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    # Saved while allowed, refused by the time of the check: the guard runs before any call.
    InferenceEndpoint.objects.filter(pk=endpoint.pk).update(base_url="http://127.0.0.1:9")
    settings.HAAO_ENDPOINT_ALLOWLIST = []
    response = client.post(f"{PAGE}{endpoint.pk}/check/", follow=True)
    assert b"is failing" in response.content and b"loopback" in response.content
    ledger.model_call_record(organization=cast.org, endpoint=endpoint, role="audit",
                               outcome="ok")
    response = client.post(f"{PAGE}{endpoint.pk}/delete/", follow=True)
    assert b"disable it instead" in response.content
    assert InferenceEndpoint.objects.exists()
