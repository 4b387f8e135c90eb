"""Custom: the admin writes every question; each item is one example with its character and context."""

from __future__ import annotations

from core.review.tasks.base import ReviewTask


class Custom(ReviewTask):
    name = "custom"
    title = "Custom"
    summary = "Your own questions over any selection of examples."
    order = 90


TASK = Custom()
