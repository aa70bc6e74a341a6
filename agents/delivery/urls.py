"""Portal routes of delivery, included under /o/<org>/."""

from __future__ import annotations

from django.urls import URLPattern, path

from agents.delivery import views

urlpatterns: list[URLPattern] = [
    path("projects/<str:key>/branches/<uuid:branch>/deliver/",
         views.BranchDeliverView.as_view(), name="portal-branch-deliver"),
]
