"""One settings model: the study YAML, ``nz.EvaluationConfig``, the plugin's ``evaluator_config`` and
``netzip evaluate``'s flags all validate through ``evaluation/settings.py`` (docs/architecture.md,
"Settings"), so a default, a bound or an error message lives in one place."""

from __future__ import annotations

import pytest

import netzip_mlflow as nz
from netzip_mlflow.analysis.ratios import RatioConfig
from netzip_mlflow.cli import evaluate_cmd
from netzip_mlflow.cli.main import _build_parser
from netzip_mlflow.config.loader import validate_study
from netzip_mlflow.config.schema import EvaluationSpec, StudySpec
from netzip_mlflow.errors import ConfigError
from netzip_mlflow.evaluation.latency import LatencySettings
from netzip_mlflow.evaluation.settings import EvaluationConfig, EvaluationSettings
from netzip_mlflow.study.context import evaluation_config
from netzip_mlflow.tracking import keys
from netzip_mlflow.tracking.plugin import PluginConfig

MODELS = (LatencySettings, RatioConfig, EvaluationSettings, EvaluationConfig, EvaluationSpec, StudySpec, PluginConfig)


def _study(**evaluation):
    return {
        "study": "t", "data": {"builtin": "digits"}, "model": {"arch": "tiny_cnn"},
        "recipes": [{"name": "q", "technique": "ptq"}], "evaluation": evaluation,
    }


def _yaml(**evaluation) -> EvaluationConfig:
    return evaluation_config(validate_study(_study(**evaluation)), [])


def _plugin(**settings) -> EvaluationConfig:
    return PluginConfig.from_mapping({"input_shape": [1, 8, 8], **settings}).evaluation


def _cli(*flags: str) -> EvaluationConfig:
    args = _build_parser().parse_args(["evaluate", "model.pt", "--data", "digits", *flags])
    return evaluate_cmd.evaluation_config(args)


def test_every_path_starts_from_the_same_defaults():
    assert _yaml() == EvaluationConfig(class_names=())
    assert _cli() == EvaluationConfig()
    assert _plugin() == EvaluationConfig(progress=False)  # the plugin's one own default (no progress bars)


def test_the_yaml_section_declares_no_evaluation_field_again():
    own = set(EvaluationSpec.model_fields) - set(EvaluationSettings.model_fields)
    assert own == {"system_metrics", "system_metrics_interval_s"}
    for name, info in EvaluationSettings.model_fields.items():
        assert repr(EvaluationSpec.model_fields[name]) == repr(info)  # inherited, not redeclared
    assert StudySpec.model_fields["evaluation"].annotation is EvaluationSpec


@pytest.fixture
def changed_defaults():
    """Change two defaults in the model (and only there) for one test."""
    changes = [(LatencySettings, "budget_s", 3.5), (RatioConfig, "speedup", keys.LATENCY_MS)]
    saved = [(model, name, model.model_fields[name].default) for model, name, _ in changes]

    def apply(values):
        for model, name, value in values:
            model.model_fields[name].default = value
        for model in MODELS:
            model.model_rebuild(force=True)

    apply(changes)
    try:
        yield
    finally:
        apply(saved)


def test_a_default_changed_in_the_model_shows_up_in_every_path(changed_defaults, capsys):
    for config in (nz.EvaluationConfig(), _yaml(), _plugin(), _cli()):
        assert config.latency.budget_s == 3.5
        assert config.ratios.speedup == keys.LATENCY_MS
    with pytest.raises(SystemExit):
        _build_parser().parse_args(["evaluate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "even if the target is not met (default 3.5)" in help_text


def test_the_changed_defaults_are_restored():
    assert LatencySettings().budget_s == 10.0 and RatioConfig().speedup == keys.CHATS


BAD = [
    # (field path, bad value, CLI flag and its text or None, what the message says)
    ("latency.budget_s", -1, ("--latency-budget-s", "-1"), "greater than 0"),
    ("latency.budget_s", 100_000, ("--latency-budget-s", "100000"), "less than or equal to 86400"),
    ("threads", 0, ("--threads", "0"), "greater than or equal to 1"),
    ("batch_size", 5000, ("--batch-size", "5000"), "less than or equal to 4096"),
    ("idle_s", -0.5, ("--idle-s", "-0.5"), "greater than or equal to 0"),
    ("timeout_s", -1, ("--timeout-s", "-1"), "greater than or equal to 0"),
    ("device", "banana", None, "unknown device 'banana'"),
    ("ratios.speedup", "speed/warp", None, "unknown metric key 'speed/warp'"),
    ("ratios.weights", [1, 0, 1, 1], None, "every OCS weight must be a positive number"),
]


def _nested(path: str, value):
    head, _, rest = path.partition(".")
    return {head: _nested(rest, value)} if rest else {head: value}


@pytest.mark.parametrize(("path", "value", "flag", "says"), BAD, ids=[f"{p}={v}" for p, v, _, _ in BAD])
def test_a_bad_value_gives_the_same_error_through_every_path(path, value, flag, says):
    settings = _nested(path, value)
    errors = {}
    with pytest.raises(ConfigError) as errors["yaml"]:
        validate_study(_study(**settings))
    with pytest.raises(ConfigError) as errors["api"]:
        nz.EvaluationConfig(**settings)
    with pytest.raises(ConfigError) as errors["plugin"]:
        PluginConfig.from_mapping({"input_shape": [1, 8, 8], **settings})
    fields = {where: err.value.field for where, err in errors.items()}
    assert fields == {
        "yaml": f"study: evaluation.{path}", "api": f"evaluation.{path}", "plugin": f"evaluator_config.{path}",
    }
    if flag is not None:
        with pytest.raises(ConfigError) as errors["cli"]:
            _cli(*flag)
        assert errors["cli"].value.field == flag[0]
    problems = {err.value.problem for err in errors.values()}
    assert len(problems) == 1, problems
    assert says in problems.pop()


def test_nested_models_alone_name_their_yaml_path():
    with pytest.raises(ConfigError, match=r"^evaluation\.latency\.budget_s: Input should be greater than 0$"):
        LatencySettings(budget_s=0)
    with pytest.raises(ConfigError, match=r"^evaluation\.latency: max_samples \(20\) must be at least min_samples \(30\)"):
        LatencySettings(max_samples=20)
    with pytest.raises(ConfigError, match=r"^evaluation\.colour: Extra inputs are not permitted"):
        EvaluationConfig(colour="blue")


def test_the_plugin_flat_keys_set_the_nested_fields_and_errors_name_them():
    config = _plugin(latency_budget_s=2.0, latency_target_ci_rel=0.05, warmup_s=0.0, score_at_chance=True)
    assert config.latency == LatencySettings(budget_s=2.0, target_ci_rel=0.05, warmup_s=0.0)
    assert config.ratios.score_at_chance is True
    assert _plugin(latency={"budget_s": 2.0}, ratios={"zeta": 2.0}, paired=False).latency.budget_s == 2.0
    assert _plugin(latency_budget_s=None).latency.budget_s == 10.0  # None: the default, as documented
    with pytest.raises(ConfigError, match=r"^evaluator_config\.latency_budget_s: Input should be greater than 0"):
        _plugin(latency_budget_s=0)
    with pytest.raises(ConfigError, match=r"^evaluator_config\.warmup_s: sets latency\.warmup_s, which the config gives"):
        _plugin(warmup_s=0.0, latency={"warmup_s": 1.0})


def test_cli_flags_fill_the_model():
    config = _cli("--threads", "2", "--batch-size", "4", "--eval-batch-size", "64", "--no-isolate", "--no-paired",
                  "--idle-s", "0", "--latency-budget-s", "0.5", "--timeout-s", "0", "--score-at-chance")
    assert config == EvaluationConfig(
        threads=2, batch_size=4, eval_batch_size=64, isolate=False, paired=False, idle_s=0.0,
        latency=LatencySettings(budget_s=0.5), timeout_s=0.0, ratios=RatioConfig(score_at_chance=True),
    )
    assert config.worker_timeout_s() is None


def test_settings_objects_stay_frozen_and_picklable():
    import pickle

    config = EvaluationConfig(class_names=[0, 1], power_log="power.csv")
    assert config.class_names == ("0", "1") and str(config.power_log) == "power.csv"
    assert pickle.loads(pickle.dumps(config)) == config
    with pytest.raises(Exception, match="frozen"):
        config.threads = 2  # type: ignore[misc]
    assert hash(RatioConfig()) == hash(RatioConfig())
