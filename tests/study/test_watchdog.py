"""The recipe watchdog: interrupts sleeps, cannot be swallowed, restores SIGALRM; its defaults.
(The study-level case, a hanging model in a study, is in test_failure_isolation.py.)"""

from __future__ import annotations

import signal
import time

import pytest

from netzip_mlflow.study.watchdog import RecipeTimeout, Watchdog, default_recipe_timeout_s, training_epochs


def test_the_watchdog_interrupts_a_sleep_and_names_the_phase():
    with pytest.raises(RecipeTimeout, match=r"^timeout after 0.5 s in sleeping$"):
        with Watchdog(0.5) as dog:
            dog.phase = "sleeping"
            time.sleep(3600)


def test_an_exception_handler_in_the_model_cannot_swallow_the_timeout():
    with pytest.raises(RecipeTimeout):
        with Watchdog(0.5):
            try:
                time.sleep(3600)
            except Exception:  # noqa: BLE001 - what a careless model might do
                pytest.fail("the timeout was caught as an Exception")


def test_no_limit_leaves_sigalrm_alone():
    before = signal.getsignal(signal.SIGALRM)
    with Watchdog(0):
        assert signal.getsignal(signal.SIGALRM) is before
    with Watchdog(100):
        assert signal.getsignal(signal.SIGALRM) is not before
    assert signal.getsignal(signal.SIGALRM) is before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_default_recipe_timeout_grows_with_training():
    assert training_epochs({"steps": [{"params": {"epochs": 2}}, {"params": {"finetune_epochs": 1}}]}) == 3
    none = default_recipe_timeout_s({}, 1000, 420.0)
    assert none == 1800 + 2 * 420
    assert default_recipe_timeout_s({"epochs": 2}, 1000, 420.0) == none + 2 * (600 + 0.5 * 1000)
