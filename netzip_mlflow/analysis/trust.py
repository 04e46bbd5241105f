"""Trust notes: the measurement caveats of a run, said next to its numbers.

Each note is read from what the run logged, never guessed:

* ``latency CI target missed``: the latency protocol's time budget ran out before the 95 % CI of
  the median was within ``latency.target_ci_rel`` (tag ``netzip.latency.target_met = false``); the
  latency and the speedup ratio built on it are noisier than asked.
* ``background CPU N%``: the whole machine was busier than :data:`BACKGROUND_CPU_LIMIT_PCT` just
  before inference (metric ``resources/cpu_background_pct``): other programs competed for the CPU,
  so latency and energy may be inflated.
* ``energy estimated``: the energy figures come from a power model (tag ``netzip.energy_meter``
  says ``estimate``), not a meter; the efficiency ratio inherits that.
* ``OCS withheld``: the model or its baseline is not above chance (tag ``netzip.ocs.withheld``).
"""

from __future__ import annotations

import math

import pandas as pd

from netzip_mlflow.tracking import keys

BACKGROUND_CPU_LIMIT_PCT = 25.0
"""Whole-machine CPU use (percent) before inference above which a run gets a background-CPU note."""

NOTE_LATENCY = "latency CI target missed"
NOTE_ENERGY = "energy estimated"
NOTE_WITHHELD = "OCS withheld (at chance)"
SEPARATOR = "; "


def _note(target_met: object, background: object, meter: object, withheld: object) -> str:
    notes = []
    if isinstance(target_met, str) and target_met.lower() == "false":
        notes.append(NOTE_LATENCY)
    if isinstance(background, (int, float)) and math.isfinite(background) and background > BACKGROUND_CPU_LIMIT_PCT:
        notes.append(f"background CPU {background:.0f}%")
    if isinstance(meter, str) and "estimate" in meter.lower():
        notes.append(NOTE_ENERGY)
    if isinstance(withheld, str) and withheld:
        notes.append(NOTE_WITHHELD)
    return SEPARATOR.join(notes)


def trust_notes(frame: pd.DataFrame) -> pd.Series:
    """One string per row (``""`` when nothing to say) from the columns the leaderboard reads.

    Uses ``latency_target_met``, ``energy_meter``, ``ocs_withheld`` (tag columns) and
    ``resources/cpu_background_pct`` when present.
    """
    def column(name: str) -> list[object]:
        return frame[name].tolist() if name in frame.columns else [None] * len(frame)

    notes = [
        _note(*values)
        for values in zip(
            column("latency_target_met"), column(keys.CPU_BACKGROUND),
            column("energy_meter"), column("ocs_withheld"),
        )
    ]
    return pd.Series(notes, index=frame.index, dtype=object)
