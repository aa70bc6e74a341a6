"""Console pages for invitations: create (link shown once), list, revoke."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import messages
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
)
from django.shortcuts import redirect

from accounts import services
from accounts.forms import (
    InvitationForm,
)
from accounts.models import Invitation
from accounts.roles import Capability
from accounts.services import invitation_link
from haao.errors import ApplicationError
from haao.views import OrgPage, no_store, service_error

logger = logging.getLogger(__name__)

class InvitationsView(OrgPage):
    """Invite people by email; list and revoke invitations."""

    required_capability = Capability.MANAGE_MEMBERS
    template_name = "console/invitations.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.setdefault("form", InvitationForm())
        context["invitations"] = (Invitation.objects.for_org(self.org)
                                  .select_related("invited_by", "accepted_by")
                                  .order_by("-created_at"))
        return context

    def post(self, request: HttpRequest) -> HttpResponse:
        form = InvitationForm(request.POST)
        if not form.is_valid():
            return self.render(400, form=form)
        try:
            invitation, raw = services.invitation_create(
                organization=self.org, email=form.cleaned_data["email"],
                role=form.cleaned_data["role"], actor=self.user)
        except ApplicationError as error:
            service_error(form, error)
            return self.render(error.status, form=form)
        # The link is rendered in this response only (never stored), so a reload cannot show it.
        return no_store(self.render(new_invitation=invitation, new_link=invitation_link(raw)))


class InvitationRevokeView(OrgPage):
    required_capability = Capability.MANAGE_MEMBERS
    http_method_names = ["post"]

    def post(self, request: HttpRequest, invitation_id: Any) -> HttpResponse:
        invitation = Invitation.objects.for_org(self.org).filter(pk=invitation_id).first()
        if invitation is None:
            raise Http404("Not found.")
        try:
            services.invitation_revoke(organization=self.org, invitation=invitation,
                                       actor=self.user)
        except ApplicationError as error:
            messages.error(request, error.message)
        else:
            messages.success(request, f"The invitation for {invitation.email} was revoked.")
        return redirect(self.org_url("console-invitations"))
