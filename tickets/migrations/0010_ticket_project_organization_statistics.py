"""On PostgreSQL, extended statistics telling the planner that a ticket's project decides its
organization. Without them it multiplied the two filters' selectivities, guessed a member's
list of granted projects held a tenth of the matching tickets it does, and sorted every
match instead of walking the newest-first index (docs/benchmarks.md, "Ticket list")."""

from django.db import migrations

STATISTICS = "tickets_ticket_project_org"


def create_statistics(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"CREATE STATISTICS IF NOT EXISTS {STATISTICS} (dependencies) "
                          "ON project_id, organization_id FROM tickets_ticket")
    schema_editor.execute("ANALYZE tickets_ticket")


def drop_statistics(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP STATISTICS IF EXISTS {STATISTICS}")


class Migration(migrations.Migration):

    dependencies = [
        ("tickets", "0009_project_setup_report"),
    ]

    operations = [
        migrations.RunPython(create_statistics, drop_statistics, elidable=False),
    ]
