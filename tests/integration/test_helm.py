"""The Helm chart ``deploy/helm/autopilot``, checked with the real ``helm`` binary.

``make helm`` builds the pinned Helm (scripts/helm.sh) into ``.venv/bin/helm``; without
it these tests fail with "run make helm" (never skipped). No broker is needed (marked
``no_broker``: they run once, in ``make test``). Checked:

* ``helm lint --strict`` with the default values and with ``values-production.yaml``;
* ``helm template`` with both, every rendered manifest validated against the Kubernetes
  schemas of :data:`KUBERNETES_VERSION` by ``kubernetes-validate`` (strict: unknown
  fields are errors); the ServiceMonitor (a prometheus-operator custom resource, no
  schema shipped) is checked by the assertions below instead;
* what the workers rely on: the StatefulSet's ``serviceName`` is the headless Service,
  ``AUTOPILOT_WEB_HOST`` is the pod's stable DNS name, probes on ``/ready`` and
  ``/health``, credentials by ``secretKeyRef`` (also from an existing Secret), the
  rendered environment is accepted by :func:`autopilot.settings.load_settings`, and the
  ``helm test`` hook calls ``/health`` on every worker;
* the chart's ``values.schema.json`` refuses misspelled and mistyped values.
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # no stubs, no py.typed
import pytest
import yaml

from autopilot.settings import Settings, load_settings

pytestmark = [pytest.mark.integration, pytest.mark.no_broker]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "autopilot"
PRODUCTION = CHART / "values-production.yaml"
HELM = REPO / ".venv" / "bin" / "helm"
#: Kubernetes release whose schemas the manifests are validated against.
KUBERNETES_VERSION = "1.34"
RELEASE = "ap"
NAMESPACE = "autopilot"
#: Custom resources without a schema in kubernetes-validate.
CUSTOM_KINDS = {"ServiceMonitor"}


@pytest.fixture(scope="module")
def helm() -> Path:
    assert HELM.exists(), f"{HELM} is missing: run make helm"
    return HELM


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO)


def render(helm: Path, *values: str | Path, sets: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The manifests of ``helm template`` (``values`` files, ``--set`` pairs)."""
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE,
            "--kube-version", f"{KUBERNETES_VERSION}.0"]
    for file in values:
        args += ["-f", str(file)]
    for pair in sets:
        args += ["--set", pair]
    done = run_helm(helm, *args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind
             and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind} {name or ''}: {len(found)} rendered"
    return found[0]


def worker(docs: list[dict[str, Any]]) -> dict[str, Any]:
    sts = one(docs, "StatefulSet")
    containers = sts["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["worker"]
    container: dict[str, Any] = containers[0]
    return container


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    names = [e["name"] for e in container["env"]]
    assert len(names) == len(set(names)), f"variables set twice: {names}"
    return {e["name"]: e for e in container["env"]}


def expand(value: str, variables: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion of an env value."""
    for name, replacement in variables.items():
        value = value.replace(f"$({name})", replacement)
    assert "$(" not in value, value
    return value


@pytest.mark.parametrize("values", [(), (PRODUCTION,)], ids=["default", "production"])
def test_lint_strict(helm: Path, values: tuple[Path, ...]) -> None:
    args = ["lint", "--strict", str(CHART)]
    for file in values:
        args += ["-f", str(file)]
    done = run_helm(helm, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("values", [(), (PRODUCTION,)], ids=["default", "production"])
def test_rendered_manifests_are_valid_kubernetes(helm: Path, values: tuple[Path, ...]) -> None:
    docs = render(helm, *values, sets=["secrets.values.SLACK_BOT_TOKEN=xoxb-1"])
    kinds = sorted(d["kind"] for d in docs)
    for doc in docs:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{doc['kind']} {doc['metadata']['name']}: {exc.message} "
                                 f"at {list(exc.path)}") from None
    for kind in ("StatefulSet", "Service", "PodDisruptionBudget", "Pod", "ServiceAccount"):
        assert kind in kinds


def test_validation_can_fail() -> None:
    """The validator refuses a broken manifest (so the test above can fail)."""
    bad = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "x"},
           "spec": {"replicas": "two", "serviceName": "x", "selector": {},
                    "template": {"spec": {"containers": []}}, "bogus": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("values", [(), (PRODUCTION,)], ids=["default", "production"])
def test_statefulset_routes_by_stable_dns_names(helm: Path, values: tuple[Path, ...]) -> None:
    docs = render(helm, *values)
    sts = one(docs, "StatefulSet")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    headless = one(docs, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    ingestion = [s for s in docs if s["kind"] == "Service" and s is not headless]
    assert len(ingestion) == 1 and ingestion[0]["spec"].get("clusterIP") != "None"
    for service in (headless, ingestion[0]):
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert sts["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    container = worker(docs)
    env = env_of(container)
    names = list(env)
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    # $(VAR) expands only variables defined earlier in the list.
    assert names.index("POD_NAME") < names.index("AUTOPILOT_WEB_HOST")
    assert names.index("POD_NAMESPACE") < names.index("AUTOPILOT_WEB_HOST")
    pod = f"{sts['metadata']['name']}-1"
    host = expand(env["AUTOPILOT_WEB_HOST"]["value"], {"POD_NAME": pod, "POD_NAMESPACE": NAMESPACE})
    assert host == f"{pod}.{headless['metadata']['name']}.{NAMESPACE}.svc.cluster.local"

    port = int(env["AUTOPILOT_WEB_PORT"]["value"])
    assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    assert container["command"][:2] == ["autopilot", "worker"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "http"

    # RocksDB data on the claim of each pod.
    assert env["AUTOPILOT_DATADIR"]["value"] == "/data"
    claims = sts["spec"]["volumeClaimTemplates"]
    assert [c["metadata"]["name"] for c in claims] == ["data"]
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    assert claims[0]["spec"]["resources"]["requests"]["storage"]

    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1
    requests = container["resources"]["requests"]
    assert requests["cpu"] and requests["memory"]


@pytest.mark.parametrize("values", [(), (PRODUCTION,)], ids=["default", "production"])
def test_helm_test_hook_calls_health_on_every_worker(helm: Path, values: tuple[Path, ...]) -> None:
    docs = render(helm, *values)
    sts = one(docs, "StatefulSet")
    hook = one(docs, "Pod")
    assert hook["metadata"]["annotations"]["helm.sh/hook"] == "test"
    env = env_of(worker(docs))
    port = env["AUTOPILOT_WEB_PORT"]["value"]
    expected = [
        "http://" + expand(env["AUTOPILOT_WEB_HOST"]["value"],
                           {"POD_NAME": f"{sts['metadata']['name']}-{i}",
                            "POD_NAMESPACE": NAMESPACE}) + f":{port}/health"
        for i in range(sts["spec"]["replicas"])
    ]
    urls = hook["spec"]["containers"][0]["args"]
    assert urls[:-1] == expected
    assert urls[-1].endswith(f".{NAMESPACE}.svc.cluster.local:6066/health")
    assert hook["spec"]["restartPolicy"] == "Never"


def secret_refs(env: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: e["valueFrom"]["secretKeyRef"] for name, e in env.items()
            if "secretKeyRef" in e.get("valueFrom", {})}


def test_every_secret_setting_comes_from_the_chart_secret(helm: Path) -> None:
    docs = render(helm, sets=["secrets.values.SLACK_BOT_TOKEN=xoxb-1",
                              "secrets.values.AUTOPILOT_API_KEYS=k1\\,k2"])
    env = env_of(worker(docs))
    refs = secret_refs(env)
    # Every secret setting of the code (SecretStr, and REDIS_URL) is read from the Secret.
    assert set(refs) == set(Settings.file_env_names()), (
        "secret settings and the chart differ: update autopilot.secretEnvNames in "
        "deploy/helm/autopilot/templates/_helpers.tpl (and docs/kubernetes.md)")
    secret = one(docs, "Secret")
    assert {r["name"] for r in refs.values()} == {secret["metadata"]["name"]}
    assert all(r["key"] == name for name, r in refs.items())
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {
        "SLACK_BOT_TOKEN": "xoxb-1", "AUTOPILOT_API_KEYS": "k1,k2"}
    # No secret is in the pod spec in clear.
    assert "xoxb-1" not in yaml.safe_dump(one(docs, "StatefulSet"))
    annotations = one(docs, "StatefulSet")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["checksum/secret"]


def test_existing_secret_is_used_and_none_created(helm: Path) -> None:
    docs = render(helm, sets=["secrets.existingSecret=team-creds"])
    assert not [d for d in docs if d["kind"] == "Secret"]
    refs = secret_refs(env_of(worker(docs)))
    assert set(refs) == set(Settings.file_env_names())
    assert {r["name"] for r in refs.values()} == {"team-creds"}


def test_a_secret_in_the_settings_map_is_refused(helm: Path) -> None:
    done = run_helm(helm, "template", RELEASE, str(CHART), "--set", "settings.API_KEYS=k")
    assert done.returncode != 0
    assert "settings.API_KEYS: AUTOPILOT_API_KEYS is a secret" in done.stderr
    done = run_helm(helm, "template", RELEASE, str(CHART),
                    "--set", "secrets.values.SLACK_TOKEN=x")
    assert done.returncode != 0
    assert "secrets.values.SLACK_TOKEN: not a secret setting" in done.stderr


def test_settings_map_overrides_and_redis_url_plain(helm: Path) -> None:
    docs = render(helm, sets=["settings.ROCKSDB_MEMORY_MB=16", "settings.partitions=16",
                              "env.SLACK_MAX_RETRIES=2", "redis.url=redis://redis:6379/0"])
    env = env_of(worker(docs))
    assert env["AUTOPILOT_ROCKSDB_MEMORY_MB"]["value"] == "16"
    assert env["AUTOPILOT_PARTITIONS"]["value"] == "16"
    assert env["SLACK_MAX_RETRIES"]["value"] == "2"
    assert env["REDIS_URL"] == {"name": "REDIS_URL", "value": "redis://redis:6379/0"}


@pytest.mark.parametrize("values", [(), (PRODUCTION,)], ids=["default", "production"])
def test_the_rendered_environment_is_valid_settings(helm: Path, values: tuple[Path, ...]) -> None:
    """Every plain variable is a setting the worker knows, and load_settings accepts them."""
    docs = render(helm, *values)
    sts = one(docs, "StatefulSet")
    env = env_of(worker(docs))
    known = set(Settings.env_names())
    plain = {name: e["value"] for name, e in env.items() if "value" in e}
    assert set(plain) - known == set(), "variables the worker does not read"
    variables = {"POD_NAME": f"{sts['metadata']['name']}-0", "POD_NAMESPACE": NAMESPACE}
    environ = {name: expand(value, variables) for name, value in plain.items()}
    # The secrets as an operator would put them in the Secret.
    provided = (["SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "AUTOPILOT_API_KEYS",
                 "AUTOPILOT_KAFKA_SASL_PASSWORD", "REDIS_URL"] if values
                else ["SLACK_WEBHOOK_URL", "AUTOPILOT_API_KEYS"])
    refs = secret_refs(env)
    assert set(provided) <= set(refs)
    environ.update({name: "redis://:pw@redis:6379/0" if name == "REDIS_URL" else "s3cret"
                    for name in provided})
    settings = load_settings(environ)
    assert settings.web_host.startswith(f"{sts['metadata']['name']}-0.")
    assert settings.datadir == "/data"
    # Production advice (docs/operations.md): production consumer-group timeouts, a
    # standby replica and more workers than standbys, partitions for every worker.
    assert settings.rebalance_timeout_s == 60
    assert settings.session_timeout_s == 45
    assert settings.heartbeat_interval_s == 3
    assert 1 <= settings.standby_replicas < sts["spec"]["replicas"]
    assert settings.partitions >= sts["spec"]["replicas"]
    if values:
        assert settings.replication_factor == 3
        assert settings.kafka_security_protocol == "SASL_SSL"


def test_service_monitor_scrapes_metrics_of_every_worker(helm: Path) -> None:
    default = render(helm)
    assert not [d for d in default if d["kind"] == "ServiceMonitor"]
    docs = render(helm, PRODUCTION)
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    wanted = monitor["spec"]["selector"]["matchLabels"].items()
    selected = [s for s in docs
                if s["kind"] == "Service" and wanted <= s["metadata"]["labels"].items()]
    # Only the headless Service: each worker is its own target.
    assert [s["spec"]["clusterIP"] for s in selected] == ["None"]
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in selected[0]["spec"]["ports"]}
    assert endpoint["authorization"]["type"] == "Bearer"
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]


def test_values_schema_refuses_misspelled_and_mistyped_values(helm: Path) -> None:
    """values.schema.json: a typo in a value's name or a wrong type fails the install."""
    for pair, message in [("replicas=3", "additional properties 'replicas' not allowed"),
                          ("partitions=zero", "/partitions"),
                          ("kafka.broker=localhost:9092", "/kafka/broker")]:
        done = run_helm(helm, "template", RELEASE, str(CHART), "--set", pair)
        assert done.returncode != 0, pair
        assert message in done.stderr, done.stderr
