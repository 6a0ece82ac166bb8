//! `vaultstore bench`: the end-to-end benchmark, and sizing with --size.
//! Parsing and printing only: each command is one library call, and the file
//! must not hold engine logic or import `service`.

use super::*;

#[derive(Subcommand, Debug)]
pub(super) enum Commands {
    /// End-to-end sizing benchmark on a generated mail corpus (or --corpus).
    Bench(Box<BenchArgs>),
}

pub(super) fn run(command: Commands, show: bool) -> Result<ExitCode> {
    match command {
        Commands::Bench(args) if args.size.is_some() => return run_sizing(*args, show),
        Commands::Bench(args) => {
            let cfg = BenchConfig {
                corpus: args.corpus,
                messages: args.messages,
                copies: args.copies,
                threads: args.threads,
                dir: args.dir,
                seed: args.seed,
                writers: args.writers,
                mailboxes: args.mailboxes.unwrap_or(1000),
                messages_per_day: args.messages_per_day.unwrap_or(50.0).round() as u64,
                retention_years: args.retention_years.unwrap_or(7.0).round() as u64,
                encryption: None,
            };
            if args.encrypt {
                return encrypted_beside_plain(cfg, args.rounds, args.json);
            }
            let report = run_bench(&cfg)?;
            if args.json {
                print_json(&serde_json::to_value(&report).unwrap_or_default());
            } else {
                say_raw(&report.to_text());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `bench --encrypt`: after a warm-up run (the first run of a sitting is
/// slow, page cache and allocator still cold), the same run in the clear and
/// encrypted, `rounds` times each in ABBA order so neither side always runs
/// second; the best run of each is compared (noise only slows a run).
fn encrypted_beside_plain(plain: BenchConfig, rounds: usize, json: bool) -> Result<ExitCode> {
    let passphrase = crate::crypto::Passphrase::new(b"vaultstore bench passphrase".to_vec())?;
    let encrypted = BenchConfig {
        encryption: Some(crate::crypto::Encryption {
            passphrase: std::sync::Arc::new(passphrase),
            kdf: crate::crypto::DEFAULT_KDF,
        }),
        ..plain.clone()
    };
    run_bench(&plain)?;
    let (mut p, mut e) = (Vec::new(), Vec::new());
    for round in 0..rounds.max(1) {
        if round % 2 == 0 {
            p.push(run_bench(&plain)?);
            e.push(run_bench(&encrypted)?);
        } else {
            e.push(run_bench(&encrypted)?);
            p.push(run_bench(&plain)?);
        }
    }
    let best = |runs: &[crate::bench::BenchReport], f: fn(&crate::bench::BenchReport) -> f64| {
        runs.iter().map(f).fold(f64::NAN, f64::max)
    };
    let fastest = |runs: &[crate::bench::BenchReport], f: fn(&crate::bench::BenchReport) -> f64| {
        runs.iter().map(f).fold(f64::NAN, f64::min)
    };
    let ratios = serde_json::json!({
        "new_content": best(&e, |r| r.new_content_mb_per_second) / best(&p, |r| r.new_content_mb_per_second),
        "batched_new_content": best(&e, |r| r.batched_new_content_mb_per_second) / best(&p, |r| r.batched_new_content_mb_per_second),
        "items_per_second": best(&e, |r| r.items_per_second) / best(&p, |r| r.items_per_second),
        "get_p50": fastest(&p, |r| r.get_p50_us) / fastest(&e, |r| r.get_p50_us),
        "open_without_kdf": fastest(&p, |r| r.open_ms) / fastest(&e, |r| r.open_ms),
        "kdf_ms": fastest(&e, |r| r.kdf_ms.unwrap_or(f64::NAN)),
    });
    if json {
        print_json(
            &serde_json::json!({"plain": p, "encrypted": e, "encrypted_over_plain": ratios}),
        );
    } else {
        say_raw(&e[0].to_text());
        say!(
            "encrypted / plain (best of {} alternated runs each; 1.0 = as fast):",
            p.len()
        );
        for (k, v) in ratios.as_object().into_iter().flatten() {
            say!("  {k:<20} {:.3}", v.as_f64().unwrap_or(f64::NAN));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Options of `vaultstore bench`.
#[derive(Args, Debug)]
pub(super) struct BenchArgs {
    /// Directory of real mail (.eml files, mbox files, Maildir) instead of the generated corpus.
    #[arg(long, value_name = "PATH")]
    corpus: Option<PathBuf>,
    /// Distinct messages to generate.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Deliver every message to this many mailboxes (each delivery is a put).
    #[arg(long, default_value_t = 3)]
    copies: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Where to create the benchmark store (default: a temporary directory,
    /// removed afterwards). Point it at the volume you are sizing.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Seed of the generated corpus.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Concurrent writers issuing puts (they share fsyncs by group commit).
    #[arg(long, default_value_t = 32)]
    writers: usize,
    /// Size an organisation: small (500 mailboxes), medium (10,000), large
    /// (100,000) or a number of mailboxes; the figures below refine it.
    #[arg(long, value_name = "ORG")]
    size: Option<String>,
    /// Mailboxes in the organisation (default 1000, or the --size preset's).
    #[arg(long)]
    mailboxes: Option<u64>,
    /// Messages each mailbox receives a day (default 50).
    #[arg(long)]
    messages_per_day: Option<f64>,
    /// Years of retention (default 7).
    #[arg(long)]
    retention_years: Option<f64>,
    /// Sizing: mailboxes of the organisation each message reaches (default 3).
    #[arg(long, requires = "size")]
    recipients: Option<f64>,
    /// Sizing: average message size (default: the sample's), e.g. 75KiB.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, requires = "size")]
    message_size: Option<u64>,
    /// Sizing: share of messages with an attachment, 0 to 1 (default 0.2).
    #[arg(long, requires = "size")]
    attachment_share: Option<f64>,
    /// Sizing: a journal mailbox copies every message (on or off; default on).
    #[arg(long, value_parser = ["on", "off"], requires = "size")]
    journaling: Option<String>,
    /// Sizing: share of references users delete, 0 to 1 (default 0.1).
    #[arg(long, requires = "size")]
    deletion_rate: Option<f64>,
    /// Sizing: busiest hour against the average hour (default 4).
    #[arg(long, requires = "size")]
    peak_factor: Option<f64>,
    /// Sizing: backups a day (default 1).
    #[arg(long, requires = "size")]
    backups_per_day: Option<f64>,
    /// Sizing: a partition's capacity (repeat for each; default: the volume's free space).
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, requires = "size")]
    partition_size: Vec<u64>,
    /// Run the benchmark in the clear and on an encrypted store, alternated,
    /// and print encrypted throughput over plain (argon2id timed apart).
    #[arg(long, conflicts_with = "size")]
    encrypt: bool,
    /// With --encrypt: runs of each side (after one warm-up run).
    #[arg(long, default_value_t = 3, requires = "encrypt")]
    rounds: usize,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// `vaultstore bench --size ORG`: measure, project, check.
fn run_sizing(args: BenchArgs, show: bool) -> Result<ExitCode> {
    let mut org = crate::sizing::Organisation::preset(args.size.as_deref().unwrap_or("small"))?;
    org.mailboxes = args.mailboxes.unwrap_or(org.mailboxes);
    org.messages_per_day = args.messages_per_day.unwrap_or(org.messages_per_day);
    org.retention_years = args.retention_years.unwrap_or(org.retention_years);
    org.recipients = args.recipients.unwrap_or(org.recipients);
    org.message_bytes = args.message_size.map(|b| b as f64);
    org.attachment_share = args.attachment_share.unwrap_or(org.attachment_share);
    org.journaling = args
        .journaling
        .as_deref()
        .map_or(org.journaling, |j| j == "on");
    org.deletion_rate = args.deletion_rate.unwrap_or(org.deletion_rate);
    org.peak_factor = args.peak_factor.unwrap_or(org.peak_factor);
    org.backups_per_day = args.backups_per_day.unwrap_or(org.backups_per_day);
    org.partition_bytes = args.partition_size;
    let mail = crate::sizing::sample_mail(&org, args.corpus.as_deref(), args.messages, args.seed)?;
    let (dir, _tmp) = crate::sizing::work_dir(args.dir.as_deref())?;
    let corpus = args
        .corpus
        .as_ref()
        .map_or("generated".to_string(), |p| p.display().to_string());
    if show && !args.json {
        eprintln!(
            "sizing: measuring {} sample messages and a tenth of them...",
            mail.len()
        );
    }
    let report = crate::sizing::size(&org, &mail, &dir, corpus)?;
    if args.json {
        print_json(&serde_json::to_value(&report).unwrap_or_default());
    } else {
        let color = std::io::IsTerminal::is_terminal(&std::io::stdout());
        say_raw(&report.to_text(color));
    }
    Ok(if report.self_check.failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
