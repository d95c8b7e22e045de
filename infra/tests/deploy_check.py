"""Consistency of the deployment files (run by infra/tests/deploy.check.sh).

    deploy_check.py ROOT FLASHGATE_BINARY    the Kubernetes manifests agree with each other
                                             and with the binary
    deploy_check.py --context ROOT DIR       copies the Docker build context into DIR

The schemas are checked by kubernetes-validate and the Dockerfile by hadolint; this adds
what neither can know: that probes, ports, labels, names and commands line up.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

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


def containers(doc):
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    return pod.get("containers", [])


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def manifests(root, binary):
    k8s = root / "infra/k8s"
    images = set()
    for kfile in sorted(k8s.rglob("kustomization.yaml")):
        kdir = kfile.parent
        where = str(kfile.relative_to(k8s))
        kustomization = yaml.safe_load(kfile.read_text())
        listed = set(kustomization.get("resources", []))
        present = {
            p.name
            for p in kdir.glob("*.yaml")
            if p.name != "kustomization.yaml" and not p.name.endswith(".example.yaml")
        }
        for name in sorted(present - listed):
            problem(where, f"{name} is not in resources")
        for name in sorted(listed - present):
            problem(where, f"resource {name} does not exist")
        images |= {i["name"] for i in kustomization.get("images", [])}

    docs = []
    for path in sorted(k8s.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((str(path.relative_to(k8s)), doc))
    by_kind = {}
    for name, doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = (name, doc)
    config = {}
    for _, doc in by_kind.get("ConfigMap", {}).values():
        config.update(doc.get("data", {}))
    secrets = set()
    for _, doc in by_kind.get("Secret", {}).values():
        secrets.update(doc.get("stringData", {}))

    subcommands = {}
    workloads = list(by_kind.get("Deployment", {}).values()) + list(
        by_kind.get("Job", {}).values()
    )
    if not workloads:
        problem("infra/k8s", "no workloads")
    for file, doc in workloads:
        where = f"{file} {doc['kind']}/{doc['metadata']['name']}"
        template_labels = doc["spec"]["template"]["metadata"].get("labels", {})
        selector = doc["spec"].get("selector", {}).get("matchLabels", {})
        for k, v in selector.items():
            if template_labels.get(k) != v:
                problem(where, f"selector {k}={v} does not match the pod labels")
        for c in containers(doc):
            cw = f"{where} container {c['name']}"
            if c["image"] not in images:
                problem(cw, f"image {c['image']} is not one kustomization.yaml sets")
            for ref in c.get("envFrom", []):
                if "configMapRef" in ref and ref["configMapRef"]["name"] not in by_kind.get(
                    "ConfigMap", {}
                ):
                    problem(cw, f"configMap {ref['configMapRef']['name']} is not defined")
                if "secretRef" in ref and ref["secretRef"]["name"] not in by_kind.get(
                    "Secret", {}
                ):
                    problem(cw, f"secret {ref['secretRef']['name']} is not described")
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
                if e["name"] in secrets or e["name"] in config:
                    problem(cw, f"{e['name']} set twice (env and envFrom)")
            for key in ("FLASHGATE_AUTH_SECRET", "FLASHGATE_EDGE_SECRET", "FLASHGATE_ADMIN_TOKEN"):
                if key in config:
                    problem("config.yaml", f"{key} is a secret: it belongs in the Secret")
    for sub, where in sorted(subcommands.items()):
        run = subprocess.run([binary, sub, "--help"], capture_output=True, text=True)
        if run.returncode != 0:
            problem(where, f"`flashgate {sub}` is not a command of the binary: {run.stderr.strip()}")

    deployments = by_kind.get("Deployment", {})
    for file, svc in by_kind.get("Service", {}).values():
        where = f"{file} Service/{svc['metadata']['name']}"
        selected = [
            d
            for _, d in deployments.values()
            if all(
                d["spec"]["template"]["metadata"].get("labels", {}).get(k) == v
                for k, v in svc["spec"]["selector"].items()
            )
        ]
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
            target = doc["spec"].get("scaleTargetRef", {}).get("name")
            if target and target not in deployments:
                problem(f"{file} {kind}", f"targets {target}, which is not a Deployment")
            match = doc["spec"].get("selector", {}).get("matchLabels")
            if match and not any(
                all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in match.items())
                for _, d in deployments.values()
            ):
                problem(f"{file} {kind}", "selects no pods")


def main():
    if sys.argv[1] == "--context":
        docker_context(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        manifests(Path(sys.argv[1]), sys.argv[2])
    if problems:
        print("deploy: the deployment files disagree:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
