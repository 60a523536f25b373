"""The deployment in deploy/, checked without Docker or a cluster.

The image cannot be built here, so the tests repeat what it does: install from the lock file
into a fresh virtual environment with the Dockerfile's own ``uv sync`` lines, lay out the
migrations and catalogue as the image does, run the Compose file's migration command against a
new PostgreSQL database, serve, and ask /healthz. The Compose file is checked against the
Compose specification's JSON schema (as vendored by check-jsonschema) and for what it must
say; the Kubernetes manifests are rendered (kustomize or kubectl when installed, otherwise the
base's resource list read here) and validated against pinned Kubernetes releases with
kubernetes-validate; the Dockerfile and the scripts go through hadolint and shellcheck. The
backup test takes a backup while rows are being written and restores it into an empty database.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from sqlalchemy.engine import make_url

from facility_share.settings import load_settings

from tests.conftest import PG_ADMIN_URL, _admin_execute
from tests.live import free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "k8s" / "base"
OVERLAY = DEPLOY / "k8s" / "overlays" / "production"
BIN = Path(sys.executable).parent

# The Kubernetes releases the manifests are validated against: the oldest one still commonly
# supported by vendors when this was written, and the newest whose schemas kubernetes-validate
# ships. Bump both deliberately.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")

needs_pg = pytest.mark.skipif(PG_ADMIN_URL is None, reason="PostgreSQL not reachable (set FACILITY_SHARE_TEST_DATABASE_URL)")


# --- reading the files ---------------------------------------------------------------------


def dockerfile_instructions(path: Path = DEPLOY / "Dockerfile") -> list[tuple[int, str, str]]:
    """(stage index, INSTRUCTION, arguments) for each instruction, continuations joined."""
    instructions: list[tuple[int, str, str]] = []
    stage = -1
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            stage += 1
        instructions.append((stage, word, rest.strip()))
    return instructions


def dockerfile_env(stage: int) -> dict[str, str]:
    """The ENV values one stage sets (``KEY=value`` pairs, several per instruction)."""
    env: dict[str, str] = {}
    for index, word, rest in dockerfile_instructions():
        if index == stage and word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def final_stage() -> int:
    return max(index for index, _, _ in dockerfile_instructions())


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: {line!r} is not KEY=value"
            values[key] = value
    return values


class _Recording(dict):
    """An environment that remembers every variable asked for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.asked.add(key)
        return super().__getitem__(key)


def setting_names() -> set[str]:
    """Every FACILITY_SHARE_* variable the service reads: those load_settings asks for (found by
    running it, so a new setting cannot be missed), and the migrations folder for installed
    packages."""
    env = _Recording()
    load_settings(env)
    return {name for name in env.asked if name.startswith("FACILITY_SHARE_")} | {"FACILITY_SHARE_MIGRATIONS_DIR"}


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


# --- rendering the kustomization ---------------------------------------------------------

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass", "IngressClass"}


def render_by_hand(directory: Path = BASE) -> list[dict[str, Any]]:
    """The base as kustomize renders it, for machines without kustomize: its resource files in
    order, the namespace set on namespaced objects, image names mapped. Refuses any other
    kustomize feature, so the base cannot start depending on one unnoticed (when kustomize is
    installed, test_hand_rendering_matches_kustomize compares the two)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    handled = {"apiVersion", "kind", "namespace", "resources", "images"}
    assert set(kustomization) <= handled, f"kustomization.yaml uses {set(kustomization) - handled}: extend render_by_hand"
    images = {image["name"]: image for image in kustomization.get("images", [])}
    docs = []
    for resource in kustomization["resources"]:
        path = directory / resource
        assert path.is_file(), f"kustomization.yaml lists {resource}, which is not a file here"
        for doc in load_all(path):
            if kustomization.get("namespace") and doc["kind"] not in CLUSTER_SCOPED:
                doc.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
            for container in _containers(doc):
                name, _, tag = container["image"].partition(":")
                if name in images:
                    mapped = images[name]
                    container["image"] = f"{mapped.get('newName', name)}:{mapped.get('newTag', tag or 'latest')}"
            docs.append(doc)
    return docs


def kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def render_with_kustomize(directory: Path) -> list[dict[str, Any]]:
    command = kustomize_command()
    assert command is not None
    result = subprocess.run([*command, str(directory)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def rendered_base() -> list[dict[str, Any]]:
    return render_with_kustomize(BASE) if kustomize_command() else render_by_hand()


def _pod_spec(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return doc["spec"]["template"]["spec"]
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def _containers(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = _pod_spec(doc)
    return [] if spec is None else [*spec.get("initContainers", []), *spec["containers"]]


def by_kind_and_name(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


# --- the image -------------------------------------------------------------------------------


def test_dockerfile_installs_from_the_lock_in_two_stages_and_runs_unprivileged() -> None:
    instructions = dockerfile_instructions()
    froms = [rest for _, word, rest in instructions if word == "FROM"]
    assert len(froms) >= 2, "a multi-stage build: one stage installs, a clean one runs"
    last = final_stage()

    syncs = [rest for _, word, rest in instructions if word == "RUN" and "uv sync" in rest]
    assert syncs, "the environment is installed with uv sync"
    for line in syncs:
        assert "--frozen" in line and "--no-dev" in line, f"install exactly the lock's runtime packages: {line}"
        assert "--no-editable" in line, "the project goes in as a wheel, not a link to sources the runtime stage lacks"
    assert not any(word == "RUN" and ("uv sync" in rest or "pip install" in rest) for index, word, rest in instructions if index == last), \
        "nothing is installed in the runtime stage"

    # The same uv as the Makefile bootstraps.
    makefile_uv = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    docker_uv = re.search(r"ARG UV_VERSION=(\S+)", (DEPLOY / "Dockerfile").read_text())
    assert makefile_uv and docker_uv and makefile_uv.group(1) == docker_uv.group(1)

    final = [(word, rest) for index, word, rest in instructions if index == last]
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the runtime stage switches to an unprivileged user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, "a numeric non-root uid, which runAsNonRoot can check"

    build_env = dockerfile_env(0)
    assert any(word == "COPY" and f"--from=build {build_env['UV_PROJECT_ENVIRONMENT']}" in rest for word, rest in final)

    # The migrations sit where the installed package is told to look for them.
    workdir = [rest for word, rest in final if word == "WORKDIR"][-1]
    copies = {rest.split()[-1]: rest.split()[0] for word, rest in final if word == "COPY" and "--from" not in rest}
    copied_to = {source: str(Path(workdir) / target) for target, source in copies.items()}
    env = dockerfile_env(last)
    assert env["FACILITY_SHARE_MIGRATIONS_DIR"] == copied_to["migrations"]
    assert env["FACILITY_SHARE_CATALOG_DIR"] == copied_to["catalog"]
    assert env["FACILITY_SHARE_ENV"] == "production"

    entrypoint = json.loads([rest for word, rest in final if word == "ENTRYPOINT"][-1])
    command = json.loads([rest for word, rest in final if word == "CMD"][-1])
    assert entrypoint == ["facility-share"]
    assert command[:3] == ["serve", "--host", "0.0.0.0"] and "--workers" in command


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run([str(BIN / "hadolint"), "--no-color", str(DEPLOY / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def _glob_regex(pattern: str) -> str:
    """A .dockerignore pattern as a regular expression (Go's filepath.Match plus ``**``)."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out.append(pattern[i : end + 1])
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _glob_regex(pattern.lstrip("!").strip("/"))
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            ignored = not negate
    return ignored


def test_build_context_holds_what_the_image_copies_and_no_secrets() -> None:
    patterns = [line.strip() for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    sources = [rest.split()[:-1] for _, word, rest in dockerfile_instructions() if word == "COPY" and "--from" not in rest]
    for names in sources:
        for name in names:
            assert (ROOT / name).exists(), f"the Dockerfile copies {name}, which is not in the repository"
            assert not _ignored(name, patterns), f"{name} is copied by the Dockerfile but left out of the build context"
    assert not _ignored("src/facility_share/web/templates/base.html", patterns)
    assert not _ignored("src/facility_share/locale/zh_CN/LC_MESSAGES/messages.po", patterns)
    for kept_out in (".venv/bin/python", ".git/config", "var/facility-share.sqlite3", "deploy/facility-share.env",
                     "deploy/postgres.env", "deploy/backups/x.dump", "tests/conftest.py", ".uv/bin/uv",
                     "src/facility_share/__pycache__/cli.cpython-311.pyc", "src/facility_share/stray.pyc"):
        assert _ignored(kept_out, patterns), f"{kept_out} would be sent into the build"


# --- Compose ----------------------------------------------------------------------------------


def test_compose_file_follows_the_compose_specification() -> None:
    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_class(schema).iter_errors(compose()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_compose_runs_migration_then_replicas_behind_the_proxy_and_a_worker() -> None:
    services = compose()["services"]
    assert {"db", "migrate", "web", "worker", "proxy"} <= set(services)

    def waits_for(service: str) -> dict[str, str]:
        return {name: spec["condition"] for name, spec in services[service]["depends_on"].items()}

    assert waits_for("migrate") == {"db": "service_healthy"}
    assert waits_for("web")["migrate"] == "service_completed_successfully"
    assert waits_for("worker")["migrate"] == "service_completed_successfully"
    assert waits_for("proxy") == {"web": "service_healthy"}
    for name in ("db", "web", "proxy"):
        assert services[name]["healthcheck"]["test"], f"{name} needs a health check for the services waiting on it"

    migrate = services["migrate"]
    assert migrate["restart"] == "no"
    steps = " ".join(migrate["command"])
    assert steps.index("facility-share db upgrade") < steps.index("facility-share catalog import")

    web = services["web"]
    assert web["deploy"]["replicas"] >= 2
    assert web["command"][:3] == ["serve", "--host", "0.0.0.0"] and "--workers" in web["command"]
    assert "ports" not in web, "the web replicas are reached only through the proxy"
    assert services["worker"]["command"] == ["worker"]

    # The proxy forwards to the web service's port, with the headers the server trusts.
    port = web["command"][web["command"].index("--port") + 1]
    nginx = (DEPLOY / "nginx.conf").read_text()
    assert f"http://web:{port}" in nginx
    for header in ("X-Forwarded-For", "X-Forwarded-Proto", "Host"):
        assert f"proxy_set_header {header}" in nginx
    assert web["environment"]["FORWARDED_ALLOW_IPS"]
    mounted = [volume.split(":")[0] for volume in services["proxy"]["volumes"]]
    assert "./nginx.conf" in mounted

    for service in ("migrate", "web", "worker"):
        spec = services[service]
        assert spec["build"]["dockerfile"] == "deploy/Dockerfile"
        assert spec["read_only"] is True and "ALL" in spec["cap_drop"]
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in services["db"]["volumes"])
    assert "pgdata" in compose()["volumes"]


SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY|DATABASE_URL", re.I)


def test_compose_keeps_secrets_in_ignored_env_files() -> None:
    services = compose()["services"]
    for name, spec in services.items():
        environment = spec.get("environment") or {}
        items = environment.items() if isinstance(environment, dict) else (entry.partition("=")[::2] for entry in environment)
        for key, value in items:
            assert not SECRET_NAME.search(key), f"{name} sets {key} inline: secrets belong in an env file"
    text = (DEPLOY / "compose.yaml").read_text()
    assert not re.search(r"postgres(ql)?://[^/\s]*:[^@\s]*@", text), "no URL with a password in compose.yaml"
    assert not re.search(r"\b(sk|rk|pk)_(live|test)_|whsec_", text)

    env_files = {path for spec in services.values() for path in spec.get("env_file", [])}
    assert env_files == {"facility-share.env", "postgres.env"}
    ignored = subprocess.run(["git", "check-ignore", *[f"deploy/{path}" for path in env_files], "deploy/backups/a.dump"],
                             cwd=ROOT, capture_output=True, text=True)
    assert ignored.returncode == 0 and len(ignored.stdout.split()) == len(env_files) + 1, "env files and backups must be ignored by git"
    # Each has an example to copy, and the examples agree on the database password.
    application, database = env_file(DEPLOY / "env.example"), env_file(DEPLOY / "postgres.env.example")
    url = make_url(application["FACILITY_SHARE_DATABASE_URL"])
    assert (url.username, url.password, url.host, url.database) == (
        database["POSTGRES_USER"], database["POSTGRES_PASSWORD"], "db", database["POSTGRES_DB"])


def test_nginx_configuration_is_accepted_by_nginx(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light): its syntax check did not run")
    # The server block is included the way the nginx image's nginx.conf includes conf.d/.
    main = tmp_path / "nginx.conf"
    temp = " ".join(f"{kind}_temp_path {tmp_path};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    main.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
                    f"http {{ {temp} access_log off; include {DEPLOY / 'nginx.conf'}; }}\n")
    result = subprocess.run([nginx, "-t", "-q", "-c", str(main), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


# --- settings across the deployment ------------------------------------------------------


def test_every_setting_is_documented_and_no_unknown_one_is_set() -> None:
    names = setting_names()
    assert len(names) >= 15
    readme = (DEPLOY / "README.md").read_text()
    missing = sorted(name for name in names if f"`{name}`" not in readme)
    assert not missing, f"deploy/README.md does not explain {missing}"

    example = env_file(DEPLOY / "env.example")
    assert names - {"FACILITY_SHARE_MIGRATIONS_DIR", "FACILITY_SHARE_CATALOG_DIR"} <= set(example), \
        "env.example lists every setting an operator may change (the image sets the two paths)"
    docs = by_kind_and_name(rendered_base())
    config = docs[("ConfigMap", "facility-share-config")]["data"]
    secret = docs[("Secret", "facility-share-secrets")]["stringData"]
    # uvicorn's own variable for the proxies it trusts is the one outsider.
    for where, keys in (("env.example", set(example)), ("ConfigMap", set(config)), ("Secret", set(secret))):
        unknown = keys - names - {"FORWARDED_ALLOW_IPS"}
        assert not unknown, f"{where} sets {sorted(unknown)}, which the service does not read (a typo?)"
    assert not set(config) & set(secret), "each setting has one home"
    assert all(SECRET_NAME.search(key) for key in secret) and not any(SECRET_NAME.search(key) for key in config)


def test_the_examples_start_only_once_their_secret_is_set() -> None:
    from facility_share.errors import SettingsError

    example = env_file(DEPLOY / "env.example")
    with pytest.raises(SettingsError, match="FACILITY_SHARE_SECRET_KEY"):
        load_settings(example)
    settings = load_settings({**example, "FACILITY_SHARE_SECRET_KEY": secrets.token_urlsafe(48)})
    assert settings.production and settings.secure_cookies and not settings.stripe_enabled
    assert settings.sweep_interval == 0, "the worker service sweeps, not the web replicas"

    docs = by_kind_and_name(rendered_base())
    k8s = {**docs[("ConfigMap", "facility-share-config")]["data"], **docs[("Secret", "facility-share-secrets")]["stringData"]}
    with pytest.raises(SettingsError, match="FACILITY_SHARE_SECRET_KEY"):
        load_settings(k8s)
    assert load_settings({**k8s, "FACILITY_SHARE_SECRET_KEY": secrets.token_urlsafe(48)}).production


# --- Kubernetes -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_manifests_are_valid(version: str) -> None:
    docs = rendered_base()
    assert len(docs) >= 10
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} is not valid for Kubernetes {version}: {exc}")


@pytest.mark.skipif(kustomize_command() is None, reason="neither kustomize nor kubectl is installed")
def test_hand_rendering_matches_kustomize() -> None:
    def key(doc: dict[str, Any]) -> str:
        return json.dumps(doc, sort_keys=True)

    assert sorted(map(key, render_with_kustomize(BASE))) == sorted(map(key, render_by_hand()))


@pytest.mark.skipif(kustomize_command() is None, reason="neither kustomize nor kubectl is installed")
def test_production_overlay_renders_with_its_own_secret(tmp_path: Path) -> None:
    # A copy, so the secrets.env made from the example never lands in the working tree.
    shutil.copytree(DEPLOY / "k8s", tmp_path / "k8s")
    overlay = tmp_path / "k8s" / "overlays" / "production"
    key = secrets.token_urlsafe(48)
    (overlay / "secrets.env").write_text((overlay / "secrets.env.example").read_text().replace("FACILITY_SHARE_SECRET_KEY=", f"FACILITY_SHARE_SECRET_KEY={key}"))
    docs = render_with_kustomize(overlay)
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[-1], strict=True)
    secret = by_kind_and_name(docs)[("Secret", "facility-share-secrets")]
    import base64

    assert base64.b64decode(secret["data"]["FACILITY_SHARE_SECRET_KEY"]).decode() == key
    assert "stringData" not in secret, "the example's placeholders are replaced, not merged"
    git_ignored = subprocess.run(["git", "check-ignore", "deploy/k8s/overlays/production/secrets.env"], cwd=ROOT, capture_output=True)
    assert git_ignored.returncode == 0


def test_web_deployment_probes_scales_and_limits() -> None:
    docs = by_kind_and_name(rendered_base())
    web = docs[("Deployment", "facility-share-web")]
    assert web["spec"]["replicas"] >= 2
    assert web["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (container,) = web["spec"]["template"]["spec"]["containers"]
    assert container["args"][:3] == ["serve", "--host", "0.0.0.0"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    port = int(container["args"][container["args"].index("--port") + 1])
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert named[container[probe]["httpGet"]["port"]] == port

    worker = docs[("Deployment", "facility-share-worker")]
    assert worker["spec"]["template"]["spec"]["containers"][0]["args"] == ["worker"]
    job = docs[("Job", "facility-share-migrate")]
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    steps = " ".join(migrate["command"] + migrate["args"])
    assert steps.index("facility-share db upgrade") < steps.index("facility-share catalog import")
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"

    images = {c["image"] for doc in docs.values() for c in _containers(doc)}
    assert len(images) == 1 and ":" in images.pop(), "one image, with a tag, everywhere"


def test_every_pod_meets_the_restricted_pod_security_standard() -> None:
    docs = rendered_base()
    namespace = by_kind_and_name(docs)[("Namespace", "facility-share")]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    workloads = [doc for doc in docs if _pod_spec(doc) is not None]
    assert {doc["kind"] for doc in workloads} == {"Deployment", "Job"}
    for doc in workloads:
        spec = _pod_spec(doc)
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] > 0, where
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec["automountServiceAccountToken"] is False, where
        for container in _containers(doc):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"], where
            # The root file system is read-only: /tmp is a volume.
            mounts = {mount["mountPath"]: mount["name"] for mount in container.get("volumeMounts", [])}
            assert "/tmp" in mounts and any(v["name"] == mounts["/tmp"] and "emptyDir" in v for v in spec["volumes"]), where
            for source in container["envFrom"]:
                ref = source.get("configMapRef") or source.get("secretRef")
                kind = "ConfigMap" if "configMapRef" in source else "Secret"
                assert (kind, ref["name"]) in by_kind_and_name(docs), f"{where} reads a {kind} {ref['name']} that is not defined"


def test_service_pdb_and_ingress_point_at_the_web_pods() -> None:
    docs = by_kind_and_name(rendered_base())
    web = docs[("Deployment", "facility-share-web")]
    pod_labels = web["spec"]["template"]["metadata"]["labels"]
    worker_labels = docs[("Deployment", "facility-share-worker")]["spec"]["template"]["metadata"]["labels"]

    def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in selector.items())

    service = docs[("Service", "facility-share-web")]
    assert selects(service["spec"]["selector"], pod_labels) and not selects(service["spec"]["selector"], worker_labels)
    pdb = docs[("PodDisruptionBudget", "facility-share-web")]
    assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels)
    assert pdb["spec"]["minAvailable"] < web["spec"]["replicas"], "a drain can always evict one pod"

    container_ports = {p["name"] for p in web["spec"]["template"]["spec"]["containers"][0]["ports"]}
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert all(p["targetPort"] in container_ports for p in service_ports.values())
    ingress = docs[("Ingress", "facility-share")]
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"] and backend["port"]["name"] in service_ports
    assert ingress["spec"]["tls"], "HTTPS: the service sends cookies only over it in production"


# --- backup and restore: the scripts ------------------------------------------------------

SCRIPTS = (DEPLOY / "backup.sh", DEPLOY / "restore.sh")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_passes_shellcheck_and_explains_itself(script: Path) -> None:
    result = subprocess.run([str(BIN / "shellcheck"), "--severity=style", str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout
    assert os.access(script, os.X_OK)

    no_arguments = subprocess.run(["bash", str(script)], capture_output=True, text=True, env={**os.environ, "FACILITY_SHARE_DATABASE_URL": ""})
    assert no_arguments.returncode == 2 and "usage:" in no_arguments.stderr and "exit codes:" in no_arguments.stderr
    assert subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True).returncode == 0
    unknown = subprocess.run(["bash", str(script), "--force", "x"], capture_output=True, text=True)
    assert unknown.returncode == 2 and "unknown option --force" in unknown.stderr
    # Without PostgreSQL's client tools on the PATH: exit 3, naming the tool.
    no_tools = subprocess.run(["/bin/bash", str(script), "x"], capture_output=True, text=True, env={"PATH": "/nonexistent"})
    assert no_tools.returncode == 3 and "not found" in no_tools.stderr


def test_scripts_read_urls_the_same_way() -> None:
    def function(script: Path) -> str:
        text = script.read_text()
        return text[text.index("use_url() {"): text.index("\n}\n", text.index("use_url() {"))]

    assert function(SCRIPTS[0]) == function(SCRIPTS[1])


def test_backup_refuses_to_overwrite_and_rejects_other_databases(tmp_path: Path) -> None:
    existing = tmp_path / "old.dump"
    existing.write_bytes(b"keep me")
    result = subprocess.run([str(SCRIPTS[0]), "--url", "postgresql://u@127.0.0.1/x", str(existing)], capture_output=True, text=True)
    assert result.returncode == 2 and "already exists" in result.stderr and existing.read_bytes() == b"keep me"
    result = subprocess.run([str(SCRIPTS[0]), "--url", "mysql://u@127.0.0.1/x", str(tmp_path / "new.dump")], capture_output=True, text=True)
    assert result.returncode == 2 and "postgresql://" in result.stderr
    result = subprocess.run([str(SCRIPTS[1]), "--url", "postgresql://u@127.0.0.1/x", str(existing)], capture_output=True, text=True)
    assert result.returncode == 2 and "not a pg_dump custom-format backup" in result.stderr


# --- PostgreSQL: throwaway databases --------------------------------------------------------


@pytest.fixture
def make_database() -> Iterator[Any]:
    """Creates empty PostgreSQL databases (and roles) for one test, dropped afterwards."""
    assert PG_ADMIN_URL is not None
    made: list[tuple[str, str]] = []

    def make(kind: str = "DATABASE") -> str:
        name = f"facility_share_deploy_{uuid.uuid4().hex[:10]}"
        asyncio.run(_admin_execute(PG_ADMIN_URL, f'CREATE {kind} "{name}"' + (" LOGIN" if kind == "ROLE" else "")))
        made.append((kind, name))
        return name

    yield make
    # Databases first: a role cannot be dropped while it owns anything.
    for kind, name in sorted(made, key=lambda item: item[0] != "DATABASE"):
        statement = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' if kind == "DATABASE" else f'DROP ROLE IF EXISTS "{name}"'
        asyncio.run(_admin_execute(PG_ADMIN_URL, statement))


def database_url(name: str, *, user: str | None = None, driver: str = "postgresql") -> str:
    assert PG_ADMIN_URL is not None
    url = make_url(PG_ADMIN_URL).set(drivername=driver, database=name)
    if user:
        url = url.set(username=user, password=None)
    return url.render_as_string(hide_password=False)


# --- the image's steps, in a fresh environment --------------------------------------------


def _substitute(value: str, paths: Mapping[str, str]) -> str:
    for image_path, here in sorted(paths.items(), key=lambda item: -len(item[0])):
        value = re.sub(rf"(?<![\w/]){re.escape(image_path)}(?=/|$|[\s:\"'])", here, value)
    return value


@pytest.mark.slow
@needs_pg
def test_image_steps_install_migrate_and_serve(tmp_path: Path, make_database: Any) -> None:
    """What `docker build` and `docker compose up` would do, without Docker: the Dockerfile's
    uv sync lines into a new virtual environment, the runtime stage's layout and environment,
    the Compose migration command, then the web and worker commands."""
    uv = ROOT / ".uv" / "bin" / "uv"
    if not uv.exists():
        uv = Path(shutil.which("uv") or "")
        if not uv.name:
            pytest.skip("uv is not installed (make install bootstraps it into .uv/)")
    started = time.monotonic()
    venv, app = tmp_path / "venv", tmp_path / "app"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)

    # The build stage: its ENV, then each RUN that installs, from the project's files.
    build_env = dockerfile_env(0)
    paths = {build_env["UV_PROJECT_ENVIRONMENT"]: str(venv)}
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT") and not k.startswith("FACILITY_SHARE_")}
    env.update({k: _substitute(v, paths) for k, v in build_env.items()})
    for _, word, rest in dockerfile_instructions():
        if word == "RUN" and "uv sync" in rest:
            argv = [arg for arg in shlex.split(rest) if not arg.startswith("--mount=")]
            assert argv[0] == "uv"
            result = subprocess.run([str(uv), *argv[1:]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, result.stderr[-3000:]
    installed = time.monotonic() - started

    python = venv / "bin" / "python"
    probe = subprocess.run([str(python), "-c", "import facility_share, importlib.util as u; print(facility_share.__file__); print(u.find_spec('pytest'))"],
                           capture_output=True, text=True, check=True)
    location, pytest_spec = probe.stdout.split()
    assert location.startswith(str(venv)), "the package is installed, not linked to the sources"
    assert pytest_spec == "None", "no development packages in the image"

    # The runtime stage: its files and environment.
    last = final_stage()
    final = [(word, rest) for index, word, rest in dockerfile_instructions() if index == last]
    workdir = [rest for word, rest in final if word == "WORKDIR"][-1]
    paths[workdir] = str(app)
    app.mkdir()
    for word, rest in final:
        if word == "COPY" and "--from" not in rest:
            *sources, target = rest.split()
            for source in sources:
                shutil.copytree(ROOT / source, app / target)
    runtime_env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV",) and not k.startswith("FACILITY_SHARE_")}
    for key, value in dockerfile_env(last).items():
        runtime_env[key] = _substitute(value, paths).replace("$PATH", os.environ["PATH"])
    database = make_database()
    runtime_env["FACILITY_SHARE_DATABASE_URL"] = database_url(database)
    runtime_env["FACILITY_SHARE_SECRET_KEY"] = secrets.token_urlsafe(48)
    runtime_env["FACILITY_SHARE_SECURE_COOKIES"] = "false"
    assert shutil.which("facility-share", path=runtime_env["PATH"]) == str(venv / "bin" / "facility-share")

    # The Compose migration service's command, as its shell would run it.
    services = compose()["services"]
    migrate = services["migrate"]
    command = [_substitute(part, paths) for part in migrate["entrypoint"] + migrate["command"]]
    result = subprocess.run(command, cwd=app, env=runtime_env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "database at revision head" in result.stdout and "records written" in result.stdout
    migrated = time.monotonic() - started - installed

    # The web service's command, on a free loopback port instead of 0.0.0.0:8000.
    web = list(services["web"]["command"])
    port = free_port()
    web[web.index("--host") + 1] = "127.0.0.1"
    web[web.index("--port") + 1] = str(port)
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(["facility-share", *web], cwd=app, env=runtime_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # While the server starts: the worker service's command, one round.
        worker = subprocess.run(["facility-share", *services["worker"]["command"], "--once"], cwd=app, env=runtime_env,
                                capture_output=True, text=True, timeout=60)
        assert worker.returncode == 0, worker.stderr[-2000:]
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and health is None:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as response:
                    health = (response.status, json.loads(response.read()))
            except OSError:
                time.sleep(0.2)
        assert health is not None, (tmp_path / "serve.log").read_text()[-3000:]
        assert health[0] == 200 and health[1]["status"] == "ok" and health[1]["dialect"] == "postgresql"
        # Templates, translations and static files came along in the wheel.
        with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Accept": "text/html"}), timeout=10) as response:
            assert response.status == 200 and "<html" in response.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/site.css", timeout=10) as response:
            assert response.status == 200
        served = time.monotonic() - started - installed - migrated
    finally:
        # What `docker stop` sends: SIGTERM, then the server finishes and exits cleanly.
        os.killpg(server.pid, signal.SIGTERM)
        try:
            code = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            raise
        log.close()
    assert code == 0, (tmp_path / "serve.log").read_text()[-3000:]
    print(f"\nimage steps: install {installed:.1f} s, migrate and import {migrated:.1f} s, serve {served:.1f} s")


# --- backup while writing, restore into an empty database ------------------------------------


def _table_names(url: str) -> list[str]:
    return [row[0] for row in _query(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]


def _query(url: str, sql: str, *args: Any) -> list[Any]:
    import asyncpg

    async def run() -> list[Any]:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def _fingerprint(url: str, table: str, ids: list[int] | None = None) -> tuple[int, str]:
    """Row count and an md5 over every row's text, in a stable order (optionally only some ids)."""
    where = "" if ids is None else "WHERE t.id = ANY($1::bigint[])"
    sql = f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM \"{table}\" t {where}"
    row = _query(url, sql, *([ids] if ids is not None else []))[0]
    return row[0], row[1]


class Writer(threading.Thread):
    """A steady write load: each transaction adds an audit event and a login attempt carrying
    the same number, so a restore can show both tables come from one moment."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.commits: list[float] = []  # monotonic time of each commit
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._loop())
        except BaseException as exc:  # reported by the test
            self.error = exc

    async def _loop(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.url)
        try:
            n = 0
            while not self.stop.is_set():
                n += 1
                async with conn.transaction():
                    await conn.execute(
                        "INSERT INTO audit_events (at, actor_kind, action, entity, entity_id, reason) "
                        "VALUES (now(), 'system', 'load', 'backup-test', $1, 'concurrent write during backup')", n)
                    await conn.execute("INSERT INTO login_attempts (email, ip, at) VALUES ($1, '127.0.0.1', now())", f"load-{n}@example.cn")
                self.commits.append(time.monotonic())
                await asyncio.sleep(0.001)
        finally:
            await conn.close()


WRITTEN = ("audit_events", "login_attempts")


@pytest.mark.slow
@needs_pg
def test_backup_taken_during_writes_restores_every_row(tmp_path: Path, make_database: Any) -> None:
    source = make_database()
    url = database_url(source)
    load = subprocess.run([str(BIN / "facility-share"), "db", "upgrade"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "FACILITY_SHARE_DATABASE_URL": url})
    assert load.returncode == 0, load.stderr
    load = subprocess.run([str(BIN / "facility-share"), "demo", "load"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "FACILITY_SHARE_DATABASE_URL": url, "FACILITY_SHARE_CATALOG_DIR": str(ROOT / "catalog")})
    assert load.returncode == 0, load.stderr[-3000:]
    tables = _table_names(url)
    assert len(tables) >= 25

    writer = Writer(url)
    writer.start()
    try:
        while len(writer.commits) < 50:
            assert writer.is_alive(), writer.error
            time.sleep(0.01)
        # The rows present when the backup starts (the writer keeps going meanwhile).
        at_start = {table: _fingerprint(url, table) for table in tables if table not in WRITTEN}
        ids_at_start = {table: [row[0] for row in _query(url, f"SELECT id FROM {table}")] for table in WRITTEN}
        written_at_start = {table: _fingerprint(url, table, ids) for table, ids in ids_at_start.items()}
        backup_started = time.monotonic()
        # A URL in the service's own form: the script must accept it.
        result = subprocess.run([str(SCRIPTS[0]), "--url", database_url(source, driver="postgresql+asyncpg"), str(tmp_path)],
                                capture_output=True, text=True, timeout=300)
        backup_ended = time.monotonic()
        assert result.returncode == 0, result.stderr
    finally:
        writer.stop.set()
        writer.join(timeout=30)
    assert writer.error is None, writer.error
    during = sum(1 for t in writer.commits if backup_started <= t <= backup_ended)
    assert during > 0, "the load must still be writing while the backup runs"
    count_at_end = {table: _fingerprint(url, table)[0] for table in WRITTEN}

    dump = Path(result.stdout.strip().splitlines()[-1])
    assert dump.parent == tmp_path and dump.name.startswith("facility-share-") and dump.suffix == ".dump"
    assert dump.stat().st_mode & 0o077 == 0, "backups are readable by their owner only"
    assert not list(tmp_path.glob("*.partial"))

    # Restoring as a role that may not create anything fails as a whole and leaves nothing.
    target = make_database()
    powerless = make_database("ROLE")
    failed = subprocess.run([str(SCRIPTS[1]), "--url", database_url(target, user=powerless), str(dump)], capture_output=True, text=True, timeout=300)
    assert failed.returncode == 6, failed.stderr
    assert _table_names(database_url(target)) == []

    # Into the (still) empty database, with the URL from the environment as in Compose.
    restored = subprocess.run([str(SCRIPTS[1]), str(dump)], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "FACILITY_SHARE_DATABASE_URL": database_url(target, driver="postgresql+asyncpg")})
    assert restored.returncode == 0, restored.stderr
    from facility_share.db import migrate

    assert f"schema revision {migrate.head_revision()}" in restored.stdout
    copy_url = database_url(target)
    assert _table_names(copy_url) == tables
    for table, fingerprint in at_start.items():
        assert _fingerprint(copy_url, table) == fingerprint, f"{table} differs from the source"
    for table, fingerprint in written_at_start.items():
        assert _fingerprint(copy_url, table, ids_at_start[table]) == fingerprint, f"{table} lost or changed rows present at the start"
        assert fingerprint[0] <= _fingerprint(copy_url, table)[0] <= count_at_end[table]
    # One snapshot: both halves of every write transaction, or neither.
    events = {row[0] for row in _query(copy_url, "SELECT entity_id FROM audit_events WHERE entity = 'backup-test'")}
    attempts = {int(row[0][5:].split("@")[0]) for row in _query(copy_url, "SELECT email FROM login_attempts WHERE email LIKE 'load-%'")}
    assert events == attempts and events
    # Sequences came along: new rows get fresh ids.
    _query(copy_url, "INSERT INTO audit_events (at, actor_kind, action, entity, entity_id, reason) VALUES (now(), 'system', 'x', 'x', 0, '')")

    # A second restore into the same database is refused, and changes nothing.
    again = subprocess.run([str(SCRIPTS[1]), "--url", copy_url, str(dump)], capture_output=True, text=True, timeout=120)
    assert again.returncode == 5 and "not empty" in again.stderr
    print(f"\nbackup {backup_ended - backup_started:.2f} s with {during} concurrent commits; "
          f"{sum(f[0] for f in at_start.values())} rows in {len(at_start)} quiet tables")


def test_readme_walks_through_install_upgrade_backup_and_restore() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for heading in ("First install with Docker Compose", "First install on Kubernetes", "Upgrade", "Backup", "Restore", "Environment variables"):
        assert re.search(rf"^#+ .*{heading}", readme, re.M | re.I), f"deploy/README.md has no section on {heading!r}"
    for command in ("backup.sh", "restore.sh", "kubectl apply -k", "docker compose", "facility-share db upgrade"):
        assert command in readme
    top = (ROOT / "README.md").read_text()
    assert "deploy/README.md" in top

