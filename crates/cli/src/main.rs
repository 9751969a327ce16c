//! `sealtrail`: the tamper-evident audit trail server and its tools.

mod config;
mod import;
mod keys;
mod verify;

use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sealtrail_server::{AppState, bootstrap_admin, serve};
use sealtrail_store::Store;
use sealtrail_store_postgres::{PgConfig, PgStore, SigningKeyRecord};
use sealtrail_store_sqlite::{SqliteConfig, SqliteStore};
use tracing_subscriber::EnvFilter;

use crate::config::ServeArgs;

/// mimalloc instead of the system allocator: parsing, sealing and indexing allocate and free
/// many small values on several threads, where glibc's allocator spent a fifth of the CPU
/// (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sealtrail — a tamper-evident audit trail.
///
/// Applications record who did what, to which record, when, from where and with what outcome;
/// sealtrail stores every event append-only and serves search, timelines and exports over HTTP.
#[derive(Debug, Parser)]
#[command(name = "sealtrail", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server (embedded SQLite store by default).
    ///
    /// With no configuration it listens on 127.0.0.1:8080 and keeps its data in
    /// ./sealtrail-data. Settings come from flags, then SEALTRAIL_* environment variables, then
    /// the TOML file (keys are the flag names in snake_case). On first start without
    /// SEALTRAIL_ADMIN_TOKEN an admin key is created and printed once to standard error.
    /// SIGTERM or SIGINT stops accepting requests, finishes those in flight and writes every
    /// queued event before exiting.
    Serve(Box<ServeArgs>),
    /// Check a store offline: every event against its seal, the hash chain, every checkpoint's
    /// root and signature, and the tail against the newest checkpoint.
    ///
    /// Each finding is printed as `FAIL seq=N id=UUID: KIND detail` (KIND: altered, missing,
    /// inserted, reordered, truncated, bad-signature), the first one first. Exits 0 when
    /// everything verifies, 1 when tampering was found, 2 on a usage or I/O error.
    Verify(verify::VerifyArgs),
    /// Bring a PostgreSQL database's sealtrail schema up to date and make its partitions.
    ///
    /// `sealtrail serve --database-url` does this at start unless --no-migrate is given; run it
    /// yourself when several servers start together or when migrations need a deploy step.
    Migrate(MigrateArgs),
    /// Write a tenant's events, all of them or those matching --filter, as CSV, a JSON array or
    /// verifiable NDJSON (the default), with a progress count on a terminal.
    ///
    /// The NDJSON export holds the newest signed checkpoint, each event with its seal material
    /// and the Merkle nodes standing for the events a filter left out, so `sealtrail verify
    /// --export` checks it offline with nothing but the public key. It holds the events that
    /// checkpoint covers. Reading only, it may run beside a server.
    Export(ExportArgs),
    /// Load NDJSON events into a running server through its normal ingest path, in batches,
    /// with a progress bar on a terminal.
    ///
    /// Reads a sealtrail export (what the server added to each event is dropped, the id
    /// kept; header, checkpoint and node lines are skipped) or plain events, one per line.
    /// Events without an id get one derived from their line, so importing the same file again
    /// stores nothing twice. A refused batch names the input line and field; the batches before
    /// it are stored, and running the import again carries on.
    Import(import::ImportArgs),
    /// Create, list and revoke API keys on the store itself (embedded or PostgreSQL), with the
    /// server stopped or running.
    ///
    /// Creating and revoking are recorded in the key's tenant as `audit.key_created` and
    /// `audit.key_revoked`, with the command line as actor (`sealtrail-cli`, type system).
    Keys(keys::KeysArgs),
    /// Drop everything derived from the log (the indexes behind filters, timelines and search)
    /// and build it again from the log, with a progress bar on a terminal.
    ///
    /// Derived data is disposable: the log alone is the truth, so a damaged, lost or outdated
    /// index is mended by this command. With the embedded store, stop the server first. On
    /// PostgreSQL servers may keep running: reads stay exact (they read the log beyond what
    /// is rebuilt) and the servers' indexers help rebuild.
    Reindex(ReindexArgs),
    /// Retention on the store itself (embedded or PostgreSQL): `sealtrail retention run
    /// --tenant T [--dry-run]`.
    Retention(RetentionArgs),
    /// Erase a person from a tenant on the store itself (embedded or PostgreSQL), as `POST
    /// /api/v1/subjects/{actor_id}/anonymize` does: the events where SUBJECT is the actor, or
    /// the target when the target is a person, get a stable pseudonym for the id and lose the
    /// person's name, e-mail, ip, user agent and change values; filters, search and statistics
    /// are derived again without them, and what was rewritten is scrubbed from the database
    /// files. Every hash and proof stays valid. Recorded as `audit.anonymized`; prints
    /// `{"events_updated": N}`. With the embedded store, stop the server first.
    Anonymize(AnonymizeArgs),
}

/// `sealtrail anonymize` options.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("store").required(true).args(["data_dir", "database_url"])))]
struct AnonymizeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The tenant
    #[arg(long, value_parser = sealtrail_store::Tenant::parse)]
    tenant: sealtrail_store::Tenant,
    /// The person's id, as events give it in `actor.id` (or `target.id`)
    #[arg(long, value_name = "ACTOR_ID")]
    subject: String,
}

/// `sealtrail retention` commands.
#[derive(Debug, clap::Args)]
struct RetentionArgs {
    #[command(subcommand)]
    command: RetentionCommand,
}

#[derive(Debug, Subcommand)]
enum RetentionCommand {
    /// Run a tenant's retention now, as the daily job does: the expired events of its latest
    /// checkpoint that no legal hold keeps are written to a gzip'd verifiable archive under
    /// DATA_DIR/archive/TENANT/ (`sealtrail verify --export` checks it), then removed, with an
    /// `audit.purged` receipt. With the embedded store, stop the server first.
    Run(RetentionRunArgs),
}

/// `sealtrail retention run` options.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("store").required(true).args(["data_dir", "database_url"])))]
struct RetentionRunArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The tenant
    #[arg(long, value_parser = sealtrail_store::Tenant::parse)]
    tenant: sealtrail_store::Tenant,
    /// Only count what would be removed
    #[arg(long)]
    dry_run: bool,
    /// Where archives go [default: DATA_DIR/archive, or ./sealtrail-data/archive with a
    /// PostgreSQL store]
    #[arg(long, value_name = "DIR")]
    archive_dir: Option<std::path::PathBuf>,
}

/// Where a command's store is: `--data-dir` or `--database-url` (with its schema).
#[derive(Debug, clap::Args)]
pub(crate) struct StoreArgs {
    /// The data directory of the embedded store
    #[arg(long, env = "SEALTRAIL_DATA_DIR", value_name = "DIR", global = true)]
    pub(crate) data_dir: Option<std::path::PathBuf>,
    /// A PostgreSQL store instead
    #[arg(
        long,
        env = "SEALTRAIL_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true,
        global = true
    )]
    pub(crate) database_url: Option<sealtrail_store::DatabaseUrl>,
    /// The schema that holds sealtrail's tables
    #[arg(
        long,
        env = "SEALTRAIL_DATABASE_SCHEMA",
        value_name = "NAME",
        default_value = "sealtrail",
        global = true
    )]
    pub(crate) database_schema: String,
}

impl StoreArgs {
    /// Opens the store for a command ([`open_tool_store`]).
    async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        open_tool_store(
            self.data_dir.as_deref(),
            self.database_url.as_ref(),
            &self.database_schema,
        )
        .await
    }
}

/// `sealtrail reindex` options.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("store").required(true).args(["data_dir", "database_url"])))]
struct ReindexArgs {
    #[command(flatten)]
    store: StoreArgs,
}

/// `sealtrail migrate` options.
#[derive(Debug, clap::Args)]
struct MigrateArgs {
    /// The PostgreSQL database
    #[arg(
        long,
        env = "SEALTRAIL_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database_url: sealtrail_store::DatabaseUrl,
    /// The schema that holds sealtrail's tables
    #[arg(
        long,
        env = "SEALTRAIL_DATABASE_SCHEMA",
        value_name = "NAME",
        default_value = "sealtrail"
    )]
    database_schema: String,
}

/// `sealtrail export` options.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("store").required(true).args(["data_dir", "database_url"])))]
struct ExportArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The tenant to export
    #[arg(long, value_parser = sealtrail_store::Tenant::parse)]
    tenant: sealtrail_store::Tenant,
    /// csv, json or ndjson (verifiable offline with `sealtrail verify --export`)
    #[arg(long, default_value = "ndjson", value_parser = ["csv", "json", "ndjson"])]
    format: String,
    /// A list filter as NAME=VALUE, the names of `GET /audit-logs` (action=user.login,
    /// from=2026-01-01T00:00:00Z, order=desc, …); repeatable
    #[arg(long = "filter", value_name = "NAME=VALUE")]
    filters: Vec<String>,
    /// Write here instead of standard output
    #[arg(long, value_name = "FILE")]
    out: Option<std::path::PathBuf>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Colour only for a person at a terminal: a log file, a pipe or a container's log collector
    // gets plain text (and `NO_COLOR` turns colour off everywhere).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SEALTRAIL_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .init();
    let outcome = match cli.command {
        Command::Serve(args) => run_serve(*args).map(|()| true),
        Command::Verify(args) => verify::run(&args),
        Command::Migrate(args) => run_migrate(&args).map(|()| true),
        Command::Export(args) => run_export(&args).map(|()| true),
        Command::Import(args) => import::run(&args).map(|()| true),
        Command::Keys(args) => keys::run(&args).map(|()| true),
        Command::Reindex(args) => run_reindex(&args).map(|()| true),
        Command::Retention(args) => match &args.command {
            RetentionCommand::Run(run) => run_retention(run).map(|()| true),
        },
        Command::Anonymize(args) => run_anonymize(&args).map(|()| true),
    };
    match outcome {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(err) => {
            eprintln!("sealtrail: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run_retention(args: &RetentionRunArgs) -> anyhow::Result<()> {
    tool_runtime()?.block_on(async {
        let store = args.store.open().await?;
        let archive_dir = args.archive_dir.clone().unwrap_or_else(|| {
            args.store
                .data_dir
                .clone()
                .unwrap_or_else(|| std::path::PathBuf::from("sealtrail-data"))
                .join("archive")
        });
        let answer = sealtrail_server::lifecycle::run_tenant(
            store.as_ref(),
            &sealtrail_server::lifecycle::Locks::default(),
            &args.tenant,
            &archive_dir,
            args.dry_run,
            cli_actor(),
            "cli",
        )
        .await;
        store.shutdown().await;
        print_answer(answer, "retention failed", true)
    })
}

fn run_anonymize(args: &AnonymizeArgs) -> anyhow::Result<()> {
    if args.subject.trim().is_empty() {
        anyhow::bail!("--subject must name an actor id");
    }
    tool_runtime()?.block_on(async {
        let store = args.store.open().await?;
        let answer = sealtrail_server::lifecycle::anonymize_subject(
            store.as_ref(),
            &sealtrail_server::lifecycle::Locks::default(),
            &args.tenant,
            &args.subject,
            cli_actor(),
            "cli",
        )
        .await;
        store.shutdown().await;
        print_answer(answer, "anonymisation failed", false)
    })
}

/// Who the lifecycle commands record as acting: the command line, a system actor.
fn cli_actor() -> sealtrail_model::Actor {
    sealtrail_model::Actor {
        id: "sealtrail-cli".into(),
        actor_type: sealtrail_model::ActorType::System,
        name: None,
        email: None,
    }
}

/// Prints a lifecycle command's answer as JSON on standard output (`pretty`: indented), or
/// fails with the problem described and `failed` as context.
fn print_answer<T: serde::Serialize>(
    answer: Result<T, sealtrail_server::error::ApiError>,
    failed: &'static str,
    pretty: bool,
) -> anyhow::Result<()> {
    let answer = answer
        .map_err(|e| anyhow::anyhow!(sealtrail_server::lifecycle::describe(&e)))
        .context(failed)?;
    let mut out = std::io::stdout().lock();
    if pretty {
        serde_json::to_writer_pretty(&mut out, &answer)
    } else {
        serde_json::to_writer(&mut out, &answer)
    }
    .context("cannot print the answer")?;
    std::io::Write::write_all(&mut out, b"\n").context("cannot print the answer")
}

fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let keys = sealtrail_server::signing::KeyRing::load(&config.data_dir, config.signing_key.as_deref())
            .context("cannot load the checkpoint signing key")?;
        let (store, location): (Arc<dyn sealtrail_store::Store>, String) = match &config.postgres {
            None => {
                let mut store_config = SqliteConfig {
                    batch_max_events: config.batch_max_events,
                    batch_max_wait: config.batch_max_wait,
                    queue_capacity: config.queue_capacity,
                    ..SqliteConfig::new(&config.data_dir)
                };
                store_config.indexer.max_lag = config.index_max_lag;
                let store = SqliteStore::open(&store_config)
                    .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?;
                (Arc::new(store), format!("data in {}", config.data_dir.display()))
            }
            Some(pg) => {
                let mut pg_config = PgConfig {
                    read_url: pg.read_url.clone(),
                    schema: pg.schema.clone(),
                    batch_max_events: config.batch_max_events,
                    batch_max_wait: config.batch_max_wait,
                    queue_capacity: config.queue_capacity,
                    migrate: pg.migrate,
                    ..PgConfig::new(pg.url.clone())
                };
                pg_config.indexer.max_lag = config.index_max_lag;
                let store = PgStore::open(&pg_config)
                    .await
                    .context("cannot open the PostgreSQL store")?;
                // Every server that signs into this database lists its keys there, so
                // `sealtrail verify --database-url` knows them all.
                store
                    .publish_signing_keys(&published(&keys))
                    .await
                    .context("cannot publish the signing keys to the database")?;
                (Arc::new(store), format!("PostgreSQL schema {}", pg.schema))
            }
        };
        let admin_token = std::env::var("SEALTRAIL_ADMIN_TOKEN").ok().filter(|t| !t.is_empty());
        if let Some(token) = bootstrap_admin(store.as_ref(), admin_token.as_deref())
            .await
            .context("cannot set up the admin key")?
        {
            eprintln!(
                "sealtrail: created the first admin key (bound to all tenants). It is shown only this once:\n\n    {token}\n"
            );
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr().context("cannot read the bound address")?;
        // Said once, in words a person and a script both read.
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        eprintln!("sealtrail: listening on {scheme}://{addr} ({location})");
        tracing::info!(key_id = keys.active_id(), "checkpoints are signed");
        let mut state = AppState::with_keys(store, keys, config.checkpoints.clone());
        state.archive_dir = Arc::new(config.data_dir.join("archive"));
        state.retention_every = config.retention_every;
        state.limits = sealtrail_server::limits::Limits::new(config.limits.clone());
        state.cors = Arc::new(config.cors.clone());
        state.jwt = Arc::new(
            sealtrail_server::jwt::JwtVerifier::new(config.jwt.clone())
                .context("cannot use the JWT settings")?,
        );
        match config.tls.clone() {
            Some(tls) => sealtrail_server::serve_tls(listener, state, tls, shutdown_signal())
                .await
                .context("the server failed (is the TLS certificate and key PEM?)")?,
            None => serve(listener, state, shutdown_signal())
                .await
                .context("the server failed")?,
        }
        tracing::info!("sealtrail stopped; every queued event was written");
        Ok(())
    })
}

/// The key ring's public keys as the database lists them.
fn published(keys: &sealtrail_server::signing::KeyRing) -> Vec<SigningKeyRecord> {
    keys.keys()
        .iter()
        .map(|k| SigningKeyRecord {
            key_id: k.key_id.clone(),
            public_key: k.public_key.clone(),
            created_at: k.created_at,
            retired_at: k.retired_at,
        })
        .collect()
}

fn run_reindex(args: &ReindexArgs) -> anyhow::Result<()> {
    let runtime = crate::tool_runtime()?;
    runtime.block_on(async {
        let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} events ({per_sec}, {eta} left)",
                )
                .expect("a valid template"),
            );
            bar
        });
        let shown = bar.clone();
        let progress = move |done: u64, total: u64| {
            if let Some(bar) = &shown {
                bar.set_length(total);
                bar.set_position(done);
            }
        };
        let started = std::time::Instant::now();
        let store = args.store.open().await?;
        let done = store.reindex(Box::new(progress)).await?;
        store.shutdown().await;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "sealtrail reindex: {done} events indexed from the log in {seconds:.2} s ({:.0} events/s)",
            done as f64 / seconds.max(1e-9)
        );
        Ok(())
    })
}

fn run_migrate(args: &MigrateArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let applied = runtime
        .block_on(sealtrail_store_postgres::migrate(
            args.database_url.expose(),
            &args.database_schema,
        ))
        .context("cannot migrate the database")?;
    eprintln!(
        "sealtrail migrate: schema {} is at version {} ({applied} migration{} applied)",
        args.database_schema,
        sealtrail_store_postgres::schema::SCHEMA_VERSION,
        if applied == 1 { "" } else { "s" }
    );
    Ok(())
}

fn run_export(args: &ExportArgs) -> anyhow::Result<()> {
    use sealtrail_store::export::{self, ExportQuery, Format};
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("format", &args.format);
    for filter in &args.filters {
        let (name, value) = filter
            .split_once('=')
            .with_context(|| format!("--filter {filter}: expected NAME=VALUE"))?;
        query.append_pair(name, value);
    }
    let (format, params) = sealtrail_server::params::parse_export_query(Some(&query.finish()))
        .map_err(|errors| {
            let problems: Vec<String> = errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect();
            anyhow::anyhow!("bad --filter: {}", problems.join("; "))
        })?;
    anyhow::ensure!(
        params.tenant.is_none(),
        "give the tenant with --tenant, not as a filter"
    );
    let runtime = crate::tool_runtime()?;
    runtime.block_on(async {
        let store = args.store.open().await?;
        let upto = store
            .tree_heads()
            .await?
            .into_iter()
            .find(|h| h.tenant == args.tenant)
            .map_or(0, |h| h.size);
        let checkpoint = match format {
            Format::Ndjson => store.latest_checkpoint(&args.tenant).await?,
            _ => None,
        };
        if let Some(cp) = &checkpoint
            && cp.size < upto
        {
            eprintln!(
                "sealtrail export: the newest checkpoint covers {} of {upto} events; the {} newer ones \
                 are left out until a checkpoint covers them (a running server signs one within its \
                 checkpoint interval, a stopped one signed one when it stopped)",
                cp.size,
                upto - cp.size
            );
        }
        let query = ExportQuery {
            tenant: args.tenant.clone(),
            filter: params.filter,
            order: params.order,
            upto,
            checkpoint,
        };
        let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {pos} events exported ({per_sec})")
                    .expect("a valid template"),
            );
            bar
        });
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let mut out: Box<dyn std::io::Write + Send> = match &args.out {
            Some(path) => Box::new(std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?,
            )),
            None => Box::new(std::io::BufWriter::new(std::io::stdout())),
        };
        let writer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            while let Some(chunk) = rx.blocking_recv() {
                out.write_all(&chunk)?;
            }
            out.flush()
        });
        let shown = bar.clone();
        let mut progress = move |rows: u64| {
            if let Some(bar) = &shown {
                bar.set_position(rows);
            }
        };
        let started = std::time::Instant::now();
        let result = export::run(store.as_ref(), format, &query, &tx, &mut progress).await;
        drop(tx);
        let written = writer.await.context("the writer thread failed")?;
        store.shutdown().await;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        written.context("cannot write the export")?;
        let summary = result?;
        let seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "sealtrail export: {} events of tenant {} in {seconds:.2} s ({:.0} events/s){}",
            summary.rows,
            args.tenant,
            summary.rows as f64 / seconds.max(1e-9),
            match (format, &query.checkpoint) {
                (Format::Ndjson, Some(cp)) => format!(", proven against the checkpoint of size {}", cp.size),
                (Format::Ndjson, None) => ", none: no checkpoint vouches for this tenant yet".to_owned(),
                _ => String::new(),
            }
        );
        Ok(())
    })
}

/// The runtime of a command other than `serve`: two workers, enough to drive a store's
/// connections while the command's own threads wait on them.
pub(crate) fn tool_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Opens a store for a command (export, reindex, keys) rather than a server: no background
/// indexer, no migration.
async fn open_tool_store(
    data_dir: Option<&std::path::Path>,
    database_url: Option<&sealtrail_store::DatabaseUrl>,
    schema: &str,
) -> anyhow::Result<Arc<dyn Store>> {
    match (data_dir, database_url) {
        (Some(dir), _) => {
            anyhow::ensure!(
                dir.join(sealtrail_store_sqlite::DB_FILE).exists(),
                "{} holds no sealtrail store",
                dir.display()
            );
            let mut config = SqliteConfig::new(dir);
            config.indexer.background = false;
            let store = SqliteStore::open(&config)
                .with_context(|| format!("cannot open the store in {}", dir.display()))?;
            Ok(Arc::new(store))
        }
        (None, Some(url)) => {
            let mut config = PgConfig::new(url.clone());
            config.schema = schema.to_owned();
            config.migrate = false;
            config.indexer.background = false;
            let store = PgStore::open(&config)
                .await
                .context("cannot open the PostgreSQL store")?;
            Ok(Arc::new(store))
        }
        (None, None) => anyhow::bail!("give --data-dir or --database-url"),
    }
}

/// Resolves at the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested; draining");
}
