"""Offline checks of the Kubernetes deployment (k8s/): no cluster here, so every check reads the built manifests.

- ``kubectl kustomize`` builds the base and every overlay;
- every built object validates against the Kubernetes 1.31 OpenAPI schemas (kubernetes-validate, strict), and the
  custom resources (Rollout, AnalysisTemplate, ServiceMonitor, PrometheusRule) against the schemas generated from
  the operators' Go types, as shipped by the npm packages ``@kubernetes-models/argo-rollouts@2.0.0`` and
  ``@kubernetes-models/prometheus-operator@6.0.0`` (their validators, plus an unknown-field walk over their type
  declarations: a CRD's API server drops unknown fields silently), locked by tests/deploy/k8s/package-lock.json.
  ``make tools-setup`` installs them into .venv-tools/node (``RECSYS_K8S_NODE_MODULES`` points elsewhere); those
  tests skip without them;
- the production and blue-green settings the issue asks for, the names others rely on, the env var names against
  ``recsys.settings``, the PrometheusRule against monitoring/prometheus/rules, no secret value anywhere;
- checkov (kubernetes framework) on the built manifests: no failed check, every skip with its reason;
- the Airflow chart values (k8s/airflow/values.yaml) against the DAGs' runner configuration;
- the pod the Airflow runner starts (plugins/recsys_airflow/runner.py), built by KubernetesPodOperator's
  ``build_pod_request_obj`` in the Airflow env with the chart values' configuration: it validates against the
  schemas, mounts the shared claim the manifests define, and meets Pod Security ``restricted`` like every pod spec
  of every build (the namespace enforces it).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
BUILDS = ["base", "overlays/staging", "overlays/production", "overlays/blue-green"]
KUBERNETES_VERSION = "1.31.0"
NAMESPACE = "recsys"
CRD_KINDS = {"Rollout", "AnalysisTemplate", "ServiceMonitor", "PrometheusRule"}
NODE_MODULES = Path(os.environ.get("RECSYS_K8S_NODE_MODULES", REPO / ".venv-tools" / "node" / "node_modules"))
CRD_INSTALL = "make tools-setup (npm ci of tests/deploy/k8s/package-lock.json; or set RECSYS_K8S_NODE_MODULES)"
CLUSTER_SCOPED = {"Namespace"}

# Environment variables of the containers that are not recsys settings, each with why it is there.
OTHER_ENV = {
    "OPENBLAS_NUM_THREADS": "native thread pools (bentos/bentofile.yaml sets it too)",
    "OMP_WAIT_POLICY": "native thread pools (bentos/bentofile.yaml sets it too)",
    "TMPDIR": "tempfile onto the writable emptyDir (read-only root filesystem)",
    "HOME": "caches of the libraries onto the writable emptyDir",
    "PROMETHEUS_MULTIPROC_DIR": "prometheus_client's multiprocess files",
    "MLFLOW_BACKEND_STORE_URI": "the MLflow server's PostgreSQL URL (its command line)",
    "MLFLOW_ARTIFACTS_DESTINATION": "the MLflow server's artifact store (its command line)",
}


# -- building ------------------------------------------------------------------------------------------------------
def kustomize(path: Path) -> list[dict[str, Any]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (it carries kustomize: kubectl kustomize)")
    proc = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"kubectl kustomize {path.relative_to(REPO)} failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict[str, Any]]]:
    return {name: kustomize(K8S / name) for name in BUILDS}


@pytest.fixture(scope="module")
def built_dir(built: dict[str, list[dict[str, Any]]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("k8s-built")
    for name, docs in built.items():
        (out / f"{name.replace('/', '-')}.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return out


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_specs(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod spec an object carries: workload templates, and the Jobs of an AnalysisTemplate's job metrics."""
    name = f"{doc['kind']}/{doc['metadata']['name']}"
    spec = doc.get("spec", {})
    if doc["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}:
        yield name, spec["template"]["spec"]
    if doc["kind"] == "CronJob":
        yield name, spec["jobTemplate"]["spec"]["template"]["spec"]
    if doc["kind"] == "Rollout" and "template" in spec:
        yield name, spec["template"]["spec"]
    if doc["kind"] == "AnalysisTemplate":
        for metric in spec["metrics"]:
            job = metric.get("provider", {}).get("job")
            if job:
                yield f"{name}:{metric['name']}", job["spec"]["template"]["spec"]


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


@pytest.mark.parametrize("name", BUILDS)
def test_kustomize_builds_and_every_namespaced_object_is_in_recsys(built: dict[str, list[dict[str, Any]]],
                                                                    name: str) -> None:
    docs = built[name]
    assert len(docs) >= 15
    for doc in docs:
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{doc['kind']}/{doc['metadata']['name']} in {name}"
    keys = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys)), f"duplicate objects in {name}"


# -- schemas -------------------------------------------------------------------------------------------------------
def run_kubernetes_validate(tool: Callable[[str], str], path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("kubernetes-validate"), "-k", KUBERNETES_VERSION, "--strict", str(path)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", BUILDS)
def test_every_object_validates_against_the_kubernetes_schemas(tool: Callable[[str], str], built_dir: Path,
                                                               built: dict[str, list[dict[str, Any]]],
                                                               name: str) -> None:
    proc = run_kubernetes_validate(tool, built_dir / f"{name.replace('/', '-')}.yaml")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    passed = re.findall(r"passed for resource (\S+) against version", out)
    unschemed = set(re.findall(r"Couldn't find schema for kind (\w+)", out))
    core = [d for d in built[name] if d["kind"] not in CRD_KINDS]
    assert len(passed) == len(core), out
    # only the custom resources lack a Kubernetes schema: they are validated below
    assert unschemed == {d["kind"] for d in built[name]} & CRD_KINDS


def test_kubernetes_validate_rejects_a_misspelt_field(tool: Callable[[str], str], tmp_path: Path) -> None:
    """The validator is strict: a typo in a Deployment fails (the negative control of the test above)."""
    deployment = one(kustomize(K8S / "overlays" / "production"), "Deployment", "recommender")
    bad = copy.deepcopy(deployment)
    bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = bad["spec"]["template"]["spec"][
        "containers"][0].pop("readinessProbe")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert run_kubernetes_validate(tool, path).returncode != 0


def node_models() -> Path:
    if shutil.which("node") is None:
        pytest.skip("node is not installed (apt-get install nodejs)")
    if not (NODE_MODULES / "@kubernetes-models" / "argo-rollouts").is_dir() or not (
            NODE_MODULES / "@kubernetes-models" / "prometheus-operator").is_dir():
        pytest.skip(f"the CRD models are not installed in {NODE_MODULES}: {CRD_INSTALL}")
    return NODE_MODULES


def validate_crds(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    proc = subprocess.run(["node", str(Path(__file__).parent / "k8s" / "validate_crds.mjs"), str(node_models())],
                          input=json.dumps(objects), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_custom_resources_validate_against_the_operators_schemas(built: dict[str, list[dict[str, Any]]]) -> None:
    objects = [d for docs in built.values() for d in docs]
    results = validate_crds(objects)
    assert {r["kind"] for r in results} == CRD_KINDS
    assert len(results) == sum(d["kind"] in CRD_KINDS for d in objects) == 10
    assert [r for r in results if not r["ok"]] == []
    objects = built["overlays/blue-green"]
    # the negative control: a wrong type is caught
    rollout = copy.deepcopy(one(objects, "Rollout", "recommender"))
    rollout["spec"]["strategy"]["blueGreen"]["autoPromotionEnabled"] = "no"
    (bad,) = validate_crds([rollout])
    assert not bad["ok"] and "autoPromotionEnabled" in bad["error"]


# The ajv validators accept unknown properties, and the API server prunes unknown fields of a custom resource
# silently (a misspelt `autoPromotionEnabled` would mean auto-promotion): walk every field of the objects against the
# properties the packages' TypeScript declarations list, following their imports down to the core types.
_IMPORT = re.compile(r'^import \{ (\w+) \} from "([^"]+)";$', re.M)
_PROP = re.compile(r'^    "([^"]+)"\??: (.+?);?$')


def _declaration(module: str, base: Path) -> Path:
    rel = module.removesuffix(".js")
    path = (base.parent / rel) if rel.startswith(".") else (NODE_MODULES / rel)
    return path.with_suffix(".d.ts")


def _interface(path: Path) -> tuple[dict[str, str], dict[str, Path]]:
    text = path.read_text()
    imports = {name: _declaration(module, path) for name, module in _IMPORT.findall(text)}
    body = re.search(r"^export interface \w+(?: extends [\w, ]+)? \{\n(.*?)^\}", text, re.S | re.M)
    props: dict[str, str] = {}
    if body:
        for line in body.group(1).splitlines():
            m = _PROP.match(line)
            if m:
                props[m.group(1)] = m.group(2)
    return props, imports


def unknown_fields(value: Any, declaration: Path, where: str) -> list[str]:
    if not declaration.exists():
        return []
    props, imports = _interface(declaration)
    if not props or not isinstance(value, dict):
        return []  # a type alias (IntOrString, Quantity, Time ...) or a free-form map
    found: list[str] = []
    for key, item in value.items():
        if key not in props:
            found.append(f"{where}.{key}")
            continue
        kind = props[key]
        array = re.fullmatch(r"Array<(\w+)>", kind)
        name = array.group(1) if array else kind
        if name in imports:
            for i, element in enumerate(item if array else [item]):
                found += unknown_fields(element, imports[name], f"{where}.{key}" + (f"[{i}]" if array else ""))
    return found


CRD_DECLARATIONS = {
    "Rollout": "@kubernetes-models/argo-rollouts/argoproj.io/v1alpha1/Rollout.d.ts",
    "AnalysisTemplate": "@kubernetes-models/argo-rollouts/argoproj.io/v1alpha1/AnalysisTemplate.d.ts",
    "ServiceMonitor": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.d.ts",
    "PrometheusRule": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule.d.ts",
}


def test_custom_resources_have_no_unknown_field(built: dict[str, list[dict[str, Any]]]) -> None:
    models = node_models()
    for docs in built.values():
        for doc in docs:
            if doc["kind"] in CRD_KINDS:
                assert unknown_fields(doc, models / CRD_DECLARATIONS[doc["kind"]], doc["kind"]) == []
    objects = [d for d in built["overlays/blue-green"] if d["kind"] in CRD_KINDS]
    assert {d["kind"] for d in objects} == CRD_KINDS
    # the negative control, one level deep and inside the analysis' Job (a core type reached through the imports)
    rollout = copy.deepcopy(one(objects, "Rollout", "recommender"))
    rollout["spec"]["strategy"]["blueGreen"]["autoPromotionEnabld"] = False
    template = copy.deepcopy(one(objects, "AnalysisTemplate", "recommender-preview"))
    job = next(m for m in template["spec"]["metrics"] if "job" in m["provider"])
    job["provider"]["job"]["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    assert unknown_fields(rollout, models / CRD_DECLARATIONS["Rollout"], "Rollout") == [
        "Rollout.spec.strategy.blueGreen.autoPromotionEnabld"]
    assert [f.rsplit(".", 1)[1] for f in unknown_fields(
        template, models / CRD_DECLARATIONS["AnalysisTemplate"], "AnalysisTemplate")] == ["imagePullPolice"]


# -- what the issue asks of production ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def production(built: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return built["overlays/production"]


def serving(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    deployment = one(docs, "Deployment", "recommender")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return deployment, pod, container


def test_production_serving_replicas_rollout_probes_and_shutdown(production: list[dict[str, Any]]) -> None:
    deployment, pod, container = serving(production)
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 3000}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/livez"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120  # a model load is not a crash loop
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert 0 < pre_stop < pod["terminationGracePeriodSeconds"]
    assert pod["serviceAccountName"] == "recommender"
    assert "registry.example.com/recsys/recsys-serving:" in container["image"]


def test_every_container_has_resources_and_the_restricted_security_context(
        built: dict[str, list[dict[str, Any]]]) -> None:
    seen = 0
    for name, docs in built.items():
        for doc in docs:
            for where, pod in pod_specs(doc):
                psc = pod["securityContext"]
                assert psc["runAsNonRoot"] is True, where
                assert pod.get("automountServiceAccountToken") is False, where
                for c in containers(pod):
                    seen += 1
                    at = f"{name}: {where}/{c['name']}"
                    for part in ("requests", "limits"):
                        assert {"cpu", "memory"} <= set(c["resources"][part]), at
                    sc = c["securityContext"]
                    assert sc["allowPrivilegeEscalation"] is False, at
                    assert sc["readOnlyRootFilesystem"] is True, at
                    assert sc["capabilities"]["drop"] == ["ALL"], at
                    assert "add" not in sc["capabilities"], at
                    assert not sc.get("privileged", False), at
                    seccomp = sc.get("seccompProfile") or psc.get("seccompProfile")
                    assert seccomp == {"type": "RuntimeDefault"}, at
                    assert sc.get("runAsUser", psc.get("runAsUser", 0)) >= 10000, at
    assert seen >= 9  # 2 per build, plus the analysis' smoke Job


# -- Pod Security "restricted" ------------------------------------------------------------------------------------
# The Pod Security Standards (https://kubernetes.io/docs/concepts/security/pod-security-standards/, version
# "latest" as of Kubernetes 1.31), baseline and restricted controls, as the admission plugin applies them to a pod
# spec: what the namespace's `enforce: restricted` would reject, offline.
BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                         "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
ALLOWED_SECCOMP = {"RuntimeDefault", "Localhost"}


def _context_violations(sc: dict[str, Any], at: str) -> list[str]:
    """The controls a pod-level and a container-level security context share."""
    found = []
    if (sc.get("windowsOptions") or {}).get("hostProcess"):
        found.append(f"{at}: windowsOptions.hostProcess")
    selinux = sc.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
        found.append(f"{at}: seLinuxOptions {selinux}")
    if (sc.get("appArmorProfile") or {}).get("type", "RuntimeDefault") not in ALLOWED_SECCOMP:
        found.append(f"{at}: appArmorProfile {sc['appArmorProfile']}")
    if sc.get("runAsUser") == 0:
        found.append(f"{at}: runAsUser 0")
    return found


def restricted_violations(pod: dict[str, Any], annotations: dict[str, str] | None = None) -> list[str]:
    """What in a pod spec violates Pod Security ``restricted`` (which includes ``baseline``); [] when nothing."""
    found: list[str] = []
    psc = pod.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            found.append(f"spec.{field}")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            found.append(f"volume {volume['name']}: {sorted(kinds - RESTRICTED_VOLUMES)}")
    for sysctl in psc.get("sysctls") or []:
        if sysctl["name"] not in SAFE_SYSCTLS:
            found.append(f"sysctl {sysctl['name']}")
    for key, value in (annotations or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
                value == "runtime/default" or value.startswith("localhost/")):
            found.append(f"annotation {key}={value}")
    found += _context_violations(psc, "pod")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in ALLOWED_SECCOMP:
        found.append(f"pod: seccompProfile {pod_seccomp}")
    every = [("initContainers", c) for c in pod.get("initContainers") or []] + [
        ("containers", c) for c in pod.get("containers") or []] + [
        ("ephemeralContainers", c) for c in pod.get("ephemeralContainers") or []]
    for kind, c in every:
        at = f"{kind}[{c['name']}]"
        sc = c.get("securityContext") or {}
        found += _context_violations(sc, at)
        if sc.get("privileged"):
            found.append(f"{at}: privileged")
        caps = sc.get("capabilities") or {}
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:  # restricted: only this one (baseline: a list)
            found.append(f"{at}: capabilities.add {caps['add']}")
        if "ALL" not in (caps.get("drop") or []):
            found.append(f"{at}: capabilities.drop lacks ALL")
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{at}: allowPrivilegeEscalation not false")
        non_root = sc.get("runAsNonRoot")
        if non_root is False or (non_root is None and psc.get("runAsNonRoot") is not True):
            found.append(f"{at}: runAsNonRoot not true (here or on the pod)")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if (seccomp is None and pod_seccomp not in ALLOWED_SECCOMP) or (
                seccomp is not None and seccomp not in ALLOWED_SECCOMP):
            found.append(f"{at}: seccompProfile {seccomp or 'unset'} (pod: {pod_seccomp or 'unset'})")
        if sc.get("procMount", "Default") != "Default":
            found.append(f"{at}: procMount {sc['procMount']}")
        if any(port.get("hostPort") for port in c.get("ports") or []):
            found.append(f"{at}: hostPort")
    return found


def pod_annotations(doc: dict[str, Any]) -> dict[str, str]:
    template = doc.get("spec", {}).get("template", {})
    return (template.get("metadata") or {}).get("annotations") or {}


def test_every_pod_spec_of_every_build_meets_pod_security_restricted(built: dict[str, list[dict[str, Any]]]) -> None:
    checked = set()
    for name, docs in built.items():
        for doc in docs:
            for where, pod in pod_specs(doc):
                assert restricted_violations(pod, pod_annotations(doc)) == [], f"{name}: {where}"
                checked.add(where)
    # the serving Deployment (the blue-green Rollout's template), MLflow, the analysis' smoke Job
    assert checked == {"Deployment/recommender", "Deployment/mlflow",
                       "AnalysisTemplate/recommender-preview:smoke-traffic"}
    for name, docs in built.items():
        labels = one(docs, "Namespace", NAMESPACE)["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted", name
        assert labels["pod-security.kubernetes.io/enforce-version"] == "latest", name


def test_the_restricted_check_catches_each_violation(runner_pod: dict[str, Any]) -> None:
    """The negative control of the check: each mutation of a compliant pod spec is caught, by name."""
    good = runner_pod["spec"]
    assert restricted_violations(good) == []

    def broken(change: Callable[[dict[str, Any]], None]) -> list[str]:
        pod = copy.deepcopy(good)
        change(pod)
        return restricted_violations(pod)

    sidecar = next(i for i, c in enumerate(good["containers"]) if c["name"] == "airflow-xcom-sidecar")
    # KubernetesPodOperator's sidecar as it comes without xcom_sidecar_container_security_context
    assert broken(lambda p: p["containers"][sidecar].pop("securityContext")) == [
        "containers[airflow-xcom-sidecar]: capabilities.drop lacks ALL",
        "containers[airflow-xcom-sidecar]: allowPrivilegeEscalation not false"]

    def runner_before(pod: dict[str, Any]) -> None:  # a pod-level runAsNonRoot/runAsUser/fsGroup only
        pod["securityContext"] = {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001}
        for c in pod["containers"]:
            c.pop("securityContext")

    before = broken(runner_before)
    assert len(before) == 6 and all(re.search(r"seccompProfile unset|drop lacks ALL|Escalation", v) for v in before)

    def may_run_as_root(pod: dict[str, Any]) -> None:
        for sc in [pod["securityContext"], *(c["securityContext"] for c in pod["containers"])]:
            sc.pop("runAsNonRoot")

    assert broken(may_run_as_root) == [
        f"containers[{c['name']}]: runAsNonRoot not true (here or on the pod)" for c in good["containers"]]
    assert broken(lambda p: p["containers"][0]["securityContext"].update(runAsUser=0)) == [
        f"containers[{good['containers'][0]['name']}]: runAsUser 0"]
    assert broken(lambda p: p["volumes"].append({"name": "host", "hostPath": {"path": "/var/run"}})) == [
        "volume host: ['hostPath']"]
    assert broken(lambda p: p.update(hostNetwork=True)) == ["spec.hostNetwork"]
    assert broken(lambda p: p["containers"][0]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]))
    assert broken(lambda p: p["containers"][0]["securityContext"].update(seccompProfile={"type": "Unconfined"}))
    assert broken(lambda p: p["containers"][0]["securityContext"].update(privileged=True))
    assert broken(lambda p: p["containers"][0].update(ports=[{"containerPort": 80, "hostPort": 80}]))


def test_writable_paths_are_emptydirs_with_the_env_pointing_there(production: list[dict[str, Any]]) -> None:
    _, pod, container = serving(production)
    empty = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    mounts = {m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty}
    env = {e["name"]: e.get("value") for e in container["env"]}
    for var in ("TMPDIR", "BENTOML_HOME", "PROMETHEUS_MULTIPROC_DIR"):
        assert any(env[var] == m or env[var].startswith(m + "/") for m in mounts), var
    configmap = one(production, "ConfigMap", "recsys-env")["data"]
    assert any(configmap["RECSYS_VAR_DIR"] == m or configmap["RECSYS_VAR_DIR"].startswith(m + "/")
               for m in mounts)


def test_autoscaling_on_cpu_and_in_flight_requests_and_the_disruption_budget(
        production: list[dict[str, Any]]) -> None:
    hpa = one(production, "HorizontalPodAutoscaler", "recommender")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "recommender"}
    assert hpa["spec"]["minReplicas"] == 3 < hpa["spec"]["maxReplicas"]
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    assert metrics["Pods"]["pods"]["metric"]["name"] == "bentoml_service_request_in_progress"
    configmap = one(production, "ConfigMap", "recsys-env")["data"]
    target = float(metrics["Pods"]["pods"]["target"]["averageValue"])
    assert 0 < target < int(configmap["RECSYS_MAX_CONCURRENCY"])  # scale out before a pod sheds with 429
    pdb = one(production, "PodDisruptionBudget", "recommender")
    labels = one(production, "Deployment", "recommender")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_network_policy_ingress_3000_from_the_ingress_controller_and_monitoring_egress_dns_db_mlflow(
        production: list[dict[str, Any]]) -> None:
    policy = one(production, "NetworkPolicy", "recommender")["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": 3000, "protocol": "TCP"}]
    namespaces = {p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                  for p in rule["from"] if "namespaceSelector" in p}
    assert namespaces == {"ingress-nginx", "monitoring"}
    egress_ports = {p["port"] for r in policy["egress"] for p in r["ports"]}
    assert egress_ports == {53, 5432, 5000}
    mlflow_rule = next(r for r in policy["egress"] if any(p["port"] == 5000 for p in r["ports"]))
    assert mlflow_rule["to"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "mlflow"}}}]


def test_ingress_terminates_tls_with_cert_manager_and_keeps_metrics_private(
        built: dict[str, list[dict[str, Any]]]) -> None:
    for name in ("overlays/staging", "overlays/production"):
        ingress = one(built[name], "Ingress", "recommender")
        assert "cert-manager.io/cluster-issuer" in ingress["metadata"]["annotations"]
        (tls,) = ingress["spec"]["tls"]
        (rule,) = ingress["spec"]["rules"]
        assert tls["hosts"] == [rule["host"]] and tls["secretName"]
        paths = {p["path"] for p in rule["http"]["paths"]}
        assert {"/predict", "/feedback"} <= paths and "/metrics" not in paths
    assert one(built["overlays/staging"], "Ingress", "recommender")["spec"]["rules"][0]["host"] != one(
        built["overlays/production"], "Ingress", "recommender")["spec"]["rules"][0]["host"]


def test_no_secret_values_in_the_manifests(tool: Callable[[str], str], built: dict[str, list[dict[str, Any]]]) -> None:
    for name, docs in built.items():
        assert not [d for d in docs if d["kind"] == "Secret" and (d.get("data") or d.get("stringData"))], name
        for doc in docs:
            for _, pod in pod_specs(doc):
                for c in containers(pod):
                    for e in c.get("env", []):
                        if re.search(r"TOKEN|PASSWORD|_URL$|URI$|WEBHOOK", e["name"]) and "value" in e:
                            assert not re.search(r"://[^/]*:[^@/]*@", e["value"]), (name, e["name"])
    proc = subprocess.run([tool("detect-secrets"), "scan", "--all-files", "k8s", "docs/deploy-kubernetes.md"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    findings = [(path, hit["line_number"], hit["type"]) for path, hits in json.loads(proc.stdout)["results"].items()
                for hit in hits]
    # detect-secrets' keyword heuristic flags `automountServiceAccountToken: false` ("Token"): a boolean, no secret
    real = [f for f in findings
            if (REPO / f[0]).read_text().splitlines()[f[1] - 1].strip() != "automountServiceAccountToken: false"]
    assert real == []


def settings_env_names() -> set[str]:
    from pydantic import AliasChoices

    from recsys.settings import PREFIX, ServingSettings

    names: set[str] = set()
    for field, info in ServingSettings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(PREFIX + field.upper())
    return names


def test_the_containers_env_var_names_are_real_settings(built: dict[str, list[dict[str, Any]]]) -> None:
    settings = settings_env_names()
    assert "RECSYS_FEEDBACK_URL" in settings and "MLFLOW_TRACKING_URI" in settings  # the reading works
    for name, docs in built.items():
        given = set(one(docs, "ConfigMap", "recsys-env")["data"])
        for doc in docs:
            for _, pod in pod_specs(doc):
                for c in containers(pod):
                    given |= {e["name"] for e in c.get("env", [])}
                    given |= {e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e} - {
                        "recsys-secrets"}
        unknown = {n for n in given if n not in settings and n not in OTHER_ENV}
        assert unknown == set(), f"{name}: not a recsys setting: {sorted(unknown)}"


def test_secret_references_name_recsys_secrets_and_are_documented(built: dict[str, list[dict[str, Any]]]) -> None:
    doc = (REPO / "docs" / "deploy-kubernetes.md").read_text()
    keys: set[str] = set()
    for docs in built.values():
        for obj in docs:
            for _, pod in pod_specs(obj):
                for c in containers(pod):
                    for e in c.get("env", []):
                        ref = e.get("valueFrom", {}).get("secretKeyRef")
                        if ref:
                            assert ref["name"] == "recsys-secrets"
                            keys.add(ref["key"])
    assert keys >= {"RECSYS_ADMIN_TOKEN", "RECSYS_FEEDBACK_URL", "RECSYS_AUDIT_URL", "MLFLOW_BACKEND_STORE_URI"}
    assert {k for k in keys if f"`{k}`" not in doc} == set()


def test_the_names_others_rely_on(production: list[dict[str, Any]]) -> None:
    labels = one(production, "Namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    service = one(production, "Service", "recommender")
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(3000, "http")]
    for account in ("recommender", "recsys-pipeline", "mlflow"):
        assert one(production, "ServiceAccount", account)["automountServiceAccountToken"] is False
    mlflow = one(production, "Deployment", "mlflow")["spec"]["template"]["spec"]
    (server,) = mlflow["containers"]
    assert "registry.example.com/recsys/recsys-pipeline:" in server["image"]
    assert one(production, "Service", "mlflow")["spec"]["ports"][0]["port"] == 5000
    # the tracking URI the pods get names a host MLflow's --allowed-hosts accepts
    uri = one(production, "ConfigMap", "recsys-env")["data"]["MLFLOW_TRACKING_URI"]
    host = re.fullmatch(r"http://([^/]+)/?", uri)
    assert host, uri
    allowed = next(a for a in server["args"] if a.startswith("--allowed-hosts=")).split("=", 1)[1].split(",")
    assert host.group(1) in allowed and "mlflow:5000" in allowed
    env = {e["name"]: e for e in server["env"]}
    assert env["MLFLOW_ARTIFACTS_DESTINATION"]["value"].startswith("s3://")  # production: artifacts on S3
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"]["name"] == "recsys-secrets"
    # no artifact volume (the pipeline's shared claim is another one)
    assert "mlflow-artifacts" not in {d["metadata"]["name"] for d in production if d["kind"] == "PersistentVolumeClaim"}
    assert one(production, "Deployment", "mlflow")["spec"]["strategy"]["type"] == "RollingUpdate"


def test_staging_mlflow_keeps_artifacts_on_a_volume_it_can_hand_over(built: dict[str, list[dict[str, Any]]]) -> None:
    staging = built["overlays/staging"]
    mlflow = one(staging, "Deployment", "mlflow")["spec"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in mlflow["template"]["spec"]["volumes"]
              if "persistentVolumeClaim" in v}
    assert claims == {"mlflow-artifacts"} and one(staging, "PersistentVolumeClaim", "mlflow-artifacts")
    # ReadWriteOnce: a surge pod on another node could not attach it
    assert one(staging, "PersistentVolumeClaim", "mlflow-artifacts")["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert mlflow["strategy"]["type"] == "Recreate"


def test_the_prometheus_rule_carries_the_monitoring_rules(production: list[dict[str, Any]]) -> None:
    groups: list[dict[str, Any]] = []
    for path in sorted((REPO / "monitoring" / "prometheus" / "rules").glob("*.yml")):
        groups += yaml.safe_load(path.read_text())["groups"]
    rule = one(production, "PrometheusRule", "recsys")
    assert rule["spec"]["groups"] == groups
    assert sum(len(g["rules"]) for g in groups) > 20
    generator = subprocess.run(["python", str(K8S / "hack" / "prometheusrule.py"), "--check"], cwd=REPO,
                               capture_output=True, text=True, timeout=60,
                               env={**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}"})
    assert generator.returncode == 0, generator.stderr


def test_the_service_monitor_labels_the_active_service_with_the_rules_job(
        built: dict[str, list[dict[str, Any]]]) -> None:
    """monitoring/prometheus/rules select job="recsys": the active Service must be scraped under that job and the
    blue-green preview under another one."""
    docs = built["overlays/blue-green"]
    monitor = one(docs, "ServiceMonitor", "recommender")["spec"]
    label = monitor["jobLabel"]
    assert one(docs, "Service", "recommender")["metadata"]["labels"][label] == "recsys"
    assert one(docs, "Service", "recommender-preview")["metadata"]["labels"][label] not in ("recsys", "")
    assert {"key": label, "operator": "Exists"} in monitor["selector"]["matchExpressions"]
    assert monitor["endpoints"][0]["port"] == "http" and monitor["endpoints"][0]["path"] == "/metrics"
    assert monitor["namespaceSelector"] == {"matchNames": [NAMESPACE]}


# -- blue-green ----------------------------------------------------------------------------------------------------
def render_args(text: str, values: dict[str, Any]) -> str:
    """An AnalysisTemplate's text with its ``{{args.NAME}}`` placeholders filled in, as the controller does."""
    return re.sub(r"\{\{\s*args\.([\w-]+)\s*\}\}", lambda match: str(values[match.group(1)]), text)


def test_blue_green_rollout_gates_promotion_on_the_preview(built: dict[str, list[dict[str, Any]]]) -> None:
    docs = built["overlays/blue-green"]
    rollout = one(docs, "Rollout", "recommender")["spec"]
    blue_green = rollout["strategy"]["blueGreen"]
    assert blue_green["activeService"] == "recommender" and blue_green["previewService"] == "recommender-preview"
    assert blue_green["autoPromotionEnabled"] is False
    assert blue_green["scaleDownDelaySeconds"] > 0 and blue_green["abortScaleDownDelaySeconds"] > 0
    assert rollout["replicas"] == 3
    assert rollout["workloadRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "recommender"}
    deployment = one(docs, "Deployment", "recommender")
    assert deployment["spec"]["replicas"] == 0  # only the template's holder
    assert rollout["selector"] == deployment["spec"]["selector"]
    assert one(docs, "HorizontalPodAutoscaler", "recommender")["spec"]["scaleTargetRef"]["kind"] == "Rollout"
    preview = one(docs, "Service", "recommender-preview")["spec"]
    assert preview["ports"] == one(docs, "Service", "recommender")["spec"]["ports"]

    analysis = blue_green["prePromotionAnalysis"]
    args = {a["name"]: a["value"] for a in analysis["args"]}
    assert args["service-name"] == blue_green["previewService"]
    for ref in analysis["templates"]:
        template = one(docs, "AnalysisTemplate", ref["templateName"])["spec"]
        values = {a["name"]: a.get("value") for a in template["args"]} | args
        assert set(values) == {a["name"] for a in template["args"]} and None not in values.values()

        def render(text: str, values: dict[str, Any] = values) -> str:
            return render_args(text, values)

        queries = {m["name"]: render(m["provider"]["prometheus"]["query"]) for m in template["metrics"]
                   if "prometheus" in m["provider"]}
        assert len(queries) >= 2
        for metric, query in queries.items():
            assert 'service="recommender-preview"' in query, metric
            assert 'namespace="recsys"' in query, metric
        assert any("http_response_code=~\"5..\"" in q for q in queries.values())
        assert any(q.strip().startswith("histogram_quantile(0.95") for q in queries.values())
        for m in template["metrics"]:
            if "prometheus" in m["provider"]:
                # one bad measurement fails the analysis, and no data is no pass
                assert m["failureLimit"] == 0 and "len(result) > 0" in m["successCondition"], m["name"]
                assert "{{" not in render(m["successCondition"])
        smoke = [m for m in template["metrics"] if "job" in m["provider"]]
        assert smoke, "the preview gets no traffic to measure without the smoke Job"
        job_pod = smoke[0]["provider"]["job"]["spec"]["template"]["spec"]
        assert "recommender-preview" in render(" ".join(job_pod["containers"][0]["args"]))
        pipeline_image = one(docs, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]["image"]
        assert job_pod["containers"][0]["image"] == pipeline_image
    # the smoke Job's pods may reach the serving pods
    smoke_policy = one(docs, "NetworkPolicy", "recommender-smoke")["spec"]
    smoke_labels = smoke[0]["provider"]["job"]["spec"]["template"]["metadata"]["labels"]
    assert smoke_policy["ingress"][0]["from"][0]["podSelector"]["matchLabels"].items() <= smoke_labels.items()


# -- checkov -------------------------------------------------------------------------------------------------------
def test_checkov_reports_no_failed_check_and_every_skip_has_a_reason(tool: Callable[[str], str],
                                                                     built_dir: Path) -> None:
    proc = subprocess.run([tool("checkov"), "-d", str(built_dir), "--framework", "kubernetes", "--compact",
                           "--skip-download", "-o", "json"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    report = json.loads(proc.stdout)
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"], c["file_path"]) for c in report["results"]["failed_checks"]]
    assert failed == [] and summary["failed"] == 0, failed
    assert summary["passed"] > 400 and summary["parsing_errors"] == 0
    for check in report["results"]["skipped_checks"]:
        reason = check["check_result"].get("suppress_comment") or ""
        assert len(reason) > 20, check["check_id"]
    # each skip annotation in the sources names a check and gives a reason
    for path in K8S.rglob("*.yaml"):
        for check_id, reason in re.findall(r"checkov\.io/skip\d+: (CKV\w+)=?(.*)", path.read_text()):
            assert len(reason.strip()) > 20, f"{path}: {check_id} has no reason"


# -- Dask ----------------------------------------------------------------------------------------------------------
def test_dask_values_run_the_pipeline_image_with_one_thread_workers() -> None:
    """The Dask Helm chart's values (k8s/dask/values.yaml): scheduler and workers on the image the training client
    runs (same dask, distributed, lightgbm), one thread per worker, no notebook, and the address the docs give."""
    v = yaml.safe_load((K8S / "dask" / "values.yaml").read_text())
    production = yaml.safe_load((K8S / "overlays" / "production" / "kustomization.yaml").read_text())
    pipeline = next(i["newName"] for i in production["images"] if i["name"] == "recsys-pipeline")
    assert v["scheduler"]["image"]["repository"] == v["worker"]["image"]["repository"] == pipeline
    assert v["worker"]["threads_per_worker"] == 1 and v["worker"]["replicas"] >= 2
    assert v["jupyter"]["enabled"] is False and v["scheduler"]["serviceType"] == "ClusterIP"
    for part in ("scheduler", "worker"):
        env = {e["name"]: e["value"] for e in v[part]["env"]}
        assert env["OPENBLAS_NUM_THREADS"] == "1" and env["OMP_WAIT_POLICY"] == "PASSIVE"
        assert v[part]["resources"]["limits"]["memory"]
    # the workers read the validated store's week files where the pipeline pods have them
    claim = yaml.safe_load((K8S / "base" / "pipeline" / "pvc.yaml").read_text())["metadata"]["name"]
    (volume,) = v["worker"]["mounts"]["volumes"]
    (mount,) = v["worker"]["mounts"]["volumeMounts"]
    assert volume["persistentVolumeClaim"] == {"claimName": claim, "readOnly": True}
    assert mount == {"name": volume["name"], "mountPath": "/var/lib/recsys", "readOnly": True}
    address = f"tcp://recsys-dask-scheduler.recsys:{v['scheduler']['servicePort']}"
    assert address in (K8S / "dask" / "values.yaml").read_text()
    assert address in (REPO / "docs" / "scaling.md").read_text()


# -- Airflow -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def airflow_values() -> dict[str, Any]:
    return yaml.safe_load((K8S / "airflow" / "values.yaml").read_text())


def test_airflow_values_use_the_kubernetes_executor_and_secrets_from_secrets(airflow_values: dict[str, Any]) -> None:
    v = airflow_values
    assert v["executor"] == "KubernetesExecutor"
    assert "webserver" not in v and "apiServer" in v  # Airflow 3: the API server serves the UI
    pinned = re.search(r"^apache-airflow==(\S+)$", (REPO / "requirements-airflow.txt").read_text(), re.M)
    assert pinned and v["airflowVersion"] == pinned.group(1)
    assert v["postgresql"]["enabled"] is False
    assert v["data"]["metadataSecretName"] and "metadataConnection" not in v["data"]
    for key in ("fernetKeySecretName", "apiSecretKeySecretName", "jwtSecretName"):
        assert v[key], key
    for inline in ("fernetKey", "apiSecretKey", "jwtSecret", "webserverSecretKey"):
        assert not v.get(inline), f"{inline}: a secret value inline"
    env = {e["name"]: e["value"] for e in v["env"]}
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False"  # auth on
    assert v["config"]["core"]["load_examples"] == "False"
    secret_volumes = [vol for vol in v["apiServer"]["extraVolumes"] if "secret" in vol]
    assert secret_volumes and all("items" not in vol["secret"] or vol["secret"]["items"] for vol in secret_volumes)
    for c in v["apiServer"]["extraInitContainers"]:
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert {"cpu", "memory"} <= set(c["resources"]["limits"])
    assert v["securityContexts"]["pod"]["runAsNonRoot"] is True


def test_airflow_values_run_the_dags_as_pods_of_the_pipeline_image(airflow_values: dict[str, Any],
                                                                   production: list[dict[str, Any]]) -> None:
    env = {e["name"]: e["value"] for e in airflow_values["env"]}
    source = (REPO / "plugins" / "recsys_airflow" / "config.py").read_text()
    known = set(re.findall(r'_env\("(RECSYS_AIRFLOW_\w+)"', source))
    assert "RECSYS_AIRFLOW_RUNNER" in known
    assert {n for n in env if n.startswith("RECSYS_") and n not in known} == set()
    assert env["RECSYS_AIRFLOW_RUNNER"] == "kubernetes"
    assert env["RECSYS_AIRFLOW_NAMESPACE"] == NAMESPACE
    assert one(production, "ServiceAccount", env["RECSYS_AIRFLOW_SERVICE_ACCOUNT"])
    assert one(production, "ConfigMap", env["RECSYS_AIRFLOW_CONFIGMAP"])
    assert one(production, "PersistentVolumeClaim", env["RECSYS_AIRFLOW_PVC"])
    assert env["RECSYS_AIRFLOW_SECRET"] == "recsys-secrets"
    mlflow_image = one(production, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert env["RECSYS_AIRFLOW_IMAGE"] == mlflow_image  # the production pin of recsys-pipeline
    assert airflow_values["images"]["airflow"]["repository"].endswith("/recsys-airflow")
    # the chart's worker and scheduler service accounts (release "airflow") may start those pods in recsys
    binding = one(production, "RoleBinding", "recsys-pipeline-launcher")
    subjects = {(s["name"], s["namespace"]) for s in binding["subjects"]}
    assert ("airflow-worker", airflow_values["config"]["kubernetes_executor"]["namespace"]) in subjects
    role = one(production, "Role", "recsys-pipeline-launcher")
    verbs = {r["resources"][0]: set(r["verbs"]) for r in role["rules"]}
    assert {"create", "delete", "watch"} <= verbs["pods"] and "create" in verbs["pods/exec"]


@pytest.fixture(scope="module")
def runner_pod(airflow_values: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The pod a DAG task asks the API server for, with the chart values' RECSYS_AIRFLOW_* settings: the runner's
    KubernetesPodOperator builds it (``build_pod_request_obj``, tests/dags/check_runner.py) in the Airflow env."""
    from tests.dags.harness import require_airflow, run_in_airflow

    require_airflow()
    settings = {e["name"]: e["value"] for e in airflow_values["env"] if e["name"].startswith("RECSYS_AIRFLOW_")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_AIRFLOW_") and k != "VIRTUAL_ENV"}
    env |= {"AIRFLOW_HOME": str(tmp_path_factory.mktemp("airflow-home")), "PYTHONPATH": str(REPO / "plugins"),
            **settings}
    rendered = run_in_airflow("check_runner.py", "pods", env=env)
    assert rendered["type"] == "RecsysPodOperator"
    return rendered["pod"]


def test_the_runners_pod_validates_against_the_kubernetes_schemas(tool: Callable[[str], str],
                                                                  runner_pod: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "runner-pod.yaml"
    path.write_text(yaml.safe_dump(runner_pod))
    proc = run_kubernetes_validate(tool, path)
    assert proc.returncode == 0 and "passed for resource" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert runner_pod["metadata"]["namespace"] == NAMESPACE


def test_the_runners_pod_meets_pod_security_restricted(runner_pod: dict[str, Any]) -> None:
    spec = runner_pod["spec"]
    assert {c["name"] for c in spec["containers"]} == {"base", "airflow-xcom-sidecar"}
    assert restricted_violations(spec, runner_pod["metadata"].get("annotations")) == []
    for c in spec["containers"]:
        assert c["securityContext"]["readOnlyRootFilesystem"] is True, c["name"]
    assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsUser"] == 10001
    assert spec["automountServiceAccountToken"] is False


def test_the_runners_pods_share_the_claim_the_manifests_define(runner_pod: dict[str, Any],
                                                               built: dict[str, list[dict[str, Any]]]) -> None:
    """Every build has the claim the runner mounts (ReadWriteMany: pods on any node, DAGs at the same time), and the
    pod's data and var dirs are on it, as the ConfigMap says too; the writable paths are that claim and emptyDirs."""
    spec = runner_pod["spec"]
    base = next(c for c in spec["containers"] if c["name"] == "base")
    volumes = {v["name"]: v for v in spec["volumes"]}
    claims = {m["mountPath"]: volumes[m["name"]]["persistentVolumeClaim"]["claimName"] for m in base["volumeMounts"]
              if "persistentVolumeClaim" in volumes[m["name"]]}
    ((mount, claim),) = claims.items()
    assert (mount, claim) == ("/var/lib/recsys", "recsys-pipeline-data")
    env = {e["name"]: e["value"] for e in base["env"]}
    assert env["RECSYS_VAR_DIR"] == mount and env["RECSYS_DATA_DIR"] == f"{mount}/data"
    scratch = {m["mountPath"] for m in base["volumeMounts"] if "emptyDir" in volumes[m["name"]]}
    assert env["TMPDIR"] in scratch and env["HOME"] in scratch and "/airflow/xcom" in scratch
    for name, docs in built.items():
        pvc = one(docs, "PersistentVolumeClaim", claim)["spec"]
        assert pvc["accessModes"] == ["ReadWriteMany"], name
        # production (and blue-green on top of it): EFS, a class the platform provides (an assumption, documented);
        # base and staging: the cluster's default class
        expected = "efs-sc" if name in ("overlays/production", "overlays/blue-green") else None
        assert pvc.get("storageClassName") == expected, name
        configmap = one(docs, "ConfigMap", "recsys-env")["data"]
        assert (configmap["RECSYS_VAR_DIR"], configmap["RECSYS_DATA_DIR"]) == (
            env["RECSYS_VAR_DIR"], env["RECSYS_DATA_DIR"]), name
    given = {e["name"] for e in base["env"]}
    assert {n for n in given if n not in settings_env_names() and n not in OTHER_ENV} == set()


def test_the_runners_pods_reach_mlflow_the_service_and_postgresql(runner_pod: dict[str, Any],
                                                                  production: list[dict[str, Any]]) -> None:
    """The NetworkPolicies select the pipeline pods by the label the operator gives them: theirs leaves egress open
    (PostgreSQL, MLflow, S3, notifications), MLflow's and the serving pods' ingress admit them."""
    labels = runner_pod["metadata"]["labels"]
    assert labels["kubernetes_pod_operator"] == "True"
    pipeline = one(production, "NetworkPolicy", "recsys-pipeline")["spec"]
    assert pipeline["podSelector"]["matchLabels"].items() <= labels.items()
    assert "Egress" not in pipeline["policyTypes"] and pipeline["ingress"] == []
    for name, port in (("mlflow", 5000), ("recommender", 3000)):
        policy = one(production, "NetworkPolicy", name)["spec"]
        assert any(peer.get("podSelector", {}).get("matchLabels", {}).items() <= labels.items()
                   and "podSelector" in peer and {"port": port, "protocol": "TCP"} in rule["ports"]
                   for rule in policy["ingress"] for peer in rule["from"]), name
    # no other policy in the namespace restricts the pipeline pods' egress
    for policy in production:
        if policy["kind"] == "NetworkPolicy" and "Egress" in policy["spec"]["policyTypes"]:
            selector = policy["spec"]["podSelector"].get("matchLabels", {})
            assert selector and not selector.items() <= labels.items(), policy["metadata"]["name"]


def test_the_guides_seed_job_meets_restricted_and_fills_the_runners_claim(
        tool: Callable[[str], str], runner_pod: dict[str, Any], tmp_path: Path) -> None:
    """docs/deploy-kubernetes.md's one-off Job that fetches MovieLens into the claim (no DAG task does) would pass
    the namespace's admission and writes where the runner's pods read."""
    doc = (REPO / "docs" / "deploy-kubernetes.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", doc, re.S) if "name: recsys-seed-data" in b]
    job = yaml.safe_load(block)
    pod = job["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    (container,) = pod["containers"]
    assert container["command"] == ["recsys", "data", "fetch"]
    runner = next(c for c in runner_pod["spec"]["containers"] if c["name"] == "base")
    runner_env = {e["name"]: e["value"] for e in runner["env"]}
    assert {e["name"]: e["value"] for e in container["env"]} == runner_env
    runner_claims = {m["mountPath"]: v["persistentVolumeClaim"] for m in runner["volumeMounts"]
                     for v in runner_pod["spec"]["volumes"] if v["name"] == m["name"] and "persistentVolumeClaim" in v}
    claims = {m["mountPath"]: v["persistentVolumeClaim"] for m in container["volumeMounts"] for v in pod["volumes"]
              if v["name"] == m["name"] and "persistentVolumeClaim" in v}
    assert claims == runner_claims and claims
    path = tmp_path / "seed-job.yaml"
    path.write_text(yaml.safe_dump(job))
    proc = run_kubernetes_validate(tool, path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_airflow_values_validate_against_the_charts_schema(tool: Callable[[str], str]) -> None:
    """The chart's values.schema.json comes with the chart (`helm pull apache-airflow/airflow --untar`); neither
    helm nor the chart is installable from the registries this machine reaches, so this runs where
    AIRFLOW_CHART_SCHEMA names that file."""
    schema = os.environ.get("AIRFLOW_CHART_SCHEMA")
    if not schema or not Path(schema).is_file():
        pytest.skip("AIRFLOW_CHART_SCHEMA names no values.schema.json of the chart (helm pull apache-airflow/airflow)")
    proc = subprocess.run([tool("check-jsonschema"), "--schemafile", schema, str(K8S / "airflow" / "values.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- the guide -----------------------------------------------------------------------------------------------------
def test_the_guide_covers_the_operations(built: dict[str, list[dict[str, Any]]]) -> None:
    doc = (REPO / "docs" / "deploy-kubernetes.md").read_text()
    for needle in ("kubectl apply -k k8s/overlays/staging", "kubectl apply -k k8s/overlays/production",
                   "kubectl apply -k k8s/overlays/blue-green", "kubectl argo rollouts promote recommender",
                   "kubectl argo rollouts abort recommender", "kubectl argo rollouts undo recommender",
                   "rollout undo deployment/recommender", "helm upgrade --install airflow",
                   "k8s/airflow/values.yaml", "no cluster", "cert-manager", "prometheus-adapter", "ExternalSecret",
                   "recsys-pipeline-data", "ReadWriteMany", "`efs-sc`", "RECSYS_AIRFLOW_PVC", "RECSYS_NOTIFY_URL"):
        assert needle in doc, needle
    # every Secret the Airflow values and the manifests name is in the guide's list of what to create
    values = (K8S / "airflow" / "values.yaml").read_text()
    for name in set(re.findall(r"(?:SecretName|secretName): (\S+)", values)) | {"recsys-secrets"}:
        assert name in doc, name
