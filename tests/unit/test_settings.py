"""Unit tests of autopilot.settings: defaults, environment parsing, validation, secrets."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from autopilot.errors import ConfigError
from autopilot.settings import Settings, load_settings

WEBHOOK = "https://hooks.slack.com/services/T000/B000/XyZsecretWebhookPart"
TOKEN = "xoxb-1234-5678-topSecretToken"


def test_defaults_are_the_seed_numbers_and_documented_values() -> None:
    s = load_settings({})

    assert (s.window_size, s.min_samples) == (1000, 10)
    assert (s.z_threshold, s.z_high, s.z_critical) == (2.5, 3.0, 4.0)
    assert s.correlation_window_s == 600
    assert s.deployment_window_s == 1800
    assert s.incident_close_s == 900
    assert s.ollama_url == "http://localhost:11434"
    assert s.ollama_model == "llama3:latest"
    assert s.ollama_timeout_s == 60.0
    assert s.store == "rocksdb://"
    assert s.broker == "kafka://localhost:9092"
    assert s.web_port == 6066
    assert s.redis_url is None
    assert s.slack_webhook_url is None and s.slack_bot_token is None


def test_load_settings_does_not_read_the_process_environment_when_given_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTOPILOT_WEB_PORT", "7777")

    assert load_settings({}).web_port == 6066
    assert load_settings().web_port == 7777


def test_environment_overrides_are_parsed() -> None:
    s = load_settings(
        {
            "AUTOPILOT_BROKER": "kafka://kafka-1:9093",
            "AUTOPILOT_WEB_PORT": "7001",
            "AUTOPILOT_PARTITIONS": "12",
            "AUTOPILOT_REBALANCE_TIMEOUT_S": "60",
            "AUTOPILOT_Z_THRESHOLD": "2.0",
            "AUTOPILOT_WINDOW_SIZE": "500",
            "AUTOPILOT_STORE": "memory://",
            "OLLAMA_URL": "http://ollama:11434",
            "OLLAMA_MODEL": "mistral:7b",
            "OLLAMA_TIMEOUT_S": "12.5",
            "REDIS_URL": "redis://localhost:6379/0",
            "SLACK_WEBHOOK_URL": WEBHOOK,
            "UNRELATED_VARIABLE": "ignored",
        }
    )

    assert s.broker == "kafka://kafka-1:9093"
    assert s.web_port == 7001 and isinstance(s.web_port, int)
    assert s.partitions == 12
    assert s.rebalance_timeout_s == 60.0
    assert s.z_threshold == 2.0
    assert s.window_size == 500
    assert s.store == "memory://"
    assert s.ollama_url == "http://ollama:11434"
    assert s.ollama_model == "mistral:7b"
    assert s.ollama_timeout_s == 12.5
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.slack_webhook_url is not None
    assert s.slack_webhook_url.get_secret_value() == WEBHOOK


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUTOPILOT_WEB_PORT", "not-a-port"),
        ("AUTOPILOT_WEB_PORT", "70000"),
        ("AUTOPILOT_PARTITIONS", "0"),
        ("AUTOPILOT_WINDOW_SIZE", "1"),
        ("AUTOPILOT_WINDOW_SIZE", "5000"),
        ("AUTOPILOT_Z_THRESHOLD", "-1"),
        ("OLLAMA_TIMEOUT_S", "soon"),
        ("AUTOPILOT_BROKER", "http://localhost:9092"),
        ("AUTOPILOT_MIN_SAMPLES", "2000"),
        ("AUTOPILOT_SPATIAL_TOLERANCE", "nan"),
        ("AUTOPILOT_SPATIAL_TOLERANCE", "inf"),
        ("AUTOPILOT_NOVELTY_Z", "inf"),
        ("AUTOPILOT_NOVELTY_Z", "0"),
        ("AUTOPILOT_EPISODE_S", "inf"),
        ("AUTOPILOT_SEASON_DAYS", "15"),
        ("AUTOPILOT_SEASON_DAYS", "-1"),
    ],
)
def test_invalid_value_raises_config_error_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})


def test_secrets_are_secret_str_and_never_printed() -> None:
    s = load_settings(
        {"SLACK_WEBHOOK_URL": WEBHOOK, "SLACK_BOT_TOKEN": TOKEN, "SLACK_CHANNEL": "#ops"}
    )

    assert isinstance(s.slack_webhook_url, SecretStr)
    assert isinstance(s.slack_bot_token, SecretStr)
    assert s.slack_bot_token.get_secret_value() == TOKEN
    for text in (repr(s), str(s), str(s.model_dump()), s.model_dump_json()):
        assert "secretWebhookPart" not in text
        assert "topSecretToken" not in text
    assert s.slack_channel == "#ops"


def test_settings_are_frozen() -> None:
    s = load_settings({})

    with pytest.raises(ValidationError):
        s.web_port = 1  # type: ignore[misc]
    assert s.web_port == 6066


def test_unknown_keyword_arguments_are_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(AUTOPILOT_NO_SUCH_SETTING="1")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        Settings(no_such_setting=1)  # type: ignore[call-arg]


def test_bot_token_without_channel_is_refused() -> None:
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN needs SLACK_CHANNEL"):
        load_settings({"SLACK_BOT_TOKEN": TOKEN})
    with pytest.raises(ConfigError, match="SLACK_CHANNEL"):
        load_settings({"SLACK_BOT_TOKEN": TOKEN, "SLACK_CHANNEL": ""})


@pytest.mark.parametrize(
    "env",
    [
        {"AUTOPILOT_Z_THRESHOLD": "3.5"},  # above high (3)
        {"AUTOPILOT_Z_HIGH": "5"},  # above critical (4)
        {"AUTOPILOT_Z_CRITICAL": "2"},  # below threshold
    ],
)
def test_z_threshold_ordering_is_validated(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="AUTOPILOT_Z_THRESHOLD <= AUTOPILOT_Z_HIGH"):
        load_settings(env)


def test_equal_z_thresholds_are_allowed() -> None:
    s = load_settings(
        {"AUTOPILOT_Z_THRESHOLD": "3", "AUTOPILOT_Z_HIGH": "3", "AUTOPILOT_Z_CRITICAL": "3"}
    )

    assert s.z_threshold == s.z_high == s.z_critical == 3.0


def test_empty_strings_count_as_unset() -> None:
    s = load_settings(
        {
            "AUTOPILOT_WEB_PORT": "",
            "OLLAMA_URL": "",
            "SLACK_BOT_TOKEN": "",
            "SLACK_WEBHOOK_URL": "",
            "REDIS_URL": "",
        }
    )

    assert s == load_settings({})
    assert s.slack_bot_token is None and s.slack_webhook_url is None and s.redis_url is None


def test_every_field_has_an_environment_variable() -> None:
    names = Settings.env_names()

    assert set(names.values()) == set(Settings.model_fields)
    assert names["AUTOPILOT_BROKER"] == "broker"
    assert names["OLLAMA_URL"] == "ollama_url"


def _settings_doc_module() -> Any:
    """``scripts/settings_doc.py`` (a script, not a package module), loaded by path."""
    path = Path(__file__).resolve().parents[2] / "scripts" / "settings_doc.py"
    spec = importlib.util.spec_from_file_location("settings_doc", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_settings_md_is_the_generated_reference_and_not_stale() -> None:
    settings_doc = _settings_doc_module()
    expected = settings_doc.render()

    current = settings_doc.TARGET.read_text(encoding="utf-8")

    assert current == expected, (
        "docs/settings.md is stale: run `python scripts/settings_doc.py` (make settings-doc)"
    )
    missing = [name for name in Settings.env_names() if f"| `{name}` |" not in current]
    assert not missing, f"settings missing from docs/settings.md: {missing}"


def test_settings_doc_check_exits_1_naming_the_stale_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings_doc = _settings_doc_module()
    stale = tmp_path / "docs" / "settings.md"
    stale.parent.mkdir()
    stale.write_text("# Settings reference\n\nan old table\n", encoding="utf-8")
    monkeypatch.setattr(settings_doc, "ROOT", tmp_path)
    monkeypatch.setattr(settings_doc, "TARGET", stale)

    assert settings_doc.main(["--check"]) == 1
    assert "docs/settings.md is stale" in capsys.readouterr().err

    assert settings_doc.main([]) == 0
    assert settings_doc.main(["--check"]) == 0
    assert stale.read_text(encoding="utf-8") == settings_doc.render()


def test_http_and_kafka_security_settings_parse() -> None:
    s = load_settings({
        "AUTOPILOT_API_KEYS": " k1 ,k2,, ",
        "AUTOPILOT_SERVICE_LABELS": "app, job",
        "AUTOPILOT_RATE_LIMIT_RPS": "0",
        "AUTOPILOT_MAX_BODY_BYTES": "4096",
        "SLACK_WEBHOOK_URL": "https://hooks.example/secret",
    })
    assert s.api_key_list() == ["k1", "k2"]
    assert s.service_label_list() == ("app", "job")
    assert s.rate_limit_rps == 0.0 and s.max_body_bytes == 4096
    assert set(s.secret_values()) == {"k1", "k2", "https://hooks.example/secret"}
    assert "k1" not in repr(s) and "k1" not in str(s.model_dump())


@pytest.mark.parametrize("env", [
    {"AUTOPILOT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
    {"AUTOPILOT_KAFKA_SECURITY_PROTOCOL": "TLS"},
    {"AUTOPILOT_KAFKA_SSL_CERTFILE": "/x.pem"},
    {"AUTOPILOT_API_KEYS": " , "},
    {"AUTOPILOT_SERVICE_LABELS": ","},
    {"AUTOPILOT_MAX_BODY_BYTES": "10"},
])
def test_inconsistent_security_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        load_settings(env)


# --- secrets from files (issue 12: Docker and Kubernetes secrets) ---------------------


@pytest.mark.parametrize("name", Settings.file_env_names())
def test_every_secret_can_come_from_a_file_without_its_line_break(
    tmp_path: Path, name: str
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("redis://:pw@redis:6379/0\n" if name == "REDIS_URL" else "s3cr3t-value\n")
    env = {f"{name}_FILE": str(secret)}
    if name == "SLACK_BOT_TOKEN":
        env["SLACK_CHANNEL"] = "#ops"

    s = load_settings(env)

    field = getattr(s, Settings.env_names()[name])
    value = field if isinstance(field, str) else field.get_secret_value()
    assert value == ("redis://:pw@redis:6379/0" if name == "REDIS_URL" else "s3cr3t-value")


def test_the_documented_file_variables_exist() -> None:
    names = set(Settings.file_env_names())
    assert {"SLACK_BOT_TOKEN", "SLACK_WEBHOOK_URL", "AUTOPILOT_KAFKA_SASL_PASSWORD",
            "AUTOPILOT_API_KEYS", "AUTOPILOT_GITHUB_WEBHOOK_SECRET",
            "AUTOPILOT_KAFKA_SSL_KEY_PASSWORD", "AUTOPILOT_WEB_SSL_KEY_PASSWORD",
            "REDIS_URL", "SLACK_SIGNING_SECRET"} <= names


def test_api_keys_file_holds_one_key_a_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("key-one\r\nkey-two\n\nkey-three,key-four\n")

    s = load_settings({"AUTOPILOT_API_KEYS_FILE": str(keys)})

    assert s.api_key_list() == ["key-one", "key-two", "key-three", "key-four"]


def test_a_variable_and_its_file_together_are_refused(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text(TOKEN)

    with pytest.raises(ConfigError, match="set SLACK_BOT_TOKEN or SLACK_BOT_TOKEN_FILE, not both"):
        load_settings({"SLACK_BOT_TOKEN": TOKEN, "SLACK_BOT_TOKEN_FILE": str(secret),
                       "SLACK_CHANNEL": "#ops"})


def test_an_unreadable_or_empty_secret_file_names_the_variable(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError) as err:
        load_settings({"AUTOPILOT_KAFKA_SASL_PASSWORD_FILE": str(missing)})
    assert str(err.value) == (
        f"AUTOPILOT_KAFKA_SASL_PASSWORD_FILE: cannot read {missing}: No such file or directory"
    )
    with pytest.raises(ConfigError, match="SLACK_WEBHOOK_URL_FILE: cannot read"):
        load_settings({"SLACK_WEBHOOK_URL_FILE": str(tmp_path)})  # a directory
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match=f"AUTOPILOT_API_KEYS_FILE: {empty} is empty"):
        load_settings({"AUTOPILOT_API_KEYS_FILE": str(empty)})


def test_a_secret_file_never_shows_its_content_in_errors(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text(TOKEN)

    with pytest.raises(ConfigError) as err:  # a token without SLACK_CHANNEL
        load_settings({"SLACK_BOT_TOKEN_FILE": str(secret)})
    assert "SLACK_CHANNEL" in str(err.value) and TOKEN not in str(err.value)
    assert TOKEN not in repr(load_settings({"SLACK_BOT_TOKEN_FILE": str(secret),
                                            "SLACK_CHANNEL": "#ops"}))


def test_non_secret_settings_have_no_file_variable(tmp_path: Path) -> None:
    port = tmp_path / "port"
    port.write_text("7000")

    assert load_settings({"AUTOPILOT_WEB_PORT_FILE": str(port)}).web_port == 6066


# --- HTTPS on the worker's port ----------------------------------------------------------


def test_web_tls_settings_parse_and_inconsistent_ones_are_refused() -> None:
    s = load_settings({"AUTOPILOT_WEB_SSL_CERTFILE": "/tls/tls.crt",
                       "AUTOPILOT_WEB_SSL_KEYFILE": "/tls/tls.key",
                       "AUTOPILOT_WEB_SSL_CAFILE": "/tls/ca.crt",
                       "AUTOPILOT_WEB_SSL_CLIENT_AUTH": "required",
                       "AUTOPILOT_WEB_SSL_KEY_PASSWORD": "keypw"})
    assert (s.web_ssl_certfile, s.web_ssl_client_auth) == ("/tls/tls.crt", "required")
    assert "keypw" in s.secret_values() and "keypw" not in repr(s)
    assert load_settings({}).web_ssl_client_auth == "none"

    with pytest.raises(ConfigError, match="go together"):
        load_settings({"AUTOPILOT_WEB_SSL_CERTFILE": "/tls/tls.crt"})
    with pytest.raises(ConfigError, match="AUTOPILOT_WEB_SSL_CAFILE"):
        load_settings({"AUTOPILOT_WEB_SSL_CERTFILE": "/tls/tls.crt",
                       "AUTOPILOT_WEB_SSL_KEYFILE": "/tls/tls.key",
                       "AUTOPILOT_WEB_SSL_CLIENT_AUTH": "required"})
    with pytest.raises(ConfigError, match="AUTOPILOT_WEB_SSL_CLIENT_AUTH"):
        load_settings({"AUTOPILOT_WEB_SSL_CLIENT_AUTH": "always"})


def test_an_autopilot_variable_that_names_no_setting_is_reported() -> None:
    env = {"AUTOPILOT_RATE_LIMT_RPS": "5", "AUTOPILOT_RATE_LIMIT_RPS": "5",
           "SLACK_BOT_TOKEN_FILE": "/run/x", "AUTOPILOT_API_KEYS_FILE": "/run/keys",
           "AUTOPILOT_TEST_KAFKA": "127.0.0.1:9092", "HOME": "/root"}
    assert Settings.unknown_env_names(env) == ["AUTOPILOT_RATE_LIMT_RPS"]
