//! Results and how they are written: JSON (everything, raw runs included), a
//! Markdown table per scenario with Tether/peer ratios next to the absolutes
//! and the issue's targets, and an SVG plot of the lateness distributions
//! (written by hand: cumulative distribution curves on a log time axis).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::peers::PeerInfo;
use crate::stats::{median, Samples, Summary};

/// One measured figure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metric {
    /// Stable identifier (e.g. `p99_ms`), used to line systems up in a row.
    pub key: String,
    /// What the row says (e.g. `p99 lateness`).
    pub label: String,
    /// `None` when not measurable (e.g. beyond the waiting window).
    pub value: Option<f64>,
    pub unit: String,
    /// Text to show instead of a number (e.g. `> 60 s`).
    pub display: Option<String>,
}

impl Metric {
    pub fn new(key: &str, label: &str, value: Option<f64>, unit: &str) -> Metric {
        Metric { key: key.into(), label: label.into(), value, unit: unit.into(), display: None }
    }
    pub fn text(key: &str, label: &str, text: String) -> Metric {
        Metric { key: key.into(), label: label.into(), value: None, unit: String::new(), display: Some(text) }
    }
}

/// The figures of one system (Tether or a peer) in one scenario run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SystemRun {
    pub system: String,
    pub metrics: Vec<Metric>,
    pub notes: Vec<String>,
    /// Lateness samples, kept for the plot and the JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution: Option<Samples>,
}

impl SystemRun {
    pub fn new(system: &str) -> SystemRun {
        SystemRun { system: system.into(), metrics: vec![], notes: vec![], distribution: None }
    }
    pub fn metric(&mut self, m: Metric) -> &mut Self {
        self.metrics.push(m);
        self
    }
    pub fn note(&mut self, n: impl Into<String>) -> &mut Self {
        self.notes.push(n.into());
        self
    }
    /// Adds p50/p99/max (+count) of `s` under `prefix` (e.g. `lateness`).
    pub fn latency(&mut self, prefix: &str, label: &str, s: &mut Samples) -> Summary {
        let sum = s.summary();
        let beyond = sum.window_ms.map(|w| format!("> {} (not received)", fmt_ms(w)));
        for (k, v) in [("p50", sum.p50), ("p99", sum.p99), ("max", sum.max)] {
            let mut m = Metric::new(&format!("{prefix}_{k}_ms"), &format!("{label} {k}"), v, "ms");
            if v.is_none() && sum.missing > 0 {
                m.display = beyond.clone().or(Some("n/a (missing)".into()));
            }
            self.metrics.push(m);
        }
        if sum.missing > 0 {
            self.metrics.push(Metric::text(
                &format!("{prefix}_received"),
                &format!("{label}: received"),
                format!("{} of {}", sum.count, sum.count + sum.missing),
            ));
        }
        sum
    }
}

/// A target from issue 5, checked against one Tether metric.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    pub key: String,
    /// `"<="` or `">="`.
    pub op: String,
    pub value: f64,
    pub text: String,
}

impl Target {
    pub fn le(key: &str, value: f64, text: &str) -> Target {
        Target { key: key.into(), op: "<=".into(), value, text: text.into() }
    }
    pub fn ge(key: &str, value: f64, text: &str) -> Target {
        Target { key: key.into(), op: ">=".into(), value, text: text.into() }
    }
    pub fn check(&self, v: Option<f64>) -> &'static str {
        match v {
            None => "not measured",
            Some(v) if (self.op == "<=" && v <= self.value) || (self.op == ">=" && v >= self.value) => "met",
            Some(_) => "not met",
        }
    }
}

/// One scenario at one size, as run once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioRun {
    pub scenario: String,
    /// Scenario plus size, e.g. `expiry-lateness (N=100000)`; the grouping key.
    pub label: String,
    pub params: serde_json::Value,
    pub targets: Vec<Target>,
    pub systems: Vec<SystemRun>,
    /// The scenario failed or was skipped: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub started_at: String,
    pub command: String,
    pub size: String,
    pub repeat: usize,
    pub machine: BTreeMap<String, String>,
    pub tether: BTreeMap<String, String>,
    pub peers: Vec<PeerInfo>,
    pub runs: Vec<ScenarioRun>,
}

/// Median of repeated runs: for every (label, system, metric), the median of
/// the values that were measured; notes and distributions from the first run.
pub fn combine(runs: &[ScenarioRun]) -> Vec<ScenarioRun> {
    let mut order: Vec<String> = vec![];
    let mut groups: BTreeMap<String, Vec<&ScenarioRun>> = BTreeMap::new();
    for r in runs {
        if !groups.contains_key(&r.label) {
            order.push(r.label.clone());
        }
        groups.entry(r.label.clone()).or_default().push(r);
    }
    let mut out = vec![];
    for label in order {
        let g = &groups[&label];
        let ok: Vec<&&ScenarioRun> = g.iter().filter(|r| r.error.is_none()).collect();
        let Some(first) = ok.first().map(|r| (**r).clone()).or_else(|| g.first().map(|r| (*r).clone())) else {
            continue;
        };
        let mut merged = first.clone();
        merged.params["runs"] = serde_json::json!(g.len());
        for sys in merged.systems.iter_mut() {
            for m in sys.metrics.iter_mut() {
                let vals: Vec<f64> = ok
                    .iter()
                    .filter_map(|r| r.systems.iter().find(|s| s.system == sys.system))
                    .filter_map(|s| s.metrics.iter().find(|x| x.key == m.key))
                    .filter_map(|x| x.value)
                    .collect();
                let n = vals.len();
                if n > 0 {
                    let lo = vals.iter().cloned().fold(f64::MAX, f64::min);
                    let hi = vals.iter().cloned().fold(f64::MIN, f64::max);
                    m.value = median(vals);
                    let v = fmt_value(m.value.unwrap(), &m.unit);
                    if n < ok.len() {
                        m.display = Some(format!("{v} (measured in {n} of {} runs)", ok.len()));
                    } else if n > 1 {
                        m.display = Some(format!("{v} ({}–{})", fmt_value(lo, &m.unit), fmt_value(hi, &m.unit)));
                    } else {
                        m.display = None;
                    }
                }
            }
        }
        out.push(merged);
    }
    out
}

pub fn fmt_ms(ms: f64) -> String {
    if ms >= 10_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms >= 100.0 {
        format!("{:.0} ms", ms)
    } else if ms >= 10.0 {
        format!("{:.1} ms", ms)
    } else {
        format!("{:.2} ms", ms)
    }
}

pub fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "ms" => fmt_ms(v),
        "/s" => format!("{} /s", group_digits(v.round())),
        "B" => {
            if v >= 10.0 * 1024.0 * 1024.0 {
                format!("{:.1} MiB", v / 1024.0 / 1024.0)
            } else {
                format!("{} B", group_digits(v.round()))
            }
        }
        "" => group_digits(v.round()),
        u => format!("{} {u}", if v.abs() >= 100.0 { group_digits(v.round()) } else { format!("{v:.2}") }),
    }
}

fn group_digits(v: f64) -> String {
    let s = format!("{}", v as i64);
    let (sign, digits) = s.strip_prefix('-').map(|d| ("-", d)).unwrap_or(("", &s));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

fn cell(m: Option<&Metric>) -> String {
    match m {
        None => "—".into(),
        Some(m) => match (&m.display, m.value) {
            (Some(d), _) => d.clone(),
            (None, Some(v)) => fmt_value(v, &m.unit),
            (None, None) => "n/a".into(),
        },
    }
}

/// Tether / peer, as "0.001×"; only where both were measured.
fn ratio(t: Option<&Metric>, p: Option<&Metric>) -> String {
    match (t.and_then(|m| m.value), p.and_then(|m| m.value)) {
        (Some(a), Some(b)) if b != 0.0 && a != 0.0 => {
            let r = a / b;
            if r >= 100.0 {
                format!("{:.0}×", r)
            } else if r >= 1.0 {
                format!("{:.2}×", r)
            } else if r >= 0.001 {
                format!("{:.3}×", r)
            } else {
                format!("{:.1e}×", r)
            }
        }
        _ => "".into(),
    }
}

/// The Markdown report.
pub fn markdown(r: &Report, combined: &[ScenarioRun], svg_name: Option<&str>) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# tether-bench results ({} size)\n", r.size);
    let _ = writeln!(o, "- started: {}", r.started_at);
    let _ = writeln!(o, "- command: `{}`", r.command);
    if r.repeat > 1 {
        let _ =
            writeln!(o, "- runs per scenario: {} — each figure is the median, with (min–max) over the runs", r.repeat);
    } else {
        let _ = writeln!(o, "- runs per scenario: 1 (single run: no median)");
    }
    let m = &r.machine;
    let _ = writeln!(
        o,
        "- machine: {} CPUs (`nproc`), {} RAM, CPU `{}`, kernel {}",
        m.get("nproc").map(String::as_str).unwrap_or("?"),
        m.get("memory").map(String::as_str).unwrap_or("?"),
        m.get("cpu").map(String::as_str).unwrap_or("?"),
        m.get("kernel").map(String::as_str).unwrap_or("?")
    );
    for k in ["loadavg before", "loadavg after", "duration", "disk"] {
        if let Some(v) = m.get(k) {
            let _ = writeln!(o, "- {k}: {v}");
        }
    }
    for (k, v) in &r.tether {
        let _ = writeln!(o, "- tether {k}: {v}");
    }
    let _ = writeln!(o, "- the harness (client) runs on the same cores as the server and the peers; every system is measured by the same client code\n");
    if !r.peers.is_empty() {
        let _ = writeln!(o, "## Peers\n");
        for p in &r.peers {
            let _ = writeln!(o, "- **{}** — {}", p.name, p.version);
            for s in &p.settings {
                let _ = writeln!(o, "  - {s}");
            }
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(o, "## Results\n");
    if let Some(svg) = svg_name {
        let _ = writeln!(o, "Lateness distributions: [{svg}]({svg})\n\n![lateness]({svg})\n");
    }
    for s in combined {
        let _ = writeln!(o, "### {}\n", s.label);
        if let Some(e) = &s.error {
            let _ = writeln!(o, "**Not measured:** {e}\n");
            if s.systems.is_empty() {
                continue;
            }
        }
        let systems: Vec<&SystemRun> = s.systems.iter().collect();
        let tether = systems.iter().find(|x| x.system == "Tether");
        let mut peers: Vec<&&SystemRun> = systems.iter().filter(|x| x.system != "Tether").collect();
        let rank = |n: &str| ["Redis", "etcd", "PostgreSQL"].iter().position(|x| *x == n).unwrap_or(9);
        peers.sort_by_key(|p| rank(&p.system));
        // row keys in order of first appearance
        let mut keys: Vec<(String, String)> = vec![];
        for sys in &systems {
            for m in &sys.metrics {
                if !keys.iter().any(|(k, _)| *k == m.key) {
                    keys.push((m.key.clone(), m.label.clone()));
                }
            }
        }
        let mut head = String::from("| metric | Tether |");
        let mut sep = String::from("|---|---|");
        for p in &peers {
            let _ = write!(head, " {} | Tether/{} |", p.system, p.system);
            sep.push_str("---|---|");
        }
        if !s.targets.is_empty() {
            head.push_str(" target (issue 5) |");
            sep.push_str("---|");
        }
        let _ = writeln!(o, "{head}\n{sep}");
        for (k, label) in &keys {
            let tm = tether.and_then(|t| t.metrics.iter().find(|m| &m.key == k));
            let mut row = format!("| {label} | {} |", cell(tm));
            for p in &peers {
                let pm = p.metrics.iter().find(|m| &m.key == k);
                let _ = write!(row, " {} | {} |", cell(pm), ratio(tm, pm));
            }
            if !s.targets.is_empty() {
                let t: Vec<String> = s
                    .targets
                    .iter()
                    .filter(|t| &t.key == k)
                    .map(|t| format!("{}: **{}**", t.text, t.check(tm.and_then(|m| m.value))))
                    .collect();
                let _ = write!(row, " {} |", t.join("; "));
            }
            let _ = writeln!(o, "{row}");
        }
        let _ = writeln!(o);
        let p = serde_json::to_string(&s.params).unwrap_or_default();
        let _ = writeln!(o, "Parameters: `{p}`\n");
        for sys in &systems {
            for n in &sys.notes {
                let _ = writeln!(o, "- {}: {}", sys.system, n);
            }
        }
        let _ = writeln!(o);
    }
    o
}

/// An SVG with one panel per scenario that has lateness distributions:
/// cumulative fraction received (y) against lateness in ms (x, log scale).
pub fn svg(combined: &[ScenarioRun]) -> Option<String> {
    let panels: Vec<&ScenarioRun> = combined
        .iter()
        .filter(|s| {
            s.systems.iter().any(|x| x.distribution.as_ref().is_some_and(|d| !d.values.is_empty() || d.missing > 0))
        })
        .collect();
    if panels.is_empty() {
        return None;
    }
    let (pw, ph) = (760.0, 300.0);
    let (ml, mr, mt, mb) = (70.0, 170.0, 40.0, 45.0);
    let total_h = panels.len() as f64 * ph;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{pw}" height="{total_h}" viewBox="0 0 {pw} {total_h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let colors = [("Tether", "#1f77b4"), ("Redis", "#d62728"), ("etcd", "#2ca02c"), ("PostgreSQL", "#9467bd")];
    let (lo, hi) = (-2.0f64, 5.0f64); // 0.01 ms .. 100 s
    for (pi, s) in panels.iter().enumerate() {
        let y0 = pi as f64 * ph;
        let (x_a, x_b) = (ml, pw - mr);
        let (y_a, y_b) = (y0 + mt, y0 + ph - mb);
        let xs = |ms: f64| x_a + (ms.max(0.01).log10().clamp(lo, hi) - lo) / (hi - lo) * (x_b - x_a);
        let ys = |f: f64| y_b - f * (y_b - y_a);
        let runs = s.params.get("runs").and_then(|r| r.as_u64()).unwrap_or(1);
        let which = if runs > 1 { format!(" (curves: first of {runs} runs)") } else { String::new() };
        let _ = writeln!(
            o,
            r#"<text x="{}" y="{}" font-size="14" font-weight="bold">{} — deadline → "ended" received{}</text>"#,
            ml,
            y0 + 22.0,
            esc(&s.label),
            esc(&which)
        );
        let _ = writeln!(
            o,
            r##"<rect x="{x_a}" y="{y_a}" width="{}" height="{}" fill="none" stroke="#444"/>"##,
            x_b - x_a,
            y_b - y_a
        );
        for e in (lo as i32)..=(hi as i32) {
            let ms = 10f64.powi(e);
            let x = xs(ms);
            let _ = writeln!(o, r##"<line x1="{x}" y1="{y_a}" x2="{x}" y2="{y_b}" stroke="#ddd"/>"##);
            let _ = writeln!(
                o,
                r#"<text x="{x}" y="{}" text-anchor="middle">{}</text>"#,
                y_b + 15.0,
                fmt_ms(ms).replace(".00", "")
            );
        }
        for f in [0.0, 0.25, 0.5, 0.75, 0.9, 1.0] {
            let y = ys(f);
            let _ = writeln!(o, r##"<line x1="{x_a}" y1="{y}" x2="{x_b}" y2="{y}" stroke="#eee"/>"##);
            let _ = writeln!(o, r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, x_a - 5.0, y + 4.0, f);
        }
        let _ = writeln!(
            o,
            r#"<text x="{}" y="{}" text-anchor="middle">lateness (log scale)</text>"#,
            (x_a + x_b) / 2.0,
            y_b + 32.0
        );
        let _ = writeln!(
            o,
            r#"<text x="15" y="{}" transform="rotate(-90 15 {})" text-anchor="middle">fraction received</text>"#,
            (y_a + y_b) / 2.0,
            (y_a + y_b) / 2.0
        );
        let mut li = 0;
        for sys in &s.systems {
            let Some(d) = &sys.distribution else { continue };
            let color = colors.iter().find(|(n, _)| *n == sys.system).map(|c| c.1).unwrap_or("#555");
            let mut v = d.values.clone();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
            let total = (v.len() + d.missing) as f64;
            if total == 0.0 {
                continue;
            }
            let mut pts = format!("{:.1},{:.1}", xs(v.first().copied().unwrap_or(0.01)), ys(0.0));
            for (i, x) in v.iter().enumerate() {
                let _ = write!(
                    pts,
                    " {:.1},{:.1} {:.1},{:.1}",
                    xs(*x),
                    ys(i as f64 / total),
                    xs(*x),
                    ys((i + 1) as f64 / total)
                );
            }
            let _ = writeln!(o, r#"<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>"#);
            let ly = y_a + 10.0 + li as f64 * 46.0;
            let _ = writeln!(
                o,
                r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="3"/>"#,
                x_b + 10.0,
                x_b + 30.0
            );
            let mut sc = d.clone();
            let sm = sc.summary();
            let p50 = sm.p50.map(fmt_ms).unwrap_or("—".into());
            let p99 = sm.p99.map(fmt_ms).unwrap_or("not received".into());
            let _ = writeln!(o, r#"<text x="{}" y="{}">{}</text>"#, x_b + 35.0, ly + 4.0, esc(&sys.system));
            let _ = writeln!(
                o,
                r#"<text x="{}" y="{}" font-size="10">p50 {} · p99 {}</text>"#,
                x_b + 35.0,
                ly + 17.0,
                esc(&p50),
                esc(&p99)
            );
            if d.missing > 0 {
                let _ = writeln!(
                    o,
                    r#"<text x="{}" y="{}" font-size="10">{} of {} received</text>"#,
                    x_b + 35.0,
                    ly + 28.0,
                    v.len(),
                    total
                );
            }
            li += 1;
        }
    }
    o.push_str("</svg>\n");
    Some(o)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(label: &str, v: f64) -> ScenarioRun {
        let mut t = SystemRun::new("Tether");
        t.metric(Metric::new("rate", "rate", Some(v), "/s"));
        let mut d = Samples::new();
        d.push(v);
        t.distribution = Some(d);
        ScenarioRun {
            scenario: "x".into(),
            label: label.into(),
            params: serde_json::json!({}),
            targets: vec![Target::ge("rate", 2.0, "≥ 2")],
            systems: vec![t],
            error: None,
        }
    }

    #[test]
    fn combine_takes_medians() {
        let c = combine(&[run("a", 1.0), run("a", 5.0), run("a", 3.0)]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].systems[0].metrics[0].value, Some(3.0));
    }

    #[test]
    fn markdown_and_svg_render() {
        let c = combine(&[run("a", 3.0)]);
        let r = Report {
            started_at: "now".into(),
            command: "tether-bench".into(),
            size: "smoke".into(),
            repeat: 1,
            machine: Default::default(),
            tether: Default::default(),
            peers: vec![],
            runs: vec![],
        };
        let md = markdown(&r, &c, Some("x.svg"));
        assert!(md.contains("| rate | 3 /s |"), "{md}");
        assert!(md.contains("**met**"));
        assert!(svg(&c).unwrap().starts_with("<svg"));
    }
}
