"""How the API shows where accepted work went (used by the ticket and requirement endpoints)."""

from __future__ import annotations

from rest_framework import serializers

from agents.models import DeliveryStatus, PullRequestState


class DeliverySerializer(serializers.Serializer):
    """Where the work is: HAAO's branch, its commit, and the team's pull request."""

    branch = serializers.CharField(read_only=True, help_text="e.g. haao/PAY-R3")
    commit = serializers.CharField(read_only=True, required=False,
                                   help_text="The merge commit of this ticket, if a ticket.")
    head = serializers.CharField(read_only=True, help_text="The branch's newest commit.")
    status = serializers.ChoiceField(choices=DeliveryStatus.choices, read_only=True)
    delivered_commit = serializers.CharField(
        read_only=True, help_text="The commit last pushed to the team's remote.")
    failure = serializers.CharField(read_only=True, help_text="Why the last delivery failed.")
    next_try_at = serializers.DateTimeField(read_only=True, allow_null=True)
    pull_request_number = serializers.IntegerField(read_only=True, allow_null=True)
    pull_request_url = serializers.CharField(read_only=True)
    pull_request_state = serializers.ChoiceField(
        choices=[("", "none"), *PullRequestState.choices], read_only=True)
