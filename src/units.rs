//! Units as people read them: wall-clock times (Unix milliseconds and their
//! `YYYY-MM-DDTHH:MM:SSZ` form, UTC), byte counts (`1.2 GiB`) and durations
//! (`30 days`). Pure functions at the bottom of the tree, so that an error
//! message anywhere can name a time, a size or a range in words.
//! It must not import anything above `error`.

use crate::error::{Error, Result};

/// Now, in milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Parse `YYYY-MM-DDTHH:MM:SSZ`, `YYYY-MM-DD` (UTC) or Unix milliseconds.
pub fn parse_time(text: &str) -> Result<u64> {
    let t = text.trim();
    let bad = || Error::InvalidSetting(format!("{text:?} is not a time like 2026-11-25T08:00:00Z"));
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().map_err(|_| bad());
    }
    let (date, clock) = match t.split_once('T') {
        Some((d, c)) => (d, c.strip_suffix('Z').ok_or_else(bad)?),
        None => (t, "00:00:00"),
    };
    let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
    let d: Vec<&str> = date.split('-').collect();
    let c: Vec<&str> = clock.split(':').collect();
    if d.len() != 3 || c.len() != 3 {
        return Err(bad());
    }
    let (y, m, day) = (num(d[0])?, num(d[1])?, num(d[2])?);
    let (hh, mm, ss) = (num(c[0])?, num(c[1])?, num(c[2])?);
    if !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || hh > 23
        || mm > 59
        || ss > 60
        || y < 1970
    {
        return Err(bad());
    }
    // Days since 1970-01-01 (Howard Hinnant's algorithm, inverse of format_time).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) as u64)
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn format_time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A byte count for people: `512 B`, `1.5 KiB`, `12.3 MiB`, `1.2 GiB`
/// (powers of 1024, three significant digits). `--json` keeps exact bytes.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    let text = format!("{value:.digits$}");
    // "1.50" reads as "1.5", "2.00" as "2".
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text} {}", UNITS[unit])
}

/// A duration for people, in its largest whole unit when it has one:
/// `30 days`, `1 day`, `36 hours`, `90 min`, `45 s`, `1.5 s`.
pub fn format_duration_ms(ms: u64) -> String {
    const DAY: u64 = 86_400_000;
    const HOUR: u64 = 3_600_000;
    const MINUTE: u64 = 60_000;
    let plural = |n: u64, one: &str, many: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {many}")
        }
    };
    match ms {
        0 => "0 s".into(),
        ms if ms % DAY == 0 => plural(ms / DAY, "day", "days"),
        ms if ms % HOUR == 0 => plural(ms / HOUR, "hour", "hours"),
        ms if ms % MINUTE == 0 => format!("{} min", ms / MINUTE),
        ms if ms % 1000 == 0 => format!("{} s", ms / 1000),
        ms => format!("{:.1} s", ms as f64 / 1000.0),
    }
}

/// Seconds of wall time for people: `0.42 s`, `12 s`, `3 min 20 s`, `2 h 5 min`.
pub fn format_seconds(secs: f64) -> String {
    if secs < 10.0 {
        return format!("{secs:.2} s");
    }
    let s = secs.round() as u64;
    match s {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1024), "1 KiB");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(1_660_945), "1.58 MiB");
        assert_eq!(format_bytes(128 << 20), "128 MiB");
        assert_eq!(format_bytes(1_288_490_189), "1.2 GiB");
        assert_eq!(format_bytes(u64::MAX), "16 EiB");
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(format_duration_ms(30 * 86_400_000), "30 days");
        assert_eq!(format_duration_ms(86_400_000), "1 day");
        assert_eq!(format_duration_ms(36 * 3_600_000), "36 hours");
        assert_eq!(format_duration_ms(90 * 60_000), "90 min");
        assert_eq!(format_duration_ms(45_000), "45 s");
        assert_eq!(format_duration_ms(1_500), "1.5 s");
        assert_eq!(format_seconds(0.4249), "0.42 s");
        assert_eq!(format_seconds(200.0), "3 min 20 s");
    }
}
