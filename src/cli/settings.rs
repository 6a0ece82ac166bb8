//! The text form of `settings`: printing only, from the JSON the library
//! or the service returned (the keys of `settings --json`).

use super::*;

/// The text form of `settings`, from its JSON (wherever it was read).
pub(super) fn print_settings(v: &serde_json::Value) {
    let n = |key: &str| v[key].as_u64().unwrap_or_default();
    say!(
        "segment size           {}",
        format_bytes(n("segment_bytes"))
    );
    say!("compression level      {}", v["compression_level"]);
    say!(
        "seal age               {}",
        format_duration_ms(n("seal_age_ms"))
    );
    say!(
        "remove safety copies   {}",
        v["remove_safety_copies"].as_str().unwrap_or_default()
    );
    say!(
        "trash retention        {}",
        format_duration_ms(n("trash_retention_ms"))
    );
    say!(
        "history retention      {}",
        format_duration_ms(n("history_retention_ms"))
    );
    say!(
        "min free space         {}",
        format_bytes(n("min_free_bytes"))
    );
    say!("max processes          {}", n("max_processes"));
    say!(
        "read-only              {}",
        if v["read_only"] == true { "on" } else { "off" }
    );
    let detection = v["backup_detection"].as_str().unwrap_or_default();
    say!("backup detection       {detection}");
    let max = format_duration_ms(n("backup_mode_max_ms"));
    say!("backup mode max        {max}");
    let after = n("checkpoint_after_records");
    say!("checkpoint after       {after} log records");
    for p in v["schedule"].as_array().into_iter().flatten() {
        let every = match p["interval_ms"].as_u64().unwrap_or_default() {
            0 => "off".to_string(),
            ms => format!("every {}", format_duration_ms(ms)),
        };
        let default = if p["default"].as_bool() == Some(true) {
            " (default)"
        } else {
            ""
        };
        let name = p["process"].as_str().unwrap_or_default();
        let waits = p["waits"]
            .as_str()
            .map_or(String::new(), |w| format!("; waits: {w}"));
        say!("schedule               {name}: {every}{default}{waits}");
    }
}
