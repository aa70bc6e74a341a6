"""Indexes of the ticket list API, newest first; see docs/benchmarks.md for the figures."""

from django.db import migrations, models, transaction

TRIGRAM_INDEX = "ticket_title_trgm"


def create_title_search_index(apps, schema_editor):
    """On PostgreSQL, a trigram index for `?q=` (title contains, case-insensitive).

    It also gives the planner statistics on UPPER(title): without them it guessed that
    common words were rare and sorted every match instead of walking the newest-first
    index. Where pg_trgm cannot be created (no privilege), the list still works, slower.
    """
    if schema_editor.connection.vendor != "postgresql":
        return
    try:
        with transaction.atomic(using=schema_editor.connection.alias):
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            schema_editor.execute(
                f"CREATE INDEX IF NOT EXISTS {TRIGRAM_INDEX} ON tickets_ticket "
                "USING gin (UPPER(title::text) gin_trgm_ops)")
    except Exception as error:  # noqa: BLE001 - an optional speed-up must not block a deploy
        print(f"\n  Skipped the ticket title search index ({error}); ask the database owner "
              "to run CREATE EXTENSION pg_trgm and migrate again for fast ?q= searches.")


def drop_title_search_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {TRIGRAM_INDEX}")


class Migration(migrations.Migration):

    dependencies = [
        ('tickets', '0002_project_default_branch_project_integration_branch_and_more'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='ticket',
            index=models.Index(fields=['organization', '-created_at'], name='ticket_org_newest'),
        ),
        migrations.AddIndex(
            model_name='ticket',
            index=models.Index(fields=['project', '-created_at'], name='ticket_project_newest'),
        ),
        migrations.RunPython(create_title_search_index, drop_title_search_index,
                             elidable=False),
    ]
