"""The OpenAPI description that client generators and the docs page read."""

from __future__ import annotations

import re
from io import StringIO

import pytest
import yaml
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def schema() -> dict:
    out = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    return yaml.safe_load(out.getvalue())


def test_the_schema_is_valid_openapi_without_warnings() -> None:
    document = schema()
    assert document["openapi"].startswith("3.")


def test_every_operation_has_a_stable_id_a_tag_and_error_responses() -> None:
    paths = schema()["paths"]
    ids = []
    for path, operations in paths.items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            ids.append(operation["operationId"])
            assert operation.get("tags"), f"{method} {path} has no tag"
            assert "401" in operation["responses"], f"{method} {path} documents no 401"
            if "{org}" in path:
                assert "404" in operation["responses"], f"{method} {path} documents no 404"
            for code, response in operation["responses"].items():
                if code.startswith(("4", "5")):
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref == "#/components/schemas/Error", f"{method} {path} {code}"
    assert len(ids) == len(set(ids))
    assert {"members_list", "tokens_create", "audit_events_list", "projects_grants_set"} <= set(ids)


def test_the_schema_and_docs_pages_are_served(client) -> None:
    assert client.get("/api/v1/schema/").status_code == 200
    assert client.get("/api/v1/docs/").status_code == 200


@pytest.mark.parametrize("page", ["/api/v1/docs/", "/api/v1/redoc/"])
def test_the_docs_pages_load_only_haaos_own_files_so_they_work_offline(client, page) -> None:
    response = client.get(page)
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(asset.endswith(".js") for asset in assets), html
    for asset in assets:
        assert asset.startswith("/static/"), f"{page} loads {asset} from elsewhere"
        served = client.get(asset)
        assert served.status_code == 200, asset
        assert b"".join(served.streaming_content if served.streaming else [served.content])
    assert "cdn." not in html and "//unpkg" not in html
def test_responses_link_a_project_to_its_requirements_and_a_requirement_to_its_tickets() -> None:
    paths = schema()["paths"]
    created = paths["/api/v1/orgs/{org}/projects/"]["post"]["responses"]["201"]["links"]
    assert created["ListRequirements"] == {
        "operationId": "requirements_list", "description": "The project's requirements.",
        "parameters": {"org": "$request.path.org", "key": "$response.body#/key"}}
    requirement = paths["/api/v1/orgs/{org}/requirements/{key}/"]["get"]["responses"]["200"]
    assert requirement["links"]["GetFirstTicket"]["parameters"]["key"] == \
        "$response.body#/tickets/0/key"
    ticket = paths["/api/v1/orgs/{org}/tickets/{key}/"]["get"]["responses"]["200"]["links"]
    assert {link["operationId"] for link in ticket.values()} >= {
        "tickets_approve", "tickets_accept", "tickets_reject", "tickets_cancel",
        "tickets_retry"}


def test_request_bodies_refuse_unknown_fields_and_lists_document_their_400() -> None:
    document = schema()
    assert document["components"]["schemas"]["RequirementCreateRequest"][
        "additionalProperties"] is False
    tickets = document["paths"]["/api/v1/orgs/{org}/tickets/"]["get"]
    page_size = next(p for p in tickets["parameters"] if p["name"] == "page_size")
    assert page_size["schema"] == {"type": "integer", "minimum": 1}
    assert "400" in document["paths"]["/api/v1/orgs/"]["get"]["responses"]


def test_an_endpoints_flavor_is_one_of_its_enum_or_blank() -> None:
    flavor = schema()["components"]["schemas"]["Endpoint"]["properties"]["flavor"]
    refs = {part.get("$ref") for part in flavor["oneOf"]}
    assert refs == {"#/components/schemas/FlavorEnum", "#/components/schemas/BlankEnum"}
