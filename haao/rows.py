"""One row by a unique key, without the ORDER BY `first()` adds.

`queryset.filter(pk=pk).first()` orders by the model's ordering (or the key): composing an
ORDER BY costs the client a pass over every selected column, and an ordering by a relation
(`ordering = ["project", ...]`) joins the related table too. One row by a unique key needs
no order. The loop's steps load their rows this way on every task.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.core.exceptions import ObjectDoesNotExist
from django.db import models

M = TypeVar("M", bound=models.Model)


def one_or_none(queryset: models.QuerySet[M], **unique: Any) -> M | None:
    """The row of `queryset` matching `unique` (lookups that name at most one row), or
    None."""
    try:
        return queryset.get(**unique)
    except ObjectDoesNotExist:
        return None
