//! `sealtrail verify`: checks a store offline and names the first event that was altered,
//! removed, inserted or reordered. Exit status 0 when everything verifies, 1 when something
//! was found, 2 on a usage or I/O error.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Args;
use ed25519_dalek::VerifyingKey;
use sealtrail_server::signing::{PublicKeyInfo, key_id};

/// `sealtrail verify` options.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["data_dir", "database_url", "export"])))]
pub(crate) struct VerifyArgs {
    /// Verify the embedded store in this data directory. Without --public-key the keys listed
    /// in its keys/keyring.json are trusted; with --public-key only the keys given are.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Verify a PostgreSQL store. Without --public-key the keys the servers published in its
    /// signing_keys table are trusted; with --public-key only the keys given are
    #[arg(long, value_name = "URL", hide_env_values = true)]
    database_url: Option<sealtrail_store::DatabaseUrl>,
    /// The PostgreSQL schema that holds sealtrail's tables
    #[arg(
        long,
        value_name = "NAME",
        default_value = "sealtrail",
        requires = "database_url"
    )]
    database_schema: String,
    /// Verify an NDJSON export of `sealtrail export` offline, with --public-key
    #[arg(long, value_name = "FILE", requires = "public_key")]
    export: Option<PathBuf>,
    /// A checkpoint public key to trust: base64 as listed by /integrity/public-keys, or a PEM
    /// file. Repeat it for retired keys. Keep these apart from the data they check
    #[arg(long, value_name = "FILE")]
    public_key: Vec<PathBuf>,
}

/// The outcome: `Ok(true)` verified, `Ok(false)` tampering found, `Err` usage or I/O.
pub(crate) fn run(args: &VerifyArgs) -> anyhow::Result<bool> {
    let given: HashMap<String, VerifyingKey> = args
        .public_key
        .iter()
        .map(|path| read_public_key(path).map(|key| (key_id(&key), key)))
        .collect::<anyhow::Result<_>>()?;
    if let Some(export) = &args.export {
        return verify_export(export, &given);
    }
    if let Some(url) = &args.database_url {
        return verify_postgres(url.expose(), &args.database_schema, given);
    }
    let dir = args.data_dir.as_deref().context("give --data-dir")?;
    let db = dir.join(sealtrail_store_sqlite::DB_FILE);
    if !db.exists() {
        bail!(
            "{} holds no sealtrail store ({} is missing)",
            dir.display(),
            db.display()
        );
    }
    // Keys given on the command line replace the data directory's own list: whoever can
    // rewrite the store can also add a key of their own to keyring.json.
    let keys = if given.is_empty() {
        keyring(dir)?
    } else {
        given
    };
    let conn = sealtrail_store_sqlite::verify::open_for_verify(&db)?;
    let total = sealtrail_store_sqlite::verify::count_events(&conn)?;
    let bar = progress_bar(total);
    let started = std::time::Instant::now();
    drop(conn);
    let report = sealtrail_store_sqlite::verify::verify_store(&db, &keys, &mut |n| {
        if let Some(bar) = &bar {
            bar.set_position(n);
        }
    })?;
    print_report(&report, bar, started)
}

fn verify_postgres(
    url: &str,
    schema: &str,
    given: HashMap<String, VerifyingKey>,
) -> anyhow::Result<bool> {
    // The walk's workers wait on this runtime's connections from plain threads, so its own
    // threads must drive them: a multi-threaded runtime.
    let runtime = crate::tool_runtime()?;
    let workers = sealtrail_store::verify::WalkOptions::default().workers;
    let (pool, keys, total) = runtime.block_on(async {
        let pool = sealtrail_store_postgres::pool(url, schema, workers + 1)?;
        let client = pool.get().await.context("cannot connect to the database")?;
        let version = sealtrail_store_postgres::schema::version(&**client, schema).await?;
        if version == 0 {
            bail!("schema {schema} of that database holds no sealtrail store");
        }
        // Keys given on the command line replace the database's own list: whoever can rewrite
        // the store can also add a key of their own to signing_keys.
        let keys: HashMap<String, VerifyingKey> = if given.is_empty() {
            sealtrail_store_postgres::verify::published_keys(&client)
                .await?
                .into_iter()
                .map(|(id, key)| {
                    decode_key(key.trim())
                        .map(|k| (id.clone(), k))
                        .with_context(|| format!("bad key {id} in signing_keys"))
                })
                .collect::<anyhow::Result<_>>()?
        } else {
            given
        };
        let total = sealtrail_store_postgres::verify::count_events(&client).await?;
        drop(client);
        Ok::<_, anyhow::Error>((pool, keys, total))
    })?;
    let bar = progress_bar(total);
    let started = std::time::Instant::now();
    let report = sealtrail_store_postgres::verify::verify_store(
        &pool,
        runtime.handle().clone(),
        &keys,
        &mut |n| {
            if let Some(bar) = &bar {
                bar.set_position(n);
            }
        },
    )?;
    print_report(&report, bar, started)
}

/// A progress bar on a terminal; nothing in a pipe.
fn progress_bar(total: u64) -> Option<indicatif::ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} events ({per_sec}, {eta} left)",
            )
            .expect("a valid template"),
        );
        bar
    })
}

/// Prints the findings to standard output and the summary to standard error.
fn print_report(
    report: &sealtrail_store::verify::Report,
    bar: Option<indicatif::ProgressBar>,
    started: std::time::Instant,
) -> anyhow::Result<bool> {
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let mut out = std::io::stdout().lock();
    for finding in &report.findings {
        use std::io::Write;
        writeln!(out, "{finding}")?;
    }
    for (tenant, u) in &report.uncovered {
        eprintln!(
            "sealtrail verify: warning: tenant {tenant}: the last {} events (newest recorded {}) are chained but no checkpoint covers them yet (newest checkpoint: {})",
            u.events,
            u.last_event_at.to_rfc3339(),
            u.newest_checkpoint_at.map_or_else(
                || "none".to_owned(),
                |t| format!("signed {}", t.to_rfc3339())
            )
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "sealtrail verify: {}, {}, {}, {:.2} s ({:.0} events/s): {}",
        count(report.events, "event"),
        count(report.tenants, "tenant"),
        count(report.checkpoints, "checkpoint"),
        seconds,
        report.events as f64 / seconds.max(1e-9),
        if report.findings.is_empty() {
            "everything verifies".to_owned()
        } else {
            format!("{} findings", report.findings.len())
        }
    );
    Ok(report.findings.is_empty())
}

fn verify_export(path: &Path, keys: &HashMap<String, VerifyingKey>) -> anyhow::Result<bool> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let started = std::time::Instant::now();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    // A retention archive is the same NDJSON gzip'd: told by its magic bytes, not its name.
    let gzipped = {
        use std::io::BufRead;
        reader
            .fill_buf()
            .with_context(|| format!("cannot read {}", path.display()))?
            .starts_with(&[0x1f, 0x8b])
    };
    let (findings, events) = if gzipped {
        sealtrail_store::verify::verify_export_reader(
            std::io::BufReader::with_capacity(
                1 << 20,
                flate2::bufread::MultiGzDecoder::new(reader),
            ),
            keys,
        )
    } else {
        sealtrail_store::verify::verify_export_reader(reader, keys)
    }
    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut out = std::io::stdout().lock();
    for finding in &findings {
        use std::io::Write;
        writeln!(out, "{finding}")?;
    }
    eprintln!(
        "sealtrail verify: {events} exported events, {:.2} s: {}",
        started.elapsed().as_secs_f64(),
        if findings.is_empty() {
            "everything verifies".to_owned()
        } else {
            format!("{} findings", findings.len())
        }
    );
    Ok(findings.is_empty())
}

/// `1 event`, `2 events`.
fn count(n: u64, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

fn keyring(dir: &Path) -> anyhow::Result<HashMap<String, VerifyingKey>> {
    let path = dir.join("keys").join("keyring.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let infos: Vec<PublicKeyInfo> =
        serde_json::from_str(&text).with_context(|| format!("invalid {}", path.display()))?;
    infos
        .into_iter()
        .map(|k| {
            Ok((
                k.key_id.clone(),
                decode_key(k.public_key.trim())
                    .with_context(|| format!("bad key {} in {}", k.key_id, path.display()))?,
            ))
        })
        .collect()
}

fn decode_key(text: &str) -> anyhow::Result<VerifyingKey> {
    let bytes = STANDARD.decode(text).context("not base64")?;
    // A PEM SubjectPublicKeyInfo of an Ed25519 key ends with the 32 raw key bytes.
    let raw: [u8; 32] = match bytes.len() {
        32 => bytes.try_into().expect("32 bytes"),
        44 => bytes[12..].try_into().expect("32 bytes"),
        n => bail!("an Ed25519 public key is 32 bytes, not {n}"),
    };
    VerifyingKey::from_bytes(&raw).context("not an Ed25519 public key")
}

fn read_public_key(path: &Path) -> anyhow::Result<VerifyingKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    decode_key(body.trim()).with_context(|| {
        format!(
            "{} is not a base64 or PEM Ed25519 public key",
            path.display()
        )
    })
}
