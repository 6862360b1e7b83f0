//! Statistics, ratios and targets; the JSON, Markdown and SVG outputs.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use crate::Store;

/// What a figure is and what performance.md asks of the Rust host + Rust plugin.
struct Spec {
    figure: &'static str,
    lower_is_better: bool,
    floor: Option<&'static str>,
    /// Target for RR: absolute value (in the figure's unit) and ratio to GG.
    target: (Option<f64>, Option<f64>),
    /// For latencies with a p99 target (S2): (value, ratio).
    p99_target: Option<(f64, f64)>,
}

const UDS: &str = "S11 floor: unix socket round trip (µs)";
const PAIR: &str = "S11 floor: socket pair throughput (MB/s)";
const SPAWN: &str = "S11 floor: spawn + exit of a static binary (µs)";

const SPECS: &[Spec] = &[
    Spec {
        figure: "S1 cold start to first reply (µs)",
        lower_is_better: true,
        floor: Some(SPAWN),
        target: (Some(1_500.0), Some(0.3)),
        p99_target: None,
    },
    Spec {
        figure: "S1 cold start to first reply, AutoMTLS (µs)",
        lower_is_better: true,
        floor: Some(SPAWN),
        target: (Some(3_500.0), Some(0.12)),
        p99_target: None,
    },
    Spec {
        figure: "S2 unary 16 B (µs)",
        lower_is_better: true,
        floor: Some(UDS),
        target: (Some(80.0), Some(0.7)),
        p99_target: Some((200.0, 0.8)),
    },
    Spec {
        figure: "S3 16 concurrent callers (rps)",
        lower_is_better: false,
        floor: None,
        target: (Some(50_000.0), Some(1.2)),
        p99_target: None,
    },
    Spec {
        figure: "S4 1 MiB unary host→plugin (MB/s)",
        lower_is_better: false,
        floor: Some(PAIR),
        target: (Some(900.0), Some(2.0)),
        p99_target: None,
    },
    Spec {
        figure: "S4 1 MiB unary plugin→host (MB/s)",
        lower_is_better: false,
        floor: Some(PAIR),
        target: (Some(900.0), Some(2.0)),
        p99_target: None,
    },
    // issue 14: large messages, RR at least twice GG.
    Spec {
        figure: "S4 8 MiB unary host→plugin (MB/s)",
        lower_is_better: false,
        floor: Some(PAIR),
        target: (None, Some(2.0)),
        p99_target: None,
    },
    // issue 14: large messages, RR at least twice GG.
    Spec {
        figure: "S4 8 MiB unary plugin→host (MB/s)",
        lower_is_better: false,
        floor: Some(PAIR),
        target: (None, Some(2.0)),
        p99_target: None,
    },
    // issue 14: large messages, RR at least twice GG.
    Spec {
        figure: "S4 64 MiB unary host→plugin (MB/s)",
        lower_is_better: false,
        floor: Some(PAIR),
        target: (None, Some(2.0)),
        p99_target: None,
    },
    // issue 14: large messages, RR at least twice GG.
    Spec {
        figure: "S4 64 MiB unary plugin→host (MB/s)",
        lower_is_better: false,
        floor: Some(PAIR),
        target: (None, Some(2.0)),
        p99_target: None,
    },
    Spec {
        figure: "S5 streaming 64 KiB messages (MB/s)",
        lower_is_better: false,
        floor: Some(PAIR),
        target: (Some(1_500.0), Some(2.0)),
        p99_target: None,
    },
    Spec {
        figure: "S6 broker round trip (µs)",
        lower_is_better: true,
        floor: Some(UDS),
        target: (Some(400.0), Some(0.5)),
        p99_target: None,
    },
    Spec {
        figure: "S6 broker round trip, AutoMTLS (µs)",
        lower_is_better: true,
        floor: Some(UDS),
        target: (Some(2_000.0), Some(0.2)),
        p99_target: None,
    },
    Spec {
        figure: "S7 stdio forwarding (MB/s)",
        lower_is_better: false,
        floor: Some(PAIR),
        target: (Some(400.0), Some(1.8)),
        p99_target: None,
    },
    Spec {
        figure: "S8 plugins started at once (ms)",
        lower_is_better: true,
        floor: None,
        target: (Some(60.0), Some(0.4)),
        p99_target: None,
    },
    Spec {
        figure: "S8 plugins started at once, AutoMTLS (ms)",
        lower_is_better: true,
        floor: None,
        target: (Some(200.0), None),
        p99_target: None,
    },
    Spec {
        figure: "S9 PSS per plugin, all running (MiB)",
        lower_is_better: true,
        floor: None,
        target: (Some(1.0), Some(0.5)),
        p99_target: None,
    },
    Spec {
        figure: "S9 idle RSS of one plugin (MiB)",
        lower_is_better: true,
        floor: None,
        target: (Some(6.0), None),
        p99_target: None,
    },
    Spec {
        figure: "S9 stripped plugin binary (MB)",
        lower_is_better: true,
        floor: None,
        target: (Some(6.0), None),
        p99_target: None,
    },
    Spec {
        figure: "S10 P-521 certificate generation (µs)",
        lower_is_better: true,
        floor: None,
        target: (Some(500.0), Some(0.15)),
        p99_target: None,
    },
    Spec {
        figure: "S10 mutual TLS handshake, P-521 (µs)",
        lower_is_better: true,
        floor: None,
        target: (Some(1_500.0), Some(0.2)),
        p99_target: None,
    },
    // issue 12: netrpc cold start and unary p50 at most half of Go/Go netrpc's.
    Spec {
        figure: "N1 netrpc cold start to first reply (µs)",
        lower_is_better: true,
        floor: Some(SPAWN),
        target: (None, Some(0.5)),
        p99_target: None,
    },
    Spec {
        figure: "N2 netrpc unary 16 B (µs)",
        lower_is_better: true,
        floor: Some(UDS),
        target: (None, Some(0.5)),
        p99_target: None,
    },
    Spec {
        figure: "Kill → process gone (µs)",
        lower_is_better: true,
        floor: None,
        target: (Some(700.0), Some(0.7)),
        p99_target: None,
    },
];

const PAIRINGS: [&str; 4] = ["GG", "GR", "RG", "RR"];

/// What the driver writes.
pub(crate) struct Report {
    pub(crate) json: Value,
    pub(crate) markdown: String,
    pub(crate) svg: String,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// The summary of one cell: percentiles (latencies) and the headline value (the median).
fn summarize(values: &[f64], latency: bool) -> Value {
    let s = sorted(values);
    if latency {
        json!({
            "value": percentile(&s, 50.0),
            "p50": percentile(&s, 50.0),
            "p90": percentile(&s, 90.0),
            "p99": percentile(&s, 99.0),
            "p99_9": percentile(&s, 99.9),
            "samples": s.len(),
        })
    } else {
        json!({ "value": percentile(&s, 50.0), "samples": s.len() })
    }
}

fn value_of(cell: &Value) -> Option<f64> {
    cell["value"].as_f64().filter(|v| v.is_finite())
}

/// "Better than Go" as a factor > 1, whatever the direction of the figure.
fn speedup(ratio: f64, lower_is_better: bool) -> f64 {
    if lower_is_better { 1.0 / ratio } else { ratio }
}

pub(crate) fn build(store: &Store, full: bool, plugin_runtime: &str, elapsed: Duration) -> Report {
    let pins: Vec<&str> = {
        let mut p: Vec<&str> = store.samples.keys().map(|(_, pin, _)| *pin).collect();
        p.dedup();
        p.sort_unstable_by_key(|p| *p != "unpinned");
        p.dedup();
        p
    };
    let mut figures = Vec::new();
    let mut markdown = String::new();
    let _ = writeln!(
        markdown,
        "# plugwire benchmark\n\n{} profile, {:.0?}, Rust plugins on a {plugin_runtime} runtime. GG = Go host + Go plugin (go-plugin v1.8.0), GR = Go host + Rust plugin, \
         RG = Rust host + Go plugin, RR = Rust host + Rust plugin. Latencies are p50 (all rounds pooled), throughputs and \
         memory the median of the rounds. `RR/GG` is `ratio_vs_go`; ✓/✗ is RR against performance.md's target \
         (absolute value and ratio), measured in this run.\n",
        if full { "Full" } else { "Quick" },
        elapsed
    );
    for pin in &pins {
        let _ = writeln!(markdown, "## {pin}\n");
        let _ = writeln!(
            markdown,
            "| Figure | GG | GR | RG | RR | RR/GG | vs floor (RR) | Target (RR) | |"
        );
        let _ = writeln!(markdown, "|---|---|---|---|---|---|---|---|---|");
        for spec in SPECS {
            let latency = spec.figure.ends_with("(µs)");
            let floor = spec.floor.and_then(|f| {
                store
                    .samples
                    .get(&(f.to_owned(), *pin, "floor"))
                    .and_then(|v| value_of(&summarize(v, f.ends_with("(µs)"))))
            });
            let mut cells = serde_json::Map::new();
            for pairing in PAIRINGS {
                if let Some(values) = store.samples.get(&(spec.figure.to_owned(), *pin, pairing)) {
                    cells.insert(pairing.to_owned(), summarize(values, latency));
                }
            }
            if cells.is_empty() {
                continue;
            }
            let go = cells.get("GG").and_then(value_of);
            for cell in cells.values_mut() {
                let value = value_of(cell);
                cell["ratio_vs_go"] = json!(value.zip(go).map(|(v, g)| v / g));
                cell["ratio_vs_floor"] = json!(value.zip(floor).map(|(v, f)| v / f));
            }
            let rr = cells.get("RR").cloned().unwrap_or(Value::Null);
            let rr_value = value_of(&rr);
            let rr_ratio = rr["ratio_vs_go"].as_f64();
            let better = |v: f64, t: f64| if spec.lower_is_better { v <= t } else { v >= t };
            let better_ratio = |r: f64, t: f64| if spec.lower_is_better { r <= t } else { r >= t };
            let mut meets = rr_value.is_some();
            if let (Some(t), Some(v)) = (spec.target.0, rr_value) {
                meets &= better(v, t);
            }
            if let Some(t) = spec.target.1 {
                meets &= rr_ratio.is_some_and(|r| better_ratio(r, t));
            }
            if let Some((t, tr)) = spec.p99_target {
                let p99 = rr["p99"].as_f64();
                let go_p99 = cells.get("GG").and_then(|g| g["p99"].as_f64());
                meets &= p99.is_some_and(|p| p <= t);
                meets &= p99.zip(go_p99).is_some_and(|(p, g)| p / g <= tr);
            }
            // Mixed pairings must never be slower than Go + Go. A plugin's own memory (S9)
            // says nothing of the host: RG there is the same Go plugin as GG.
            let plugin_only = spec.figure.starts_with("S9");
            let mixed_slower: Vec<&str> = ["GR", "RG"]
                .into_iter()
                .filter(|p| !(plugin_only && *p == "RG"))
                .filter(|p| {
                    cells
                        .get(*p)
                        .and_then(|c| c["ratio_vs_go"].as_f64())
                        .is_some_and(|r| speedup(r, spec.lower_is_better) < 1.0)
                })
                .collect();
            let target_text = format!(
                "{}{}{}",
                spec.target
                    .0
                    .map(|t| format!(
                        "{} {}",
                        if spec.lower_is_better { "≤" } else { "≥" },
                        fmt(t)
                    ))
                    .unwrap_or_default(),
                spec.target
                    .1
                    .map(|t| format!(" / {}{t}x", if spec.lower_is_better { "≤" } else { "≥" }))
                    .unwrap_or_default(),
                spec.p99_target
                    .map(|(t, r)| format!("; p99 ≤ {} / ≤{r}x", fmt(t)))
                    .unwrap_or_default(),
            );
            let show = |p: &str| {
                cells.get(p).map_or_else(String::new, |c| {
                    let v = value_of(c).map(fmt).unwrap_or_default();
                    match (latency, c["p99"].as_f64()) {
                        (true, Some(p99)) if spec.p99_target.is_some() => {
                            format!("{v} (p99 {})", fmt(p99))
                        }
                        _ => v,
                    }
                })
            };
            let _ = writeln!(
                markdown,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {}{} |",
                spec.figure,
                show("GG"),
                show("GR"),
                show("RG"),
                show("RR"),
                rr_ratio.map(|r| format!("{r:.2}")).unwrap_or_default(),
                rr["ratio_vs_floor"]
                    .as_f64()
                    .map(|r| format!("{r:.2}"))
                    .unwrap_or_default(),
                target_text,
                if meets { "✓" } else { "✗" },
                if mixed_slower.is_empty() {
                    String::new()
                } else {
                    format!(" ({} slower than GG)", mixed_slower.join(", "))
                },
            );
            figures.push(json!({
                "figure": spec.figure,
                "pin": pin,
                "lower_is_better": spec.lower_is_better,
                "pairings": cells,
                "floor": { "figure": spec.floor, "value": floor },
                "target": { "value": spec.target.0, "ratio_vs_go": spec.target.1, "p99": spec.p99_target },
                "rr_meets_target": meets,
                "mixed_pairings_slower_than_go": mixed_slower,
            }));
        }
        let _ = writeln!(markdown);
        let floors: Vec<String> = [UDS, PAIR, SPAWN]
            .into_iter()
            .filter_map(|f| {
                let v = store.samples.get(&(f.to_owned(), *pin, "floor"))?;
                Some(format!(
                    "{f}: {}",
                    fmt(value_of(&summarize(v, f.ends_with("(µs)")))?)
                ))
            })
            .collect();
        let _ = writeln!(markdown, "Floor in this run: {}.\n", floors.join("; "));
    }
    let svg = chart(&figures);
    Report {
        json: json!({
            "profile": if full { "full" } else { "quick" },
            "elapsed_s": elapsed.as_secs_f64(),
            "rust_plugin_runtime": plugin_runtime,
            "figures": figures,
        }),
        markdown,
        svg,
    }
}

fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A horizontal bar chart of how much better than Go + Go each pairing is (unpinned).
fn chart(figures: &[Value]) -> String {
    let rows: Vec<&Value> = figures.iter().filter(|f| f["pin"] == "unpinned").collect();
    let (label_w, bar_w, row_h, top) = (330.0, 420.0, 46.0, 60.0);
    let max = 6.0_f64;
    let x = |s: f64| label_w + bar_w * (s.min(max) / max);
    let height = top + row_h * rows.len() as f64 + 30.0;
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="22" font-size="15" font-weight="bold">How much better than go-plugin (Go host + Go plugin), unpinned; higher is better</text>
<text x="10" y="42" fill="#555">bars: GR (Go host, Rust plugin), RG (Rust host, Go plugin), RR (Rust host, Rust plugin); the line is 1.0 = as fast as Go</text>
"##,
        w = label_w + bar_w + 80.0
    );
    let colors = [("GR", "#8fb8de"), ("RG", "#f2b880"), ("RR", "#4a9d5b")];
    for (i, figure) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let lower = figure["lower_is_better"].as_bool().unwrap_or(true);
        let name = figure["figure"].as_str().unwrap_or("");
        let _ = writeln!(
            svg,
            r#"<text x="10" y="{}">{}</text>"#,
            y + 24.0,
            escape(name)
        );
        for (j, (pairing, color)) in colors.iter().enumerate() {
            let Some(ratio) = figure["pairings"][pairing]["ratio_vs_go"].as_f64() else {
                continue;
            };
            let s = speedup(ratio, lower);
            let by = y + 4.0 + 13.0 * j as f64;
            let _ = writeln!(
                svg,
                r#"<rect x="{label_w}" y="{by}" width="{:.1}" height="11" fill="{color}"/><text x="{:.1}" y="{:.1}" font-size="10">{pairing} {:.2}x</text>"#,
                x(s) - label_w,
                x(s) + 4.0,
                by + 9.5,
                s
            );
        }
    }
    let one = x(1.0);
    let _ = writeln!(
        svg,
        r##"<line x1="{one}" y1="{top}" x2="{one}" y2="{}" stroke="#c00" stroke-dasharray="4 3"/></svg>"##,
        top + row_h * rows.len() as f64
    );
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
