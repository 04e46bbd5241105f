"""Ratios and OCS against the NetZIP paper's Table 3 (case study 1, ResNet18 on ImageNet, PC)."""

import math

import pytest

import netzip_mlflow as nz
from netzip_mlflow.analysis.ratios import RatioConfig, compute_ratios, ocs, ratio
from netzip_mlflow.errors import ConfigError
from netzip_mlflow.tracking import keys

# Table 3 rows: top-1 (%), CHATS (1e9), CPU util (%), energy (J).
FP32 = {keys.TOP1: 70.3, keys.CHATS: 57.92, keys.CPU_UTIL: 49.6, keys.ENERGY_PER_SAMPLE: 2.2}
PTQ = {keys.TOP1: 70.1, keys.CHATS: 14.48, keys.CPU_UTIL: 49.1, keys.ENERGY_PER_SAMPLE: 0.8}
GUP_L1 = {keys.TOP1: 66.6, keys.CHATS: 57.92, keys.CPU_UTIL: 49.6, keys.ENERGY_PER_SAMPLE: 1.7}
# The paper's Fig. 7 choice: P <- top-1, S <- CHATS, C <- CPU utilisation, E <- energy.
PAPER = RatioConfig(performance=keys.TOP1, speedup=keys.CHATS, compression=keys.CPU_UTIL, efficiency=keys.ENERGY_PER_SAMPLE)


def hand_ocs(p, s, c, e):
    return p * p * ((p - 1) + (s - 1) + (c - 1) + (e - 1))


def test_ptq_ocs_matches_paper():
    # P = 70.1/70.3, S = 57.92/14.48 = 4, C = 49.6/49.1, E = 2.2/0.8 = 2.75
    result = compute_ratios(FP32, PTQ, PAPER)
    assert result.ratios["speedup"] == pytest.approx(4.0)
    assert result.ratios["efficiency"] == pytest.approx(2.75)
    assert result.ocs == pytest.approx(hand_ocs(70.1 / 70.3, 4.0, 49.6 / 49.1, 2.75))
    assert result.ocs == pytest.approx(4.73, abs=0.01)


def test_gup_l1_ocs_matches_paper():
    result = compute_ratios(FP32, GUP_L1, PAPER)
    assert result.ratios["speedup"] == pytest.approx(1.0)
    assert result.ocs == pytest.approx(hand_ocs(66.6 / 70.3, 1.0, 1.0, 2.2 / 1.7))
    assert result.ocs == pytest.approx(0.217, abs=0.005)  # "about 0.2" in the paper's Fig. 7


def test_public_ocs_and_weights():
    assert nz.ocs(1.0, 1.0, 1.0, 1.0) == 0.0
    assert nz.ocs(0.5, 3.0, 1.0, 1.0) == pytest.approx(0.25 * (-0.5 + 2.0))
    assert ocs(1.0, 2.0, 2.0, 2.0, weights=(1, 0, 1, 0)) == pytest.approx(1.0)


def test_direction_of_ratios():
    assert ratio(10.0, 5.0, higher_is_better=False) == 2.0  # latency halved -> speedup 2
    assert ratio(0.8, 0.4, higher_is_better=True) == 0.5  # accuracy halved -> performance 0.5
    assert ratio(10.0, 5.0, higher_is_better=False, zeta=4) == 8.0


def test_missing_ratio_contributes_zero_and_is_named():
    compressed = {k: v for k, v in PTQ.items() if k != keys.ENERGY_PER_SAMPLE}
    result = compute_ratios(FP32, compressed, PAPER)
    assert result.missing == ("efficiency",)
    assert result.ratios["efficiency"] is None
    p, s, c = 70.1 / 70.3, 4.0, 49.6 / 49.1
    assert result.ocs == pytest.approx(p * p * ((p - 1) + (s - 1) + (c - 1)))


def test_missing_performance_gives_nan():
    result = compute_ratios({keys.CHATS: 1.0}, {keys.CHATS: 0.5})
    assert math.isnan(result.ocs)


def test_bad_ratio_config_names_field():
    # named by the field's path in a study YAML, the one place RatioConfig is declared
    with pytest.raises(ConfigError, match=r"^evaluation\.ratios\.speedup: unknown metric key 'speed/nope'"):
        RatioConfig(speedup="speed/nope")
    with pytest.raises(ConfigError, match=r"^evaluation\.ratios\.zeta: "):
        RatioConfig(zeta=0)
    with pytest.raises(ConfigError, match=r"^evaluation\.ratios\.weights: every OCS weight must be a positive"):
        RatioConfig(weights=(1.0, float("nan"), 1.0, 1.0))
