"""Validates Kubernetes manifests: the Helm chart's rendered output and the example manifests
under deploy/ (Argo Rollouts, Flagger).

- Built-in kinds (StatefulSet, Service, ConfigMap, Secret, Job, ...) against the OpenAPI schemas
  of Kubernetes `--kubernetes-version` (default 1.30.0) shipped by kubernetes-validate, in strict
  mode (unknown fields are errors).
- Custom resources whose CRD schemas are not shipped (ServiceMonitor, AnalysisTemplate, Rollout,
  Canary, MetricTemplate) against the fields vigil's manifests rely on, named in CUSTOM below.
- A rendered vigil.toml (ConfigMap or Secret) is handed to `vigil --config <file> migrate
  --print-ddl 24.8`, which loads and validates every key as `vigil monitor` and `vigil lifecycle`
  would (VIGIL_BIN, default target/debug/vigil; skipped with a note when it is not built).

usage: validate.py [--kubernetes-version V] FILE...   (YAML streams; `-` reads stdin)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
VIGIL = Path(os.environ.get("VIGIL_BIN", REPO / "target" / "debug" / "vigil"))

# (apiVersion, kind) -> dotted paths that must exist (`[]` steps into every list item).
CUSTOM = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): [
        "metadata.name", "spec.selector.matchLabels", "spec.endpoints[].port", "spec.endpoints[].path"],
    ("argoproj.io/v1alpha1", "AnalysisTemplate"): [
        "metadata.name", "spec.args[].name", "spec.metrics[].name", "spec.metrics[].successCondition",
        "spec.metrics[].failureCondition", "spec.metrics[].provider.web.url",
        "spec.metrics[].provider.web.jsonPath"],
    ("argoproj.io/v1alpha1", "Rollout"): [
        "metadata.name", "spec.selector.matchLabels", "spec.template.spec.containers[].image",
        "spec.strategy.canary.steps", "spec.strategy.canary.analysis.templates[].templateName"],
    ("flagger.app/v1beta1", "Canary"): [
        "metadata.name", "spec.targetRef.kind", "spec.targetRef.name", "spec.service.port",
        "spec.analysis.interval", "spec.analysis.threshold", "spec.analysis.webhooks[].name",
        "spec.analysis.webhooks[].type", "spec.analysis.webhooks[].url"],
    ("flagger.app/v1beta1", "MetricTemplate"): ["metadata.name", "spec.provider.type", "spec.query"],
}
WEBHOOK_TYPES = {"confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase",
                 "confirm-promotion", "post-rollout", "rollback", "event"}


def missing(doc: object, path: str) -> list[str]:
    head, _, rest = path.partition(".")
    each = head.endswith("[]")
    key = head[:-2] if each else head
    if not isinstance(doc, dict) or key not in doc or doc[key] in (None, "", [], {}):
        return [path]
    value = doc[key]
    if each:
        if not isinstance(value, list):
            return [f"{key} (not a list)"]
        return [f"{key}[{i}].{m}" for i, item in enumerate(value) for m in (missing(item, rest) if rest else [])]
    return [f"{key}.{m}" for m in missing(value, rest)] if rest else []


def check_vigil_toml(name: str, text: str) -> list[str]:
    if not VIGIL.exists():
        print(f"  note: {VIGIL} not built; {name}'s vigil.toml not loaded")
        return []
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
        f.write(text)
        f.flush()
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        run = subprocess.run([VIGIL, "--config", f.name, "migrate", "--print-ddl", "24.8"],
                             capture_output=True, text=True, env=env, timeout=60)
    if run.returncode != 0:
        return [f"vigil rejects the rendered vigil.toml: {run.stderr.strip()[-2000:]}"]
    return []


def validate(doc: dict, version: str) -> list[str]:
    api, kind = doc.get("apiVersion"), doc.get("kind")
    if (api, kind) in CUSTOM:
        problems = [f"missing {p}" for path in CUSTOM[(api, kind)] for p in missing(doc, path)]
        if kind == "Canary":
            problems += [f"unknown webhook type {h.get('type')!r}" for h in doc["spec"]["analysis"].get("webhooks", [])
                         if h.get("type") not in WEBHOOK_TYPES]
        return problems
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{'.'.join(str(p) for p in error.path)}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"no schema for {api} {kind} in Kubernetes {version} (and not a known custom resource)"]
    problems = []
    if kind in ("ConfigMap", "Secret"):
        data = doc.get("data") or doc.get("stringData") or {}
        if "vigil.toml" in data:
            problems += check_vigil_toml(doc["metadata"]["name"], data["vigil.toml"])
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kubernetes-version", default="1.30.0")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    failed = checked = 0
    for file in args.files:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            checked += 1
            where = f"{file}: {doc.get('kind')} {doc.get('metadata', {}).get('name')}"
            problems = validate(doc, args.kubernetes_version)
            for problem in problems:
                print(f"FAIL {where}: {problem}")
            if problems:
                failed += 1
            else:
                print(f"ok   {where}")
    print(f"{checked - failed} passed, {failed} failed")
    return 1 if failed or not checked else 0


if __name__ == "__main__":
    sys.exit(main())
