"""Layered, typed configuration: the one place that knows settings (the lake's layout is ``pipelines.lake``).

Layers, later wins:

1. ``conf/base/pipeline.yaml``: committed defaults, every key documented;
2. ``conf/<PIPELINE_ENV>/pipeline.yaml``: the environment overlay (``PIPELINE_ENV`` defaults to
   ``local``; the file is optional);
3. environment variables ``PIPELINE__<SECTION>__<KEY>=value`` (values parsed as YAML, so
   ``PIPELINE__TRAINING__EPOCHS=5`` is an int);
4. the run's overrides (Airflow params), a nested dict.

Every layer is checked against the schema on its own, so an unknown or mistyped key fails with the
key *and* the file (or variable) that set it named.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipelines import columns as C
from pipelines.lake import LakeLayout

REPO_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR_ENV = "PIPELINE_CONF_DIR"
ENV_NAME_ENV = "PIPELINE_ENV"
ENV_PREFIX = "PIPELINE__"


class ConfigError(ValueError):
    """A configuration layer is unreadable, has an unknown key or a value of the wrong type."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PathsConfig(_Section):
    var_dir: str
    lake_dir: str
    gx_dir: str
    mlflow_dir: str
    reports_dir: str


class AirflowConfig(_Section):
    dag_id: str
    start_date: dt.date
    schedule: str
    retries: int
    retry_delay_minutes: int
    gpu_pool: str
    gpu_pool_slots: int
    gpu_queue: str
    task_timeout_minutes: dict[str, int]

    @field_validator("task_timeout_minutes")
    @classmethod
    def _has_default(cls, minutes: dict[str, int]) -> dict[str, int]:
        if "default" not in minutes or min(minutes.values()) < 1:
            raise ValueError("airflow.task_timeout_minutes needs a 'default' entry, and every entry is at "
                             f"least 1 minute (got {minutes})")
        return minutes

    def execution_timeout(self, task_id: str) -> dt.timedelta:
        """The task's ``execution_timeout``: its own entry, else the ``default`` one."""
        minutes = self.task_timeout_minutes.get(task_id, self.task_timeout_minutes["default"])
        return dt.timedelta(minutes=minutes)


class DemoConfig(_Section):
    days: int
    n_users: int
    n_items: int
    events_per_day: int
    seed: int
    collector_noise_rate: float


class ValidationConfig(_Section):
    max_failure_rate: float = Field(ge=0.0, le=1.0)
    late_event_days: int = Field(ge=0)
    max_event_id_length: int = Field(ge=1)
    max_id_length: int = Field(ge=1)
    max_text_length: int = Field(ge=1)
    max_price: float = Field(gt=0)
    chunk_rows: int = Field(default=250_000, ge=1)
    workers: int = Field(default=2, ge=1)


class CheckSeverities(_Section):
    """warn: logged and shown in the report; fail: stops the DAG before training."""

    volume: Literal["warn", "fail"]
    event_type_mix: Literal["warn", "fail"]
    unknown_items: Literal["warn", "fail"]
    new_users: Literal["warn", "fail"]
    price: Literal["warn", "fail"]
    clean_events_retention: Literal["warn", "fail"]
    bot_share: Literal["warn", "fail"]


class ChecksConfig(_Section):
    history_days: int
    min_history_days: int
    band_mads: float
    volume_min_band: float
    share_min_band: float
    price_min_band: float
    min_clean_retention: float
    max_bot_share: float
    severity: CheckSeverities


class FeaturesConfig(_Section):
    window_days: int = Field(ge=1)
    session_gap_minutes: int = Field(ge=1)
    max_seq_len: int = Field(ge=1)
    min_seq_len: int = Field(ge=1)
    user_buckets: int = Field(ge=1)
    sequence_event_types: list[str]
    hash_key_env: str = Field(min_length=1)
    shuffle_partitions: int = Field(ge=1)
    bot_max_events_per_minute: float = Field(gt=0)
    bot_min_events: int = Field(ge=1)
    popularity_windows: list[int]
    favourite_categories: int = Field(ge=1)
    hash_users_once_up_to: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> FeaturesConfig:
        unknown = sorted(set(self.sequence_event_types) - set(C.ITEM_EVENT_TYPES))
        if unknown or not self.sequence_event_types:
            raise ValueError(f"sequence_event_types: {unknown or 'empty'} not allowed; choose from "
                             f"{list(C.ITEM_EVENT_TYPES)}")
        if self.min_seq_len > self.max_seq_len + 2:
            raise ValueError(f"min_seq_len {self.min_seq_len} exceeds max_seq_len + 2 = {self.max_seq_len + 2}")
        return self

    @field_validator("popularity_windows")
    @classmethod
    def _positive_days(cls, days: list[int]) -> list[int]:
        if not days or min(days) < 1:
            raise ValueError(f"popularity_windows {days}: expected positive days, e.g. [1, 7, 30]")
        return sorted(set(days))


class SparkConfig(_Section):
    conn_id: str
    driver_memory: str
    java_options: str = ""

    def jvm_conf(self) -> dict[str, str]:
        """The Spark settings that give the driver and the executors ``java_options`` (none when empty)."""
        if not self.java_options.strip():
            return {}
        return {"spark.driver.extraJavaOptions": self.java_options, "spark.executor.extraJavaOptions": self.java_options}


class TrainingConfig(_Section):
    models: list[str]
    epochs: int = Field(ge=1)
    model_epochs: dict[str, int] = Field(default_factory=dict)
    batch_size: int
    learning_rate: float
    patience: int
    time_budget_seconds: int
    seed: int
    model_params: dict[str, dict[str, Any]]
    device: Literal["cpu", "gpu"] = "cpu"
    mixed_precision: bool = True
    stream_above_users: int | None = Field(default=None, ge=0)
    stream_chunk_users: int = Field(default=100_000, ge=1)

    def streams(self, users: int) -> bool:
        """Whether a day of ``users`` sequences trains and is evaluated in chunks read from the feature files."""
        return self.stream_above_users is not None and users > self.stream_above_users

    def epochs_for(self, model: str) -> int:
        """The most epochs ``model`` trains: ``model_epochs[model]`` where set, never above ``epochs``."""
        return min(self.epochs, self.model_epochs.get(model, self.epochs))


class EvaluationConfig(_Section):
    k: int


class PromotionConfig(_Section):
    registered_model: str
    champion_alias: str
    # A relative lift, as MLflow's MetricThreshold(min_relative_change=...) takes it: 0.1 = 10% better.
    min_lift_over_popularity: float = Field(ge=0.0, le=1.0)
    champion_tolerance: float = Field(ge=0.0)
    challenger_alias: str
    min_test_users: int = Field(ge=1)
    bootstrap_resamples: int = Field(ge=100)
    confidence: float = Field(gt=0.5, lt=1.0)


class RulesConfig(_Section):
    """Business rules applied to every user's scores before the top-K (``pipelines.scoring.rules``)."""

    exclude_purchased: bool
    catalog: bool
    exclude_categories: list[str]
    min_price: float | None = Field(default=None, ge=0.0)
    max_price: float | None = Field(default=None, ge=0.0)
    max_per_category: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _price_range(self) -> RulesConfig:
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ValueError(f"scoring.rules: min_price {self.min_price} is above max_price {self.max_price}")
        return self


class CampaignRuleConfig(_Section):
    """What one campaign asks of every user's list: its items boosted, or some of them required."""

    boost: float = 0.0  # added to the logit of the campaign's items (log of the odds multiplier)
    required: int = Field(default=0, ge=0)  # at least this many of its items in each list (when eligible)


class ScoringConfig(_Section):
    top_k: int
    batch_size: int
    without_champion: Literal["popularity", "fail"]
    audience_size: int = Field(ge=1)
    audience_share: float | None = Field(default=None, gt=0.0, le=1.0)
    rules: RulesConfig
    campaigns: dict[str, CampaignRuleConfig]
    lift_seed: int
    spark_above_users: int | None = Field(default=None, ge=0)


class PublishingConfig(_Section):
    enabled: bool
    conn_id: str
    schema_name: str
    anonymous_user_ids: str
    max_customer_id_length: int = Field(ge=1)
    export_jsonl: bool

    @field_validator("anonymous_user_ids")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        import re

        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"publishing.anonymous_user_ids {pattern!r} is not a regular expression: {err}") from None
        return pattern

    @field_validator("schema_name")
    @classmethod
    def _identifier(cls, name: str) -> str:
        import re

        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError(f"publishing.schema_name {name!r}: use lower-case letters, digits and _ (a plain "
                             "PostgreSQL identifier)")
        return name


class PrivacyConfig(_Section):
    deadline_hours: int = Field(ge=1)
    raw_retention_days: int = Field(ge=1)
    lake_pool: str
    lake_pool_slots: int = Field(ge=1)
    vacuum_full: bool


class ReportConfig(_Section):
    history_runs: int
    popularity_buckets: int


class MlflowConfig(_Section):
    tracking_uri: str
    experiment: str


class PipelineConfig(_Section):
    paths: PathsConfig
    airflow: AirflowConfig
    demo: DemoConfig
    validation: ValidationConfig
    checks: ChecksConfig
    features: FeaturesConfig
    spark: SparkConfig
    training: TrainingConfig
    evaluation: EvaluationConfig
    promotion: PromotionConfig
    scoring: ScoringConfig
    publishing: PublishingConfig
    privacy: PrivacyConfig
    report: ReportConfig
    mlflow: MlflowConfig

    @model_validator(mode="after")
    def _retention_keeps_the_window(self) -> PipelineConfig:
        needed = self.features.window_days + self.validation.late_event_days
        if self.privacy.raw_retention_days <= needed:
            raise ValueError(
                f"privacy.raw_retention_days={self.privacy.raw_retention_days} would delete raw days the feature "
                f"job still reads (features.window_days={self.features.window_days} + "
                f"validation.late_event_days={self.validation.late_event_days}); keep more than {needed} days "
                "or shorten the window")
        return self

    @property
    def layout(self) -> LakeLayout:
        return LakeLayout(self.paths, REPO_ROOT)

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI: the configured one, or a SQLite store under ``var/``."""
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        return f"sqlite:///{self.layout.mlflow_dir / 'mlflow.db'}"


def load_config(overrides: dict[str, Any] | None = None, *, conf_dir: Path | None = None,
                env: dict[str, str] | None = None) -> PipelineConfig:
    """Read the layers, check each one, merge them and validate the result into typed objects."""
    env = dict(os.environ) if env is None else env
    conf_dir = Path(conf_dir or env.get(CONF_DIR_ENV) or REPO_ROOT / "conf")
    base_file = conf_dir / "base" / "pipeline.yaml"
    merged = _read_yaml(base_file)
    _check_keys(merged, PipelineConfig, str(base_file))
    overlay_file = conf_dir / env.get(ENV_NAME_ENV, "local") / "pipeline.yaml"
    layers = [(str(overlay_file), _read_yaml(overlay_file) if overlay_file.exists() else {})]
    layers += [(name, layer) for name, layer in _env_layers(env)]
    layers.append(("run params", overrides or {}))
    sources = {key: str(base_file) for key in _leaf_keys(merged)}
    for source, layer in layers:
        _check_keys(layer, PipelineConfig, source)
        merged = _deep_merge(merged, layer)
        sources.update({key: source for key in _leaf_keys(layer)})
    try:
        return PipelineConfig.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(_describe_validation_error(err, sources)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found; restore it from git "
                          f"(git checkout -- {path}) or set {CONF_DIR_ENV}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err}); fix the syntax and rerun") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    return data


def _env_layers(env: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    layers = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [part.lower() for part in name[len(ENV_PREFIX):].split("__")]
        if len(parts) < 2 or not all(parts):
            raise ConfigError(f"environment variable {name}: expected {ENV_PREFIX}<SECTION>__<KEY>")
        value: Any = yaml.safe_load(env[name]) if env[name] != "" else ""
        for part in reversed(parts):
            value = {part: value}
        layers.append((f"environment variable {name}", value))
    return layers


def _check_keys(data: Any, model: type[BaseModel], source: str, prefix: str = "") -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{prefix.rstrip('.') or 'top level'}' must be a mapping, "
                          f"got {type(data).__name__}")
    fields = model.model_fields
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"{source}: unknown key '{prefix}{key}'; allowed keys here: "
                              f"{', '.join(sorted(fields))}")
        annotation = fields[key].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            _check_keys(value, annotation, source, f"{prefix}{key}.")


def _deep_merge(base: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _leaf_keys(data: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            keys += _leaf_keys(value, f"{prefix}{key}.")
        keys.append(f"{prefix}{key}")
    return keys


def _describe_validation_error(err: ValidationError, sources: dict[str, str]) -> str:
    lines = []
    for problem in err.errors():
        key = ".".join(str(part) for part in problem["loc"])
        source = next((sources[k] for k in _prefixes(key) if k in sources), "the merged config")
        lines.append(f"{source}: key '{key}': {problem['msg']} (got {problem.get('input')!r})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _prefixes(key: str) -> list[str]:
    parts = key.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
