"""Governance on a scripted history (a version registered with lineage straight into production,
a canary without complete lineage, drifting in its policy checks, drift tests and accuracy per
window in ClickHouse, rolled back by hand through the API while `vigil lifecycle` runs and writes
the audit copy of the log to lifecycle_events):

- `vigil audit report` rendered in a real browser: the HTML report is opened in headless Chromium
  (Debian's package); after its script ran, every chart must have drawn as many points as the
  report's JSON holds, and the content hash printed, embedded in the page and in the JSON must
  verify. A screenshot is taken each run (`VIGIL_UPDATE_SCREENSHOTS=1` also writes
  docs/images/audit-report.png).
- The Grafana KPI dashboard (deploy/grafana/dashboards/kpis.json): its queries, run on the local
  ClickHouse over the same period, give the numbers `vigil kpi --json` gives.

Needs the local stack (`VIGIL_TEST_KAFKA_BROKERS`, `VIGIL_TEST_CLICKHOUSE_URL`, loopback
defaults), the vigil binary (`VIGIL_BIN`, default target/debug/vigil) and /usr/bin/chromium
(`VIGIL_CHROMIUM`).
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VIGIL = Path(os.environ.get("VIGIL_BIN", REPO / "target" / "debug" / "vigil"))
CHROMIUM = os.environ.get("VIGIL_CHROMIUM", "/usr/bin/chromium")
CLICKHOUSE_URL = os.environ.get("VIGIL_TEST_CLICKHOUSE_URL", "http://127.0.0.1:8123")
BROKERS = os.environ.get("VIGIL_TEST_KAFKA_BROKERS", "127.0.0.1:9092")
SCREENSHOT = REPO / "docs" / "images" / "audit-report.png"
KPI_BOARD = REPO / "deploy" / "grafana" / "dashboards" / "kpis.json"
ADMIN_TOKEN = "pytest-governance-admin"
MIN, HOUR = 60, 3600


def reachable(host_port: str) -> bool:
    host, port = host_port.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


def clickhouse(sql: str, database: str | None = None) -> str:
    params = {"database": database} if database else {}
    url = CLICKHOUSE_URL.rstrip("/") + "/?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(urllib.request.Request(url, data=sql.encode()), timeout=30) as r:
        return r.read().decode()


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    ch_host = urllib.parse.urlparse(CLICKHOUSE_URL).netloc
    if not (reachable(BROKERS) and reachable(ch_host)):
        pytest.fail(f"the local stack is not running (Kafka {BROKERS}, ClickHouse {CLICKHOUSE_URL}): deploy/local/up")
    assert VIGIL.exists(), f"{VIGIL} missing: cargo build -p vigil"
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: apt-get install -y chromium"
    tmp = tmp_path_factory.mktemp("audit")
    name = f"pytest_audit_{os.getpid()}_{int(time.time() * 1000) % 1_000_000}"
    config = tmp / "vigil.toml"
    config.write_text("[lifecycle]\nreplay_timeout_ms = 30000\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL")}
    env.update({
        "VIGIL__KAFKA__BROKERS": BROKERS,
        "VIGIL__TOPICS__LIFECYCLE": f"it.{name}.lifecycle",
        "VIGIL__TOPICS__REMEDIATIONS": f"it.{name}.remediations",
        "VIGIL__CLICKHOUSE__URL": CLICKHOUSE_URL,
        "VIGIL__CLICKHOUSE__DATABASE": name,
        "RUST_LOG": "warn",
    })

    def vigil(*args: str) -> subprocess.CompletedProcess:
        out = subprocess.run([str(VIGIL), "--config", str(config), *args], env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, f"vigil {' '.join(args)}: {out.stderr}"
        return out

    vigil("migrate")
    sha = "ab" * 32
    vigil("lifecycle", "register", "--model", "fraud", "--version", "v1", "--stage", "production", "--actor", "ci",
          "--training-run-id", "run-41", "--dataset", "transactions@2026-11", "--code-commit", "4f1c2d3",
          "--artifact-uri", "s3://models/fraud/v1", "--artifact-sha256", sha, "--team", "risk")
    vigil("lifecycle", "register", "--model", "fraud", "--version", "v2", "--stage", "canary", "--weight", "0.2",
          "--actor", "ci", "--training-run-id", "run-42", "--parent-version", "v1")

    # The service writes the audit copy of the log to ClickHouse; a person rolls v2 back through it.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    service_env = dict(env, VIGIL__LIFECYCLE__API__TOKEN=ADMIN_TOKEN, VIGIL__LIFECYCLE__API__TOKEN_SUBJECT="carol",
                       VIGIL__LIFECYCLE__API__LISTEN=f"127.0.0.1:{port}",
                       VIGIL__LIFECYCLE__STATE_DIR=str(tmp / "state"), VIGIL__LIFECYCLE__GROUP_ID=name)
    service = subprocess.Popen([str(VIGIL), "--config", str(config), "lifecycle"], env=service_env,
                               stdout=subprocess.DEVNULL, stderr=open(tmp / "lifecycle.log", "w"))
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.time() < deadline and service.poll() is None, (tmp / "lifecycle.log").read_text()[-3000:]
            time.sleep(0.25)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/models/fraud/versions/v2/rollback", method="POST",
            data=b'{"reason": "drift confirmed by hand"}',
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as r:
            assert r.status == 200
        while (clickhouse("SELECT count() FROM lifecycle_events FINAL", name).strip() != "3"
               or clickhouse("SELECT count() FROM lifecycle_lineage FINAL", name).strip() != "2"):
            assert time.time() < deadline, "the audit did not write the 3 events and 2 lineages"
            time.sleep(0.25)
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=30)

    now = int(time.time())
    start = now - 2 * HOUR
    windows = [start + i * 10 * MIN for i in range(6)]
    checks, drift, perf = [], [], []
    for i, w in enumerate(windows):
        breach = i >= 3
        rem = "rem-audit" if i == 4 else ""
        checks.append(f"('fraud', 'v2', toDateTime({w}), 'drift', '{'breach' if breach else 'healthy'}', "
                      f"{0.1 + 0.1 * i}, 0.35, '{{\"drifted\":[\"amount\"]}}', {max(0, i - 2)}, '{rem}', 1000, "
                      f"'ref-1', 'cfg', toDateTime({w + 10 * MIN + 5}))")
        for version, shift in (("v1", 0.0), ("v2", 0.1 * i)):
            for feature in ("amount", "age", "country"):
                statistic = 0.05 + (shift if feature == "amount" else 0.0)
                drift.append(f"('fraud', '{version}', '', toDateTime({w}), '{feature}', 'psi', {statistic}, NULL, "
                             f"NULL, 0.25, {int(statistic > 0.25)}, 1000, 1000, 'ref-1', 'cfg', toDateTime({w + 600}))")
            accuracy = 0.86 if version == "v1" else 0.86 - 0.04 * i
            perf.append(f"('fraud', '{version}', '', toDateTime({w}), 600, 1000, 500, 0.5, {accuracy}, 1500, "
                        f"'ref-1', 'cfg', toDateTime({w + 600}))")
    clickhouse("INSERT INTO policy_checks (model_id, model_version, window_start, policy, verdict, value, threshold, "
               "detail, streak, remediation_id, events, reference_id, config_hash, computed_at) VALUES "
               + ", ".join(checks), name)
    clickhouse("INSERT INTO feature_drift (model_id, model_version, segment, window_start, feature, test, statistic, "
               "p_value, error_bound, threshold, drifted, current_count, events, reference_id, config_hash, "
               "computed_at) VALUES " + ", ".join(drift), name)
    clickhouse("INSERT INTO window_performance (model_id, model_version, segment, window_start, window_seconds, "
               "predictions, labeled, coverage, accuracy, revision, reference_id, config_hash, computed_at) VALUES "
               + ", ".join(perf), name)

    period = ["--from", str(now - 3 * HOUR), "--to", str(now + HOUR)]
    html, js = tmp / "report.html", tmp / "report.json"
    printed = vigil("audit", "report", "--model", "fraud", *period, "--out", str(html)).stdout
    vigil("audit", "report", "--model", "fraud", *period, "--format", "json", "--out", str(js))
    kpi = json.loads(vigil("kpi", "--model", "fraud", *period, "--json").stdout)
    yield {"html": html, "json": json.loads(js.read_text()), "printed": printed, "tmp": tmp, "kpi": kpi,
           "database": name, "from": now - 3 * HOUR, "to": now + HOUR}
    clickhouse(f"DROP DATABASE IF EXISTS {name}")
    try:
        from confluent_kafka.admin import AdminClient
        AdminClient({"bootstrap.servers": BROKERS}).delete_topics(
            [f"it.{name}.lifecycle", f"it.{name}.remediations"], operation_timeout=10)
    except ImportError:
        pass


def chromium(*args: str) -> subprocess.CompletedProcess:
    # Root in CI has no user namespace for the sandbox; the page is our own file.
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--virtual-time-budget=5000"]
    out = subprocess.run(base + list(args), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_the_content_hash_is_printed_embedded_and_verifies(history):
    report = history["json"]
    content = dict(report, content_sha256="", generated_at_ms=0)
    digest = hashlib.sha256(canonical(content).encode()).hexdigest()
    assert digest == report["content_sha256"]
    html = history["html"].read_text()
    assert f'content="{digest}"' in html and f"content sha256 {digest}" in history["printed"]
    # Self-contained: nothing is fetched.
    assert not re.search(r'\b(src|href)="https?:', html)


def test_the_charts_draw_every_point_in_headless_chromium(history):
    report = history["json"]
    dom = chromium("--dump-dom", history["html"].as_uri()).stdout
    # Attribute order is the browser's: read each svg's attributes separately.
    drawn = {}
    for svg in re.finditer(r"<svg([^>]*)>(.*?)</svg>", dom, re.S):
        attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', svg[1]))
        if attrs.get("class") == "chart":
            drawn[attrs["id"]] = (int(attrs["data-points"]), len(re.findall(r'class="point', svg[2])))
    series = report["series"]
    assert len(series["drift"]) == 12 and len(series["performance"]) == 12, series
    assert drawn["chart-drift"] == (12, 12), drawn
    assert drawn["chart-performance"] == (12, 12), drawn
    assert drawn["chart-timeline"] == (len(report["stage_history"]),) * 2 == (3, 3), drawn
    # The lineage table and the remediation's evidence are in the page.
    assert "run-41" in dom and "transactions@2026-11" in dom and "rem-audit" in dom


def test_a_screenshot_of_the_report(history):
    shot = history["tmp"] / "audit-report.png"
    chromium(f"--screenshot={shot}", "--window-size=1200,1900", history["html"].as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, len(data)
    if os.environ.get("VIGIL_UPDATE_SCREENSHOTS"):
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)


def board_queries() -> dict[str, str]:
    board = json.loads(KPI_BOARD.read_text())
    return {p["title"]: p["targets"][0]["rawSql"] for p in board["panels"]}


def run_panel(sql: str, history) -> list[dict]:
    sql = (sql.replace("${model:singlequote}", "'fraud'")
           .replace("$__fromTime", f"toDateTime({history['from']})")
           .replace("$__toTime", f"toDateTime({history['to']})"))
    assert "$" not in sql, sql
    out = json.loads(clickhouse(sql + "\nFORMAT JSON", history["database"]))
    return [{k: (float(v) if isinstance(v, str) and re.fullmatch(r"-?[0-9.]+", v) else v) for k, v in row.items()}
            for row in out["data"]]


def test_the_kpi_dashboard_agrees_with_vigil_kpi(history):
    k = history["kpi"]["models"][0]
    # The scripted history by hand: v1 straight to production (a bypassed gate), v2 canary rolled
    # back by a person; the remediation's streak began one window (600 s) before its window, whose
    # check came 605 s after it started; nothing in the log answers the remediation.
    assert (k["deployments"], k["versions_deployed"], k["versions_rolled_back"]) == (1, 2, 1), k
    assert k["time_to_detect"]["median_s"] == 1205.0, k
    assert (k["exceptions"]["manual_rollbacks"], k["exceptions"]["gates_bypassed"]) == (1, 1), k
    q = board_queries()
    (deploy,) = run_panel(q["Deployments and change failure rate"], history)
    assert (deploy["deployments"], deploy["versions_deployed"], deploy["versions_rolled_back"]) == (
        k["deployments"], k["versions_deployed"], k["versions_rolled_back"])
    assert deploy["change_failure_rate"] == pytest.approx(k["change_failure_rate"])
    (lead,) = run_panel(q["Lead time (registration to production)"], history)
    assert lead["median_lead_time_h"] == pytest.approx(k["lead_time"]["median_s"] / 3600)
    assert lead["mean_lead_time_h"] == pytest.approx(k["lead_time"]["mean_s"] / 3600)
    (incidents,) = run_panel(q["Incidents, time to detect and to remediate"], history)
    assert incidents["incidents"] == k["incidents"] == 1
    assert incidents["median_time_to_detect_min"] == pytest.approx(k["time_to_detect"]["median_s"] / 60)
    assert k["time_to_remediate"]["median_s"] is None and incidents["median_time_to_remediate_min"] == 0
    (exceptions,) = run_panel(q["Governance exceptions"], history)
    assert {name: exceptions[name] for name in ("manual_overrides", "manual_rollbacks", "gates_bypassed")} == {
        name: k["exceptions"][name] for name in ("manual_overrides", "manual_rollbacks", "gates_bypassed")}
    (per_model,) = run_panel(q["KPIs per model"], history)
    assert per_model["model_id"] == "fraud" and per_model["deployments"] == k["deployments"]
    assert per_model["median_lead_time_h"] == pytest.approx(k["lead_time"]["median_s"] / 3600)
    (lineage,) = run_panel(q["Lineage of the versions registered"], history)
    # v1 with complete lineage, v2 with a training run and parent only.
    assert (k["versions_registered"], k["versions_with_lineage"], k["versions_with_complete_lineage"]) == (2, 2, 1)
    assert (lineage["versions_registered"], lineage["versions_with_lineage"], lineage["versions_with_complete_lineage"]) == (
        k["versions_registered"], k["versions_with_lineage"], k["versions_with_complete_lineage"])
    assert lineage["complete_lineage_share"] == pytest.approx(k["complete_lineage_share"])
    per_day = run_panel(q["Deployments per day"], history)
    assert sum(row["deployments"] for row in per_day) == k["deployments"]
