"""The forge's webhooks: pull request states and labelled issues, verified by shared secret.

One receiver per project at `/hooks/forge/<project id>/`. The project id is opaque, and the
signature (GitHub, Gitea: HMAC-SHA256 of the body; GitLab: the token header) is checked
before anything is read, so an unknown project, a project without a secret and a bad
signature look the same from outside.
"""

from __future__ import annotations

import logging
import uuid

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from agents.delivery.services import branch_pull_request_state
from agents.forges import FORGES, Forge, ForgeError
from agents.models import IntegrationBranch
from haao.errors import ApplicationError
from tickets.models import Project
from tickets.services import requirement_from_issue

logger = logging.getLogger(__name__)

# Forges send a few KB; a megabyte is generous and bounds what an anonymous caller can send.
MAX_BODY = 1024 * 1024
INTAKE_ACTIONS = {"opened", "labeled", "reopened", "open", "label_updated", "update"}


def _refused() -> JsonResponse:
    return JsonResponse({"error": {"code": "not_found", "message": "Not found."}}, status=404)


@csrf_exempt
@require_POST
def forge_webhook(request: HttpRequest, project_id: str) -> JsonResponse:

    try:
        uuid.UUID(project_id)
    except ValueError:
        return _refused()
    length = str(request.META.get("CONTENT_LENGTH") or "0")
    if not length.isdigit() or int(length) > MAX_BODY:
        return JsonResponse({"error": {"code": "too_large",
                                       "message": f"The body exceeds {MAX_BODY} bytes."}},
                            status=413)
    project = Project.objects.select_related("organization").filter(pk=project_id).first()
    secret = project.webhook_secret.reveal() if project and project.webhook_secret else ""
    kind = project.forge if project else ""
    body = request.body
    forge: type[Forge] | None = FORGES.get(kind)
    if project is None or not secret or forge is None or not forge.webhook_verify(
            headers=request.headers, body=body, secret=secret):
        return _refused()
    try:
        event = forge.webhook_parse(headers=request.headers, body=body)
    except ForgeError as error:
        return JsonResponse({"error": {"code": "invalid_payload", "message": error.message}},
                            status=400)
    if event.kind == "pull_request" and event.head_branch and event.pull_request_state:
        branch = (IntegrationBranch.objects.select_related("project__organization",
                                                           "requirement")
                  .filter(project=project, name=event.head_branch).first())
        if branch is None or (branch.pull_request_number
                              and branch.pull_request_number != event.pull_request_number):
            return JsonResponse({"ignored": "not a branch HAAO delivers"})
        branch_pull_request_state(branch=branch, state=event.pull_request_state)
        return JsonResponse({"pull_request": event.pull_request_state})
    if event.kind == "issue" and event.issue_number is not None \
            and project.intake_label in event.labels and event.action in INTAKE_ACTIONS:
        try:
            requirement = requirement_from_issue(
                project=project, number=event.issue_number, url=event.issue_url,
                title=event.issue_title, text=event.issue_body)
        except ApplicationError as error:
            return JsonResponse({"error": {"code": error.code, "message": error.message}},
                                status=400)
        return JsonResponse({"requirement": requirement.key if requirement else None},
                            status=201 if requirement else 200)
    return JsonResponse({"ignored": event.kind})
