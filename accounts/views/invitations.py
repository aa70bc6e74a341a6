"""The invitation page: an invitation shown, and accepted on POST."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views import View

from accounts import services
from haao.errors import ApplicationError


class InvitationView(LoginRequiredMixin, View):
    """Shows an invitation and accepts it on POST; links are single-use."""

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        try:
            invitation = services.invitation_for_token(token)
        except ApplicationError as error:
            return render(request, "accounts/invitation.html", {"error": error.message},
                          status=error.status)
        return render(request, "accounts/invitation.html", {"invitation": invitation})

    def post(self, request: HttpRequest, token: str) -> HttpResponse:
        try:
            membership = services.invitation_accept(raw_token=token, user=request.user)  # type: ignore[arg-type]
        except ApplicationError as error:
            return render(request, "accounts/invitation.html", {"error": error.message},
                          status=error.status)
        messages.success(request, f"Welcome to {membership.organization.name}.")
        return redirect("org-overview", org=membership.organization.slug)
