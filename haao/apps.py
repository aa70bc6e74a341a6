from __future__ import annotations

from django.apps import AppConfig


class HaaoConfig(AppConfig):
    """The platform core: the audit log's models, project-wide commands (serve, seed_demo, …)."""

    name = "haao"
    verbose_name = "HAAO"

    def ready(self) -> None:
        from django.conf import settings

        from haao import ssrf

        # A malformed allowlist entry stops the start, named, rather than the first call.
        ssrf.parse_allowlist(settings.HAAO_ENDPOINT_ALLOWLIST)
        ssrf.parse_allowlist_by_org(settings.HAAO_ENDPOINT_ALLOWLIST_BY_ORG)

        # A Celery worker's processes hand their audit rows to a sealer thread each, which
        # seals what is left before the process ends (haao.audit.BackgroundSealer).
        from celery.signals import worker_init, worker_process_shutdown, worker_shutdown

        from haao.audit import BackgroundSealer

        worker_init.connect(BackgroundSealer.enable, weak=False,
                            dispatch_uid="haao-sealer-start")
        for stopped in (worker_process_shutdown, worker_shutdown):
            stopped.connect(BackgroundSealer.shut_down, weak=False,
                            dispatch_uid="haao-sealer-stop")
