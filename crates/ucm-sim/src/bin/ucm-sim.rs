//! `ucm-sim`: a simulated Grandstream UCM serving the HTTPS API with generated call traffic, for
//! trying the exporter (or any UCM client) without a PBX.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveDateTime;
use clap::{Parser, ValueEnum};
use ucm_sim::{
    self as sim, AccountCasing, CookieMode, EndColumn, EndFilter, Firmware, Order, Quirks,
    SimConfig, SystemTimeFormat, UptimeFormat,
};

#[derive(Debug, Parser)]
#[command(
    name = "ucm-sim",
    version,
    about = "Simulated Grandstream UCM: HTTPS API (challenge/login/cdrapi/status/list, channel, trunk, queue and storage actions), \
             seeded small-business call traffic, login security and fault injection",
    after_help = "Clients POST {\"request\":{...}} to <url>/api. The admin endpoint (plain HTTP, loopback) offers \
                  GET /stats, GET /now, GET /truth?after=YYYY-MM-DDTHH:MM:SS&until=..., POST /faults (a FaultRule as JSON, \
                  e.g. {\"fault\":{\"Status\":-45},\"action\":\"cdrapi\",\"times\":3}), DELETE /faults, \
                  GET/POST /quirks (e.g. {\"page_cap\":100,\"order\":\"EndAsc\"}), POST /advance?seconds=N, \
                  POST /step?seconds=-3600, POST /calls[?visible=now][&live=true] (one cdr_root entry), POST /invalidate, \
                  POST /reboot, POST /trunks/NAME?status=Unregistered[&out_of_service=yes], \
                  POST /extensions/EXT?registered=false[&out_of_service=yes] and POST /storage/PARTITION?used_kib=N. \
                  See crates/ucm-sim/README.md."
)]
struct Args {
    /// Address of the API listener (a real UCM uses port 8089).
    #[arg(long, default_value = "127.0.0.1:8089")]
    listen: SocketAddr,
    /// Address of the admin endpoint; must be a loopback address. Off when not given.
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// Serve plain HTTP instead of HTTPS (real UCMs refuse the API over HTTP).
    #[arg(long)]
    plain_http: bool,
    /// Directory where the generated self-signed certificate is written as ca.pem (default: a temporary directory).
    #[arg(long)]
    cert_dir: Option<PathBuf>,
    /// API user name.
    #[arg(long, default_value = "cdrapi")]
    username: String,
    /// Number of API users sharing the password: the user name, then NAME-1 … NAME-(N-1) (for a
    /// fleet of targets on one simulator, one user each).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    users: u32,
    /// API password.
    #[arg(
        long,
        env = "UCM_SIM_PASSWORD",
        default_value = "cdrapi-secret",
        hide_env_values = true
    )]
    password: String,
    /// Session cookie lifetime.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    cookie_ttl: Duration,
    /// Whether requests extend the cookie (sliding) or it dies at its lifetime after login (absolute).
    #[arg(long, value_enum, default_value_t = Mode::Sliding)]
    cookie_mode: Mode,
    /// Failed logins from one IP before that IP is locked out (-68).
    #[arg(long, default_value_t = 5)]
    lockout_attempts: u32,
    /// How long a locked-out IP stays locked out.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    lockout_duration: Duration,
    /// IANA time zone of the UCM's clock; CDR times are naive local times in it.
    #[arg(long, default_value = "UTC")]
    timezone: chrono_tz::Tz,
    /// CDR shape: ucm62xx (cdr = session, 33 keys), ucm63xx (cdr "", newer fields) or mixed (alternating per entry).
    #[arg(long, value_enum, default_value_t = Fw::Mixed)]
    firmware: Fw,
    /// Seed of the traffic generator; the same seed gives the same calls.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The simulated local clock at start, YYYY-MM-DDTHH:MM:SS (default: now in --timezone).
    #[arg(long, value_parser = parse_start)]
    start_time: Option<NaiveDateTime>,
    /// Simulated seconds per real second; 0 freezes the clock (move it with POST /advance).
    #[arg(long, default_value_t = 1.0)]
    clock_speed: f64,
    /// How much call history exists at start.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    history: Duration,
    /// Average calls per hour over a day, shaped by time of day; 0 disables generated traffic.
    #[arg(long, default_value_t = 60.0)]
    calls_per_hour: f64,
    /// Every hour at --calls-per-hour instead of shaped by time of day (for benchmarks).
    #[arg(long)]
    flat_traffic: bool,
    /// Calls that failed before they were set up carry an end, instead of the empty `end` a
    /// real UCM writes for them.
    #[arg(long)]
    ended_failed: bool,
    /// Cap on cdrapi numRecords.
    #[arg(long, default_value_t = 1000)]
    max_records: usize,
    /// Quirk: cap every cdrapi answer at N entries, replacing --max-records (changeable later
    /// through POST /quirks).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    page_cap: Option<u64>,
    /// Quirk: cdrapi ignores offset and always answers the first page.
    #[arg(long)]
    ignore_offset: bool,
    /// Quirk: order of cdr_root entries, which offset counts in: by call start (the documented
    /// order), by call end (when the CDR was written) or newest start first.
    #[arg(long, value_enum, default_value_t = EntryOrder::StartAsc)]
    order: EntryOrder,
    /// Quirk: an expired or unknown cookie gets an empty {"cdr_root":[]} from cdrapi instead of -6.
    #[arg(long)]
    silent_expiry: bool,
    /// Quirk: startTime/endTime without an offset are read as UTC, while CDR times stay in --timezone.
    #[arg(long)]
    filter_reads_utc: bool,
    /// Quirk: grouped entries are served with their first leg only until this long after the call
    /// ended, then with the rest of their legs (e.g. 2m).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    late_legs_delay: Option<Duration>,
    /// Quirk: what cdrapi makes of timeFilterType/tineFilterType "End" (window on the call's end):
    /// both spellings honoured, only the guide's typo tineFilterType, both ignored, or an empty
    /// list for any request carrying either.
    #[arg(long, value_enum, default_value_t = EndFilterArg::Honoured)]
    end_filter: EndFilterArg,
    /// Quirk: an end window compares with the written `end` column, which a call written
    /// without an end never matches, instead of the end its start and duration give.
    #[arg(long)]
    end_filter_written_column: bool,
    /// Quirk: listBridgedChannels and listUnBridgedChannels rows carry no uniqueid fields.
    #[arg(long)]
    no_channel_uniqueids: bool,
    /// Quirk: getSIPTrunk carries the trunk's live status.
    #[arg(long)]
    sip_trunk_status: bool,
    /// Quirk: how listAccount words an extension's status: Idle/InUse/Ringing/Unavailable,
    /// all lower case, or InUse&Ringing for a phone in a call that also rings.
    #[arg(long, value_enum, default_value_t = CasingArg::Mixed)]
    account_status_casing: CasingArg,
    /// Quirk: getSystemStatus up-time as HH:MM:SS (D HH:MM:SS beyond a day), seconds, hours
    /// past 24 (26:03:04) or "1 day(s) 02:03:04".
    #[arg(long, value_enum, default_value_t = UptimeArg::Hms)]
    uptime_format: UptimeArg,
    /// Quirk: getSystemStatus system-time as DD-MM-YYYY or YYYY-MM-DD.
    #[arg(long, value_enum, default_value_t = SystemTimeArg::DayFirst)]
    system_time_format: SystemTimeArg,
    /// Quirk: getQueueCalling answers CallQueues as a list instead of {"member": [...]}.
    #[arg(long)]
    queue_calling_array: bool,
    /// Quirk: answer this action as an unknown one (-1); repeat for more actions.
    #[arg(long, value_name = "ACTION")]
    unknown_action: Vec<String>,
    /// Log filter (tracing EnvFilter syntax), e.g. info or ucm_sim=debug.
    #[arg(long, default_value = "info")]
    log_level: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    Absolute,
    Sliding,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EntryOrder {
    StartAsc,
    EndAsc,
    StartDesc,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EndFilterArg {
    Honoured,
    TypoOnly,
    Ignored,
    EmptyList,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CasingArg {
    Mixed,
    Lower,
    Compound,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum UptimeArg {
    Hms,
    Seconds,
    #[value(name = "hours-over-24")]
    HoursOver24,
    DaysWord,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SystemTimeArg {
    DayFirst,
    YearFirst,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Fw {
    Ucm62xx,
    Ucm63xx,
    Mixed,
}

fn parse_start(s: &str) -> Result<NaiveDateTime, chrono::ParseError> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.log_level)?)
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = SimConfig {
        listen: args.listen,
        admin_listen: args.admin_listen,
        tls: !args.plain_http,
        cert_dir: args.cert_dir,
        username: args.username,
        users: args.users,
        password: args.password,
        cookie_ttl: args.cookie_ttl,
        cookie_mode: match args.cookie_mode {
            Mode::Absolute => CookieMode::Absolute,
            Mode::Sliding => CookieMode::Sliding,
        },
        lockout_attempts: args.lockout_attempts,
        lockout_duration: args.lockout_duration,
        timezone: args.timezone,
        firmware: match args.firmware {
            Fw::Ucm62xx => Firmware::Ucm62xx,
            Fw::Ucm63xx => Firmware::Ucm63xx,
            Fw::Mixed => Firmware::Mixed,
        },
        seed: args.seed,
        start_time: args.start_time,
        clock_speed: args.clock_speed,
        history: args.history,
        calls_per_hour: args.calls_per_hour,
        flat_traffic: args.flat_traffic,
        endless_failed: !args.ended_failed,
        max_records: args.max_records,
        quirks: Quirks {
            page_cap: args
                .page_cap
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            ignore_offset: args.ignore_offset,
            order: match args.order {
                EntryOrder::StartAsc => Order::StartAsc,
                EntryOrder::EndAsc => Order::EndAsc,
                EntryOrder::StartDesc => Order::StartDesc,
            },
            silent_expiry: args.silent_expiry,
            filter_reads_utc: args.filter_reads_utc,
            late_legs_delay: args.late_legs_delay,
            end_filter: match args.end_filter {
                EndFilterArg::Honoured => EndFilter::Honoured,
                EndFilterArg::TypoOnly => EndFilter::TypoOnly,
                EndFilterArg::Ignored => EndFilter::Ignored,
                EndFilterArg::EmptyList => EndFilter::EmptyList,
            },
            end_column: if args.end_filter_written_column {
                EndColumn::Written
            } else {
                EndColumn::Computed
            },
            no_channel_uniqueids: args.no_channel_uniqueids,
            sip_trunk_status: args.sip_trunk_status,
            account_status_casing: match args.account_status_casing {
                CasingArg::Mixed => AccountCasing::Mixed,
                CasingArg::Lower => AccountCasing::Lower,
                CasingArg::Compound => AccountCasing::Compound,
            },
            uptime_format: match args.uptime_format {
                UptimeArg::Hms => UptimeFormat::Hms,
                UptimeArg::Seconds => UptimeFormat::Seconds,
                UptimeArg::HoursOver24 => UptimeFormat::HoursOver24,
                UptimeArg::DaysWord => UptimeFormat::DaysWord,
            },
            system_time_format: match args.system_time_format {
                SystemTimeArg::DayFirst => SystemTimeFormat::DayFirst,
                SystemTimeArg::YearFirst => SystemTimeFormat::YearFirst,
            },
            queue_calling_array: args.queue_calling_array,
            unknown_actions: args.unknown_action,
        },
    };
    let ucm = sim::start(cfg).await?;
    println!("UCM API:     {}/api", ucm.url());
    println!("certificate: {}", ucm.ca_path().display());
    if let Some(admin) = ucm.admin_url() {
        println!("admin:       {admin}");
    }
    println!("sim clock:   {}", ucm.now().format("%Y-%m-%d %H:%M:%S"));
    if ucm.quirks() != Quirks::default() {
        println!("quirks:      {}", serde_json::to_string(&ucm.quirks())?);
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    ucm.shutdown().await;
    Ok(())
}
