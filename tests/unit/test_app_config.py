"""Unit tests of autopilot.app.faust_options: every setting reaches Faust's real config."""

from __future__ import annotations

from pathlib import Path

import faust
import pytest

from autopilot.app import faust_options
from autopilot.settings import Settings, load_settings

ENV = {
    "AUTOPILOT_BROKER": "kafka://kafka-7.internal:19092",
    "AUTOPILOT_STORE": "memory://",
    "AUTOPILOT_DATADIR": "/var/lib/autopilot-test",
    "AUTOPILOT_WEB_HOST": "worker-3.internal",
    "AUTOPILOT_WEB_PORT": "7123",
    "AUTOPILOT_PARTITIONS": "5",
    "AUTOPILOT_REPLICATION_FACTOR": "3",
    "AUTOPILOT_STANDBY_REPLICAS": "2",
    "AUTOPILOT_REBALANCE_TIMEOUT_S": "61.5",
    "AUTOPILOT_SESSION_TIMEOUT_S": "45",
    "AUTOPILOT_HEARTBEAT_INTERVAL_S": "3",
    "AUTOPILOT_COMMIT_INTERVAL_S": "2.5",
}


@pytest.fixture
def settings() -> Settings:
    return load_settings(ENV)


def test_faust_options_map_each_setting(settings: Settings) -> None:
    opts = faust_options(settings)

    assert opts["env"] == {}
    assert opts["broker"] == "kafka://kafka-7.internal:19092"
    assert opts["store"] == "memory://"
    assert opts["datadir"] == "/var/lib/autopilot-test"
    assert opts["web_host"] == "worker-3.internal"
    assert opts["web_port"] == 7123
    assert opts["canonical_url"] == "http://worker-3.internal:7123"
    assert opts["topic_partitions"] == 5
    assert opts["topic_replication_factor"] == 3
    assert opts["table_standby_replicas"] == 2
    assert opts["broker_rebalance_timeout"] == 61.5
    assert opts["broker_session_timeout"] == 45.0
    assert opts["broker_heartbeat_interval"] == 3.0
    assert opts["broker_commit_interval"] == 2.5
    assert opts["consumer_auto_offset_reset"] == "earliest"


def assert_conf_matches(app: faust.App, s: Settings) -> None:
    conf = app.conf
    assert [str(u) for u in conf.broker] == [s.broker]
    assert conf.web_port == s.web_port
    assert conf.web_host == s.web_host
    assert str(conf.canonical_url) == f"http://{s.web_host}:{s.web_port}"
    assert conf.topic_partitions == s.partitions
    assert conf.topic_replication_factor == s.replication_factor
    assert conf.table_standby_replicas == s.standby_replicas
    assert conf.broker_rebalance_timeout == s.rebalance_timeout_s
    assert conf.broker_session_timeout == s.session_timeout_s
    assert conf.broker_heartbeat_interval == s.heartbeat_interval_s
    assert conf.broker_commit_interval == s.commit_interval_s
    assert conf.consumer_auto_offset_reset == "earliest"
    assert conf.consumer_metadata_max_age_ms == 10_000
    assert Path(conf.datadir) == Path(s.datadir)
    assert conf.store.scheme == s.store.split("://", 1)[0]


def test_a_real_faust_app_sees_every_setting(settings: Settings) -> None:
    # Faust drops unknown keyword arguments silently: reading app.conf back proves
    # that no key in faust_options is misspelled.
    app = faust.App("autopilot-conf-test", **faust_options(settings))

    assert_conf_matches(app, settings)
    assert app.conf.store.scheme == "memory"
    assert app.conf.broker_rebalance_timeout == 61.5


def test_default_settings_reach_faust_too() -> None:
    s = load_settings({})
    app = faust.App("autopilot-conf-defaults", **faust_options(s))

    assert_conf_matches(app, s)
    assert app.conf.store.scheme == "rocksdb"


def test_faust_environment_variables_do_not_override_the_settings(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    monkeypatch.setenv("BROKER_URL", "kafka://stray-broker:1")
    monkeypatch.setenv("WEB_PORT", "9999")
    monkeypatch.setenv("WEB_HOST", "stray-host")
    monkeypatch.setenv("STORE_URL", "rocksdb://")
    monkeypatch.setenv("APP_DATADIR", "/tmp/stray")

    app = faust.App("autopilot-conf-env", **faust_options(settings))

    assert [str(u) for u in app.conf.broker] == ["kafka://kafka-7.internal:19092"]
    assert app.conf.web_port == 7123
    assert app.conf.web_host == "worker-3.internal"
    assert app.conf.store.scheme == "memory"
    assert_conf_matches(app, settings)


def _names_in_a_fresh_worker_process(env: dict[str, str]) -> list[str]:
    import os
    import subprocess
    import sys

    code = (
        "from autopilot.app import app\n"
        "from autopilot import tables, streams\n"
        "print(app.conf.id)\n"
        "print(tables.baselines.changelog_topic.get_topic_name())\n"
        "print(streams.metrics_topic.get_topic_name())\n"
        "print(streams.alerts_topic.get_topic_name())\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPILOT_")}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env},
                         capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.split()


def test_default_names_are_unchanged() -> None:
    assert _names_in_a_fresh_worker_process({}) == [
        "autopilot", "autopilot-baselines-changelog", "autopilot.metrics", "autopilot.alerts",
    ]


def test_app_id_sets_group_changelogs_and_topic_prefix() -> None:
    assert _names_in_a_fresh_worker_process({"AUTOPILOT_APP_ID": "t-42"}) == [
        "t-42", "t-42-baselines-changelog", "t-42.metrics", "t-42.alerts",
    ]


def test_topic_prefix_overrides_the_app_id_for_topics_only() -> None:
    names = _names_in_a_fresh_worker_process(
        {"AUTOPILOT_APP_ID": "blue", "AUTOPILOT_TOPIC_PREFIX": "shared"}
    )
    assert names == ["blue", "blue-baselines-changelog", "shared.metrics", "shared.alerts"]


def test_topic_name_maps_default_names() -> None:
    from autopilot.topics import topic_name

    assert topic_name("autopilot.metrics", "team-a") == "team-a.metrics"
    assert topic_name("autopilot.correlation.control", "x") == "x.correlation.control"
    with pytest.raises(ValueError):
        topic_name("other.metrics", "x")


def test_analysis_concurrency_reaches_the_agent() -> None:
    import os
    import subprocess
    import sys

    code = ("from autopilot.agents.analysis import analyse_incidents\n"
            "print(analyse_incidents.concurrency)\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPILOT_")}
    out = subprocess.run([sys.executable, "-c", code],
                         env={**clean, "AUTOPILOT_ANALYSIS_CONCURRENCY": "7"},
                         capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["7"]


def test_kafka_security_settings_become_faust_credentials() -> None:
    from faust.types.auth import AuthProtocol

    from autopilot.app import broker_credentials
    from autopilot.errors import ConfigError

    assert broker_credentials(load_settings({})) is None
    ssl_only = broker_credentials(load_settings({"AUTOPILOT_KAFKA_SECURITY_PROTOCOL": "SSL"}))
    assert ssl_only.protocol == AuthProtocol.SSL
    sasl = broker_credentials(load_settings({
        "AUTOPILOT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "AUTOPILOT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "AUTOPILOT_KAFKA_SASL_USERNAME": "autopilot",
        "AUTOPILOT_KAFKA_SASL_PASSWORD": "s3cret",
    }))
    assert sasl.protocol == AuthProtocol.SASL_SSL
    assert sasl.mechanism.value == "SCRAM-SHA-512"
    assert sasl.username == "autopilot" and sasl.password == "s3cret"
    app = faust.App("autopilot-conf-sasl", **faust_options(load_settings({
        "AUTOPILOT_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "AUTOPILOT_KAFKA_SASL_USERNAME": "u", "AUTOPILOT_KAFKA_SASL_PASSWORD": "p"})))
    assert app.conf.broker_credentials is not None
    assert app.conf.broker_credentials.protocol == AuthProtocol.SASL_PLAINTEXT
    with pytest.raises(ConfigError, match="AUTOPILOT_KAFKA_SASL_USERNAME"):
        load_settings({"AUTOPILOT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})
    assert "s3cret" not in repr(load_settings({
        "AUTOPILOT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "AUTOPILOT_KAFKA_SASL_USERNAME": "autopilot",
        "AUTOPILOT_KAFKA_SASL_PASSWORD": "s3cret"}))


def test_faust_builtin_views_are_off_and_the_guard_is_installed() -> None:
    opts = faust_options(load_settings({"AUTOPILOT_MAX_BODY_BYTES": "2048"}))

    for flag in ("web_router_enabled", "web_tables_enabled", "web_graph_enabled",
                 "web_stats_enabled", "web_metrics_enabled"):
        assert opts[flag] is False, flag
    assert opts["web_enabled"] is True
    assert opts["web_application_options"]["client_max_size"] == 2048
    assert len(opts["web_application_options"]["middlewares"]) == 1
    assert opts["broker_credentials"] is None


def test_kafka_sasl_ssl_settings_reach_faust_and_aiokafka() -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    s = load_settings({
        "AUTOPILOT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "AUTOPILOT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "AUTOPILOT_KAFKA_SASL_USERNAME": "autopilot",
        "AUTOPILOT_KAFKA_SASL_PASSWORD": "pw-123",
    })

    auth = credentials_to_aiokafka_auth(faust_options(s)["broker_credentials"])

    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert auth["sasl_plain_username"] == "autopilot"
    assert auth["sasl_plain_password"] == "pw-123"
    assert auth["ssl_context"] is not None
    app = faust.App("sasl-conf-test", **faust_options(s))
    assert app.conf.broker_credentials is not None


def test_kafka_ssl_and_plain_sasl() -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    ssl_auth = credentials_to_aiokafka_auth(faust_options(load_settings(
        {"AUTOPILOT_KAFKA_SECURITY_PROTOCOL": "SSL"}))["broker_credentials"])
    assert ssl_auth["security_protocol"] == "SSL"
    sasl = credentials_to_aiokafka_auth(faust_options(load_settings({
        "AUTOPILOT_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "AUTOPILOT_KAFKA_SASL_USERNAME": "u", "AUTOPILOT_KAFKA_SASL_PASSWORD": "p",
    }))["broker_credentials"])
    assert (sasl["security_protocol"], sasl["sasl_mechanism"]) == ("SASL_PLAINTEXT", "PLAIN")
    assert sasl["ssl_context"] is None


# --- HTTPS on the worker's port, Kafka credentials checked at start (issue 12) ----------


def _tls_env(tmp_path: Path, client_auth: str = "none") -> dict[str, str]:
    from tests.tls import CertificateAuthority

    ca = CertificateAuthority(tmp_path / "ca")
    cert, key = ca.issue("worker-3.internal", hosts=("worker-3.internal",))
    return {**ENV, "AUTOPILOT_WEB_SSL_CERTFILE": str(cert),
            "AUTOPILOT_WEB_SSL_KEYFILE": str(key),
            "AUTOPILOT_WEB_SSL_CAFILE": str(ca.cert_path),
            "AUTOPILOT_WEB_SSL_CLIENT_AUTH": client_auth}


def test_plain_http_by_default() -> None:
    opts = faust_options(load_settings(ENV))

    assert opts["web_ssl_context"] is None
    assert opts["canonical_url"].startswith("http://")
    assert opts["HttpClient"] == "aiohttp.client:ClientSession"


def test_web_tls_settings_reach_faust_web_server_routing_and_client(tmp_path: Path) -> None:
    import ssl

    s = load_settings(_tls_env(tmp_path, "required"))
    app = faust.App("autopilot-conf-tls", **faust_options(s))

    server = app.conf.web_ssl_context
    assert isinstance(server, ssl.SSLContext)
    assert server.verify_mode == ssl.CERT_REQUIRED
    assert server.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert str(app.conf.canonical_url) == "https://worker-3.internal:7123"
    # Views forwarded to the owner go through Faust's http_client: HTTPS, this CA.
    assert callable(app.conf.HttpClient)
    assert not isinstance(app.conf.HttpClient, str)


def test_optional_client_certificates(tmp_path: Path) -> None:
    import ssl

    from autopilot.app import web_ssl_context

    context = web_ssl_context(load_settings(_tls_env(tmp_path, "optional")))
    assert context is not None
    assert context.verify_mode == ssl.CERT_OPTIONAL


def test_tls_files_that_cannot_load_are_config_errors_naming_the_variable(
    tmp_path: Path,
) -> None:
    from autopilot.app import broker_credentials, web_ssl_context
    from autopilot.errors import ConfigError

    env = _tls_env(tmp_path)
    bad_key = tmp_path / "bad.key"
    bad_key.write_text("not a key\n")
    with pytest.raises(ConfigError, match="AUTOPILOT_WEB_SSL_CERTFILE/AUTOPILOT_WEB_SSL_KEYFILE"):
        web_ssl_context(load_settings({**env, "AUTOPILOT_WEB_SSL_KEYFILE": str(bad_key)}))
    with pytest.raises(ConfigError, match="AUTOPILOT_WEB_SSL_CAFILE: cannot load"):
        web_ssl_context(load_settings({**env, "AUTOPILOT_WEB_SSL_CAFILE": str(tmp_path / "x")}))
    with pytest.raises(ConfigError, match="AUTOPILOT_KAFKA_SSL_CAFILE: cannot load"):
        broker_credentials(load_settings({"AUTOPILOT_KAFKA_SECURITY_PROTOCOL": "SSL",
                                          "AUTOPILOT_KAFKA_SSL_CAFILE": str(tmp_path / "x")}))


def test_worker_with_a_missing_certificate_stops_with_one_line_and_status_2(
    tmp_path: Path,
) -> None:
    import os
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPILOT_")}
    done = subprocess.run(
        [sys.executable, "-m", "autopilot", "worker"],
        env={**clean, "AUTOPILOT_WEB_SSL_CERTFILE": str(tmp_path / "tls.crt"),
             "AUTOPILOT_WEB_SSL_KEYFILE": str(tmp_path / "tls.key")},
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(
        "autopilot: AUTOPILOT_WEB_SSL_CERTFILE/AUTOPILOT_WEB_SSL_KEYFILE:")
    assert "No such file or directory" in done.stderr and "Traceback" not in done.stderr


def test_bootstrap_hosts_of_the_broker_url() -> None:
    from autopilot.app import _bootstrap_hosts

    assert _bootstrap_hosts("kafka://k1:19092;k2") == [("k1", 19092), ("k2", 9092)]
    assert _bootstrap_hosts("kafka://k1:1,kafka://k2:2") == [("k1", 1), ("k2", 2)]


def test_broker_check_leaves_an_unreachable_broker_to_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from autopilot.app import check_broker_access
    from tests.standins import free_port

    check_broker_access(load_settings({}))  # PLAINTEXT: nothing to check
    s = load_settings({"AUTOPILOT_BROKER": f"kafka://127.0.0.1:{free_port()}",
                       "AUTOPILOT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                       "AUTOPILOT_KAFKA_SASL_USERNAME": "u",
                       "AUTOPILOT_KAFKA_SASL_PASSWORD": "p"})
    with caplog.at_level("WARNING"):
        check_broker_access(s, timeout_s=5)
    assert "not reachable yet" in caplog.text and "keeps trying" in caplog.text
