//! What the command line and the service both show, in one place: time,
//! size and duration formats, history periods, and the rows of the process
//! views. Presentation only: it reads what the engine returns and never
//! calls into it for changes; `cli` and `service` use it, and neither
//! imports the other.

use crate::error::{Error, Result};

pub use crate::units::{format_bytes, format_duration_ms, format_seconds, format_time, parse_time};

/// Parse a duration: a whole number and a unit s, m, h, d or w.
pub fn parse_duration(text: &str) -> std::result::Result<std::time::Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30d"))?;
    let secs: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(format!("{text:?}: the unit must be s, m, h, d or w")),
    };
    n.checked_mul(secs)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// Parse `on` or `off`.
pub fn parse_on_off(text: &str) -> std::result::Result<bool, String> {
    match text.trim() {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("{other:?} is neither on nor off")),
    }
}

/// Parse a byte count: a plain number or one with a K/M/G/T suffix
/// (powers of 1024; `KiB`, `MB` and the like are accepted too).
pub fn parse_bytes(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a byte count"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => return Err(format!("unknown unit {other:?} in {text:?}")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// The message the history prints for an empty period (operators know it).
pub const NO_HISTORY: &str = "No background process history for the selected period";

/// Running processes as `jobs --json` prints them (and the service answers).
pub fn running_rows(running: &[crate::jobs::RunningProcess]) -> Vec<serde_json::Value> {
    running
        .iter()
        .map(|r| {
            serde_json::json!({
                "run": r.run,
                "process": r.process,
                "started": format_time(r.started_ms),
                "done": r.done,
                "total": r.total,
                "percent": r.percent,
                "rate_per_second": rate(r.done, r.started_ms),
            })
        })
        .collect()
}

/// History entries as `jobs history --json` prints them.
pub fn history_rows(rows: &[crate::jobs::history::HistoryEntry]) -> Vec<serde_json::Value> {
    use crate::jobs::ProcessType;
    rows.iter()
        .map(|e| {
            let mut row = serde_json::json!({
                "time": format_time(e.time_ms),
                "process": ProcessType::from_code(e.process).map_or("unknown process", |p| p.name()),
                "status": e.status.to_string(),
            });
            if let Some(d) = &e.detail {
                row["detail"] = serde_json::Value::String(d.clone());
            }
            row
        })
        .collect()
}

/// The start of a history period: 24h, 3d or 1w before now.
pub fn period_since(period: &str) -> Result<u64> {
    let span: u64 = match period {
        "24h" => 24 * 3600 * 1000,
        "3d" => 3 * 24 * 3600 * 1000,
        "1w" => 7 * 24 * 3600 * 1000,
        other => {
            return Err(Error::InvalidSetting(format!(
                "period must be 24h, 3d or 1w, not {other:?}"
            )));
        }
    };
    Ok(crate::units::now_ms().saturating_sub(span))
}

/// Units done per second since `started_ms`.
pub fn rate(done: u64, started_ms: u64) -> f64 {
    let secs = crate::units::now_ms().saturating_sub(started_ms) as f64 / 1000.0;
    if secs > 0.0 { done as f64 / secs } else { 0.0 }
}

/// One step of `maintain`, as the CLI prints it and `POST /maintain` answers.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct MaintenanceStep {
    /// The process type's name.
    pub process: String,
    /// "Finished", or the status the history shows for its failure.
    pub status: String,
    /// What it did, or why it failed.
    pub detail: String,
    /// True when it finished.
    pub ok: bool,
}

/// The steps of a `maintain` run, as shown.
pub fn maintenance_steps(
    ran: Vec<(crate::jobs::ProcessType, Result<String>)>,
) -> Vec<MaintenanceStep> {
    ran.into_iter()
        .map(|(process, outcome)| {
            let (status, detail, ok) = match outcome {
                Ok(text) => ("Finished".to_string(), text, true),
                Err(e) => (
                    crate::jobs::operator_status(process, &e).to_string(),
                    e.to_string(),
                    false,
                ),
            };
            MaintenanceStep {
                process: process.name().to_string(),
                status,
                detail,
                ok,
            }
        })
        .collect()
}
