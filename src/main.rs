use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use ucm_exporter::cli::{init_logging, Cli, Command};
use ucm_exporter::clock::SystemClock;
use ucm_exporter::exporter::{self, Exporter};
use ucm_exporter::{backfill, check, reload};

#[tokio::main]
async fn main() -> ExitCode {
    tune_malloc();
    let cli = Cli::parse();
    init_logging(cli.log_level, cli.log_format);
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ucm-exporter: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Page bodies and their decoded entries are a few MB each, freed after every page. glibc raises
/// its mmap threshold past such a block once one is freed, after which they come from the
/// per-thread arenas and stay resident for good (twice the RSS in a 10-target steady state).
/// Pinning the threshold at glibc's own default keeps them in mmap, returned when freed.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of glibc's allocator, which is thread-safe.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
        // Two arenas rather than glibc's eight per core: with a thousand targets' small
        // allocations spread over many threads (block_in_place hands workers over), each extra
        // arena keeps free space of its own.
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let env = |k: &str| std::env::var(k).ok();
    let demo = matches!(cli.command, Some(Command::Demo))
        || (cli.command.is_none() && cli.nothing_configured());
    if demo && cli.web_config_file.is_some() {
        // The demo serves plain HTTP: better to refuse than to seem protected and not be.
        anyhow::bail!("--web.config.file is not supported by the demo; configure a UCM (--config.file or --ucm.url) to use it");
    }
    if demo {
        return run_demo(&cli).await;
    }
    match cli.command {
        Some(Command::Check { force }) => {
            let settings = cli.settings(&env)?;
            let (lines, ok) = check::run(&settings, SystemClock::shared(), force).await;
            for l in lines {
                println!("{l}");
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Some(Command::Backfill { .. }) => run_backfill(&cli).await,
        // `demo`, and no subcommand with nothing configured, returned above.
        Some(Command::Demo) | None => {
            let settings = cli.settings(&env)?;
            let listen = cli.listen_address.clone();
            let telemetry_path = cli.telemetry_path.clone();
            let web_config = cli.web_config_file.clone();
            // A reload reads the same file and flags again.
            let cli = Arc::new(cli);
            let source = move || cli.settings(&|k: &str| std::env::var(k).ok());
            let running = Exporter::new(settings)
                .listen(&listen)
                .telemetry_path(&telemetry_path)
                .web_config(web_config.as_deref())
                .reload_from(Arc::new(source))
                .start()
                .await?;
            tokio::spawn(reload::on_hangup(running.reloader()));
            let token = running.shutdown_token();
            tokio::spawn(async move {
                exporter::shutdown_signal().await;
                tracing::info!("shutting down");
                token.cancel();
            });
            running.wait().await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `backfill`: stopped by Ctrl-C or SIGTERM between two writes, it says how to go on.
async fn run_backfill(cli: &Cli) -> anyhow::Result<ExitCode> {
    let Some(Command::Backfill {
        target,
        from,
        to,
        output,
        step,
        labels,
    }) = &cli.command
    else {
        unreachable!("called for the backfill subcommand only");
    };
    let settings = cli.settings(&|k: &str| std::env::var(k).ok())?;
    let args = backfill::Args {
        target: target.clone(),
        from: from.clone(),
        to: to.clone(),
        output: output.clone(),
        step: *step,
        labels: labels.clone(),
    };
    let summary = tokio::select! {
        r = backfill::run(&settings, &args, SystemClock::shared()) => r?,
        _ = exporter::shutdown_signal() => anyhow::bail!(
            "stopped; the same command continues where it stopped ({}.progress)",
            args.output.display()
        ),
    };
    if summary.already_done {
        eprintln!("{} is complete already", args.output.display());
    } else {
        eprintln!(
            "{}: {} calls in {} days, {} cdrapi requests",
            args.output.display(),
            summary.calls,
            summary.slices,
            summary.requests
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "demo")]
async fn run_demo(cli: &Cli) -> anyhow::Result<ExitCode> {
    ucm_exporter::demo::run(
        &cli.listen_address,
        &cli.telemetry_path,
        cli.poll_interval,
        cli.state_dir.as_deref(),
    )
    .await
    .map(|_| ExitCode::SUCCESS)
}

/// A build without the simulator has nothing to show without a UCM: say what to configure.
#[cfg(not(feature = "demo"))]
async fn run_demo(_: &Cli) -> anyhow::Result<ExitCode> {
    anyhow::bail!(
        "no UCM configured: pass --config.file or --ucm.url (this build has no demo; it is built without the `demo` feature)"
    )
}
