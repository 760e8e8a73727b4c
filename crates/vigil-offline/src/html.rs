//! The HTML report: one self-contained page (inline CSS and SVG, no script, nothing fetched)
//! with a summary, what each test and threshold means, an overview table, and per column the
//! two distributions overlaid and the statistic against its threshold.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write;

use vigil_stats::DriftTest;

use crate::report::{kind_name, number, Chart, ColumnReport, DriftReport, Status};

const REFERENCE_COLOR: &str = "#4c78a8";
const CURRENT_COLOR: &str = "#f58518";
const CHART_WIDTH: f64 = 640.0;
const CHART_HEIGHT: f64 = 220.0;

const STYLE: &str = r#"
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       margin: 0; background: #f6f8fa; }
main { max-width: 1000px; margin: 0 auto; padding: 24px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 10px; }
.files { color: #57606a; margin-bottom: 16px; word-break: break-all; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; }
.card { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 12px 16px; min-width: 150px; }
.card b { display: block; font-size: 26px; }
.card.drift b { color: #cf222e; } .card.ok b { color: #1a7f37; } .card.warn b { color: #9a6700; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid #d0d7de; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #eaeef2; }
th { background: #f6f8fa; font-weight: 600; } td.num { font-variant-numeric: tabular-nums; text-align: right; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
.badge.drift { background: #ffebe9; color: #cf222e; } .badge.no_drift { background: #dafbe1; color: #1a7f37; }
.badge.insufficient_data, .badge.error { background: #fff8c5; color: #9a6700; }
.column { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 14px 18px; margin: 14px 0; }
.column h3 { margin: 0 0 6px; font-size: 16px; } .meta { color: #57606a; margin-bottom: 8px; }
.legend span { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin: 0 4px -1px 12px; }
dl.tests dt { font-weight: 600; margin-top: 8px; } dl.tests dd { margin: 2px 0 0 16px; color: #424a53; }
svg text { font: 11px system-ui, sans-serif; fill: #57606a; }
"#;

pub(crate) fn write(report: &DriftReport, out: &mut impl Write) -> std::io::Result<()> {
    let mut h = String::with_capacity(64 * 1024 + report.columns.len() * 8 * 1024);
    let _ = render(report, &mut h);
    out.write_all(h.as_bytes())
}

fn render(r: &DriftReport, h: &mut String) -> std::fmt::Result {
    write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>vigil drift: {} of {} columns drifted</title><style>{STYLE}</style></head><body><main>",
        r.drifted_columns,
        r.columns.len()
    )?;
    write!(
        h,
        "<h1>Drift report</h1><div class=\"files\">reference <b>{}</b> ({} rows, {}) &middot; current <b>{}</b> ({} rows, {})</div>",
        esc(&r.reference),
        r.reference_rows,
        r.formats[0].name(),
        esc(&r.current),
        r.current_rows,
        r.formats[1].name()
    )?;
    write!(
        h,
        "<div class=\"cards\"><div class=\"card {}\" id=\"summary\"><b>{} of {}</b>columns drifted</div>\
         <div class=\"card ok\"><b>{}</b>columns without drift</div>",
        if r.drifted_columns > 0 { "drift" } else { "ok" },
        r.drifted_columns,
        r.columns.len(),
        r.columns.iter().filter(|c| c.status == Status::NoDrift).count()
    )?;
    if r.insufficient_columns > 0 {
        write!(
            h,
            "<div class=\"card warn\"><b>{}</b>not tested: fewer than {} values on a side</div>",
            r.insufficient_columns, r.min_rows
        )?;
    }
    write!(
        h,
        "<div class=\"card\"><b>{:.2} s</b>reading {:.2} s, testing {:.2} s</div></div>",
        r.seconds[0] + r.seconds[1],
        r.seconds[0],
        r.seconds[1]
    )?;

    // The tests used, with their thresholds and what they mean.
    h.push_str("<h2>Tests and thresholds</h2><dl class=\"tests\">");
    let used: BTreeSet<(&str, u64)> =
        r.columns.iter().map(|c| (c.test.name(), c.threshold.to_bits())).collect();
    for (name, threshold) in used {
        let column = r.columns.iter().find(|c| c.test.name() == name).expect("used by a column");
        let threshold = f64::from_bits(threshold);
        write!(
            h,
            "<dt>{} &mdash; threshold {}</dt><dd>{}</dd>",
            test_title(column.test),
            number(threshold),
            test_meaning(column.test, threshold)
        )?;
    }
    h.push_str("</dl>");

    // Overview.
    h.push_str(
        "<h2>Columns</h2><table><thead><tr><th>column</th><th>type</th><th>test</th>\
         <th>statistic</th><th>p-value</th><th>threshold</th><th>verdict</th></tr></thead><tbody>",
    );
    for (i, c) in r.columns.iter().enumerate() {
        write!(
            h,
            "<tr><td><a href=\"#col{i}\">{}</a></td><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(&c.column),
            kind_name(c.kind),
            c.test.name(),
            c.statistic.map_or("&ndash;".to_owned(), readable),
            c.p_value.map_or("&ndash;".to_owned(), readable_p),
            number(c.threshold),
            badge(c)
        )?;
    }
    h.push_str("</tbody></table>");

    // Per column.
    h.push_str("<h2>Distributions</h2>");
    for (i, c) in r.columns.iter().enumerate() {
        column_card(h, i, c)?;
    }
    h.push_str(
        "<p class=\"meta\">Made by <code>vigil drift</code>. Shares are of each side's values, so \
         files of different sizes compare.</p></main></body></html>\n",
    );
    Ok(())
}

fn column_card(h: &mut String, i: usize, c: &ColumnReport) -> std::fmt::Result {
    write!(h, "<section class=\"column\" id=\"col{i}\"><h3>{} {}</h3>", esc(&c.column), badge(c))?;
    write!(
        h,
        "<div class=\"meta\">{} &middot; {} reference values ({} missing), {} current values ({} missing)</div>",
        kind_name(c.kind),
        c.reference_count,
        c.reference_missing,
        c.current_count,
        c.current_missing
    )?;
    write!(h, "<div class=\"verdict\">{}</div>", verdict_sentence(c))?;
    if let Some(stat) = c.statistic {
        gauge(h, c, stat)?;
    }
    match &c.chart {
        Chart::None => h.push_str("<p class=\"meta\">No finite values to draw.</p>"),
        Chart::Histogram { edges, reference, current } => histogram(h, edges, reference, current)?,
        Chart::Bars { categories, reference, current } => bars(h, categories, reference, current)?,
    }
    write!(
        h,
        "<div class=\"legend\"><span style=\"background:{REFERENCE_COLOR}\"></span>reference\
         <span style=\"background:{CURRENT_COLOR}\"></span>current</div></section>"
    )
}

/// The statistic (or p-value) against the threshold, as a bar with a marker.
fn gauge(h: &mut String, c: &ColumnReport, stat: f64) -> std::fmt::Result {
    let (value, label) = match (c.test.uses_p_value(), c.p_value) {
        (true, Some(p)) => (p, "p-value"),
        _ => (stat, "statistic"),
    };
    if !value.is_finite() {
        return Ok(());
    }
    let scale = if c.test.uses_p_value() { 1.0 } else { (2.0 * c.threshold).max(value.abs()).max(1e-12) };
    let (w, x_t) = (360.0, 360.0 * (c.threshold / scale).clamp(0.0, 1.0));
    let x_v = w * (value.abs() / scale).clamp(0.0, 1.0);
    let fill = if c.drifted { "#cf222e" } else { "#1a7f37" };
    let shown = if label == "p-value" { readable_p(value) } else { readable(value) };
    // SVG text has no superscripts: powers of ten as 3.5e-11.
    let shown = shown.replace(" &times; 10<sup>", "e").replace("10<sup>", "1e").replace("</sup>", "");
    write!(
        h,
        "<svg class=\"gauge\" width=\"520\" height=\"34\" role=\"img\" aria-label=\"{label} against threshold\">\
         <rect x=\"0\" y=\"8\" width=\"{w}\" height=\"10\" rx=\"5\" fill=\"#eaeef2\"/>\
         <rect x=\"0\" y=\"8\" width=\"{x_v:.1}\" height=\"10\" rx=\"5\" fill=\"{fill}\"/>\
         <line x1=\"{x_t:.1}\" x2=\"{x_t:.1}\" y1=\"3\" y2=\"23\" stroke=\"#1f2328\" stroke-width=\"2\"/>\
         <text x=\"{:.1}\" y=\"33\">threshold {}</text><text x=\"372\" y=\"18\">{label} {}</text></svg>",
        (x_t - 30.0).max(0.0),
        number(c.threshold),
        shown
    )
}

fn histogram(h: &mut String, edges: &[f64], reference: &[f64], current: &[f64]) -> std::fmt::Result {
    let (left, bottom, top) = (44.0, CHART_HEIGHT - 28.0, 10.0);
    let plot_w = CHART_WIDTH - left - 10.0;
    let max = reference.iter().chain(current).copied().fold(0.0f64, f64::max).max(1e-12);
    let n = reference.len().max(1) as f64;
    let bw = plot_w / n;
    write!(
        h,
        "<svg class=\"chart histogram\" width=\"{CHART_WIDTH}\" height=\"{CHART_HEIGHT}\" role=\"img\" \
         aria-label=\"histograms of reference and current\">"
    )?;
    axes(h, left, bottom, top, plot_w, max)?;
    for (shares, color) in [(reference, REFERENCE_COLOR), (current, CURRENT_COLOR)] {
        for (k, &s) in shares.iter().enumerate() {
            let height = (bottom - top) * s / max;
            write!(
                h,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\" fill=\"{color}\" fill-opacity=\"0.55\"/>",
                left + bw * k as f64,
                bottom - height,
                (bw - 0.5).max(0.5)
            )?;
        }
    }
    let last = edges.len() - 1;
    for (k, anchor) in [(0, "start"), (last / 2, "middle"), (last, "end")] {
        write!(
            h,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
            left + plot_w * k as f64 / last.max(1) as f64,
            bottom + 16.0,
            readable(edges[k])
        )?;
    }
    h.push_str("</svg>");
    Ok(())
}

fn bars(h: &mut String, categories: &[String], reference: &[f64], current: &[f64]) -> std::fmt::Result {
    let (left, bottom, top) = (44.0, CHART_HEIGHT - 40.0, 10.0);
    let plot_w = CHART_WIDTH - left - 10.0;
    let max = reference.iter().chain(current).copied().fold(0.0f64, f64::max).max(1e-12);
    let slot = plot_w / categories.len().max(1) as f64;
    let bw = (slot * 0.4).min(40.0);
    write!(
        h,
        "<svg class=\"chart bars\" width=\"{CHART_WIDTH}\" height=\"{CHART_HEIGHT}\" role=\"img\" \
         aria-label=\"category shares of reference and current\">"
    )?;
    axes(h, left, bottom, top, plot_w, max)?;
    for (k, name) in categories.iter().enumerate() {
        let center = left + slot * (k as f64 + 0.5);
        for (s, color, dx) in [(reference[k], REFERENCE_COLOR, -bw), (current[k], CURRENT_COLOR, 0.0)] {
            let height = (bottom - top) * s / max;
            write!(
                h,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{height:.1}\" fill=\"{color}\"/>",
                center + dx,
                bottom - height
            )?;
        }
        let label: String = name.chars().take(14).collect();
        write!(
            h,
            "<text x=\"{center:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            bottom + 14.0 + 12.0 * (k % 2) as f64,
            esc(&label)
        )?;
    }
    h.push_str("</svg>");
    Ok(())
}

fn axes(h: &mut String, left: f64, bottom: f64, top: f64, plot_w: f64, max: f64) -> std::fmt::Result {
    write!(
        h,
        "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{bottom}\" y2=\"{bottom}\" stroke=\"#8c959f\"/>\
         <line x1=\"{left}\" x2=\"{left}\" y1=\"{top}\" y2=\"{bottom}\" stroke=\"#8c959f\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.0}%</text>\
         <text x=\"{:.1}\" y=\"{bottom}\" text-anchor=\"end\">0%</text>",
        left + plot_w,
        left - 4.0,
        top + 8.0,
        max * 100.0,
        left - 4.0
    )
}

fn badge(c: &ColumnReport) -> String {
    let text = match c.status {
        Status::Drift => "drift",
        Status::NoDrift => "no drift",
        Status::InsufficientData => "insufficient data",
        Status::Error => "not tested",
    };
    let class = match c.status {
        Status::Drift => "drift",
        Status::NoDrift => "no_drift",
        Status::InsufficientData => "insufficient_data",
        Status::Error => "error",
    };
    format!("<span class=\"badge {class}\">{text}</span>")
}

fn verdict_sentence(c: &ColumnReport) -> String {
    if let Some(e) = &c.error {
        return esc(e);
    }
    let stat = c.statistic.map_or("&ndash;".to_owned(), readable);
    match (c.test.uses_p_value(), c.p_value) {
        (true, Some(p)) => format!(
            "{}: statistic {stat}, p-value <b>{}</b> {} the threshold {}: {}.",
            test_title(c.test),
            readable_p(p),
            if p < c.threshold { "below" } else { "not below" },
            number(c.threshold),
            if c.drifted { "the distributions differ" } else { "no evidence of a difference" }
        ),
        _ => format!(
            "{}: <b>{stat}</b>, {} the threshold {}: {}.",
            test_title(c.test),
            if c.drifted { "at or above" } else { "below" },
            number(c.threshold),
            if c.drifted { "drift" } else { "no drift" }
        ),
    }
}

fn test_title(test: DriftTest) -> &'static str {
    match test {
        DriftTest::Psi => "Population stability index",
        DriftTest::Ks => "Kolmogorov-Smirnov test",
        DriftTest::Wasserstein => "Wasserstein distance",
        DriftTest::WassersteinNormed => "Wasserstein distance (normed)",
        DriftTest::JensenShannon => "Jensen-Shannon distance",
        DriftTest::Hellinger => "Hellinger distance",
        DriftTest::ChiSquare => "Chi-square goodness-of-fit test",
        DriftTest::ChiSquare2Samp => "Chi-square two-sample test",
        DriftTest::CramerVonMises => "Cram\u{e9}r-von Mises test",
        DriftTest::ZTest => "Two-proportion Z-test",
    }
}

fn test_meaning(test: DriftTest, threshold: f64) -> String {
    let t = number(threshold);
    match test {
        DriftTest::Psi => format!(
            "Compares the shares of reference-quantile bins; 0 means identical. Drift when PSI &ge; {t} \
             (by convention below 0.1 is stable, above 0.25 a large shift)."
        ),
        DriftTest::Ks => format!(
            "Largest gap between the two cumulative distributions, with the probability (p-value) of a gap \
             at least as large if both samples came from one distribution. Drift when p &lt; {t}."
        ),
        DriftTest::Wasserstein => format!(
            "Average distance values must move to turn one distribution into the other, in the column's \
             units. Drift when it is &ge; {t}."
        ),
        DriftTest::WassersteinNormed => format!(
            "Average distance values must move to turn the reference into the current distribution, in \
             reference standard deviations. Drift when it is &ge; {t} (at 0.1 the values moved a tenth of \
             a standard deviation on average)."
        ),
        DriftTest::JensenShannon => format!(
            "Distance between the two distributions of shares, base 2: 0 identical, 1 no overlap. Drift \
             when it is &ge; {t}."
        ),
        DriftTest::Hellinger => {
            format!("Distance between the two distributions of shares: 0 identical, 1 no overlap. Drift when &ge; {t}.")
        }
        DriftTest::ChiSquare | DriftTest::ChiSquare2Samp => format!(
            "Whether the current category counts could come from the reference's shares; the p-value is \
             the probability of counts this far off by chance. Drift when p &lt; {t}."
        ),
        DriftTest::CramerVonMises => format!(
            "Squared gaps between the two cumulative distributions, summed; drift when its p-value &lt; {t}."
        ),
        DriftTest::ZTest => format!(
            "Whether the share of the first value changed beyond chance, for two-valued columns. Drift when \
             p &lt; {t}. With large files tiny changes are significant: use --test NAME=jensen_shannon for a \
             distance instead."
        ),
    }
}

/// A statistic, readable: 4 significant decimals, or powers of ten when very small or large.
fn readable(x: f64) -> String {
    if x == 0.0 || (1e-3..1e6).contains(&x.abs()) {
        let s = format!("{x:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        return if s.is_empty() || s == "-" { "0".to_owned() } else { s.to_owned() };
    }
    power_of_ten(x)
}

/// A p-value, readable: 0.0123, or 3.1 &times; 10<sup>-12</sup>; underflowed ones as an upper bound.
fn readable_p(p: f64) -> String {
    if p == 0.0 {
        "&lt; 10<sup>-300</sup>".to_owned()
    } else if p >= 1e-3 {
        format!("{p:.4}").trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        power_of_ten(p)
    }
}

fn power_of_ten(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let e = x.abs().log10().floor() as i32;
    let m = x / 10f64.powi(e);
    format!("{m:.1} &times; 10<sup>{e}</sup>")
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(readable_p(0.04321), "0.0432");
        assert_eq!(readable_p(4.8e-174), "4.8 &times; 10<sup>-174</sup>");
        assert_eq!(readable_p(0.0), "&lt; 10<sup>-300</sup>");
        assert_eq!(readable(0.1), "0.1");
        assert_eq!(readable(-28.1253), "-28.1253");
        assert_eq!(esc("<a&\"b\">"), "&lt;a&amp;&quot;b&quot;&gt;");
    }
}
