"""`make run` without keys: the demo organization's sample models take a requirement against
the sample project through both gates, on the embedded defaults (SQLite, SQL broker), with
`manage.py serve`'s real web, worker and beat processes, driven over the REST API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.demo_server import demo_server, poll

TOKEN_SCRIPT = """
from datetime import timedelta
from django.utils import timezone
from accounts.models import Organization, User
from accounts.services import api_token_create
org = Organization.objects.get(slug="demo")
user = User.objects.get(email="po@demo.haao.local")
_, raw = api_token_create(organization=org, user=user, name="demo test",
                          scopes=["read", "write"], expires_at=timezone.now() + timedelta(days=1))
print(raw)
"""


def test_the_demo_takes_a_requirement_to_a_merged_commit(tmp_path: Path) -> None:
    with demo_server(tmp_path, HAAO_CHECK_TOOLCHAIN=",".join(sorted({sys.prefix,
                                                                     sys.base_prefix})),
                     HAAO_RECOVERY_INTERVAL="3") as demo:
        assert "sample models" in demo.seed_output
        token = demo.manage("shell", "-c", TOKEN_SCRIPT).strip().splitlines()[-1]
        log = demo.log
        with httpx.Client(base_url=f"{demo.url}/api/v1/orgs/demo/", timeout=10,
                          headers={"Authorization": f"Bearer {token}"}) as api:
            created = api.post("projects/DEMO/requirements/", json={
                "title": "Invoices round half a cent the wrong way",
                "text": "A total of 0.125 shows as 0.12 on invoices; accountants expect 0.13."})
            assert created.status_code == 201, created.text
            key = created.json()["key"]
            proposal = poll(lambda: api.get(f"requirements/{key}/").json(),
                            until=lambda r: r["status"] != "decomposing", timeout=60,
                            what="the sample Tech Lead's proposal", logs=log)
            assert proposal["status"] == "proposed", proposal
            [ticket_key] = [ticket["key"] for ticket in proposal["tickets"]]
            assert api.post(f"requirements/{key}/approve/").status_code == 200

            ticket = poll(lambda: api.get(f"tickets/{ticket_key}/").json(),
                          until=lambda t: t["state"] in ("awaiting_acceptance", "blocked"),
                          timeout=120, what="the ticket to await acceptance", logs=log)
            assert ticket["state"] == "awaiting_acceptance", ticket
            # The sample coder's first answer fails the sample's tests; its retry fixes them.
            assert [a["outcome"] for a in ticket["attempts"]] == ["tests_failed", "passed"]

            assert api.post(f"tickets/{ticket_key}/accept/").status_code == 200
            merged = poll(lambda: api.get(f"tickets/{ticket_key}/").json(),
                          until=lambda t: bool(t["merged_commit"]), timeout=60,
                          what="the merge into the integration branch", logs=log)
            # The stream shows an event once it is sealed: a moment after its commit in a
            # worker, whose sealer thread gathers commits first (docs/events.md).
            poll(lambda: [event["type"] for event in api.get(
                     f"tickets/{ticket_key}/events/", params={"limit": 500}).json()["results"]],
                 until=lambda types: "ticket.audited" in types and "ticket.merged" in types,
                 timeout=10, what="the audit and merge in the ticket's events", logs=log)
            project_repos = list((tmp_path / "data" / "workspaces").glob("*/repo"))
            assert len(project_repos) == 1
            subject = subprocess.run(
                ["git", "log", "-1", "--format=%H %s", "haao/integration"], cwd=project_repos[0],
                capture_output=True, text=True, check=True).stdout.strip()
            assert subject == f"{merged['merged_commit']} {ticket_key}: {merged['title']}"
