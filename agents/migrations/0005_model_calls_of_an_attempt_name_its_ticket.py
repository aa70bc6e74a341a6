"""Calls recorded with only their attempt now also name its ticket, so a ticket's cost
(its coder calls and its audits) is one sum over the rows naming the ticket."""

from django.db import migrations
from django.db.models import OuterRef, Subquery


def name_tickets(apps, schema_editor):
    ModelCall = apps.get_model("agents", "ModelCall")
    Attempt = apps.get_model("tickets", "Attempt")
    Ticket = apps.get_model("tickets", "Ticket")
    orphans = ModelCall.objects.filter(ticket=None).exclude(attempt=None)
    orphans.update(ticket_id=Subquery(
        Attempt.objects.filter(pk=OuterRef("attempt_id")).values("ticket_id")[:1]))
    ModelCall.objects.filter(project=None).exclude(ticket=None).update(project_id=Subquery(
        Ticket.objects.filter(pk=OuterRef("ticket_id")).values("project_id")[:1]))


class Migration(migrations.Migration):

    dependencies = [
        ("agents", "0004_integration_branches_and_git_packs"),
        ("tickets", "0006_project_repository_and_delivery"),
    ]

    operations = [migrations.RunPython(name_tickets, migrations.RunPython.noop)]
