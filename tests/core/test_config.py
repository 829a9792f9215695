"""Layered config: defaults, overlay, environment, run params; bad keys name themselves and their file."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import REPO_ROOT, ConfigError, load_config


def _conf_dir(tmp_path: Path, overlay: str | None = None, env_name: str = "local") -> Path:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "pipeline.yaml").write_text((REPO_ROOT / "conf/base/pipeline.yaml").read_text())
    if overlay is not None:
        (tmp_path / env_name).mkdir()
        (tmp_path / env_name / "pipeline.yaml").write_text(overlay)
    return tmp_path


def test_defaults_keep_everything_under_var():
    config = load_config(env={})
    assert config.layout.lake_dir == REPO_ROOT / "var" / "lake"
    assert config.tracking_uri == f"sqlite:///{REPO_ROOT / 'var' / 'mlflow' / 'mlflow.db'}"
    assert config.training.models == ["caser", "gru4rec", "sasrec"]


def test_layers_apply_in_order(tmp_path):
    conf = _conf_dir(tmp_path, "training:\n  epochs: 7\n  patience: 1\n")
    config = load_config({"training": {"patience": 4}}, conf_dir=conf,
                         env={"PIPELINE__TRAINING__EPOCHS": "9"})
    assert config.training.epochs == 9  # environment beats the overlay
    assert config.training.patience == 4  # run params beat everything
    assert config.training.batch_size == 128  # untouched defaults stay


def test_unknown_key_in_overlay_names_key_and_file(tmp_path):
    conf = _conf_dir(tmp_path, "training:\n  epocs: 7\n")
    with pytest.raises(ConfigError, match=r"local/pipeline.yaml: unknown key 'training.epocs'.*epochs"):
        load_config(conf_dir=conf, env={})


def test_mistyped_value_names_key_and_its_source(tmp_path):
    with pytest.raises(ConfigError, match=r"environment variable PIPELINE__DEMO__DAYS: key 'demo.days'"):
        load_config(conf_dir=_conf_dir(tmp_path), env={"PIPELINE__DEMO__DAYS": "a fortnight"})


def test_out_of_range_value_names_key_source_and_bound(tmp_path):
    env = {"PIPELINE__PROMOTION__MIN_LIFT_OVER_POPULARITY": "10"}  # MLflow's thresholds take 0..1
    with pytest.raises(ConfigError, match=r"PIPELINE__PROMOTION__MIN_LIFT_OVER_POPULARITY.*less than or equal to 1"):
        load_config(conf_dir=_conf_dir(tmp_path), env=env)


def test_unknown_section_in_run_params():
    with pytest.raises(ConfigError, match="run params: unknown key 'trainnig'"):
        load_config({"trainnig": {"epochs": 1}}, env={})


def test_broken_yaml_says_which_file(tmp_path):
    conf = _conf_dir(tmp_path, "training: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(conf_dir=conf, env={})


def test_missing_base_file_says_how_to_restore(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(conf_dir=tmp_path, env={})


@pytest.mark.parametrize(("features", "message"), [
    ({"sequence_event_types": ["search"]}, r"key 'features': .*\['search'\] not allowed; choose from"),
    ({"min_seq_len": 60, "max_seq_len": 50}, r"min_seq_len 60 exceeds max_seq_len \+ 2 = 52"),
    ({"window_days": 0}, r"key 'features.window_days': .*greater than or equal to 1"),
    ({"popularity_windows": [7, 0]}, r"popularity_windows \[7, 0\]: expected positive days"),
])
def test_feature_settings_the_spark_job_cannot_use_are_refused_at_load(features, message):
    """The job has no argparse checks of its own any more: the config refuses what it could not run."""
    with pytest.raises(ConfigError, match=message):
        load_config({"features": features}, env={})


def test_popularity_windows_are_sorted_and_unique():
    assert load_config({"features": {"popularity_windows": [30, 1, 7, 7]}}, env={}).features.popularity_windows == [
        1, 7, 30]
