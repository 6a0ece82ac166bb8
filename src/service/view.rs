//! Pure rendering for the operator's page: times, sizes, meters, charts
//! and the process timeline as HTML and server-drawn SVG. No I/O and no
//! store calls: handlers fetch, these functions draw (and a benchmark can
//! draw a store of any size without building it).
//!
//! Every chart has a text equivalent (a caption with the figures) and every
//! SVG is `role="img"` with a title, so the page reads without sight.
//! Pure rendering: it must not open the store, read files or import `cli`.

use chrono::{Local, TimeZone};

use crate::jobs::ProcessType;
use crate::jobs::history::{HistoryEntry, Status};
use crate::metrics::Sample;
use crate::partition::PartitionStat;
use crate::store::{SegmentStat, SegmentState};
use crate::units::format_bytes;

/// Escape text for HTML.
pub fn escape(text: &str) -> String {
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

/// "12 min ago", "3 h ago", "2 days ago" (or "in 5 min" for the future).
pub fn relative(ms: u64, now_ms: u64) -> String {
    let (d, future) = if ms > now_ms {
        (ms - now_ms, true)
    } else {
        (now_ms - ms, false)
    };
    let s = d / 1000;
    let text = match s {
        0..=44 => return "just now".into(),
        45..=5399 => format!("{} min", (s + 30) / 60),
        5400..=129_599 => format!("{} h", (s + 1800) / 3600),
        _ => format!("{} days", (s + 43_200) / 86_400),
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// A time in the operator's (the server's) local time with its relative
/// form; the exact value, with offset and in UTC, on hover.
pub fn time(ms: u64, now_ms: u64) -> String {
    let local = Local.timestamp_millis_opt(ms as i64).single();
    let (shown, exact) = match local {
        Some(t) => (
            t.format("%Y-%m-%d %H:%M").to_string(),
            t.format("%Y-%m-%d %H:%M:%S %z").to_string(),
        ),
        None => (crate::units::format_time(ms), crate::units::format_time(ms)),
    };
    format!(
        "<time datetime=\"{}\" title=\"{exact} ({})\">{shown} <span class=\"rel\">{}</span></time>",
        crate::units::format_time(ms),
        crate::units::format_time(ms),
        relative(ms, now_ms)
    )
}

/// A byte count for people, exact on hover.
pub fn bytes(n: u64) -> String {
    format!("<span title=\"{n} bytes\">{}</span>", format_bytes(n))
}

/// A count with thousands separators.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Partitions with a fill bar (against capacity, or the volume's size),
/// free space and state.
pub fn partitions(list: &[PartitionStat]) -> String {
    let mut out = String::from(
        "<table id=\"partitions\"><caption>Partitions</caption><tr><th>Id</th><th>Path</th><th>State</th>\
         <th>Fill</th><th class=\"num\">Used</th><th class=\"num\">Of</th><th class=\"num\">Free on volume</th></tr>",
    );
    for p in list {
        let limit = p.fill_limit();
        let percent = if limit > 0 {
            p.bytes as f64 * 100.0 / limit as f64
        } else {
            0.0
        };
        let of = if p.capacity > 0 {
            format!("{} capacity", bytes(p.capacity))
        } else if limit > 0 {
            format!("{} volume", bytes(limit))
        } else {
            "unknown".into()
        };
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td>\
             <td><meter class=\"fill\" id=\"fill-{}\" min=\"0\" max=\"{limit}\" value=\"{}\" \
             aria-label=\"partition {} {percent:.0}% full\" title=\"{percent:.1}% full\"></meter> {percent:.0}%</td>\
             <td class=\"num\">{}</td><td class=\"num\">{of}</td><td class=\"num\">{}</td></tr>",
            p.id,
            escape(&p.path),
            p.state,
            p.id,
            p.bytes,
            p.id,
            bytes(p.bytes),
            p.free_bytes.map_or("-".into(), bytes),
        ));
    }
    out.push_str("</table>");
    out
}

/// Buckets of the dead-share histogram, upper bounds in percent.
pub const DEAD_BUCKETS: [(f64, &str); 6] = [
    (0.0, "0%"),
    (10.0, "up to 10%"),
    (25.0, "10-25%"),
    (50.0, "25-50%"),
    (75.0, "50-75%"),
    (100.0, "75-100%"),
];

fn dead_bucket(g: &SegmentStat) -> usize {
    let share = if g.bytes > 0 {
        g.dead_bytes as f64 * 100.0 / g.bytes as f64
    } else {
        0.0
    };
    DEAD_BUCKETS
        .iter()
        .position(|(upper, _)| share <= *upper)
        .unwrap_or(DEAD_BUCKETS.len() - 1)
}

/// Segments summarised: counts and bytes by state and archive bit, and a
/// histogram of their dead share. One pass, whatever their number.
pub fn segment_summary(segments: &[SegmentStat]) -> String {
    // (count, bytes, dead bytes) for active, sealed with bit set, sealed backed up.
    let mut rows = [(0u64, 0u64, 0u64); 3];
    let mut histogram = [(0u64, 0u64); DEAD_BUCKETS.len()];
    for g in segments {
        let row = match (g.state, g.archive_bit) {
            (SegmentState::Active, _) => 0,
            (SegmentState::Sealed, true) => 1,
            (SegmentState::Sealed, false) => 2,
        };
        rows[row].0 += 1;
        rows[row].1 += g.bytes;
        rows[row].2 += g.dead_bytes;
        let b = dead_bucket(g);
        histogram[b].0 += 1;
        histogram[b].1 += g.bytes;
    }
    let mut out = String::from(
        "<table id=\"segment-summary\"><caption>Segments by state and archive bit</caption>\
         <tr><th>Segments</th><th class=\"num\">Count</th><th class=\"num\">Bytes</th><th class=\"num\">Dead</th></tr>",
    );
    for (label, (n, b, d)) in [
        "Active (being written)",
        "Sealed, archive bit set (not backed up)",
        "Sealed, backed up",
    ]
    .iter()
    .zip(rows)
    {
        out.push_str(&format!(
            "<tr><td>{label}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            count(n),
            bytes(b),
            bytes(d)
        ));
    }
    out.push_str("</table>");
    out.push_str(&histogram_svg(&histogram));
    out
}

fn histogram_svg(histogram: &[(u64, u64)]) -> String {
    let max = histogram.iter().map(|h| h.0).max().unwrap_or(0).max(1);
    let (w, h, bar) = (480.0, 120.0, 480.0 / histogram.len() as f64);
    let mut bars = String::new();
    let mut text = Vec::new();
    for (i, ((n, b), (_, label))) in histogram.iter().zip(DEAD_BUCKETS).enumerate() {
        let height = *n as f64 / max as f64 * (h - 30.0);
        bars.push_str(&format!(
            "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\"><title>{label} dead: {n} segments</title></rect>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"axis\">{label}</text>",
            i as f64 * bar + 4.0,
            h - 18.0 - height,
            bar - 8.0,
            i as f64 * bar + 4.0,
            h - 4.0
        ));
        text.push(format!(
            "{label}: {} segments ({})",
            count(*n),
            format_bytes(*b)
        ));
    }
    format!(
        "<figure><svg id=\"dead-histogram\" role=\"img\" aria-labelledby=\"dead-histogram-title\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" data-buckets=\"{}\">\
         <title id=\"dead-histogram-title\">Segments by dead share</title>{bars}</svg>\
         <figcaption>Segments by dead share: {}.</figcaption></figure>",
        histogram.len(),
        text.join("; ")
    )
}

/// One line of a chart.
pub struct Line<'a> {
    /// What it shows.
    pub label: &'a str,
    /// CSS class giving its colour.
    pub class: &'a str,
    /// (time ms, value).
    pub points: Vec<(u64, f64)>,
}

/// A line chart over `since_ms ..= now_ms`, as SVG with a caption that
/// says each line's latest, lowest and highest value. `data-points` holds
/// the number of samples drawn.
pub fn line_chart(
    id: &str,
    title: &str,
    lines: &[Line<'_>],
    format: &dyn Fn(f64) -> String,
    since_ms: u64,
    now_ms: u64,
) -> String {
    let (w, h, left, bottom) = (600.0, 150.0, 4.0, 18.0);
    let span = now_ms.saturating_sub(since_ms).max(1) as f64;
    let max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1.0);
    let x = |t: u64| left + (t.saturating_sub(since_ms) as f64 / span) * (w - 2.0 * left);
    let y = |v: f64| (h - bottom) - v / max * (h - bottom - 8.0);
    let mut paths = String::new();
    let mut caption = Vec::new();
    for l in lines {
        let pts: Vec<String> = thin(&l.points, MAX_DRAWN_POINTS)
            .iter()
            .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
            .collect();
        paths.push_str(&format!(
            "<polyline class=\"{}\" fill=\"none\" stroke-width=\"2\" points=\"{}\"><title>{}</title></polyline>",
            l.class,
            pts.join(" "),
            escape(l.label)
        ));
        let values = l.points.iter().map(|p| p.1);
        let (lo, hi) = values
            .clone()
            .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
        caption.push(match l.points.last() {
            Some(&(_, last)) => format!(
                "<span class=\"key {}\">{}</span>: {} now (lowest {}, highest {})",
                l.class,
                escape(l.label),
                format(last),
                format(lo),
                format(hi)
            ),
            None => format!("{}: no samples in this period", escape(l.label)),
        });
    }
    let n = lines.first().map_or(0, |l| l.points.len());
    let drawn = lines
        .first()
        .map_or(0, |l| thin(&l.points, MAX_DRAWN_POINTS).len());
    format!(
        "<figure class=\"chart\"><svg id=\"{id}\" role=\"img\" aria-labelledby=\"{id}-title\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" data-points=\"{drawn}\" data-samples=\"{n}\">\
         <title id=\"{id}-title\">{t}</title>\
         <line class=\"axis-line\" x1=\"{left}\" y1=\"{base}\" x2=\"{right}\" y2=\"{base}\"></line>\
         <text class=\"axis\" x=\"{left}\" y=\"{h}\">{from}</text><text class=\"axis\" x=\"{right}\" y=\"{h}\" text-anchor=\"end\">now</text>\
         <text class=\"axis\" x=\"{left}\" y=\"12\">{top}</text>{paths}</svg>\
         <figcaption><b>{t}</b> ({n} samples): {}.</figcaption></figure>",
        caption.join("; "),
        t = escape(title),
        base = h - bottom,
        right = w - left,
        from = relative(since_ms, now_ms),
        top = format(max),
    )
}

/// Most points a line draws: about one per pixel of the chart.
pub const MAX_DRAWN_POINTS: usize = 600;

/// At most `max` points: the highest of each run of neighbours, so a spike
/// survives the thinning.
fn thin(points: &[(u64, f64)], max: usize) -> Vec<(u64, f64)> {
    if points.len() <= max {
        return points.to_vec();
    }
    let per = points.len().div_ceil(max);
    points
        .chunks(per)
        .filter_map(|c| c.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1)))
        .collect()
}

/// The store's charts from the series: bytes, ingest rate, dead bytes and
/// pending counts.
pub fn charts(samples: &[Sample], since_ms: u64, now_ms: u64) -> String {
    let series = |f: &dyn Fn(&Sample) -> u64| -> Vec<(u64, f64)> {
        samples.iter().map(|s| (s.time_ms, f(s) as f64)).collect()
    };
    let rate: Vec<(u64, f64)> = samples
        .windows(2)
        .map(|w| {
            let secs = (w[1].time_ms.saturating_sub(w[0].time_ms)).max(1) as f64 / 1000.0;
            let grown = w[1].logical_bytes.saturating_sub(w[0].logical_bytes) as f64;
            (w[1].time_ms, grown / secs)
        })
        .collect();
    let size = |v: f64| format_bytes(v.max(0.0) as u64);
    let per_second = |v: f64| format!("{}/s", format_bytes(v.max(0.0) as u64));
    let number = |v: f64| count(v.max(0.0) as u64);
    [
        line_chart(
            "chart-bytes",
            "Stored and logical bytes",
            &[
                Line {
                    label: "logical bytes",
                    class: "c1",
                    points: series(&|s| s.logical_bytes),
                },
                Line {
                    label: "stored bytes",
                    class: "c2",
                    points: series(&|s| s.stored_bytes),
                },
            ],
            &size,
            since_ms,
            now_ms,
        ),
        line_chart(
            "chart-ingest",
            "Ingest rate (logical bytes archived)",
            &[Line {
                label: "ingest",
                class: "c1",
                points: rate,
            }],
            &per_second,
            since_ms,
            now_ms,
        ),
        line_chart(
            "chart-dead",
            "Dead bytes waiting for defragmentation",
            &[Line {
                label: "dead bytes",
                class: "c3",
                points: series(&|s| s.dead_bytes),
            }],
            &size,
            since_ms,
            now_ms,
        ),
        line_chart(
            "chart-pending",
            "Pending savesets",
            &[
                Line {
                    label: "awaiting index",
                    class: "c1",
                    points: series(&|s| s.awaiting_index),
                },
                Line {
                    label: "awaiting backup",
                    class: "c2",
                    points: series(&|s| s.awaiting_backup),
                },
                Line {
                    label: "ready for post-processing",
                    class: "c3",
                    points: series(&|s| s.ready),
                },
            ],
            &number,
            since_ms,
            now_ms,
        ),
    ]
    .concat()
}

/// One run of a process in the period: type, start, end (None while it
/// runs), and its outcome.
pub struct Run {
    /// The process type's name.
    pub process: String,
    /// Start, Unix ms.
    pub start_ms: u64,
    /// End, Unix ms, or None while it runs.
    pub end_ms: Option<u64>,
    /// "finished", "failed" or "running".
    pub outcome: &'static str,
}

/// Pair each run's Started entry with its end.
pub fn runs(history: &[HistoryEntry]) -> Vec<Run> {
    let mut ends = std::collections::HashMap::new();
    for e in history {
        if e.status != Status::Started {
            ends.insert(e.run, e);
        }
    }
    let mut out: Vec<Run> = history
        .iter()
        .filter(|e| e.status == Status::Started)
        .map(|e| {
            let end = ends.get(&e.run);
            Run {
                process: ProcessType::from_code(e.process)
                    .map_or("unknown process", |p| p.name())
                    .to_string(),
                start_ms: e.time_ms,
                end_ms: end.map(|x| x.time_ms),
                outcome: match end.map(|x| &x.status) {
                    Some(Status::Finished) => "finished",
                    Some(_) => "failed",
                    None => "running",
                },
            }
        })
        .collect();
    out.sort_by_key(|r| r.start_ms);
    out
}

/// A timeline of the period's runs: one bar per run, a row per process
/// type, coloured by outcome; the caption counts them.
pub fn timeline(runs: &[Run], since_ms: u64, now_ms: u64) -> String {
    let mut types: Vec<&str> = runs.iter().map(|r| r.process.as_str()).collect();
    types.sort_unstable();
    types.dedup();
    let (w, row, label) = (760.0, 22.0, 220.0);
    let h = row * types.len().max(1) as f64 + 20.0;
    let span = now_ms.saturating_sub(since_ms).max(1) as f64;
    let x = |t: u64| label + (t.saturating_sub(since_ms) as f64 / span) * (w - label - 4.0);
    let mut body = String::new();
    for (i, t) in types.iter().enumerate() {
        body.push_str(&format!(
            "<text class=\"axis\" x=\"0\" y=\"{:.1}\">{}</text>",
            i as f64 * row + 15.0,
            escape(t)
        ));
    }
    for r in runs {
        let i = types.iter().position(|t| *t == r.process).unwrap_or(0);
        let x0 = x(r.start_ms.max(since_ms));
        let x1 = x(r.end_ms.unwrap_or(now_ms)).max(x0 + 3.0);
        body.push_str(&format!(
            "<rect class=\"run {}\" x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{}: {}, started {}</title></rect>",
            r.outcome,
            i as f64 * row + 3.0,
            x1 - x0,
            row - 6.0,
            escape(&r.process),
            r.outcome,
            crate::units::format_time(r.start_ms)
        ));
    }
    body.push_str(&format!(
        "<text class=\"axis\" x=\"{label}\" y=\"{h:.1}\">{}</text><text class=\"axis\" x=\"{:.1}\" y=\"{h:.1}\" text-anchor=\"end\">now</text>",
        relative(since_ms, now_ms),
        w - 4.0
    ));
    let tally = |o: &str| runs.iter().filter(|r| r.outcome == o).count();
    format!(
        "<figure><svg id=\"timeline\" role=\"img\" aria-labelledby=\"timeline-title\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" data-runs=\"{}\">\
         <title id=\"timeline-title\">Process runs in the period</title>{body}</svg>\
         <figcaption>{} runs in the period: {} finished, {} failed, {} running (each listed in the history below).</figcaption></figure>",
        runs.len(),
        runs.len(),
        tally("finished"),
        tally("failed"),
        tally("running")
    )
}

/// Columns the segment list sorts by.
pub const SEGMENT_SORTS: [&str; 5] = ["id", "bytes", "savesets", "dead", "created"];
/// Rows of one page of the segment list.
pub const SEGMENTS_PER_PAGE: usize = 100;

/// One page of the segment list, sorted by `sort` (`desc` when `descending`).
pub fn segment_page(
    segments: &mut [SegmentStat],
    sort: &str,
    descending: bool,
    page: usize,
    now_ms: u64,
) -> String {
    let key = |g: &SegmentStat| -> u64 {
        match sort {
            "bytes" => g.bytes,
            "savesets" => g.savesets,
            "dead" => g.dead_bytes,
            "created" => g.created_ms,
            _ => u64::from(g.id),
        }
    };
    if descending {
        segments.sort_unstable_by_key(|g| std::cmp::Reverse(key(g)));
    } else {
        segments.sort_unstable_by_key(key);
    }
    let pages = segments.len().div_ceil(SEGMENTS_PER_PAGE).max(1);
    let page = page.clamp(1, pages);
    let link = |col: &str, text: &str| {
        let desc = col == sort && !descending;
        let arrow = match (col == sort, descending) {
            (true, true) => " ↓",
            (true, false) => " ↑",
            _ => "",
        };
        format!(
            "<a href=\"/store/segments?sort={col}&amp;order={}\">{text}{arrow}</a>",
            if desc { "desc" } else { "asc" }
        )
    };
    let mut out = format!(
        "<table id=\"segment-list\"><caption>Segments {} to {} of {}</caption><tr><th>{}</th><th>Partition</th><th>State</th>\
         <th class=\"num\">{}</th><th class=\"num\">{}</th><th class=\"num\">{}</th><th>Archive bit</th><th>{}</th></tr>",
        count(((page - 1) * SEGMENTS_PER_PAGE + 1).min(segments.len()) as u64),
        count((page * SEGMENTS_PER_PAGE).min(segments.len()) as u64),
        count(segments.len() as u64),
        link("id", "Id"),
        link("bytes", "Size"),
        link("savesets", "Savesets"),
        link("dead", "Dead"),
        link("created", "Created"),
    );
    for g in segments
        .iter()
        .skip((page - 1) * SEGMENTS_PER_PAGE)
        .take(SEGMENTS_PER_PAGE)
    {
        let state = match g.state {
            SegmentState::Active => "active",
            SegmentState::Sealed => "sealed",
        };
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{state}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
            g.id,
            g.partition,
            bytes(g.bytes),
            count(g.savesets),
            bytes(g.dead_bytes),
            if g.archive_bit { "set" } else { "clear" },
            time(g.created_ms, now_ms)
        ));
    }
    out.push_str("</table><nav class=\"pages\" aria-label=\"Pages\">");
    let order = if descending { "desc" } else { "asc" };
    for (p, text) in [
        (1, "first"),
        (page.saturating_sub(1).max(1), "previous"),
        (page + 1, "next"),
        (pages, "last"),
    ] {
        if p >= 1 && p <= pages && p != page {
            out.push_str(&format!(
                "<a href=\"/store/segments?sort={sort}&amp;order={order}&amp;page={p}\">{text}</a> "
            ));
        }
    }
    out.push_str(&format!("page {page} of {pages}</nav>"));
    out
}

/// `a / b` to two decimals, or "-".
pub fn ratio(a: u64, b: u64) -> String {
    if b == 0 {
        "-".into()
    } else {
        format!("{:.2}", a as f64 / b as f64)
    }
}

/// The 24 hours / 3 days / 1 week links of a view, the current one marked.
pub fn period_links(path: &str, period: &str) -> String {
    let mut out = String::from("<p class=\"filter\">");
    for (value, label) in [("24h", "24 hours"), ("3d", "3 days"), ("1w", "1 week")] {
        let on = if value == period { " class=\"on\"" } else { "" };
        out.push_str(&format!(
            "<a id=\"period-{value}\"{on} href=\"{path}?period={value}\">{label}</a>"
        ));
    }
    out.push_str("</p>");
    out
}

/// Why savesets are pending, reason by reason (the first 100; a store far
/// behind on backups links to the rest through the API).
fn why_pending(reasons: &[crate::backup::PendingReason], now: u64) -> String {
    if reasons.is_empty() {
        return "<p id=\"why-pending\" class=\"empty\">Nothing is pending.</p>".into();
    }
    let mut out = String::from(
        "<table id=\"why-pending\"><caption>Why items are pending</caption><tr><th>Reason</th><th>Savesets</th><th>Oldest</th><th>Detail</th></tr>",
    );
    for r in reasons.iter().take(100) {
        out.push_str(&format!(
            "<tr data-reason=\"{}\"><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
            r.reason,
            r.reason.replace('_', " "),
            count(r.savesets),
            r.oldest_ms.map_or(String::new(), |t| time(t, now)),
            escape(&r.detail)
        ));
    }
    out.push_str("</table>");
    if reasons.len() > 100 {
        out.push_str(&format!(
            "<p>{} more reasons: <a href=\"/pending?explain=1\">all of them</a>.</p>",
            reasons.len() - 100
        ));
    }
    out
}

/// The store view's body (pure: the benchmark draws it for a store of any size).
#[allow(clippy::too_many_arguments)]
pub fn render_store(
    stat: &crate::store::Stat,
    explained: &crate::backup::PendingExplained,
    segments: &[crate::store::SegmentStat],
    partitions: &[crate::partition::PartitionStat],
    samples: &[crate::metrics::Sample],
    period: &str,
    since: u64,
    now: u64,
) -> String {
    let pending = &explained.counters;
    let mut body = String::new();
    if stat.read_only {
        body.push_str("<p id=\"store-state\" class=\"warning\">Read-only state: every write is refused (archiving clients get 503 and retry) until an operator runs <code>vaultstore settings --read-only off</code>; reads work.</p>");
    }
    if let Some(since) = stat.backup_mode_since_ms {
        body.push_str(&format!(
            "<p id=\"backup-mode\" class=\"warning\">Backup mode since {}: the files a backup copies do not change; archiving goes to the message cache ({} items), other writes and background processes wait until backup mode is turned off.</p>",
            time(since, now),
            count(stat.message_cache_items)
        ));
    } else if stat.message_cache_items > 0 {
        body.push_str(&format!(
            "<p id=\"backup-mode\" class=\"warning\">The message cache holds {} items not yet in the segments: \"Processing message cache\" moves them.</p>",
            count(stat.message_cache_items)
        ));
    }
    body.push_str("<table id=\"totals\"><caption>Totals</caption>");
    let rows: [(&str, String); 11] = [
        ("Savesets", count(stat.savesets)),
        ("References", count(stat.references)),
        ("Logical bytes", bytes(stat.logical_bytes)),
        ("Stored bytes", bytes(stat.stored_bytes)),
        (
            "Dedup ratio (references per saveset)",
            ratio(stat.references, stat.savesets),
        ),
        (
            "Compression ratio (logical / stored)",
            ratio(stat.logical_bytes, stat.stored_bytes),
        ),
        ("Parts stored once", count(stat.parts)),
        ("Dead bytes (reclaimable)", bytes(stat.dead_bytes)),
        ("Awaiting indexing", count(pending.awaiting_index)),
        ("Awaiting backup", count(pending.awaiting_backup)),
        (
            "Ready for post-processing",
            count(pending.ready_for_post_processing),
        ),
    ];
    for (k, v) in rows {
        body.push_str(&format!("<tr><th>{k}</th><td class=\"num\">{v}</td></tr>"));
    }
    body.push_str("</table>");
    body.push_str(&why_pending(&explained.reasons, now));
    body.push_str("<h2>Over time</h2>");
    body.push_str(&period_links("/store", period));
    if samples.is_empty() {
        body.push_str("<p class=\"empty\">No samples in this period yet: the service samples the store once a minute.</p>");
    }
    body.push_str(&charts(samples, since, now));
    body.push_str("<h2>Partitions</h2>");
    body.push_str(&self::partitions(partitions));
    body.push_str("<h2>Segments</h2>");
    body.push_str(&segment_summary(segments));
    body.push_str(&format!(
        "<p><a id=\"all-segments\" href=\"/store/segments\">All {} segments</a>, a page at a time, sortable.</p>",
        count(segments.len() as u64)
    ));
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_naturally() {
        let now = 10_000_000_000;
        assert_eq!(relative(now - 10_000, now), "just now");
        assert_eq!(relative(now - 12 * 60_000, now), "12 min ago");
        assert_eq!(relative(now - 3 * 3_600_000, now), "3 h ago");
        assert_eq!(relative(now - 2 * 86_400_000, now), "2 days ago");
        assert_eq!(relative(now + 5 * 60_000, now), "in 5 min");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(12), "12");
    }
}
