//! The audit report as one self-contained HTML file: tables written here, charts drawn as SVG by
//! a small inline script from the report's own data (no network, no library), so the file reads
//! offline and prints. Every `<svg class="chart">` gets `data-points`, the number of points it
//! drew, which the rendering test checks in headless Chromium.

use std::fmt::Write;

use super::AuditReport;
use crate::stage_name;

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn time(ms: i64) -> String {
    vigil_alerts::rfc3339(ms)
}

fn opt(value: &Option<String>) -> String {
    value.as_deref().map_or_else(|| "—".to_owned(), esc)
}

fn num(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "—".to_owned(), |v| format!("{v:.digits$}"))
}

/// A `<table>` with a header row and escaped cells.
fn table(out: &mut String, headers: &[&str], rows: &[Vec<String>], empty: &str) {
    if rows.is_empty() {
        let _ = writeln!(out, "<p class=\"empty\">{}</p>", esc(empty));
        return;
    }
    out.push_str("<table><thead><tr>");
    for h in headers {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>\n");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
}

/// The whole document.
pub fn render(report: &AuditReport) -> String {
    let r = report;
    let mut out = String::with_capacity(64 * 1024);
    let title = match &r.model_version {
        Some(v) => format!("Audit report: model {} version {v}", r.model_id),
        None => format!("Audit report: model {}", r.model_id),
    };
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>{}</title>\n\
         <meta name=\"vigil-content-sha256\" content=\"{}\">\n<style>{STYLE}</style></head><body>\n\
         <h1>{}</h1>\n<p class=\"period\">Period {} to {} (UTC). Generated {} by vigil {}.</p>\n\
         <p class=\"hash\">Content SHA-256: <code id=\"content-sha256\">{}</code></p>\n",
        esc(&title),
        r.content_sha256,
        esc(&title),
        time(r.from_ms),
        time(r.to_ms),
        time(r.generated_at_ms),
        env!("CARGO_PKG_VERSION"),
        r.content_sha256
    );

    let k = &r.kpis;
    out.push_str("<h2>Key figures</h2>\n<div class=\"kpis\">");
    let hours = |d: &crate::kpi::Durations| d.median_s.map(|s| s / 3600.0);
    for (label, value) in [
        ("Deployments", k.deployments.to_string()),
        ("Deployments per day", format!("{:.3}", k.deployment_frequency_per_day)),
        ("Lead time, median (h)", num(hours(&k.lead_time), 2)),
        ("Change failure rate", num(k.change_failure_rate.map(|v| v * 100.0), 1) + " %"),
        ("Incidents", k.incidents.to_string()),
        ("Time to detect, median (min)", num(k.time_to_detect.median_s.map(|s| s / 60.0), 1)),
        ("Time to remediate, median (min)", num(k.time_to_remediate.median_s.map(|s| s / 60.0), 1)),
        ("Complete lineage", num(k.complete_lineage_share.map(|v| v * 100.0), 1) + " %"),
        ("Governance exceptions", k.exceptions.total().to_string()),
    ] {
        let _ = write!(out, "<div class=\"kpi\"><span>{}</span><b>{}</b></div>", esc(label), esc(&value));
    }
    out.push_str("</div>\n");

    out.push_str(
        "<h2>Drift and performance</h2>\n\
         <figure><figcaption>Drifted features per window</figcaption>\
         <svg class=\"chart\" id=\"chart-drift\" viewBox=\"0 0 760 220\" data-points=\"0\"></svg></figure>\n\
         <figure><figcaption>Accuracy per window (outcomes joined so far)</figcaption>\
         <svg class=\"chart\" id=\"chart-performance\" viewBox=\"0 0 760 220\" data-points=\"0\"></svg></figure>\n\
         <h2>Stage timeline</h2>\n<figure><figcaption>Stage of every version over time (diamonds: retraining requested)</figcaption>\
         <svg class=\"chart\" id=\"chart-timeline\" viewBox=\"0 0 760 220\" data-points=\"0\"></svg></figure>\n",
    );

    out.push_str("<h2>Versions and lineage</h2>\n");
    let rows: Vec<Vec<String>> = r
        .versions
        .iter()
        .map(|v| {
            let l = v.lineage.clone().unwrap_or_default();
            let datasets: Vec<String> = l
                .datasets
                .iter()
                .map(|d| {
                    let mut s = esc(&d.name);
                    if let Some(version) = &d.version {
                        let _ = write!(s, "@{}", esc(version));
                    }
                    if let Some(hash) = &d.sha256 {
                        let _ = write!(s, " <code>{}</code>", esc(&hash[..hash.len().min(12)]));
                    }
                    s
                })
                .collect();
            let tags: Vec<String> = l.tags.iter().map(|(k, v)| format!("{}={}", esc(k), esc(v))).collect();
            vec![
                esc(&v.version),
                esc(&v.stage),
                format!("{} at {}", esc(&v.registered_by), time(v.registered_ms)),
                if v.lineage.is_none() {
                    "<span class=\"warn\">none</span>".into()
                } else if v.lineage_complete {
                    "complete".into()
                } else {
                    "<span class=\"warn\">incomplete</span>".into()
                },
                format!("{}<br><small>{}</small>", opt(&l.training_run_id), opt(&l.training_run_uri)),
                datasets.join("<br>"),
                format!("{}<br><small>{}</small>", opt(&l.code_commit), opt(&l.code_repository)),
                format!(
                    "{}<br><small><code>{}</code></small>",
                    opt(&l.artifact_uri),
                    l.artifact_sha256.as_deref().map_or("—".into(), esc)
                ),
                opt(&l.parent_version),
                opt(&l.team),
                tags.join("<br>"),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "version",
            "stage",
            "registered",
            "lineage",
            "training run",
            "datasets",
            "code",
            "artifact",
            "parent",
            "team",
            "tags",
        ],
        &rows,
        "No version in the registry.",
    );

    out.push_str("<h2>Stage history</h2>\n");
    let rows: Vec<Vec<String>> = r
        .stage_history
        .iter()
        .map(|e| {
            vec![
                time(e.event_time_ms),
                esc(&e.model_version),
                if e.kind == "RETRAIN_REQUESTED" { "retraining requested".into() } else { esc(&e.stage) },
                e.traffic_weight.map_or_else(|| "—".into(), |w| format!("{w}")),
                esc(&e.actor),
                esc(&e.reason),
                opt(&e.remediation_id),
                format!("<small>{}</small>", esc(&e.event_id)),
            ]
        })
        .collect();
    table(
        &mut out,
        &["time (UTC)", "version", "stage", "weight", "subject", "reason", "remediation", "event"],
        &rows,
        "No stage change in the period.",
    );

    out.push_str("<h2>Remediations and their evidence</h2>\n");
    if r.remediations.is_empty() {
        out.push_str("<p class=\"empty\">No remediation in the period.</p>\n");
    }
    for m in &r.remediations {
        let _ = writeln!(
            out,
            "<section class=\"remediation\"><h3>{} <small>version {}, policy {}</small></h3>\n\
             <p>Window from {}: verdict <b>{}</b>, value {:.4} against threshold {:.4}, streak {}, computed {}; \
             reference <code>{}</code>, config <code>{}</code>.</p>\n<p>Detail: <code>{}</code></p>",
            esc(&m.remediation_id),
            esc(&m.model_version),
            esc(&m.policy),
            time(m.window_start_ms),
            esc(&m.verdict),
            m.value,
            m.threshold,
            m.streak,
            time(m.computed_at_ms),
            esc(&m.reference_id),
            esc(&m.config_hash),
            esc(&m.detail.to_string())
        );
        let rows: Vec<Vec<String>> = m
            .features
            .iter()
            .map(|f| {
                vec![
                    esc(&f.feature),
                    esc(&f.test),
                    format!("{:.4}", f.statistic),
                    num(f.p_value, 4),
                    format!("{:.4}", f.threshold),
                    if f.drifted { "<span class=\"warn\">drifted</span>".into() } else { "no".into() },
                ]
            })
            .collect();
        table(
            &mut out,
            &["feature", "test", "statistic", "p-value", "threshold", "drifted"],
            &rows,
            "No per-feature drift tests stored for this window.",
        );
        let did: Vec<String> = m
            .lifecycle
            .iter()
            .map(|e| {
                let what = if e.kind == "RETRAIN_REQUESTED" { "retraining requested" } else { &e.stage };
                format!(
                    "{} {} by {} at {}",
                    esc(&e.model_version),
                    esc(what),
                    esc(&e.actor),
                    time(e.event_time_ms)
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "<p>Lifecycle: {}</p></section>",
            if did.is_empty() { "no change recorded".into() } else { did.join("; ") }
        );
    }

    out.push_str("<h2>Approvals</h2>\n");
    let rows: Vec<Vec<String>> = r
        .approvals
        .iter()
        .map(|a| {
            vec![
                time(a.event_time_ms),
                esc(&a.model_version),
                esc(&a.decision),
                esc(&a.approver),
                esc(&a.stage),
                opt(&a.remediation_id),
                esc(&a.reason),
            ]
        })
        .collect();
    table(
        &mut out,
        &["time (UTC)", "version", "decision", "approver", "stage", "remediation", "reason"],
        &rows,
        "No decision waited for a person in the period.",
    );

    out.push_str("<h2>Alert and pipeline deliveries</h2>\n");
    let rows: Vec<Vec<String>> = r
        .deliveries
        .iter()
        .map(|d| {
            vec![
                time(d.at_ms),
                esc(&d.receiver),
                esc(&d.state),
                esc(&d.severity),
                esc(&d.model_version),
                opt(&d.remediation_id),
                d.attempt.to_string(),
                esc(&d.outcome),
                d.http_status.to_string(),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "time (UTC)",
            "receiver",
            "kind",
            "severity",
            "version",
            "remediation",
            "attempt",
            "outcome",
            "HTTP",
        ],
        &rows,
        "No delivery in the period.",
    );

    let timeline: Vec<serde_json::Value> = r
        .stage_history
        .iter()
        .map(|e| {
            serde_json::json!({"s": e.model_version, "t": e.event_time_ms, "stage": e.stage,
                "retrain": e.kind == "RETRAIN_REQUESTED"})
        })
        .collect();
    let series = |points: &[super::Point]| -> Vec<serde_json::Value> {
        points.iter().map(|p| serde_json::json!({"s": p.model_version, "t": p.t_ms, "v": p.value})).collect()
    };
    let data = serde_json::json!({
        "from": r.from_ms,
        "to": r.to_ms,
        "stages": ["CANDIDATE", "CANARY", "PRODUCTION", "RETIRED", "ROLLED_BACK"],
        "drift": series(&r.series.drift),
        "performance": series(&r.series.performance),
        "timeline": timeline,
    });
    // `</` would end the script element early.
    let data = data.to_string().replace("</", "<\\/");
    let _ = write!(
        out,
        "<p class=\"foot\">Verify: the SHA-256 of this report's JSON (<code>vigil audit report --format json</code>) \
         with <code>content_sha256</code> empty and <code>generated_at_ms</code> 0 is the hash above.</p>\n\
         <script type=\"application/json\" id=\"report-data\">{data}</script>\n<script>{SCRIPT}</script>\n</body></html>\n"
    );
    debug_assert!(stage_name(vigil_events::Stage::Canary) == "CANARY");
    out
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;color:#1d2330;padding:0 1em}\
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #d0d5dd;padding-bottom:.2em;margin-top:1.6em}\
table{border-collapse:collapse;width:100%;font-size:.85em;margin:.5em 0}th,td{border:1px solid #d0d5dd;padding:.3em .5em;text-align:left;vertical-align:top}\
th{background:#f2f4f7}code{font-size:.9em;word-break:break-all}.warn{color:#b42318;font-weight:600}.empty{color:#667085;font-style:italic}\
.kpis{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:.6em}.kpi{border:1px solid #d0d5dd;border-radius:6px;padding:.5em}\
.kpi span{display:block;font-size:.8em;color:#667085}.kpi b{font-size:1.4em}figure{margin:1em 0}figcaption{font-weight:600;margin-bottom:.3em}\
svg.chart{width:100%;height:auto;border:1px solid #e4e7ec;border-radius:6px;background:#fff}.hash code{background:#f2f4f7;padding:.1em .3em}\
.remediation{border-left:3px solid #f79009;padding-left:.8em;margin:1em 0}.foot{margin-top:2em;font-size:.8em;color:#667085}\
@media print{svg.chart{break-inside:avoid}}";

const SCRIPT: &str = r#"
(function () {
  var data = JSON.parse(document.getElementById('report-data').textContent);
  var NS = 'http://www.w3.org/2000/svg';
  var W = 760, H = 220, L = 96, R = 110, T = 14, B = 30;
  var COLORS = ['#2e90fa', '#f79009', '#12b76a', '#7a5af8', '#f04438', '#0ba5ec', '#ee46bc', '#667085'];
  function el(name, attrs, parent) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function text(parent, x, y, s, anchor) {
    var t = el('text', {x: x, y: y, 'font-size': 11, fill: '#475467', 'text-anchor': anchor || 'start'}, parent);
    t.textContent = s;
    return t;
  }
  function day(ms) { return new Date(ms).toISOString().slice(0, 16).replace('T', ' '); }
  function chart(id, points, yMin, yMax, yLabels, draw) {
    var svg = document.getElementById(id);
    var x0 = data.from, x1 = data.to;
    if (points.length) {
      x0 = Math.min.apply(null, points.map(function (p) { return p.t; }));
      x1 = Math.max.apply(null, points.map(function (p) { return p.t; }));
      if (x1 === x0) { x0 -= 60000; x1 += 60000; }
    }
    var sx = function (t) { return L + (t - x0) / (x1 - x0) * (W - L - R); };
    var sy = function (v) { return H - B - (v - yMin) / ((yMax - yMin) || 1) * (H - T - B); };
    el('line', {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: '#98a2b3'}, svg);
    el('line', {x1: L, y1: T, x2: L, y2: H - B, stroke: '#98a2b3'}, svg);
    text(svg, L, H - 8, day(x0));
    text(svg, W - R, H - 8, day(x1), 'end');
    yLabels.forEach(function (l) { text(svg, L - 6, sy(l[0]) + 4, l[1], 'end'); });
    if (!points.length) {
      text(svg, (W - R + L) / 2, H / 2, 'no data in the period', 'middle');
      svg.setAttribute('data-points', '0');
      return;
    }
    var names = [];
    points.forEach(function (p) { if (names.indexOf(p.s) < 0) names.push(p.s); });
    var drawn = 0;
    names.forEach(function (name, i) {
      var color = COLORS[i % COLORS.length];
      var own = points.filter(function (p) { return p.s === name; });
      drawn += draw(svg, own, color, sx, sy);
      text(svg, W - R + 10, T + 14 * (i + 1), name).setAttribute('fill', color);
    });
    svg.setAttribute('data-points', String(drawn));
  }
  function line(svg, own, color, sx, sy, step) {
    var d = '';
    own.forEach(function (p, i) {
      var x = sx(p.t), y = sy(p.v);
      if (i === 0) d += 'M' + x + ',' + y;
      else d += step ? 'H' + x + 'V' + y : 'L' + x + ',' + y;
    });
    el('path', {d: d, fill: 'none', stroke: color, 'stroke-width': 2}, svg);
    own.forEach(function (p) {
      var c = el('circle', {cx: sx(p.t), cy: sy(p.v), r: 3.5, fill: color, 'class': 'point'}, svg);
      el('title', {}, c).textContent = p.s + ' ' + day(p.t) + ': ' + p.v;
    });
    return own.length;
  }
  var maxDrift = Math.max.apply(null, [1].concat(data.drift.map(function (p) { return p.v; })));
  chart('chart-drift', data.drift, 0, maxDrift, [[0, '0'], [maxDrift, String(maxDrift)]],
    function (svg, own, color, sx, sy) { return line(svg, own, color, sx, sy, false); });
  chart('chart-performance', data.performance, 0, 1, [[0, '0'], [0.5, '0.5'], [1, '1']],
    function (svg, own, color, sx, sy) { return line(svg, own, color, sx, sy, false); });
  var stagePoints = data.timeline.map(function (e) {
    return {s: e.s, t: e.t, v: data.stages.indexOf(e.stage), retrain: e.retrain};
  });
  chart('chart-timeline', stagePoints, 0, data.stages.length - 1,
    data.stages.map(function (s, i) { return [i, s]; }),
    function (svg, own, color, sx, sy) {
      var changes = own.filter(function (p) { return !p.retrain; });
      var n = line(svg, changes, color, sx, sy, true);
      own.filter(function (p) { return p.retrain; }).forEach(function (p) {
        var x = sx(p.t), y = sy(p.v);
        el('path', {d: 'M' + x + ',' + (y - 6) + 'L' + (x + 6) + ',' + y + 'L' + x + ',' + (y + 6) + 'L' + (x - 6) + ',' + y + 'Z',
          fill: '#fff', stroke: color, 'stroke-width': 2, 'class': 'point retrain'}, svg);
        n += 1;
      });
      return n;
    });
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained_escaped_and_carries_the_hash() {
        let mut report = super::super::tests::report();
        report.stage_history.push(crate::view::EventView {
            event_id: "e1".into(),
            model_id: "fraud".into(),
            model_version: "v1".into(),
            stage: "PRODUCTION".into(),
            traffic_weight: None,
            reason: "<script>alert(1)</script>".into(),
            actor: "ci".into(),
            remediation_id: None,
            event_time_ms: 1,
            kind: "STAGE_CHANGE".into(),
            lineage: None,
        });
        let report = report.seal();
        let html = render(&report);
        assert!(html.contains(&report.content_sha256));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "escaped in the table");
        assert!(!html.contains("alert(1)</script>"), "and in the data");
        for external in ["http://", "https://", "src="] {
            let outside_svg_ns = html.replace("http://www.w3.org/2000/svg", "");
            assert!(!outside_svg_ns.contains(external), "{external} in a self-contained page");
        }
        assert_eq!(html.matches("class=\"chart\"").count(), 3);
    }
}
