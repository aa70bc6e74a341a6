"""A worker's task reads its policy and endpoints once, however many of its steps ask; the
next task, and any change the task makes itself, reads them again (haao/reads.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import SSOConnection
from agents.engine import routing
from agents.health import HealthResult, endpoint_health_record
from haao import reads
from haao.audit import Actor
from haao.secrets_registry import organization_secrets
from policies.selectors import policy_for
from policies.services import policy_update
from tests.fixtures import coder_endpoint
from tickets.models import Project


@contextmanager
def once_per_task() -> Iterator[None]:
    """What a worker does around each task (haao/celery.py)."""
    reads.task_started()
    try:
        yield
    finally:
        reads.task_finished()


def queries(read: Any) -> tuple[Any, int]:
    with CaptureQueriesContext(connection) as captured:
        value = read()
    return value, len(captured)


def test_a_task_reads_its_policy_once_and_the_next_task_sees_a_change(cast) -> None:
    read = lambda: policy_for(project=cast.project)  # noqa: E731
    with once_per_task():
        first, n = queries(read)
        assert n > 0
        again, n = queries(read)
        assert n == 0 and again is first
        # A change made elsewhere meanwhile waits for the next task.
        policy_update(organization=cast.org, actor=Actor.of(cast.admin),
                      changes={"retry_budget": 5})
    with once_per_task():
        assert policy_for(project=cast.project).retry_budget == 5
    # Outside a task (a web request) every read goes to the database.
    assert queries(read)[1] > 0 and queries(read)[1] > 0


def test_a_policy_a_task_changes_itself_is_read_again_in_that_task(cast) -> None:
    with once_per_task():
        assert policy_for(project=cast.project).wip_limit != 7
        policy_update(organization=cast.org, actor=Actor.of(cast.admin),
                      changes={"wip_limit": 7})
        assert policy_for(project=cast.project).wip_limit == 7


def test_a_coder_a_task_finds_failing_is_not_picked_again_in_that_task(cast) -> None:
    coder = coder_endpoint(cast.org, cast.admin)
    with once_per_task():
        assert routing.pick_coder(organization=cast.org) == coder
        _, n = queries(lambda: routing.coder_endpoints(organization=cast.org))
        assert n == 0
        endpoint_health_record(endpoint=coder, result=HealthResult(
            ok=False, latency_ms=5, error="connection refused"))
        assert routing.pick_coder(organization=cast.org) is None


def test_a_task_reads_the_secrets_it_redacts_once_and_the_next_task_sees_a_new_one(
        cast) -> None:
    coder = coder_endpoint(cast.org, cast.admin)
    with once_per_task():
        secrets, n = queries(lambda: organization_secrets(organization=cast.org))
        assert n > 0
        again, n = queries(lambda: organization_secrets(organization=cast.org))
        assert n == 0 and again == secrets
        assert "sk-rotated-0123456789" not in secrets
        coder.api_key = "sk-rotated-0123456789"
        coder.save(update_fields=["api_key"])
    with once_per_task():
        assert "sk-rotated-0123456789" in organization_secrets(organization=cast.org)
    # Outside a task every call reads them.
    assert queries(lambda: organization_secrets(organization=cast.org))[1] > 0


def test_the_secrets_redacted_are_every_kind_the_organization_keeps_and_only_its_own(
        cast) -> None:
    for org, actor, key in ((cast.org, cast.admin, "sk-acme-coder-0123456789"),
                            (cast.other_org, cast.outsider, "sk-globex-coder-0123456789")):
        endpoint = coder_endpoint(org, actor)
        endpoint.api_key = key
        endpoint.save(update_fields=["api_key"])
    SSOConnection.objects.create(organization=cast.org, protocol="oidc",
                                 oidc_client_secret="oidc-client-secret-0123456789")
    SSOConnection.objects.create(organization=cast.other_org, protocol="oidc",
                                 oidc_client_secret="globex-oidc-secret-0123456789")
    Project.objects.filter(pk=cast.project.pk).update(
        token="ghp_projecttoken0123456789", ssh_private_key="ssh-private-key-0123456789",
        webhook_secret="webhook-secret-0123456789")
    Project.objects.filter(pk=cast.other_project.pk).update(token="ghp_globextoken0123456789")

    secrets, n = queries(lambda: organization_secrets(organization=cast.org))
    assert n == 1
    assert {"oidc-client-secret-0123456789", "ghp_projecttoken0123456789",
            "ssh-private-key-0123456789", "webhook-secret-0123456789"} <= set(secrets)
    assert "sk-acme-coder-0123456789" in secrets
    assert not {"globex-oidc-secret-0123456789", "ghp_globextoken0123456789",
                "sk-globex-coder-0123456789"} & set(secrets)
