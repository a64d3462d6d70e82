"""The Kubernetes manifests (deploy/k8s/), checked offline: every object against the
Kubernetes schemas (kubernetes-validate ships them), the edge's ConfigMap against a fresh
render and against `nginx -t` in the Pod's own layout, and the manifests against what the
code really reads and serves. kustomize is not needed: kustomizations are resolved here
(the few transformers they use)."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # ships no py.typed
import pytest
import yaml

from authsvc.redis_url import parse as parse_redis_url
from authsvc.routes import ROUTES
from authsvc.settings import Settings, SettingsError, documented
from canwatch_edge import k8s, render
from canwatch_edge.settings import EdgeSettings

from harness import ROOT, need_binary

K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
OVERLAY = K8S / "overlays" / "example"
# The oldest and the newest Kubernetes the manifests are checked against (schemas shipped
# in the kubernetes-validate package: no network).
VERSIONS = ("1.29.0", "1.37.0")
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}

Obj = dict[str, Any]


def _merge(into: Obj, patch: Obj) -> None:
    """A strategic merge of maps (all our patches hold): lists are not merged."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            assert not isinstance(value, list), f"a list in a patch ({key}): not resolved here"
            into[key] = value


def resolve(folder: Path) -> list[Obj]:
    """What `kubectl kustomize folder` builds, for the transformers used in deploy/k8s/."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    known = {"apiVersion", "kind", "resources", "namespace", "images", "replicas", "patches"}
    assert set(kustomization) <= known, set(kustomization) - known
    objects: list[Obj] = []
    for resource in kustomization["resources"]:
        path = folder / resource
        if path.is_dir():
            objects += resolve(path)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for patch in kustomization.get("patches", []):
        body = yaml.safe_load((folder / patch["path"]).read_text())
        (target,) = [
            o
            for o in objects
            if (o["kind"], o["metadata"]["name"]) == (body["kind"], body["metadata"]["name"])
        ]
        _merge(target, {k: v for k, v in body.items() if k not in ("apiVersion", "kind", "metadata")})
    for image in kustomization.get("images", []):
        for container in (c for o in objects if o["kind"] == "Deployment" for c in _containers(o)):
            if container["image"].split(":")[0] == image["name"]:
                container["image"] = f"{image['newName']}:{image['newTag']}"
    for replicas in kustomization.get("replicas", []):
        (deployment,) = [
            o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == replicas["name"]
        ]
        deployment["spec"]["replicas"] = replicas["count"]
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = kustomization["namespace"]
    return objects


def _containers(deployment: Obj) -> list[Obj]:
    containers: list[Obj] = deployment["spec"]["template"]["spec"]["containers"]
    return containers


def one(objects: list[Obj], kind: str, name: str) -> Obj:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


@pytest.fixture(scope="module")
def base() -> list[Obj]:
    return resolve(BASE)


def _env(deployment: Obj, objects: list[Obj]) -> dict[str, str]:
    """The container's environment: its ConfigMaps' keys and its own env (secrets as
    placeholders of the right shape)."""
    (container,) = _containers(deployment)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(one(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", "a-secret-of-the-operator-0123456789abcdef")
    return env


# --- schemas and the kustomizations -------------------------------------------------


@pytest.mark.parametrize("folder", [BASE, OVERLAY], ids=["base", "overlay"])
def test_every_object_is_valid_against_the_kubernetes_schemas(folder: Path) -> None:
    objects = resolve(folder)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget"} <= kinds
    for obj in objects:
        for version in VERSIONS:
            # strict: a misspelt or misplaced field is an error, not silently dropped.
            kubernetes_validate.validate(obj, version, strict=True)


def test_the_validator_refuses_a_broken_object(base: list[Obj]) -> None:
    """The check above can fail: a field in the wrong place is refused."""
    broken = copy.deepcopy(one(base, "Deployment", "authsvc"))
    _containers(broken)[0]["readOnlyRootFileSystem"] = True  # belongs in securityContext, and misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[0], strict=True)


def test_the_overlay_changes_what_it_says(base: list[Obj]) -> None:
    overlay = resolve(OVERLAY)
    assert {o["metadata"].get("namespace") for o in overlay if o["kind"] != "Namespace"} == {"canwatch"}
    authsvc = one(overlay, "Deployment", "authsvc")
    assert authsvc["spec"]["replicas"] == 3
    assert _containers(authsvc)[0]["image"].startswith("registry.example.com/")
    env = _env(authsvc, overlay)
    assert parse_redis_url(env["AUTHSVC_REDIS_URL"]).mode == "sentinel"
    assert env["AUTHSVC_DRAIN_S"] == _env(one(base, "Deployment", "authsvc"), base)["AUTHSVC_DRAIN_S"]
    Settings.from_env(env)


# --- the edge's configuration -------------------------------------------------------


def _rendered_settings(config_map: Obj) -> dict[str, str]:
    lines = config_map["metadata"]["annotations"][k8s.SETTINGS_ANNOTATION].splitlines()
    return dict(line.split("=", 1) for line in lines)


def test_the_edge_config_map_is_a_fresh_render() -> None:
    """`make k8s-config` again changes nothing: a template changed since is a failure here."""
    committed = (BASE / "edge-config.yaml").read_text()
    settings = _rendered_settings(yaml.safe_load_all(committed).__next__())
    assert k8s.dump(k8s.settings_env(settings)) == committed, "stale: run `make k8s-config`"
    rendered = k8s.render_files(k8s.settings_env(settings))
    assert "nginx.conf" in rendered and "player/index.html" in rendered


def _lay_out_pod(deployment: Obj, objects: list[Obj], root: Path) -> None:
    """The edge container's files as its volumeMounts make them, under ``root``."""
    spec = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    (container,) = spec["containers"]
    for mount in sorted(container["volumeMounts"], key=lambda m: len(m["mountPath"])):
        target = root / mount["mountPath"].lstrip("/")
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            assert not mount.get("readOnly")
            target.mkdir(parents=True, exist_ok=True)
            continue
        assert mount.get("readOnly"), f"{mount['mountPath']}: configuration mounted writable"
        if "projected" in volume:
            # Every item of every ConfigMap at its path; none missed, none twice.
            for source in volume["projected"]["sources"]:
                data = one(objects, "ConfigMap", source["configMap"]["name"])["data"]
                items = source["configMap"].get("items") or [{"key": k, "path": k} for k in data]
                assert sorted(item["key"] for item in items) == sorted(data), source
                for item in items:
                    path = target / item["path"]
                    assert not path.exists(), item
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(data[item["key"]])
            continue
        data = one(objects, "ConfigMap", volume["configMap"]["name"])["data"]
        if "subPath" in mount:
            target.write_text(data[mount["subPath"]])
        else:
            target.mkdir(parents=True, exist_ok=True)
            for key, text in data.items():
                (target / key).write_text(text)


@pytest.mark.parametrize("given", ["CANWATCH_EDGE_TLS_CERT", "CANWATCH_EDGE_TLS_KEY", None])
def test_an_edge_terminating_tls_needs_its_certificate_and_key(given: str | None) -> None:
    overrides = {"CANWATCH_EDGE_TLS_PORT": "8443"}
    if given:
        overrides[given] = "/etc/canwatch/tls/file.pem"
    with pytest.raises(
        SettingsError, match=r"^CANWATCH_EDGE_TLS_(PORT needs|CERT and CANWATCH_EDGE_TLS_KEY must be set)"
    ):
        k8s.render_files(k8s.settings_env(overrides))
    overrides.update(
        CANWATCH_EDGE_TLS_CERT="/etc/canwatch/tls/tls.crt", CANWATCH_EDGE_TLS_KEY="/etc/canwatch/tls/tls.key"
    )
    assert "listen" in k8s.render_files(k8s.settings_env(overrides))["part-http-tls.conf"]


def test_nginx_accepts_the_edge_as_the_pod_mounts_it(base: list[Obj], tmp_path: Path) -> None:
    """The ConfigMaps laid out as the Pod mounts them, nginx -t with the Pod's command. Only
    what cannot be the same here differs: the prefix (a tmp folder), the hosts of the
    cluster's DNS (authsvc, the origin) and, as root, the workers' user."""
    nginx = need_binary("nginx", "nginx")
    edge = one(base, "Deployment", "edge")
    root = tmp_path / "pod"
    _lay_out_pod(edge, base, root)
    prefix = f"{root}{k8s.PREFIX}"
    for path in root.rglob("*"):
        if path.is_file():
            text = (
                path.read_text()
                .replace(k8s.PREFIX + "/", prefix + "/")
                .replace(f" {k8s.PREFIX};", f" {prefix};")
            )
            text = re.sub(r"server (authsvc|origin\.example\.com):", "server 127.0.0.1:", text)
            path.write_text(text)
    (container,) = _containers(edge)
    command = [nginx if arg == "nginx" else arg.replace(k8s.PREFIX, prefix) for arg in container["command"]]
    assert command[command.index("-p") + 1] == f"{prefix}/"
    check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert "test is successful" in check.stderr
    conf = (root / "edge" / "conf" / "nginx.conf").read_text()
    assert f"pid {prefix}/nginx.pid;" in conf and "error_log stderr" in conf


def test_the_pod_serves_the_player_page_as_rendered(base: list[Obj], tmp_path: Path) -> None:
    # The projected folder holds every file of the page and its vendored players, as the
    # edge renders them (vendor.json's hashes included).
    _lay_out_pod(one(base, "Deployment", "edge"), base, tmp_path)
    folder = tmp_path / "edge" / "player"
    settings = _rendered_settings(one(base, "ConfigMap", "edge-config"))
    rendered = k8s.render_files(k8s.settings_env(settings))
    expected = {path.split("/", 1)[1]: text for path, text in rendered.items() if path.startswith("player/")}
    laid_out = {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*") if p.is_file()}
    assert laid_out == expected
    assert "vendor/hls.js/hls.min.js" in laid_out and "vendor/shaka-player/shaka-player.dash.js" in laid_out


def test_every_config_map_fits_what_kubernetes_stores(base: list[Obj]) -> None:
    # etcd refuses an object over 1 MiB; leave room for metadata.
    for obj in base:
        if obj["kind"] == "ConfigMap":
            size = len(yaml.dump(obj).encode())
            assert size < 1024 * 1024 * 0.95, (obj["metadata"]["name"], size)


def test_the_edge_reaches_authsvc_through_its_service(base: list[Obj]) -> None:
    settings = _rendered_settings(one(base, "ConfigMap", "edge-config"))
    service = one(base, "Service", "authsvc")
    (port,) = service["spec"]["ports"]
    assert EdgeSettings.from_env(settings).authsvc == (f"{service['metadata']['name']}:{port['port']}",)
    edge = one(base, "Deployment", "edge")
    (container,) = _containers(edge)
    (edge_port,) = container["ports"]
    assert edge_port["containerPort"] == EdgeSettings.from_env(settings).port
    # The identity mode, fail-open and lease tokens shape both the edge and authsvc.
    authsvc_env = _env(one(base, "Deployment", "authsvc"), base)
    for name in ("AUTHSVC_IDENTITY", "AUTHSVC_FAIL_OPEN", "AUTHSVC_LEASE_TOKEN_S"):
        assert settings.get(name) == authsvc_env.get(name), name


# --- the Pods -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["authsvc", "edge"])
def test_pods_run_unprivileged_on_a_read_only_root(base: list[Obj], name: str) -> None:
    deployment = one(base, "Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert "add" not in context["capabilities"]
        limits, requests = container["resources"]["limits"], container["resources"]["requests"]
        assert {"cpu", "memory"} <= set(limits) and {"cpu", "memory"} <= set(requests)
    assert deployment["spec"]["replicas"] >= 2


def test_authsvc_runs_as_the_images_user_with_somewhere_to_write(base: list[Obj]) -> None:
    uid = re.search(r"useradd .*--uid (\d+)", (ROOT / "Dockerfile").read_text())
    assert uid is not None
    deployment = one(base, "Deployment", "authsvc")
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(uid.group(1))
    (container,) = _containers(deployment)
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    writable = {m["mountPath"] for m in container["volumeMounts"] if "emptyDir" in volumes[m["name"]]}
    env = _env(deployment, base)
    # tempfile's folder, and the workers' metrics folder (`--workers 2`).
    assert {"/tmp", env["PROMETHEUS_MULTIPROC_DIR"]} <= writable
    command = container["command"]
    assert command[:2] == ["authsvc", "serve"] and int(command[command.index("--workers") + 1]) > 1
    assert command[command.index("--host") + 1] == "0.0.0.0"


def test_probes_ask_real_routes_on_the_served_port(base: list[Obj]) -> None:
    deployment = one(base, "Deployment", "authsvc")
    (container,) = _containers(deployment)
    paths = {route.path for route in ROUTES}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    command = container["command"]
    assert ports["http"] == int(command[command.index("--port") + 1])
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] in paths
        assert container[probe]["httpGet"]["port"] in ports
    (edge,) = _containers(one(base, "Deployment", "edge"))
    settings = _rendered_settings(one(base, "ConfigMap", "edge-config"))
    served = k8s.render_files(k8s.settings_env(settings))
    assert edge["readinessProbe"]["httpGet"]["path"] == "/player/"
    assert (
        "location ^~ /player/" in served["player.conf"]
        and "index.html" in one(base, "ConfigMap", "edge-player")["data"]
    )


def test_shutdown_drains_within_the_grace_period(base: list[Obj]) -> None:
    """SIGTERM: /readyz 503 at once; the probe must see it (and the endpoint go) well
    within AUTHSVC_DRAIN_S, and the grace period must outlast the drain by a margin for
    in-flight requests, or the kubelet's SIGKILL cuts them."""
    deployment = one(base, "Deployment", "authsvc")
    (container,) = _containers(deployment)
    drain_s = Settings.from_env(_env(deployment, base)).drain_s
    readiness = container["readinessProbe"]
    noticed_s = readiness["periodSeconds"] * readiness["failureThreshold"]
    assert 0 < noticed_s <= drain_s / 2
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= drain_s + 15
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_selectors_find_the_pods(base: list[Obj]) -> None:
    deployments = [o for o in base if o["kind"] == "Deployment"]
    for deployment in deployments:
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for kind in ("Service", "PodDisruptionBudget"):
        for obj in (o for o in base if o["kind"] == kind):
            selector = obj["spec"]["selector"]
            selector = selector.get("matchLabels", selector) if kind == "PodDisruptionBudget" else selector
            matched = [
                d
                for d in deployments
                if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
            ]
            assert [d["metadata"]["name"] for d in matched] == [obj["metadata"]["name"]], obj["metadata"][
                "name"
            ]
            if kind == "PodDisruptionBudget":
                assert obj["spec"]["minAvailable"] < matched[0]["spec"]["replicas"]
            else:
                names = {p["name"] for c in _containers(matched[0]) for p in c["ports"]}
                assert {p["targetPort"] for p in obj["spec"]["ports"]} <= names


def test_only_the_edge_and_prometheus_reach_authsvc(base: list[Obj]) -> None:
    policy = one(base, "NetworkPolicy", "authsvc")
    authsvc = one(base, "Deployment", "authsvc")
    labels = authsvc["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    edge_labels = one(base, "Deployment", "edge")["spec"]["template"]["metadata"]["labels"]
    peers = rule["from"]
    local = [p for p in peers if "namespaceSelector" not in p]
    assert [p["podSelector"]["matchLabels"].items() <= edge_labels.items() for p in local] == [True]
    assert all(
        p["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
        for p in peers
        if p not in local
    )
    # The port the edge and Prometheus use is the one the Service sends to.
    port_names = {p["name"] for c in _containers(authsvc) for p in c["ports"]}
    assert [p["port"] for p in rule["ports"]] == ["http"] and "http" in port_names


# --- settings and secrets -----------------------------------------------------------


def test_every_setting_named_is_a_real_one(base: list[Obj]) -> None:
    # ... and the one variable nginx reads itself, the lease tokens' key.
    known = {row[0] for row in documented(Settings, EdgeSettings)} | {render.LEASE_TOKEN_KEY_ENV}
    named = set(_rendered_settings(one(base, "ConfigMap", "edge-config")))
    for deployment in (o for o in base if o["kind"] == "Deployment"):
        named |= set(_env(deployment, base))
    assert named and named <= known, named - known
    # And authsvc starts with them (the Secret's values stand in).
    settings = Settings.from_env(_env(one(base, "Deployment", "authsvc"), base))
    assert parse_redis_url(settings.redis_url).mode == "single"


def test_secrets_come_from_a_secret_the_operator_creates(base: list[Obj]) -> None:
    assert not [o for o in base if o["kind"] == "Secret"], "a Secret committed"
    (container,) = _containers(one(base, "Deployment", "authsvc"))
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert refs["AUTHSVC_SECRET"]["name"] == "canwatch" and not refs["AUTHSVC_SECRET"].get("optional")
    assert refs["AUTHSVC_ADMIN_TOKEN"]["name"] == "canwatch"
    secret_names = {
        f.metadata["env"] or f"AUTHSVC_{f.name.upper()}" for f in _fields(Settings) if f.metadata["secret"]
    }
    data = one(base, "ConfigMap", "authsvc-settings")["data"]
    for name in secret_names & set(data):
        # Only the Redis URL may stand in a ConfigMap, and only without a password.
        assert name == "AUTHSVC_REDIS_URL" and "@" not in data[name], name
    # The edge's lease-token key: from the same Secret, made by the command the docs give.
    (nginx,) = _containers(one(base, "Deployment", "edge"))
    edge_refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in nginx["env"] if "valueFrom" in e}
    assert edge_refs[render.LEASE_TOKEN_KEY_ENV] == {
        "name": "canwatch",
        "key": "lease-token-key",
        "optional": True,
    }
    page = (ROOT / "docs" / "operations.md").read_text()
    assert "kubectl create secret generic canwatch" in page
    key = '--from-literal=lease-token-key="$(AUTHSVC_SECRET="$secret" .venv/bin/authsvc lease-token-key)"'
    assert key in page


def _fields(cls: type) -> tuple[Any, ...]:
    from dataclasses import fields

    return fields(cls)


# --- Prometheus ---------------------------------------------------------------------


def _relabel(rules: list[Obj], labels: dict[str, str]) -> dict[str, str] | None:
    """Prometheus's keep and replace relabelling (the two the config uses); None = dropped."""
    for rule in rules:
        value = ";".join(labels.get(name, "") for name in rule["source_labels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if rule.get("action", "replace") == "keep":
            if not match:
                return None
        elif match:
            labels[rule["target_label"]] = match.expand(rule.get("replacement", "$1").replace("$", "\\"))
    return labels


def _pod_meta(deployment: Obj) -> dict[str, str]:
    """The labels Kubernetes service discovery gives a Pod of ``deployment`` (first port)."""
    template = deployment["spec"]["template"]
    port = _containers(deployment)[0]["ports"][0]["containerPort"]
    meta = {
        "__address__": f"10.1.2.3:{port}",
        "__metrics_path__": "/metrics",
        "__meta_kubernetes_pod_phase": "Running",
    }
    meta["__meta_kubernetes_namespace"] = "canwatch"
    meta["__meta_kubernetes_pod_name"] = deployment["metadata"]["name"] + "-0"
    for key, value in template["metadata"].get("labels", {}).items():
        meta["__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)] = value
    for key, value in template["metadata"].get("annotations", {}).items():
        meta["__meta_kubernetes_pod_annotation_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)] = value
    return meta


def test_prometheus_scrapes_every_authsvc_pod_and_nothing_else(base: list[Obj], tmp_path: Path) -> None:
    config = yaml.safe_load((K8S / "prometheus" / "prometheus.yml").read_text())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "authsvc"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    authsvc = _relabel(job["relabel_configs"], _pod_meta(one(base, "Deployment", "authsvc")))
    assert authsvc is not None
    assert authsvc["__address__"] == "10.1.2.3:9005" and authsvc["__metrics_path__"] == "/metrics"
    assert authsvc["pod"] == "authsvc-0" and authsvc["namespace"] == "canwatch"
    assert _relabel(job["relabel_configs"], _pod_meta(one(base, "Deployment", "edge"))) is None
    assert "/metrics" in {route.path for route in ROUTES}
    # Debian's promtool has no Kubernetes discovery: everything else it checks, with the
    # discovery swapped for one static target, and the rules beside it.
    job.pop("kubernetes_sd_configs")
    job["static_configs"] = [{"targets": ["127.0.0.1:9005"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(ROOT / "deploy" / "alerts.yml", tmp_path / "alerts.yml")
    tool = need_binary("promtool", "prometheus")
    out = subprocess.run(
        [tool, "check", "config", "prometheus.yml"], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
