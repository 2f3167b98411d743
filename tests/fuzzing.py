"""Hypothesis settings shared by the generated-input suites: reproducible and bounded."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, Phase, settings


def fuzz_settings(max_examples: int, **extra: Any) -> settings:
    """A fixed budget, derandomized (same examples every run), no example database."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        **extra,
    )
