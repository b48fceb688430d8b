"""The Kubernetes layouts: every kustomization resolves, every manifest passes the Kubernetes
schemas (``kubernetes-validate``, offline), and the rendered layouts say what deploy/README.md says.
"""

from __future__ import annotations

import functools
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
LAYOUTS = ["base", "release", "overlays/keda"]
K8S_VERSION = "1.30"  # the oldest Kubernetes the manifests promise to fit

# The subset of KEDA's CRD schemas (keda.sh/v1alpha1) these manifests use: kubernetes-validate
# knows only the built-in kinds.
_KEDA_SCHEMAS: dict[str, dict[str, Any]] = {
    "ScaledObject": {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers"],
                "properties": {
                    "scaleTargetRef": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}},
                    },
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "cooldownPeriod": {"type": "integer"},
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["type", "metadata"],
                            "additionalProperties": False,
                            "properties": {
                                "type": {"type": "string"},
                                "name": {"type": "string"},
                                "metadata": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                },
                                "authenticationRef": {
                                    "type": "object",
                                    "required": ["name"],
                                    "properties": {
                                        "name": {"type": "string"},
                                        "kind": {"type": "string"},
                                    },
                                },
                            },
                        },
                    },
                },
            }
        },
    },
    "TriggerAuthentication": {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "secretTargetRef": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["parameter", "name", "key"],
                            "additionalProperties": False,
                            "properties": {
                                "parameter": {"type": "string"},
                                "name": {"type": "string"},
                                "key": {"type": "string"},
                            },
                        },
                    }
                },
            }
        },
    },
}


def _validate(doc: dict[str, Any]) -> None:
    """Raise if ``doc`` does not fit its kind's schema."""
    if doc.get("apiVersion", "").startswith("keda.sh/"):
        jsonschema.validate(doc, _KEDA_SCHEMAS[doc["kind"]])
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _resources(layout: Path) -> list[Path]:
    """Every manifest file a kustomization pulls in, following directories recursively."""
    kustomization = yaml.safe_load((layout / "kustomization.yaml").read_text())
    files: list[Path] = []
    for entry in kustomization.get("resources", []):
        target = (layout / entry).resolve()
        assert target.exists(), f"{layout}/kustomization.yaml lists {entry}, which is missing"
        files.extend(_resources(target) if target.is_dir() else [target])
    return files


def _docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _render(layout: str) -> list[dict[str, Any]]:
    """`kubectl kustomize` (or `kustomize build`) of one layout."""
    return [doc for doc in yaml.safe_load_all(_rendered_text(layout)) if doc]


@functools.cache
def _rendered_text(layout: str) -> str:
    if shutil.which("kubectl"):
        cmd = ["kubectl", "kustomize", str(KUBE / layout)]
    elif shutil.which("kustomize"):
        cmd = ["kustomize", "build", str(KUBE / layout)]
    else:
        pytest.skip("neither kubectl nor kustomize is installed, so the overlays are not rendered")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout


def _by_kind_name(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


def _container(doc: dict[str, Any]) -> dict[str, Any]:
    containers = doc["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_listed_manifest_exists_and_fits_the_schemas(layout: str) -> None:
    files = _resources(KUBE / layout)
    assert files
    for path in files:
        for doc in _docs(path):
            _validate(doc)


def test_every_manifest_file_belongs_to_a_layout() -> None:
    """No manifest is left lying around that no kustomization applies."""
    listed = {path for layout in LAYOUTS for path in _resources(KUBE / layout)}
    on_disk = {p.resolve() for p in KUBE.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert on_disk == listed


def test_the_schemas_catch_a_broken_manifest() -> None:
    """The validation can fail: a misspelt probe field and a trigger without metadata."""
    web = _by_kind_name(_docs(KUBE / "base" / "web.yaml"))[("Deployment", "understudy-web")]
    _container(web)["readinessProbe"]["periodSecond"] = 5
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(web)
    scaled = _docs(KUBE / "overlays" / "keda" / "worker-scaledobject.yaml")[0]
    del scaled["spec"]["triggers"][0]["metadata"]
    with pytest.raises(jsonschema.ValidationError):
        _validate(scaled)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_rendered_layout_fits_the_schemas(layout: str) -> None:
    for doc in _render(layout):
        _validate(doc)


def test_base_runs_every_process_without_keda_or_migrations() -> None:
    docs = _by_kind_name(_render("base"))
    assert set(docs) == {
        ("Deployment", "understudy-web"),
        ("Deployment", "understudy-worker"),
        ("Deployment", "understudy-dispatcher"),
        ("Deployment", "understudy-scheduler"),
        ("Service", "understudy-web"),
    }
    worker = docs[("Deployment", "understudy-worker")]
    assert worker["spec"]["replicas"] >= 1
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 720
    mounts = {m["mountPath"] for m in _container(worker)["volumeMounts"]}
    assert {"/workspace", "/dev/shm"} <= mounts  # noqa: S108 (mount points in the manifest)
    assert {"name": "WORKSPACE_DIR", "value": "/workspace"} in _container(worker)["env"]
    scheduler = docs[("Deployment", "understudy-scheduler")]
    assert scheduler["spec"]["replicas"] == 1
    assert scheduler["spec"]["strategy"]["type"] == "Recreate"


def test_web_probes_split_liveness_and_readiness() -> None:
    web = _container(_by_kind_name(_render("base"))[("Deployment", "understudy-web")])
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_keda_overlay_scales_the_worker_through_redis_with_password_and_tls() -> None:
    docs = _by_kind_name(_render("overlays/keda"))
    base = _by_kind_name(_render("base"))
    assert set(base) < set(docs)
    worker = docs[("Deployment", "understudy-worker")]
    assert "replicas" not in worker["spec"], "KEDA owns the worker's replica count"
    scaled = docs[("ScaledObject", "understudy-worker")]
    assert ("Deployment", scaled["spec"]["scaleTargetRef"]["name"]) in docs
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == "agent"
    auth = docs[("TriggerAuthentication", trigger["authenticationRef"]["name"])]
    params = {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]}
    assert {"password", "tls", "ca"} <= params


def test_migrations_are_a_separate_release_step() -> None:
    """The migrate Job is in neither base nor the overlay: it must finish before they apply."""
    for layout in ("base", "overlays/keda"):
        assert all(doc["kind"] != "Job" for doc in _render(layout))
    (job,) = _render("release")
    assert job["kind"] == "Job"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_worker_and_dispatcher_concurrency_are_their_settings() -> None:
    # the Procfile's ${WORKER_CONCURRENCY:-2} and ${DISPATCHER_CONCURRENCY:-16}, as Kubernetes
    # expands $(NAME) from the container's env: the setting is read, never a number of its own
    docs = _by_kind_name(_render("base"))
    settings = (
        ("understudy-worker", "WORKER_CONCURRENCY", "2"),
        ("understudy-dispatcher", "DISPATCHER_CONCURRENCY", "16"),
    )
    for name, setting, default in settings:
        container = _container(docs[("Deployment", name)])
        command = container["command"]
        assert command[command.index("--concurrency") + 1] == f"$({setting})", name
        assert {"name": setting, "value": default} in container["env"], name


def test_every_process_runs_its_procfile_command_as_non_root() -> None:
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines())
    docs = _by_kind_name(_render("base") + _render("release"))
    workloads = {
        "release": docs[("Job", "understudy-migrate")],
        "web": docs[("Deployment", "understudy-web")],
        "worker": docs[("Deployment", "understudy-worker")],
        "dispatcher": docs[("Deployment", "understudy-dispatcher")],
        "scheduler": docs[("Deployment", "understudy-scheduler")],
    }
    for process, doc in workloads.items():
        expected = shlex.split(procfile[process].split(" --concurrency")[0])
        command = _container(doc)["command"]
        assert command[: len(expected)] == expected, process
        assert _container(doc)["image"].split(":")[0] == "understudy"
        assert doc["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
