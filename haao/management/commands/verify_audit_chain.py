"""Verify each organization's hash-chained audit log and report the first broken row."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Organization
from haao.audit import audit_chain_verify, seal


class Command(BaseCommand):
    help = ("Seals the rows waiting for the sealer, then checks the audit log's hash chain; "
            "exits 1 naming the first broken row.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", help="Only this organization (slug).")
        parser.add_argument("--no-seal", action="store_true",
                            help="Do not seal rows waiting for the sealer first (a row waiting "
                                 "longer than HAAO_AUDIT_SEAL_WINDOW then counts as a break).")

    def handle(self, *args: Any, **options: Any) -> None:
        organizations = Organization.objects.order_by("slug")
        if options["org"]:
            organizations = organizations.filter(slug=options["org"])
            if not organizations.exists():
                raise CommandError(f"No organization with the slug {options['org']!r}.")
        broken = 0
        for organization in organizations:
            if not options["no_seal"]:
                seal(organization.pk)
            result = audit_chain_verify(organization=organization)
            if result is None:
                self.stdout.write(f"{organization.slug}: intact")
            else:
                broken += 1
                self.stdout.write(f"{organization.slug}: BROKEN at row {result.seq}: "
                                  f"{result.reason}")
        if broken:
            raise CommandError(f"{broken} organization(s) have a broken audit chain.")
