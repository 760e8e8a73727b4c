"""The analysis provider judged by the shipped Argo Rollouts and Flagger conditions.

A fresh ClickHouse database (`vigil migrate`) gets what the monitor stores for four canary
versions of one model: `v-healthy` (three closed windows, every check healthy), `v-drifted` (the
newest window breached the drift policy, 4 of 20 features drifted), `v-young` (one closed window
so far) and `v-thin` (three windows, one whose checks lack data). `vigil lifecycle` then runs
against that database with its own topics, and the test asks its analysis endpoint about each
version, as the controllers would:

- Argo Rollouts: the `web` provider of deploy/argo-rollouts/analysis-template.yaml; its URL
  template, header and JSON path applied to the real answer, and its successCondition and
  failureCondition evaluated with the semantics of Argo's `evaluate.EvaluateResult` (failure wins,
  neither true is Inconclusive) and of the expr language for `result == "..."`.
- Flagger: the `cmd` of the rollout webhook in deploy/flagger/canary.yaml, run with `sh -c` as
  Flagger's load tester runs it (pass = exit 0 = HTTP 200 from the load tester), with the service
  URL pointed at the test's lifecycle service and the token in VIGIL_TOKEN.

Needs the `vigil` binary (`VIGIL_BIN`, default target/debug/vigil), Kafka and ClickHouse
(`VIGIL_TEST_KAFKA_BROKERS`, `VIGIL_TEST_CLICKHOUSE_URL`, loopback defaults).
"""

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VIGIL = Path(os.environ.get("VIGIL_BIN", REPO / "target" / "debug" / "vigil"))
CLICKHOUSE_URL = os.environ.get("VIGIL_TEST_CLICKHOUSE_URL", "http://127.0.0.1:8123")
BROKERS = os.environ.get("VIGIL_TEST_KAFKA_BROKERS", "127.0.0.1:9092")
ARGO = REPO / "deploy" / "argo-rollouts" / "analysis-template.yaml"
FLAGGER = REPO / "deploy" / "flagger" / "canary.yaml"
TOKEN = "provider-test-token"
MODEL = "fraud"


def clickhouse(sql: str) -> str:
    request = urllib.request.Request(CLICKHOUSE_URL, data=sql.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def store_windows(db: str, version: str, windows: list[tuple[int, list[tuple[str, str]], int]]) -> None:
    """windows: (start, [(policy, verdict)], drifted features of 20)."""
    for start, checks, drifted in windows:
        for policy, verdict in checks:
            clickhouse(
                f"INSERT INTO {db}.policy_checks (model_id, model_version, window_start, policy, verdict, "
                f"value, threshold, detail, events, computed_at) VALUES ('{MODEL}', '{version}', "
                f"toDateTime({start}), '{policy}', '{verdict}', {0.3 if verdict == 'breach' else 0.01}, 0.05, "
                f"'', 500, now())"
            )
        for i in range(20):
            clickhouse(
                f"INSERT INTO {db}.feature_drift (model_id, model_version, segment, window_start, feature, test, "
                f"statistic, threshold, drifted, current_count, events, computed_at) VALUES ('{MODEL}', "
                f"'{version}', '', toDateTime({start}), 'f{i:02}', 'psi', 0.01, 0.2, {1 if i < drifted else 0}, "
                f"500, 500, now())"
            )
        # The monitor stores a window's metrics row last: it marks the window closed.
        clickhouse(
            f"INSERT INTO {db}.window_metrics (model_id, model_version, segment, window_start, window_seconds, "
            f"events, computed_at) VALUES ('{MODEL}', '{version}', '', toDateTime({start}), 60, 500, now())"
        )


@pytest.fixture(scope="module")
def service():
    if not VIGIL.exists():
        pytest.fail(f"{VIGIL} not built: run cargo build -p vigil (or set VIGIL_BIN)")
    name = f"provider_{uuid.uuid4().hex[:10]}"
    db = f"vigil_it_{name}"
    port = free_port()
    state = tempfile.mkdtemp(prefix=f"vigil-{name}-")
    env = {
        **os.environ,
        "VIGIL__KAFKA__BROKERS": BROKERS,
        "VIGIL__CLICKHOUSE__URL": CLICKHOUSE_URL,
        "VIGIL__CLICKHOUSE__DATABASE": db,
        "VIGIL__TOPICS__LIFECYCLE": f"it.{name}.lifecycle",
        "VIGIL__TOPICS__REMEDIATIONS": f"it.{name}.remediations",
        "VIGIL__LIFECYCLE__GROUP_ID": f"it-{name}",
        "VIGIL__LIFECYCLE__STATE_DIR": f"{state}/lifecycle",
        "VIGIL__ALERTS__OUTBOX_DIR": f"{state}/alerts",
        "VIGIL__LIFECYCLE__API__LISTEN": f"127.0.0.1:{port}",
        "VIGIL__LIFECYCLE__API__TOKEN": TOKEN,
        "VIGIL__HTTP__LISTEN": f"127.0.0.1:{free_port()}",
        "RUST_LOG": "warn",
    }
    env.pop("VIGIL_CONFIG", None)
    subprocess.run([VIGIL, "migrate"], env=env, check=True, capture_output=True, timeout=120)
    ok = [("feature_drift", "healthy"), ("performance", "healthy")]
    store_windows(db, "v-healthy", [(60, ok, 0), (120, ok, 1), (180, ok, 0)])
    store_windows(db, "v-drifted", [(60, ok, 0), (120, ok, 1), (180, [("feature_drift", "breach"), ("performance", "healthy")], 4)])
    store_windows(db, "v-young", [(180, ok, 0)])
    store_windows(db, "v-thin", [(60, ok, 0), (120, [("feature_drift", "healthy"), ("performance", "insufficient_data")], 0), (180, ok, 0)])
    process = subprocess.Popen([VIGIL, "lifecycle"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{base}/health/readyz", timeout=2) as r:
                if r.status == 200:
                    break
        except (urllib.error.URLError, ConnectionError):
            pass
        if process.poll() is not None:
            pytest.fail(f"vigil lifecycle exited: {process.stderr.read().decode()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("vigil lifecycle not ready within 90 s")
        time.sleep(0.25)
    yield base
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
    clickhouse(f"DROP DATABASE IF EXISTS {db}")


def get(url: str, token: str | None = TOKEN) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


# ---- Argo Rollouts ------------------------------------------------------------------------------

def argo_metric() -> tuple[dict, dict]:
    docs = list(yaml.safe_load_all(ARGO.read_text()))
    template = next(d for d in docs if d["kind"] == "AnalysisTemplate")
    [metric] = template["spec"]["metrics"]
    defaults = {a["name"]: a.get("value") for a in template["spec"]["args"]}
    return metric, defaults


def substitute(text: str, args: dict) -> str:
    """Argo's `{{args.NAME}}` templating; an argument without a value is an error, as in Argo."""
    def value(match):
        name = match.group(1)
        if args.get(name) is None:
            raise KeyError(f"argument {name} has no value")
        return str(args[name])
    return re.sub(r"\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}", value, text)


def json_path(document, path: str):
    """The `{$.a.b}` subset of Kubernetes JSONPath that the template uses."""
    match = re.fullmatch(r"\{\$((?:\.[A-Za-z_][A-Za-z0-9_]*)+)\}", path)
    assert match, f"unsupported jsonPath {path!r}"
    for key in match.group(1).split(".")[1:]:
        document = document[key]
    return document


def expr_condition(condition: str, result) -> bool:
    """Evaluates an expr-language condition of the form `result == "<string>"` (the only form the
    template uses; anything else fails the test, so a changed template is noticed)."""
    match = re.fullmatch(r'\s*result\s*(==|!=)\s*"([^"\\]*)"\s*', condition)
    assert match, f"condition {condition!r} is not of the form result == \"...\""
    equal = result == match.group(2)
    return equal if match.group(1) == "==" else not equal


def argo_phase(metric: dict, result) -> str:
    """Argo Rollouts' evaluate.EvaluateResult."""
    success_cond, failure_cond = metric.get("successCondition", ""), metric.get("failureCondition", "")
    success = expr_condition(success_cond, result) if success_cond else False
    failure = expr_condition(failure_cond, result) if failure_cond else False
    if not success_cond and not failure_cond:
        return "Successful"
    if success_cond and not failure_cond:
        failure = not success
    if failure_cond and not success_cond:
        success = not failure
    if failure:
        return "Failed"
    if not success:
        return "Inconclusive"
    return "Successful"


def argo_measure(base: str, version: str) -> tuple[str, dict]:
    metric, defaults = argo_metric()
    web = metric["provider"]["web"]
    args = {**defaults, "model": MODEL, "version": version, "vigil-url": base, "vigil-token": TOKEN}
    url = substitute(web["url"], args)
    headers = {h["key"]: substitute(h["value"], args) for h in web.get("headers", [])}
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=web.get("timeoutSeconds", 10)) as r:
        body = json.loads(r.read())
    return argo_phase(metric, json_path(body, web["jsonPath"])), body


# ---- Flagger -------------------------------------------------------------------------------------

def flagger_check(base: str, version: str) -> bool:
    canary = next(d for d in yaml.safe_load_all(FLAGGER.read_text()) if d["kind"] == "Canary")
    [hook] = [h for h in canary["spec"]["analysis"]["webhooks"] if h["name"] == "vigil-verdict"]
    assert hook["type"] == "rollout" and hook["metadata"]["type"] == "cmd"
    cmd = hook["metadata"]["cmd"]
    shipped = re.search(r'"(https?://[^"/]+)(/api/v1/models/[^"]+)"', cmd)
    assert shipped, f"no analysis URL in {cmd!r}"
    path = shipped.group(2).replace("/models/fraud/versions/v2/", f"/models/{MODEL}/versions/{version}/")
    cmd = cmd.replace(shipped.group(0), f'"{base}{path}"')
    run = subprocess.run(["sh", "-c", cmd], env={**os.environ, "VIGIL_TOKEN": TOKEN}, timeout=30)
    return run.returncode == 0


# ---- the tests -----------------------------------------------------------------------------------

def test_healthy_canary_passes_both_controllers(service):
    phase, body = argo_measure(service, "v-healthy")
    assert body["verdict"] == "healthy", body
    assert (body["windows_closed"], body["windows_healthy"]) == (3, 3), body
    assert phase == "Successful"
    assert flagger_check(service, "v-healthy")


def test_drifted_canary_fails_both_controllers_with_the_values_behind_it(service):
    phase, body = argo_measure(service, "v-drifted")
    assert body["verdict"] == "failed", body
    assert body["reason"] == "1 of 3 windows breached (feature_drift)", body
    assert body["max_drifted_features"] == 4
    newest = body["windows"][0]
    assert (newest["window_start"], newest["verdict"], newest["drifted_features"], newest["features_tested"]) == (
        180, "failed", 4, 20)
    breach = [c for c in newest["checks"] if c["verdict"] == "breach"]
    assert breach == [{"policy": "feature_drift", "verdict": "breach", "value": 0.3, "threshold": 0.05, "detail": ""}]
    assert phase == "Failed"
    assert not flagger_check(service, "v-drifted")


@pytest.mark.parametrize("version,reason", [
    ("v-young", "insufficient data: 1 of 3 windows closed"),
    ("v-thin", "insufficient data: 1 of 3 windows lack the data to decide"),
    ("v-unknown", "insufficient data: 0 of 3 windows closed"),
])
def test_insufficient_data_is_inconclusive_never_a_pass(service, version, reason):
    phase, body = argo_measure(service, version)
    assert (body["verdict"], body["reason"]) == ("inconclusive", reason), body
    assert phase == "Inconclusive"
    assert not flagger_check(service, version)


def test_the_endpoint_is_token_protected_and_checks_its_query(service):
    url = f"{service}/api/v1/models/{MODEL}/versions/v-healthy/analysis"
    assert get(url, token=None)[0] == 401
    assert get(url, token="wrong")[0] == 401
    status, body = get(url + "?windows=0")
    assert status == 400 and "from 1 to 100" in body["error"], body
    status, body = get(url + "?windows=2")
    assert (status, body["verdict"], body["windows_requested"]) == (200, "healthy", 2), body
