"""Compute budgets for notebooks and tests, read from one place.

`make test` sets ``SSLCOURSE_QUICK=1``: notebooks and slow tests then shrink data
and epochs so the whole suite fits a CI budget, while students get the full run.
Use :func:`pick` wherever a size or an epoch count is chosen::

    from sslcourse.budget import QUICK, pick
    n_train = pick(full=5000, quick=1000)
"""
import os

QUICK = os.environ.get("SSLCOURSE_QUICK", "0").strip().lower() in {"1", "true", "yes"}


def pick(full, quick):
    """Return ``quick`` when SSLCOURSE_QUICK is set, else ``full``."""
    return quick if QUICK else full
