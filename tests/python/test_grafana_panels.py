"""Grafana: every dashboard query runs and returns what its panel expects.

Static checks: the provisioning YAML, the dashboards' datasource uids, template variables and
macros, the Prometheus expressions (through `promtool check rules`), and docker-compose.yml's
stack (services, health checks, mounted paths).

Live checks, after one load run on the real Kafka and ClickHouse (`VIGIL_TEST_KAFKA_BROKERS`,
`VIGIL_TEST_CLICKHOUSE_URL`, loopback defaults): a fresh database from `vigil migrate`, `vigil
monitor` with 5 s windows, `vigil loadgen` with outcomes for 30% of the predictions and model-3 v2
drifting halfway, one undecodable message for the dead-letter counter, then a few fixture rows in
lifecycle_events (`vigil lifecycle` writes them; it is not run here). Every ClickHouse query of
every panel, template variable and annotation then runs with the variables and the plugin's
macros replaced by concrete values, on the local server (18.16) and in chdb (current ClickHouse,
with the same rows copied in), and must return rows with the columns listed in EXPECTED_COLUMNS.
The Prometheus panels' metric names must appear in the monitor's /metrics.
"""

import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VIGIL = Path(os.environ.get("VIGIL_BIN", REPO / "target" / "debug" / "vigil"))
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
CLICKHOUSE_URL = os.environ.get("VIGIL_TEST_CLICKHOUSE_URL", "http://127.0.0.1:8123")
BROKERS = os.environ.get("VIGIL_TEST_KAFKA_BROKERS", "127.0.0.1:9092")
CH_TYPE, PROM_TYPE = "grafana-clickhouse-datasource", "prometheus"
DRIFT_MODEL, DRIFT_VERSION = "model-3", "v2"
# The ClickHouse plugin's macros these dashboards may use, as the plugin expands them
# (pkg/macros/macros.go of grafana/clickhouse-datasource). `$__timeInterval` is left out on
# purpose: it expands to toStartOfInterval, which ClickHouse 18.16 does not have.
ALLOWED_MACROS = {"timeFilter", "dateFilter", "fromTime", "toTime"}

# What each query must return, in order: (dashboard uid, what, refId) -> column names. A panel
# added without an entry here fails test_every_query_has_expected_columns.
EXPECTED_COLUMNS = {
    ("vigil-fleet", "Fleet", "A"): ["models", "versions", "windows", "events"],
    ("vigil-fleet", "Policy verdicts", "A"): ["breach", "healthy", "insufficient_data"],
    ("vigil-fleet", "Remediations sent", "A"): ["remediations"],
    ("vigil-fleet", "Latest window per model version", "A"): [
        "model_id", "model_version", "latest_window", "events", "late_events", "latency_p99_ms", "score_mean",
        "verdict", "drifted_features", "tested_features", "streak", "windows"],
    ("vigil-fleet", "Events per window", "A"): ["time", "version", "events"],
    ("vigil-fleet", "Drifted features per window", "A"): ["time", "version", "drifted_features"],
    ("vigil-fleet", "Policy verdicts per window", "A"): ["time", "verdict", "checks"],
    ("vigil-fleet", "Drifted features", "A"): [
        "model_id", "model_version", "feature", "test", "drifted_windows", "tested_windows", "max_statistic",
        "min_p_value", "last_drifted_window"],
    ("vigil-fleet", "Remediations", "A"): [
        "window_start", "model_id", "model_version", "policy", "remediation_id", "drifted_features", "streak", "events",
        "detail", "computed_at"],
    ("vigil-model", "variable model", "-"): ["model_id"],
    ("vigil-model", "variable version", "-"): ["model_version"],
    ("vigil-model", "variable segment", "-"): ["segment_label"],
    ("vigil-model", "variable feature", "-"): ["feature"],
    ("vigil-model", "annotation Lifecycle", "Lifecycle"): ["time", "text", "tags"],
    ("vigil-model", "annotation Remediations", "Remediations"): ["time", "text", "tags"],
    ("vigil-model", "Events per window", "A"): ["time", "series", "events"],
    ("vigil-model", "Serving latency", "A"): ["time", "series", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms"],
    ("vigil-model", "Score mean", "A"): ["time", "series", "score_mean"],
    ("vigil-model", "Late events and missing features", "A"): ["time", "series", "late_events", "features_missing"],
    ("vigil-model", "Drift statistic per feature", "A"): ["time", "series", "statistic"],
    ("vigil-model", "Drift p-value per feature", "A"): ["time", "series", "p_value"],
    ("vigil-model", "Drifted features (policy)", "A"): ["time", "version", "drifted_features"],
    ("vigil-model", "Drift tests in the latest window", "A"): [
        "window_start", "model_version", "segment_label", "feature", "test", "statistic", "p_value", "error_bound",
        "threshold", "drifted", "current_count", "reference_id"],
    ("vigil-model", "Accuracy, precision, recall, F1", "A"): ["time", "series", "accuracy", "precision", "recall", "f1"],
    ("vigil-model", "AUC", "A"): ["time", "series", "auc"],
    ("vigil-model", "Calibration: Brier score and ECE", "A"): ["time", "series", "brier", "ece"],
    ("vigil-model", "Regression error: MAE and RMSE", "A"): ["time", "series", "mae", "rmse"],
    ("vigil-model", "Label coverage", "A"): ["time", "series", "coverage"],
    ("vigil-lifecycle", "variable model", "-"): ["model_id"],
    ("vigil-lifecycle", "Stage changes", "A"): ["stage_changes", "rollbacks", "promotions", "canary_steps"],
    ("vigil-lifecycle", "Remediations", "A"): ["remediations"],
    ("vigil-lifecycle", "Stage per model version", "A"): ["time", "version", "stage_code"],
    ("vigil-lifecycle", "Canary traffic weight", "A"): ["time", "version", "traffic_weight"],
    ("vigil-lifecycle", "Lifecycle events", "A"): [
        "time", "model_id", "model_version", "stage", "traffic_weight", "reason", "actor", "remediation", "event_id"],
    ("vigil-lifecycle", "Remediations and what the lifecycle did", "A"): [
        "window_start", "model_id", "model_version", "remediation_id", "drifted_features", "detail", "lifecycle_stage",
        "lifecycle_time", "lifecycle_reason"],
    # The KPI dashboard; test_governance.py also checks its numbers against `vigil kpi`.
    ("vigil-kpis", "variable model", "-"): ["model_id"],
    ("vigil-kpis", "Deployments and change failure rate", "A"): [
        "deployments", "versions_deployed", "versions_rolled_back", "change_failure_rate"],
    ("vigil-kpis", "Lead time (registration to production)", "A"): [
        "deployments", "mean_lead_time_h", "median_lead_time_h"],
    ("vigil-kpis", "Incidents, time to detect and to remediate", "A"): [
        "incidents", "median_time_to_detect_min", "median_time_to_remediate_min"],
    ("vigil-kpis", "Governance exceptions", "A"): ["manual_overrides", "manual_rollbacks", "gates_bypassed"],
    ("vigil-kpis", "Lineage of the versions registered", "A"): [
        "versions_registered", "versions_with_lineage", "versions_with_complete_lineage", "complete_lineage_share"],
    ("vigil-kpis", "Deployments per day", "A"): ["time", "deployments"],
    ("vigil-kpis", "KPIs per model", "A"): [
        "model_id", "deployments", "versions_deployed", "versions_rolled_back", "change_failure_rate",
        "median_lead_time_h", "gates_bypassed"],
}


# ---- the dashboards, read once ---------------------------------------------------------------

def load_dashboards() -> dict[str, dict]:
    boards = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        boards[board["uid"]] = board
    return boards


BOARDS = load_dashboards()


@dataclass(frozen=True)
class Query:
    board: str
    what: str
    ref: str
    text: str
    series: bool  # the plugin's time-series format: a `time` column first

    @property
    def key(self):
        return (self.board, self.what, self.ref)

    def __str__(self):
        return f"{self.board}: {self.what} [{self.ref}]"


def panels(board: dict):
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def datasource_type(ds) -> str:
    return ds.get("type", "") if isinstance(ds, dict) else ""


def clickhouse_queries() -> list[Query]:
    queries = []
    for uid, board in BOARDS.items():
        for var in board.get("templating", {}).get("list", []):
            if datasource_type(var.get("datasource")) == CH_TYPE:
                queries.append(Query(uid, f"variable {var['name']}", "-", var["query"], False))
        for ann in board.get("annotations", {}).get("list", []):
            if datasource_type(ann.get("datasource")) == CH_TYPE:
                t = ann["target"]
                queries.append(Query(uid, f"annotation {ann['name']}", t["refId"], t["rawSql"], False))
        for panel in panels(board):
            for t in panel.get("targets", []):
                if datasource_type(t.get("datasource", panel.get("datasource"))) == CH_TYPE:
                    queries.append(Query(uid, panel["title"], t["refId"], t["rawSql"], t.get("format") == 0))
    return queries


def prometheus_exprs() -> list[tuple[str, str]]:
    exprs = []
    for uid, board in BOARDS.items():
        for panel in panels(board):
            for t in panel.get("targets", []):
                if datasource_type(t.get("datasource", panel.get("datasource"))) == PROM_TYPE:
                    exprs.append((f"{uid}: {panel['title']} [{t['refId']}]", t["expr"]))
    return exprs


CH_QUERIES = clickhouse_queries()


# ---- static checks ---------------------------------------------------------------------------

def provisioned_datasources() -> dict[str, dict]:
    found = {}
    for path in sorted((GRAFANA / "provisioning" / "datasources").glob("*.y*ml")):
        doc = yaml.safe_load(path.read_text())
        assert doc["apiVersion"] == 1, path
        for ds in doc["datasources"]:
            assert {"name", "uid", "type"} <= ds.keys(), f"{path}: {ds}"
            assert ds["uid"] not in found, f"duplicate datasource uid {ds['uid']}"
            found[ds["uid"]] = ds
    return found


def dashboard_provider() -> dict:
    paths = sorted((GRAFANA / "provisioning" / "dashboards").glob("*.y*ml"))
    assert len(paths) == 1, paths
    doc = yaml.safe_load(paths[0].read_text())
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")
    return provider


def test_provisioning_yaml_is_valid():
    datasources = provisioned_datasources()
    by_type = {ds["type"]: ds for ds in datasources.values()}
    assert set(by_type) == {CH_TYPE, PROM_TYPE}
    ch = by_type[CH_TYPE]["jsonData"]
    assert ch["protocol"] in ("http", "native") and isinstance(ch["port"], int) and ch["host"]
    assert ch["defaultDatabase"] == "vigil", "panels name tables without a database: the datasource picks it"
    assert by_type[PROM_TYPE]["url"].startswith("http://")
    assert sum(bool(ds.get("isDefault")) for ds in datasources.values()) == 1
    dashboard_provider()


def test_dashboards_use_the_provisioned_datasources():
    uids = {uid: ds["type"] for uid, ds in provisioned_datasources().items()}
    assert set(BOARDS) == {"vigil-fleet", "vigil-model", "vigil-lifecycle", "vigil-pipeline", "vigil-kpis"}
    for uid, board in BOARDS.items():
        refs = []
        for panel in panels(board):
            if panel["type"] == "row":
                continue
            refs.append((panel["title"], panel.get("datasource")))
            refs += [(panel["title"], t.get("datasource", panel.get("datasource"))) for t in panel["targets"]]
            assert panel["targets"], f"{uid}: {panel['title']} has no query"
        refs += [(f"variable {v['name']}", v.get("datasource")) for v in board["templating"]["list"]]
        refs += [(f"annotation {a['name']}", a["datasource"]) for a in board["annotations"]["list"] if not a.get("builtIn")]
        for what, ds in refs:
            assert isinstance(ds, dict), f"{uid}: {what} must name its datasource by uid, not {ds!r}"
            assert uids.get(ds.get("uid")) == ds.get("type"), f"{uid}: {what} uses {ds}, provisioned: {uids}"


def test_dashboards_are_well_formed():
    for uid, board in BOARDS.items():
        ids = [p["id"] for p in panels(board)]
        assert len(ids) == len(set(ids)), f"{uid}: duplicate panel ids"
        titles = [p["title"] for p in panels(board) if p["type"] != "row"]
        assert len(titles) == len(set(titles)), f"{uid}: panel titles must be unique (tests key on them)"
        for p in panels(board):
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24, f"{uid}: {p['title']} is wider than the grid"
        names = {v["name"] for v in board["templating"]["list"]}
        for q in [q for q in CH_QUERIES if q.board == uid]:
            used = set(re.findall(r"\$\{(\w+)(?::\w+)?\}", q.text)) | set(re.findall(r"\$(?!__)(\w+)", q.text))
            assert used <= names, f"{q}: unknown variables {used - names}"
            macros = set(re.findall(r"\$__(\w+)", q.text))
            assert macros <= ALLOWED_MACROS, f"{q}: macros {macros - ALLOWED_MACROS} are not documented/supported"
            assert not re.search(r"\bvigil\.\w+", q.text), f"{q}: tables come from the datasource's defaultDatabase"


def test_every_query_has_expected_columns():
    keys = [q.key for q in CH_QUERIES]
    assert len(keys) == len(set(keys)), "two queries share a (dashboard, panel, refId)"
    assert set(keys) == set(EXPECTED_COLUMNS), (
        f"no expectation for {set(keys) - set(EXPECTED_COLUMNS)}; stale: {set(EXPECTED_COLUMNS) - set(keys)}")
    for q in CH_QUERIES:
        if q.series:
            assert EXPECTED_COLUMNS[q.key][0] == "time", f"{q}: time series need a time column first"


def grafana_prometheus_expr(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced, as Prometheus would get it."""
    for name, value in {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "$instance": ".*"}.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unhandled variable in {expr}"
    return expr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (deploy/local/up installs it)")
def test_prometheus_expressions_parse(tmp_path):
    exprs = prometheus_exprs()
    assert len(exprs) >= 10
    rules = {"groups": [{"name": "grafana-dashboards", "rules": [
        {"record": f"vigil_dashboard_expr_{i}", "expr": grafana_prometheus_expr(e)} for i, (_, e) in enumerate(exprs)]}]}
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    out = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def bind_mounts(service: dict) -> list[tuple[str, str]]:
    mounts = []
    for v in service.get("volumes", []):
        source, target = v.split(":")[:2]
        if source.startswith("./"):
            mounts.append((source, target))
    return mounts


def test_compose_runs_the_whole_stack():
    doc = compose()
    services = doc["services"]
    assert {"kafka", "clickhouse", "prometheus", "grafana", "vigil-migrate", "vigil-monitor", "vigil-lifecycle",
            "vigil-loadgen"} <= set(services)
    for name, service in services.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy; it has no healthcheck"
            else:
                assert spec["condition"] == "service_completed_successfully", f"{name}: {spec}"
                assert services[dep].get("restart") == "no", f"{dep} must run once for {name} to wait for it"
        for source, _ in bind_mounts(service):
            assert (REPO / source).exists(), f"{name} mounts {source}, which does not exist"
        for check in [service.get("healthcheck")] if "healthcheck" in service else []:
            assert check["test"][0] in ("CMD", "CMD-SHELL") and check["interval"], f"{name}: {check}"
    for name in ("vigil-monitor", "vigil-lifecycle", "vigil-loadgen", "vigil-migrate", "prometheus", "grafana"):
        assert services[name].get("depends_on"), f"{name} must wait for what it needs"
    volumes = set(doc.get("volumes") or {})
    for name, service in services.items():
        for v in service.get("volumes", []):
            source = v.split(":")[0]
            assert source.startswith("./") or source in volumes, f"{name}: volume {source} is not declared"


def test_compose_grafana_gets_the_provisioning():
    doc = compose()
    grafana = doc["services"]["grafana"]
    env = grafana["environment"]
    assert CH_TYPE in env["GF_INSTALL_PLUGINS"]
    mounts = dict(bind_mounts(grafana))
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["./deploy/grafana/dashboards"] == dashboard_provider()["options"]["path"]
    home = env.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert (DASHBOARDS / Path(home).name).exists() and home.startswith(dashboard_provider()["options"]["path"])
    # The datasources point at compose services, on ports those containers listen on.
    for ds in provisioned_datasources().values():
        if ds["type"] == CH_TYPE:
            host, port = ds["jsonData"]["host"], ds["jsonData"]["port"]
        else:
            url = urllib.parse.urlsplit(ds["url"])
            host, port = url.hostname, url.port
        assert host in doc["services"], f"{ds['name']} points at {host}, not a compose service"
        published = [p.split(":")[-1] for p in doc["services"][host].get("ports", [])]
        assert str(port) in published, f"{ds['name']}: {host} does not listen on {port} ({published})"
    # Prometheus scrapes the monitor (and whatever else it lists) by compose service name.
    prom = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    for job in prom["scrape_configs"]:
        for target in [t for sc in job["static_configs"] for t in sc["targets"]]:
            assert target.split(":")[0] in doc["services"], f"prometheus scrapes {target}, not a compose service"


def vigil_invocations(service: dict) -> list[list[str]]:
    """The vigil command lines a compose service runs: its command, or each `vigil ...` line of
    its shell script (entrypoint /bin/sh)."""
    if service.get("entrypoint", ["vigil"])[0] != "/bin/sh":
        return [service["command"]]
    return [line.split()[1:] for line in service["command"][-1].splitlines() if line.strip().startswith("vigil ")]


def test_compose_vigil_commands_exist():
    doc = compose()
    for name, service in doc["services"].items():
        if not name.startswith("vigil-"):
            continue
        invocations = vigil_invocations(service)
        assert invocations, f"{name} runs no vigil command"
        for command in invocations:
            assert command[:2] == ["--config", "/etc/vigil/vigil.toml"], f"{name}: {command}"
            words = list(itertools.takewhile(lambda w: not w.startswith("-"), command[2:]))
            help_text = subprocess.run([str(VIGIL), *words[:1], "--help"], capture_output=True, text=True, check=True,
                                       env=vigil_free_env()).stdout
            if len(words) > 1 and "Commands:" in help_text:
                assert re.search(rf"^\s+{re.escape(words[1])}\s", help_text, re.M), f"{name}: no vigil {' '.join(words)}"
            options = re.findall(r"--[a-z-]+", " ".join(command[2:]))
            sub_help = subprocess.run([str(VIGIL), *words, "--help"], capture_output=True, text=True, check=True,
                                      env=vigil_free_env()).stdout
            for option in set(options) - {"--config"}:
                assert re.search(re.escape(option) + r"(?![a-z-])", sub_help), f"{name}: vigil {' '.join(words)} has no {option}"


def test_compose_register_script_runs_twice():
    """vigil-register's script, on the real broker with this test's own topics: the second run
    (a `docker compose up` after a stop) must leave the registry as the first made it."""
    need_stack()
    script = compose()["services"]["vigil-register"]["command"][-1]
    name = f"grafana_register_{os.getpid()}_{time.time_ns() % 1_000_000_000}"
    topics = {"LIFECYCLE": f"it.{name}.lifecycle", "REMEDIATIONS": f"it.{name}.remediations"}
    bin_dir = Path(tempfile.mkdtemp())
    (bin_dir / "vigil").symlink_to(VIGIL.resolve())
    env = vigil_free_env() | {f"VIGIL__TOPICS__{k}": t for k, t in topics.items()} | {
        "VIGIL__KAFKA__BROKERS": BROKERS, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RUST_LOG": "warn"}
    # Compose's $$ is a literal $; the config is the one compose mounts at /etc/vigil/vigil.toml.
    script = script.replace("$$", "$").replace("/etc/vigil/vigil.toml", str(REPO / "deploy" / "local" / "vigil.toml"))
    try:
        for _ in range(2):
            out = subprocess.run(["/bin/sh", "-ec", script], env=env, capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stdout + out.stderr
        state = json.loads(subprocess.run(
            [str(VIGIL), "--config", str(REPO / "deploy" / "local" / "vigil.toml"), "lifecycle", "state", "--json"],
            env=env, capture_output=True, text=True, check=True, timeout=60).stdout)
        stages = sorted((m["model_id"], v["version"], v["stage"]) for m in state["models"] for v in m["versions"])
        assert stages == [(f"model-{i}", v, s) for i in (1, 2, 3) for v, s in (("v1", "PRODUCTION"), ("v2", "CANARY"))]
    finally:
        shutil.rmtree(bin_dir, ignore_errors=True)
        delete_topics(topics.values())


def vigil_free_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("VIGIL")}


# ---- the load run ------------------------------------------------------------------------------

def clickhouse(sql: str, database: str | None = None, timeout: float = 30, **settings) -> str:
    params = ({"database": database} if database else {}) | settings
    url = CLICKHOUSE_URL.rstrip("/") + "/?" + urllib.parse.urlencode(params)
    request = urllib.request.Request(url, data=sql.encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read().decode()
    except urllib.error.HTTPError as e:
        raise AssertionError(f"clickhouse: {e.read().decode().strip()}\n--- query:\n{sql}") from None


def reachable(host_port: str) -> bool:
    host, port = host_port.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def wait_for(what: str, check, timeout: float, process=None, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"vigil monitor exited ({process.returncode}) while waiting for {what}\n{tail(log)}")
        try:
            if check():
                return
        except (OSError, AssertionError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{tail(log)}")


def tail(path) -> str:
    if path is None or not Path(path).exists():
        return ""
    return "--- monitor log (last lines):\n" + "\n".join(Path(path).read_text(errors="replace").splitlines()[-30:])


def stop(process: subprocess.Popen, timeout: float = 30):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def need_stack():
    """Skips without the local Kafka and ClickHouse, except where they must be there (CI, or
    deploy/local/test, which sets VIGIL_TEST_CLICKHOUSE_URL)."""
    clickhouse_host = urllib.parse.urlsplit(CLICKHOUSE_URL).netloc
    if not (reachable(clickhouse_host) and reachable(BROKERS.split(",")[0])):
        if os.environ.get("CI") or os.environ.get("VIGIL_TEST_CLICKHOUSE_URL"):
            pytest.fail(f"kafka {BROKERS} or clickhouse {CLICKHOUSE_URL} not reachable")
        pytest.skip("no local stack (deploy/local/up starts it)")


def delete_topics(topics):
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": BROKERS})
    for future in admin.delete_topics(list(topics), operation_timeout=10).values():
        try:
            future.result(timeout=15)
        except Exception:  # a topic nobody created: nothing to delete
            pass


@dataclass
class Run:
    database: str
    time_from: int
    time_to: int
    metrics: str


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    need_stack()
    from confluent_kafka import Producer

    name = f"grafana_{os.getpid()}_{time.time_ns() % 1_000_000_000}"
    database = f"it_{name}"
    topics = {k: f"it.{name}.{k}" for k in ("predictions", "outcomes", "deadletter", "remediations", "lifecycle")}
    http_port = free_port()
    env = vigil_free_env() | {f"VIGIL__TOPICS__{k.upper()}": t for k, t in topics.items()} | {
        "VIGIL__KAFKA__BROKERS": BROKERS,
        "VIGIL__CLICKHOUSE__URL": CLICKHOUSE_URL,
        "VIGIL__CLICKHOUSE__DATABASE": database,
        "VIGIL__MONITOR__GROUP_ID": f"it-{name}",
        "VIGIL__LIFECYCLE__GROUP_ID": f"it-{name}-lifecycle",
        # The quickstart's short windows, so a 20 s run closes several.
        "VIGIL__MONITOR__WINDOW_SECONDS": "5",
        "VIGIL__MONITOR__ALLOWED_LATENESS_SECONDS": "1",
        "VIGIL__MONITOR__BASELINE_MIN_EVENTS": "500",
        "VIGIL__MONITOR__FLUSH_INTERVAL_MS": "200",
        "VIGIL__MONITOR__SEGMENT_TAGS": "country",
        "VIGIL__MONITOR__POLICY__CONSECUTIVE_WINDOWS": "1",
        "VIGIL__HTTP__LISTEN": f"127.0.0.1:{http_port}",
        "RUST_LOG": "warn",
    }
    log = tmp_path_factory.mktemp("grafana") / "monitor.log"
    started = int(time.time())
    monitor = None
    try:
        subprocess.run([str(VIGIL), "migrate"], env=env, check=True, capture_output=True, timeout=60)
        with open(log, "w") as log_file:
            monitor = subprocess.Popen([str(VIGIL), "monitor"], env=env, stdout=subprocess.DEVNULL, stderr=log_file)
        metrics_url = f"http://127.0.0.1:{http_port}"
        wait_for("the monitor to be ready", lambda: http_get(metrics_url + "/health/readyz") is not None, 60,
                 monitor, log)
        producer = Producer({"bootstrap.servers": BROKERS})
        producer.produce(topics["predictions"], key=b"model-1", value=b"not an avro event")
        assert producer.flush(10) == 0, "undecodable message not delivered"
        load = subprocess.run(
            [str(VIGIL), "loadgen", "--rate", "2000", "--duration", "20s", "--seed", str(started),
             "--drift-model", DRIFT_MODEL, "--drift-version", DRIFT_VERSION, "--drift-after", "10s",
             "--label-rate", "0.3", "--label-delay", "1s"],
            env=env, capture_output=True, text=True, timeout=120)
        assert load.returncode == 0, load.stderr

        def rows_are_in():
            drift = clickhouse(f"SELECT count() FROM policy_checks WHERE model_id = '{DRIFT_MODEL}' "
                               f"AND model_version = '{DRIFT_VERSION}' AND remediation_id != ''", database)
            performance = clickhouse(f"SELECT count() FROM window_performance WHERE model_id = '{DRIFT_MODEL}' "
                                     "AND labeled > 0", database)
            return int(drift) > 0 and int(performance) > 0
        wait_for("a remediation and performance rows for the drifting model", rows_are_in, 60, monitor, log)
        metrics = http_get(metrics_url + "/metrics")
        stop(monitor)
        assert monitor.returncode == 0, f"monitor exit {monitor.returncode}\n{tail(log)}"
        insert_fixtures(database, started)
        yield Run(database, started - 600, int(time.time()) + 600, metrics)
    finally:
        if monitor is not None:
            stop(monitor, timeout=10)
        try:
            clickhouse(f"DROP DATABASE IF EXISTS {database}")
        finally:
            delete_topics(topics.values())


def printed_ddl(server_version: str) -> list[str]:
    """`vigil migrate --print-ddl`'s statements (database vigil), comments dropped."""
    printed = subprocess.run([str(VIGIL), "migrate", "--print-ddl", server_version], check=True, capture_output=True,
                             text=True, env=vigil_free_env()).stdout
    statements = ("\n".join(l for l in chunk.splitlines() if not l.startswith("--")).strip() for chunk in printed.split(";"))
    return [st for st in statements if st]


def lifecycle_events_ddl(database: str, server_version: str) -> str:
    """The lifecycle_events DDL: what `vigil migrate --print-ddl` prints once the table is a store
    migration (8), else the DDL text in the crates' source (crates/vigil-lifecycle/src/audit.rs
    had it before the migration), so the panels are tested against the real table either way."""
    for statement in printed_ddl(server_version):
        if ".lifecycle_events (" in statement:
            return statement.replace("vigil.lifecycle_events", f"{database}.lifecycle_events")
    name_type = "String" if server_version.startswith("18.") else "LowCardinality(String)"
    for source in ("vigil-lifecycle/src/audit.rs", "vigil-store/src/schema.rs"):
        text = (REPO / "crates" / source).read_text()
        match = re.search(r'"(CREATE TABLE IF NOT EXISTS \{(?:database|db)\}\.lifecycle_events \(.*?)"', text, re.S)
        if match:
            return re.sub(r"\{(?:database|db)\}", database, match.group(1)).replace("{name_type}", name_type)
    raise AssertionError("no lifecycle_events DDL printed by vigil migrate nor in the sources")


def insert_fixtures(database: str, started: int):
    """Lifecycle events (written by `vigil lifecycle`, not run here), so the lifecycle panels are
    exercised with rows: model-3 v2 as a canary rolled back by the monitor's remediation."""
    tables = set(clickhouse("SHOW TABLES", database).split())
    if "lifecycle_events" not in tables:
        clickhouse(lifecycle_events_ddl(database, "18.16"))
    remediation = clickhouse(
        f"SELECT remediation_id FROM policy_checks FINAL WHERE model_id = '{DRIFT_MODEL}' AND "
        f"model_version = '{DRIFT_VERSION}' AND remediation_id != '' ORDER BY window_start LIMIT 1", database).strip()
    events = [  # (seconds after the start, version, stage, weight, reason, remediation)
        (0, "v1", "PRODUCTION", "NULL", "registered", "NULL"),
        (1, DRIFT_VERSION, "CANARY", "0.1", "registered", "NULL"),
        (2, DRIFT_VERSION, "CANARY", "0.2", "healthy window", "NULL"),
        (30, DRIFT_VERSION, "ROLLED_BACK", "NULL", "canary rolled back", f"'{remediation}'"),
    ]
    values = ",\n".join(
        f"('grafana-test-{i}', '{DRIFT_MODEL}', '{version}', '{stage}', {weight}, '{reason}', 'grafana-test', "
        f"{rem}, {(started + dt) * 1000}, '{utc_day(started + dt)}', 0, {i}, toDateTime({started + dt}))"
        for i, (dt, version, stage, weight, reason, rem) in enumerate(events))
    clickhouse("INSERT INTO lifecycle_events (event_id, model_id, model_version, stage, traffic_weight, reason, actor, "
               f"remediation_id, event_time_ms, event_date, source_partition, source_offset, written_at) VALUES\n{values}",
               database)


def utc_day(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d")


# ---- the panel queries, made concrete ----------------------------------------------------------

def expand_macros(sql: str, time_from: int, time_to: int) -> str:
    """The plugin's macros, expanded as the plugin does (pkg/macros/macros.go)."""
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)",
                 lambda m: f"{m[1].strip()} >= toDateTime({time_from}) AND {m[1].strip()} <= toDateTime({time_to})", sql)
    sql = re.sub(r"\$__dateFilter\(([^)]+)\)",
                 lambda m: f"{m[1].strip()} >= toDate('{utc_day(time_from)}') AND {m[1].strip()} <= toDate('{utc_day(time_to)}')",
                 sql)
    sql = sql.replace("$__fromTime", f"toDateTime({time_from})").replace("$__toTime", f"toDateTime({time_to})")
    assert "$__" not in sql, sql
    return sql


def substitute(sql: str, values: dict[str, list[str]]) -> str:
    """Grafana's variable interpolation for the forms these dashboards use."""
    def value(name, fmt):
        chosen = values[name]
        if fmt == "singlequote":
            return ",".join("'" + v.replace("'", "\\'") + "'" for v in chosen)
        assert fmt is None and len(chosen) == 1, f"${name}:{fmt}"
        return chosen[0]
    sql = re.sub(r"\$\{(\w+)(?::(\w+))?\}", lambda m: value(m[1], m[2]), sql)
    sql = re.sub(r"\$(?!__)(\w+)", lambda m: value(m[1], None), sql)
    return sql


def concrete(q: Query, values: dict[str, list[str]], r: Run) -> str:
    return expand_macros(substitute(q.text, values), r.time_from, r.time_to)


def run_on_server(sql: str, database: str) -> dict:
    return json.loads(clickhouse(sql + "\nFORMAT JSONCompact", database))


@pytest.fixture(scope="module")
def variables(run) -> dict[str, dict[str, list[str]]]:
    """Values for every dashboard's template variables, from their own queries: the drifting
    model for a single-valued variable, every value for a multi-valued one (Grafana's All)."""
    chosen = {}
    for uid, board in BOARDS.items():
        values: dict[str, list[str]] = {}
        for var in board["templating"]["list"]:
            if datasource_type(var["datasource"]) != CH_TYPE:
                continue
            sql = concrete(Query(uid, var["name"], "-", var["query"], False), values, run)
            options = [row[0] for row in run_on_server(sql, run.database)["data"]]
            assert options, f"{uid}: variable {var['name']} has no values:\n{sql}"
            if var.get("multi"):
                values[var["name"]] = options
            else:
                values[var["name"]] = [DRIFT_MODEL if DRIFT_MODEL in options else options[0]]
        chosen[uid] = values
    return chosen


def check_result(q: Query, result: dict, sql: str):
    names = [c["name"] for c in result["meta"]]
    assert names == EXPECTED_COLUMNS[q.key], f"{q}: columns {names}\n{sql}"
    if q.series:
        assert result["meta"][0]["type"] in ("DateTime", "Nullable(DateTime)"), f"{q}: time is {result['meta'][0]}"
    assert result["data"], f"{q}: no rows\n{sql}"


@pytest.mark.parametrize("q", CH_QUERIES, ids=str)
def test_panel_query_on_clickhouse_18_16(q, run, variables):
    sql = concrete(q, variables[q.board], run)
    check_result(q, run_on_server(sql, run.database), sql)


BINARY_STATE_TABLES = {"window_partials", "reference_profiles", "reference_profiles_v2"}


@pytest.fixture(scope="module")
def current_clickhouse(run, tmp_path_factory):
    """chdb (current ClickHouse) with the schema `vigil migrate` makes on a current server and the
    load run's rows copied in."""
    from chdb import session as chs
    s = chs.Session(str(tmp_path_factory.mktemp("chdb") / "db"))
    statements = printed_ddl("24.8")
    if not any(".lifecycle_events (" in st for st in statements):
        statements.append(lifecycle_events_ddl("vigil", "24.8"))
    for statement in statements:
        s.query(statement)
    s.query("USE vigil")
    for table in clickhouse("SHOW TABLES", run.database).split():
        columns = [line.split("\t")[0] for line in clickhouse(f"DESCRIBE TABLE {table}", run.database).splitlines()]
        # Window states are binary (MessagePack), not text JSON can carry, and no panel reads them:
        # they stay empty in the copy.
        selected = ", ".join(c for c in columns if not (c == "state" and table in BINARY_STATE_TABLES))
        rows = clickhouse(f"SELECT {selected} FROM {table} FORMAT JSONEachRow", run.database,
                          output_format_json_quote_64bit_integers=0)
        if rows.strip():
            # The local server runs in UTC (deploy/local/clickhouse), so its DateTime text is UTC.
            s.query(f"INSERT INTO vigil.{table} SETTINGS session_timezone = 'UTC' FORMAT JSONEachRow\n{rows}")
    yield s
    s.close()


@pytest.mark.parametrize("q", CH_QUERIES, ids=str)
def test_panel_query_on_current_clickhouse(q, run, variables, current_clickhouse):
    sql = concrete(q, variables[q.board], run)
    try:
        text = current_clickhouse.query(sql, "JSONCompact").bytes().decode()
    except Exception as e:
        raise AssertionError(f"{q}: current ClickHouse refuses it: {e}\n{sql}") from None
    check_result(q, json.loads(text), sql)


def test_prometheus_metrics_exist(run):
    exposed = {line.split("{")[0].split(" ")[0] for line in run.metrics.splitlines() if line and line[0] != "#"}
    used = set()
    for _, expr in prometheus_exprs():
        used |= set(re.findall(r"\bvigil_[a-z0-9_]+", expr))
    for var in BOARDS["vigil-pipeline"]["templating"]["list"]:
        used |= set(re.findall(r"\bvigil_[a-z0-9_]+", var["definition"]))
    assert used, "no vigil metrics in the pipeline dashboard"
    assert used <= exposed, f"not in the monitor's /metrics: {sorted(used - exposed)}"
