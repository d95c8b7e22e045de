"""Consistency of the deployment files (run by infra/tests/deploy.check.sh).

    deploy_check.py ROOT FLASHGATE_BINARY KUBECTL K8S_VERSION
        renders every overlay of infra/k8s/overlays (and its migrate/) with KUBECTL's
        kustomize, validates each rendered object strictly against the API schemas of
        K8S_VERSION (kubernetes-validate), and checks that the objects agree with each
        other, with the binary and with the rest of the repository
    deploy_check.py --rule ROOT
        writes infra/k8s/components/monitoring/prometheusrule.yaml from
        infra/prometheus/alerts.yaml (the one source of the alerts)
    deploy_check.py --context ROOT DIR
        copies the Docker build context into DIR

The schemas are checked by kubernetes-validate and the Dockerfile by hadolint; this adds
what neither can know: that probes, ports, labels, names, commands, generated names,
network policies and the Prometheus Operator's objects line up, and that each overlay's
origins serve the environment their edge (wrangler.toml) signs for.
"""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

try:
    import yaml
except ImportError:  # --rule needs none: it works on any python3
    yaml = None

problems = []

def problem(where, text):
    problems.append(f"{where}: {text}")


def docker_context(root, out):
    """The paths .dockerignore lets in ('*' then '!path' lines), checked against the
    Dockerfile's COPY sources, copied into `out`."""
    lines = [
        line.strip()
        for line in (root / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    if not lines or lines[0] != "*":
        sys.exit(".dockerignore: must start with '*' (everything out, then what goes in)")
    allowed = [line[1:] for line in lines[1:] if line.startswith("!")]
    for name in allowed:
        if not (root / name).exists():
            problem(".dockerignore", f"lets in {name}, which does not exist")
    for line in (root / "infra/docker/Dockerfile").read_text().splitlines():
        words = line.split()
        if not words or words[0] != "COPY" or any(w.startswith("--from") for w in words):
            continue
        for source in words[1:-1]:
            if source.rstrip("/") not in allowed:
                problem("infra/docker/Dockerfile", f"COPY {source}: not in the build context")
    # Fresh modification times, as a context sent to a builder has: cargo then compiles
    # the copied sources instead of trusting what the checkout built.
    for name in allowed:
        src, dst = root / name, out / name
        if src.is_dir():
            shutil.copytree(
                src, dst, ignore=shutil.ignore_patterns("target"), copy_function=shutil.copy
            )
        elif src.exists():
            shutil.copy(src, dst)


K8S = "infra/k8s"
ALERTS = "infra/prometheus/alerts.yaml"
RULE = "infra/k8s/components/monitoring/prometheusrule.yaml"
# The Secret is created by hand from this env file (docs/deploy.md); no kustomization
# may list it.
SECRETS_EXAMPLE = "infra/k8s/base/secrets.env.example"
SECRET = "flashgate-secrets"
CONFIG = "flashgate-config"
# The wrangler.toml environment of the edge in front of each overlay's origins.
EDGE_OF_OVERLAY = {"production": "production", "staging": "dev"}
# What an edge or an origin that names no environment signs for (core/src/sign.rs).
DEFAULT_ENVIRONMENT = "dev"
# Kinds no Kubernetes schema knows: the Prometheus Operator's, checked here instead.
OPERATOR_KINDS = {"PodMonitor", "PrometheusRule"}


def prometheus_rule(root):
    """infra/prometheus/alerts.yaml as the Prometheus Operator's PrometheusRule: its
    `groups` under `spec`, text for text (the comments and folding stay readable)."""
    lines = (root / ALERTS).read_text().splitlines()
    first = next(n for n, line in enumerate(lines) if line.startswith("groups:"))
    body = "\n".join(f"  {line}" if line else "" for line in lines[first:])
    return (
        f"# Generated from {ALERTS} by `python3 infra/tests/deploy_check.py --rule .`:\n"
        "# edit that file and regenerate (./dev test fails while the two differ).\n"
        "apiVersion: monitoring.coreos.com/v1\n"
        "kind: PrometheusRule\n"
        "metadata:\n"
        "  name: flashgate\n"
        "spec:\n"
        f"{body}\n"
    )


def containers(doc):
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    return pod.get("containers", [])


def pod_labels(doc):
    return doc["spec"]["template"]["metadata"].get("labels", {})


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def selects(selector, labels):
    """Whether a LabelSelector (matchLabels, matchExpressions with In/NotIn/Exists)
    selects `labels`."""
    if not all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        has, value = e["key"] in labels, labels.get(e["key"])
        ok = {
            "In": has and value in e.get("values", []),
            "NotIn": not has or value not in e.get("values", []),
            "Exists": has,
            "DoesNotExist": not has,
        }[e["operator"]]
        if not ok:
            return False
    return True


def kustomization_files(root):
    """Every kustomization lists what its folder holds, and nothing lists the secrets'
    example: a file no kustomization names is a manifest nobody applies."""
    k8s = root / K8S
    referenced = set()
    for kfile in sorted(k8s.rglob("kustomization.yaml")):
        kdir = kfile.parent
        where = str(kfile.relative_to(root))
        k = yaml.safe_load(kfile.read_text())
        named = list(k.get("resources", [])) + list(k.get("components", []))
        named += [p["path"] for p in k.get("patches", []) if "path" in p]
        for gen in k.get("configMapGenerator", []) + k.get("secretGenerator", []):
            named += gen.get("envs", []) + [f.split("=")[-1] for f in gen.get("files", [])]
        for name in named:
            path = (kdir / name).resolve()
            if not path.exists():
                problem(where, f"{name} does not exist")
            referenced.add(path)
            if path == (root / SECRETS_EXAMPLE).resolve():
                problem(where, f"lists {SECRETS_EXAMPLE}: secrets are created by hand")
        if "secretGenerator" in k:
            problem(where, "generates a Secret: secrets stay out of the repository")
    for path in sorted(k8s.rglob("*")):
        if path.is_file() and path.name != "kustomization.yaml" and path.resolve() not in referenced:
            if path != root / SECRETS_EXAMPLE:
                problem(str(path.relative_to(root)), "no kustomization lists it")
    # The example must not be a manifest that `kubectl apply -f` would take.
    try:
        docs = [d for d in yaml.safe_load_all((root / SECRETS_EXAMPLE).read_text()) if d]
        if any(isinstance(d, dict) and "kind" in d for d in docs):
            problem(SECRETS_EXAMPLE, "reads as a manifest")
    except yaml.YAMLError:
        pass


def secret_keys(root):
    return {
        line.split("=", 1)[0]
        for line in (root / SECRETS_EXAMPLE).read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }


def environments(root, name, config):
    """The overlay's origins and the edge in front of them name one environment: the edge
    signs it into every request, and an origin of another refuses them all."""
    overlay_name = Path(name).name
    edge = EDGE_OF_OVERLAY.get(overlay_name)
    if edge is None:
        problem(name, "no wrangler.toml environment is known to front it (EDGE_OF_OVERLAY)")
        return
    with open(root / "wrangler.toml", "rb") as f:
        vars_ = tomllib.load(f).get("env", {}).get(edge, {}).get("vars", {})
    signs = vars_.get("ENVIRONMENT", DEFAULT_ENVIRONMENT)
    serves = config.get("FLASHGATE_ENVIRONMENT", DEFAULT_ENVIRONMENT)
    if signs != serves:
        problem(name, f"its origins serve environment {serves!r}, but [env.{edge}] of wrangler.toml signs for {signs!r}")


def render(kubectl, directory):
    """The objects kustomize makes of `directory`, as `kubectl apply -k` would apply them."""
    run = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True)
    if run.returncode != 0:
        problem(str(directory), f"kustomize: {run.stderr.strip()}")
        return []
    return [d for d in yaml.safe_load_all(run.stdout) if d]


def schemas(where, docs, version):
    import kubernetes_validate

    for doc in docs:
        if doc["kind"] in OPERATOR_KINDS:
            continue
        name = f"{where} {doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            problem(name, f"schema: {e.message} at {'/'.join(map(str, e.path))}")
        except Exception as e:  # noqa: BLE001 (a missing schema is a problem too)
            problem(name, f"schema: {e}")


def overlay(root, name, app, migrate, keys, subcommands):
    """The checks of one overlay: `app` and `migrate` are its two renders."""
    docs = app + migrate
    by_kind = {}
    for doc in app:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = (name, doc)
    for doc in migrate:
        by_kind.setdefault(doc["kind"], {}).setdefault(
            doc["metadata"]["name"], (f"{name}/migrate", doc)
        )
    namespaces = {d["metadata"].get("namespace") for d in docs}
    if len(namespaces) != 1 or None in namespaces:
        problem(name, f"objects in namespaces {sorted(map(str, namespaces))}, not one")
    if "Secret" in by_kind:
        problem(name, "renders a Secret: it is created by hand (secrets.env.example)")

    # The generated ConfigMap: a hashed name, and the migration job reads the very same.
    maps = {}
    for part, render_docs in (("", app), ("/migrate", migrate)):
        generated = [d for d in render_docs if d["kind"] == "ConfigMap"]
        if len(generated) != 1:
            problem(f"{name}{part}", f"{len(generated)} ConfigMaps, not one")
            continue
        maps[part] = generated[0]
        cm_name = generated[0]["metadata"]["name"]
        if not cm_name.startswith(f"{CONFIG}-") or cm_name == CONFIG:
            problem(f"{name}{part}", f"ConfigMap {cm_name} has no hash suffix: a change would not roll the pods")
    if len(maps) == 2 and maps[""] != maps["/migrate"]:
        problem(f"{name}/migrate", "reads another ConfigMap than the application (settings/ differs)")
    config = dict(maps.get("", {}).get("data", {}))
    environments(root, name, config)
    for key in ("FLASHGATE_AUTH_SECRET", "FLASHGATE_EDGE_SECRET", "FLASHGATE_ADMIN_TOKEN"):
        if key in config:
            problem(f"{name} ConfigMap", f"{key} is a secret: it belongs in the Secret")

    images = set()
    workloads = list(by_kind.get("Deployment", {}).values()) + list(by_kind.get("Job", {}).values())
    if not by_kind.get("Job"):
        problem(f"{name}/migrate", "no migration Job")
    for file, doc in workloads:
        where = f"{file} {doc['kind']}/{doc['metadata']['name']}"
        template_labels = pod_labels(doc)
        selector = doc["spec"].get("selector", {}).get("matchLabels", {})
        for k, v in selector.items():
            if template_labels.get(k) != v:
                problem(where, f"selector {k}={v} does not match the pod labels")
        pod = doc["spec"]["template"]["spec"]
        if doc["kind"] == "Deployment":
            spread = pod.get("topologySpreadConstraints", [])
            keys_spread = {c["topologyKey"] for c in spread if selects(c.get("labelSelector", {}), template_labels)}
            for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname"):
                if key not in keys_spread:
                    problem(where, f"pods not spread over {key}")
            covered = [
                p for _, p in by_kind.get("NetworkPolicy", {}).values()
                if selects(p["spec"]["podSelector"], template_labels) and p["spec"].get("ingress")
            ]
            if not covered:
                problem(where, "no NetworkPolicy allows anything in")
        for c in containers(doc):
            cw = f"{where} container {c['name']}"
            image = c["image"]
            images.add(image)
            if ":" not in image.rsplit("/", 1)[-1] and "@" not in image:
                problem(cw, f"image {image} has no tag: the overlay's settings/ sets it")
            for ref in c.get("envFrom", []):
                if "configMapRef" in ref and ref["configMapRef"]["name"] not in by_kind.get("ConfigMap", {}):
                    problem(cw, f"configMap {ref['configMapRef']['name']} is not defined")
                if "secretRef" in ref and ref["secretRef"]["name"] != SECRET:
                    problem(cw, f"secret {ref['secretRef']['name']} is not {SECRET} ({SECRETS_EXAMPLE})")
            env = dict(config)
            env.update({e["name"]: e.get("value", "") for e in c.get("env", [])})
            args = c.get("args", [])
            if not args:
                problem(cw, "no command (serve, consume or migrate)")
                continue
            subcommands.setdefault(args[0], cw)
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            # Where the process listens, as the binary reads it.
            listen = {
                "serve": env.get("FLASHGATE_LISTEN"),
                "consume": env.get("FLASHGATE_CONSUMER__LISTEN"),
            }.get(args[0])
            if args[0] in ("serve", "consume"):
                if not listen:
                    problem(cw, f"`{args[0]}` has no listen address set")
                elif port_of(listen) not in ports.values():
                    problem(cw, f"listens on {listen}, not a container port {ports}")
                elif not listen.startswith("0.0.0.0:"):
                    problem(cw, f"listens on {listen}: the kubelet and Service cannot reach it")
            paths = {"serve": {"/healthz", "/readyz"}, "consume": {"/healthz"}}.get(args[0], set())
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                get = c.get(probe, {}).get("httpGet")
                if not get:
                    continue
                if get["port"] not in ports and get["port"] not in ports.values():
                    problem(cw, f"{probe} port {get['port']} is not a container port")
                if get["path"] not in paths:
                    problem(cw, f"{probe} path {get['path']} is not served by `{args[0]}`")
            scrape = doc["spec"]["template"]["metadata"].get("annotations", {})
            if "prometheus.io/port" in scrape and int(scrape["prometheus.io/port"]) not in ports.values():
                problem(cw, f"prometheus.io/port {scrape['prometheus.io/port']} is not a container port")
            for e in c.get("env", []):
                if e["name"] in keys or e["name"] in config:
                    problem(cw, f"{e['name']} set twice (env and envFrom)")
    if len(images) != 1:
        problem(name, f"images {sorted(images)}: the application and its migration job run one")

    deployments = by_kind.get("Deployment", {})
    for file, svc in by_kind.get("Service", {}).values():
        where = f"{file} Service/{svc['metadata']['name']}"
        selected = [d for _, d in deployments.values() if selects({"matchLabels": svc["spec"]["selector"]}, pod_labels(d))]
        if len(selected) != 1:
            problem(where, f"selects {len(selected)} deployments, not one")
            continue
        names = {p.get("name") for c in containers(selected[0]) for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            if p.get("targetPort") not in names:
                problem(where, f"targetPort {p.get('targetPort')} is not a named container port")
    services = by_kind.get("Service", {})
    for file, ing in by_kind.get("Ingress", {}).values():
        where = f"{file} Ingress/{ing['metadata']['name']}"
        for rule in ing["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                backend = path["backend"]["service"]
                if backend["name"] not in services:
                    problem(where, f"backend {backend['name']} is not a Service")
                    continue
                svc_ports = {p.get("name") for p in services[backend["name"]][1]["spec"]["ports"]}
                if backend["port"].get("name") not in svc_ports:
                    problem(where, f"backend port {backend['port']} is not a port of the Service")
                if not path["path"].startswith("/api/"):
                    problem(where, f"exposes {path['path']}: only the shopper API goes public")
    for kind in ("PodDisruptionBudget", "HorizontalPodAutoscaler"):
        for file, doc in by_kind.get(kind, {}).values():
            where = f"{file} {kind}/{doc['metadata']['name']}"
            target = doc["spec"].get("scaleTargetRef", {}).get("name")
            if target and target not in deployments:
                problem(where, f"targets {target}, which is not a Deployment")
            if target in deployments and "replicas" in deployments[target][1]["spec"]:
                problem(where, f"{target} also sets replicas: an apply would reset the autoscaler's count")
            if kind == "HorizontalPodAutoscaler" and doc["spec"].get("minReplicas", 1) > doc["spec"]["maxReplicas"]:
                problem(where, "minReplicas above maxReplicas")
            match = doc["spec"].get("selector")
            if match and not any(selects(match, pod_labels(d)) for _, d in deployments.values()):
                problem(where, "selects no pods")

    network_policies(name, by_kind, deployments)
    operator_objects(root, name, by_kind, deployments)


def network_policies(name, by_kind, deployments):
    """Nothing in unless allowed; the origin's port only from the ingress controller, the
    namespace and monitoring; every allowed port a port of the pods it is for."""
    policies = [p for _, p in by_kind.get("NetworkPolicy", {}).values()]
    if not any(p["spec"]["podSelector"] == {} and not p["spec"].get("ingress") and "Ingress" in p["spec"].get("policyTypes", []) for p in policies):
        problem(name, "no default-deny NetworkPolicy for ingress")
    for p in policies:
        where = f"{name} NetworkPolicy/{p['metadata']['name']}"
        pods = [d for _, d in deployments.values() if selects(p["spec"]["podSelector"], pod_labels(d))]
        names = {port.get("name") for d in pods for c in containers(d) for port in c.get("ports", [])}
        for rule in p["spec"].get("ingress", []):
            if not rule.get("from"):
                problem(where, "a rule allows every source")
            for port in rule.get("ports", []):
                if port.get("port") not in names:
                    problem(where, f"port {port.get('port')} is not a named port of its pods")
            for peer in rule.get("from", []):
                if "ipBlock" in peer:
                    problem(where, "allows an ipBlock: name the namespace instead")
                ns = peer.get("namespaceSelector")
                if ns is not None and not ns.get("matchLabels", {}).get("kubernetes.io/metadata.name"):
                    problem(where, "a namespaceSelector that selects more than one named namespace")


def operator_objects(root, name, by_kind, deployments):
    """The PodMonitor scrapes /metrics on ports the pods have; the PrometheusRule holds
    exactly the rules of alerts.yaml."""
    monitors = [m for _, m in by_kind.get("PodMonitor", {}).values()]
    scraped = set()
    for m in monitors:
        where = f"{name} PodMonitor/{m['metadata']['name']}"
        pods = [d for _, d in deployments.values() if selects(m["spec"]["selector"], pod_labels(d))]
        for e in m["spec"].get("podMetricsEndpoints", []):
            if e.get("path", "/metrics") != "/metrics":
                problem(where, f"scrapes {e['path']}, not /metrics")
            having = [d["metadata"]["name"] for d in pods for c in containers(d) if any(p.get("name") == e.get("port") for p in c.get("ports", []))]
            if not having:
                problem(where, f"port {e.get('port')} is no port of the pods it selects")
            scraped.update(having)
    for d in deployments:
        if monitors and d not in scraped:
            problem(name, f"no PodMonitor scrapes Deployment/{d}")
    rules = [r for _, r in by_kind.get("PrometheusRule", {}).values()]
    alerts = yaml.safe_load((root / ALERTS).read_text())
    if monitors and len(rules) != 1:
        problem(name, f"{len(rules)} PrometheusRules, not the one of {ALERTS}")
    for r in rules:
        if r["spec"] != {"groups": alerts["groups"]}:
            problem(f"{name} PrometheusRule/{r['metadata']['name']}", f"differs from {ALERTS}: run `python3 infra/tests/deploy_check.py --rule .`")


def manifests(root, binary, kubectl, version):
    kustomization_files(root)
    if (root / RULE).read_text() != prometheus_rule(root):
        problem(RULE, f"is not what {ALERTS} generates: run `python3 infra/tests/deploy_check.py --rule .`")
    keys = secret_keys(root)
    overlays = sorted(p.parent for p in (root / K8S / "overlays").glob("*/kustomization.yaml"))
    if not overlays:
        problem(K8S, "no overlays")
    subcommands = {}
    for directory in overlays:
        name = str(directory.relative_to(root))
        app = render(kubectl, directory)
        migrate = render(kubectl, directory / "migrate")
        if not app or not migrate:
            continue
        schemas(name, app, version)
        schemas(f"{name}/migrate", migrate, version)
        overlay(root, name, app, migrate, keys, subcommands)
    for sub, where in sorted(subcommands.items()):
        run = subprocess.run([binary, sub, "--help"], capture_output=True, text=True)
        if run.returncode != 0:
            problem(where, f"`flashgate {sub}` is not a command of the binary: {run.stderr.strip()}")


def main():
    if sys.argv[1] == "--context":
        docker_context(Path(sys.argv[2]), Path(sys.argv[3]))
    elif sys.argv[1] == "--rule":
        root = Path(sys.argv[2])
        (root / RULE).write_text(prometheus_rule(root))
    else:
        manifests(Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4])
    if problems:
        print("deploy: the deployment files disagree:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
