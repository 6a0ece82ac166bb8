//! Compaction commands: defrag and redistribute, with --dry-run.
//! Parsing and printing only: each command is one library call, and the file
//! must not hold engine logic or import `service`.

use super::*;
use crate::jobs::schedule::ProcessRequest;

#[derive(Subcommand, Debug)]
pub(super) enum Commands {
    /// DB defragmentation: rewrite sealed segments whose dead fraction is at least the threshold.
    Defrag {
        #[command(flatten)]
        store: StoreArg,
        /// Dead bytes / segment bytes at or above which a segment is rewritten (0..=1).
        #[arg(long, default_value_t = crate::compaction::DEFAULT_THRESHOLD)]
        threshold: f64,
        /// Print what would be done, change nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Move savesets between partitions: empty one (then retire it), or balance fill.
    #[command(group(clap::ArgGroup::new("how").required(true).args(["drain", "balance"])))]
    Redistribute {
        #[command(flatten)]
        store: StoreArg,
        /// Move everything out of this partition (closing it first), then retire it.
        #[arg(long, value_name = "PARTITION")]
        drain: Option<u32>,
        /// Even out fill relative to capacity across open partitions.
        #[arg(long)]
        balance: bool,
        /// Print what would be done, change nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn run(command: Commands, show: bool) -> Result<ExitCode> {
    match command {
        Commands::Defrag {
            store,
            threshold,
            dry_run,
            json,
        } => {
            let r = if dry_run {
                open_read_only(&store)?.defrag_plan(threshold)?
            } else {
                let request = ProcessRequest::Defragmentation { threshold };
                service::run_request(&store, request, show && !json)?
            };
            print_compaction(&r, json, dry_run);
            if !json && r.segments_read.is_empty() && r.skipped.is_empty() {
                explain_nothing_to_defrag(&open_read_only(&store)?, threshold);
            }
        }
        Commands::Redistribute {
            store,
            drain,
            balance: _,
            dry_run,
            json,
        } => {
            let how = match drain {
                Some(p) => crate::compaction::Redistribution::Drain(p),
                None => crate::compaction::Redistribution::Balance,
            };
            let r = if dry_run {
                open_read_only(&store)?.redistribute_plan(how)?
            } else {
                let request = ProcessRequest::Redistribution(how);
                service::run_request(&store, request, show && !json)?
            };
            print_compaction(&r, json, dry_run);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_compaction(r: &crate::compaction::CompactionReport, json: bool, dry_run: bool) {
    if json {
        let mut v = serde_json::to_value(r).unwrap_or_default();
        if dry_run {
            v["dry_run"] = serde_json::Value::Bool(true);
        }
        print_json(&v);
        return;
    }
    if dry_run {
        say!(
            "would rewrite {} segments ({}): {} savesets moved, {} dead dropped",
            r.segments_read.len(),
            format_bytes(r.bytes_read),
            r.savesets_moved,
            r.savesets_dropped
        );
        say!(
            "would write {} and reclaim {}",
            format_bytes(r.bytes_written),
            format_bytes(r.bytes_reclaimed)
        );
        for s in &r.skipped {
            say!("segment {} would be left in place: {}", s.segment, s.reason);
        }
        say!("dry run: nothing changed");
        return;
    }
    say!(
        "segments rewritten: {} into {}",
        r.segments_read.len(),
        r.segments_written.len()
    );
    say!(
        "savesets moved: {}, dead left behind: {}",
        r.savesets_moved,
        r.savesets_dropped
    );
    say!(
        "read {}, written {}, reclaimed {}",
        format_bytes(r.bytes_read),
        format_bytes(r.bytes_written),
        format_bytes(r.bytes_reclaimed)
    );
    match r.write_amplification {
        Some(w) => say!("write amplification: {w:.3}"),
        None => say!("write amplification: n/a (nothing reclaimed)"),
    }
    say!(
        "time: {} ({:.1} MB/s read)",
        format_seconds(r.seconds),
        r.megabytes_per_second
    );
    for p in &r.retired_partitions {
        say!("partition {p} is empty and retired");
    }
    for s in &r.skipped {
        say!("segment {} left in place: {}", s.segment, s.reason);
    }
}

/// Why a defragmentation rewrote nothing: each sealed segment's dead share
/// against the threshold, the deadest first (ten at most).
fn explain_nothing_to_defrag(s: &Store, threshold: f64) {
    let mut sealed: Vec<crate::store::SegmentStat> = s
        .segments()
        .into_iter()
        .filter(|g| g.state == crate::store::SegmentState::Sealed && g.bytes > 0)
        .collect();
    if sealed.is_empty() {
        say!(
            "nothing to rewrite: no segment is sealed yet (the active segment is never compacted; `vaultstore seal` seals it)"
        );
        return;
    }
    let share = |g: &crate::store::SegmentStat| g.dead_bytes as f64 / g.bytes as f64;
    sealed.sort_by(|a, b| share(b).total_cmp(&share(a)));
    say!(
        "nothing to rewrite: no sealed segment is at least {:.0}% dead (--threshold {threshold})",
        threshold * 100.0
    );
    for g in sealed.iter().take(10) {
        say!(
            "segment {}: {:.1}% dead ({} of {})",
            g.id,
            share(g) * 100.0,
            format_bytes(g.dead_bytes),
            format_bytes(g.bytes)
        );
    }
    if sealed.len() > 10 {
        say!("... and {} more segments, less dead", sealed.len() - 10);
    }
}
