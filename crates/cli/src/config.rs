//! Configuration in layers: flags over `SEALTRAIL_*` environment over the TOML file over
//! defaults. The file's keys are the flags' names in snake_case.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use sealtrail_store::DatabaseUrl;
use serde::Deserialize;

/// The file read when `--config` is not given, if it exists in the working directory.
pub(crate) const DEFAULT_CONFIG_FILE: &str = "sealtrail.toml";

/// `sealtrail serve` options. Each may also come from the environment or the config file.
#[derive(Debug, Args, Default)]
pub(crate) struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "SEALTRAIL_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Directory of the embedded store [default: ./sealtrail-data]
    #[arg(long, env = "SEALTRAIL_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A PostgreSQL URL (postgres://user@host:port/db) instead of the embedded store. The data
    /// directory then holds only the signing keys
    #[arg(
        long,
        env = "SEALTRAIL_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<DatabaseUrl>,
    /// A PostgreSQL read replica's URL for event reads (lists, search, timelines) [default: the
    /// --database-url primary]
    #[arg(
        long,
        env = "SEALTRAIL_READ_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub read_database_url: Option<DatabaseUrl>,
    /// The PostgreSQL schema that holds sealtrail's tables [default: sealtrail]
    #[arg(long, env = "SEALTRAIL_DATABASE_SCHEMA", value_name = "NAME")]
    pub database_schema: Option<String>,
    /// Do not apply database migrations at start; refuse to start on an out-of-date schema
    /// (run `sealtrail migrate` instead)
    #[arg(long, env = "SEALTRAIL_NO_MIGRATE")]
    pub no_migrate: bool,
    /// TOML configuration file [default: ./sealtrail.toml when present]
    #[arg(long, env = "SEALTRAIL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Most events written in one commit [default: 5000]
    #[arg(long, env = "SEALTRAIL_BATCH_MAX_EVENTS", value_name = "N")]
    pub batch_max_events: Option<usize>,
    /// How long the writer waits to fill a batch, e.g. `0ms`, `2ms` [default: 0ms]
    #[arg(long, env = "SEALTRAIL_BATCH_MAX_WAIT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub batch_max_wait: Option<Duration>,
    /// Most events waiting to be written before ingest answers 503 [default: 50000]
    #[arg(long, env = "SEALTRAIL_QUEUE_CAPACITY", value_name = "N")]
    pub queue_capacity: Option<usize>,
    /// Most events of a tenant the derived data (filters, timelines) may lag behind its log
    /// before ingest into it answers 503 [default: 100000]
    #[arg(long, env = "SEALTRAIL_INDEX_MAX_LAG", value_name = "N")]
    pub index_max_lag: Option<u64>,
    /// Checkpoint signing key: a file holding a base64 Ed25519 secret [default: a key made in
    /// DATA_DIR/keys at first start]. A new key retires the previous one, which stays listed.
    #[arg(long, env = "SEALTRAIL_SIGNING_KEY", value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
    /// Append every checkpoint to this file too (a witness outside the data directory)
    #[arg(long, env = "SEALTRAIL_WITNESS_FILE", value_name = "FILE")]
    pub witness_file: Option<PathBuf>,
    /// Sign a checkpoint after this many new events [default: 1000]
    #[arg(long, env = "SEALTRAIL_CHECKPOINT_EVERY_EVENTS", value_name = "N")]
    pub checkpoint_every_events: Option<u64>,
    /// Sign a checkpoint this long after the last one when new events arrived [default: 10s]
    #[arg(long, env = "SEALTRAIL_CHECKPOINT_EVERY", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub checkpoint_every: Option<Duration>,
    /// Sign a checkpoint at least this often, even when idle [default: 60s]
    #[arg(long, env = "SEALTRAIL_CHECKPOINT_HEARTBEAT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub checkpoint_heartbeat: Option<Duration>,
    /// Run retention for every tenant with rules this often, the first time this long after
    /// start ("0s": never; runs by API or `sealtrail retention run` only) [default: 24h]
    #[arg(long, env = "SEALTRAIL_RETENTION_EVERY", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub retention_every: Option<Duration>,
    /// Requests per second (and burst) allowed per credential; over it, 429 with Retry-After
    /// [default: unlimited]
    #[arg(long, env = "SEALTRAIL_RATE_LIMIT_CREDENTIAL", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_credential: Option<u32>,
    /// Requests per second (and burst) allowed per client address [default: unlimited]
    #[arg(long, env = "SEALTRAIL_RATE_LIMIT_IP", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_ip: Option<u32>,
    /// A proxy (address or CIDR) whose X-Forwarded-For / Forwarded headers name the client;
    /// repeatable, or comma-separated [default: none: headers are not believed]
    #[arg(long = "trusted-proxy", env = "SEALTRAIL_TRUSTED_PROXIES", value_name = "CIDR", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<sealtrail_server::limits::IpNet>,
    /// A tenant and an origin whose pages may read that tenant's data from a browser
    /// (`acme=https://app.acme.example`); repeatable, or comma-separated [default: none]
    #[arg(long = "cors-origin", env = "SEALTRAIL_CORS_ORIGINS", value_name = "TENANT=ORIGIN", value_delimiter = ',', value_parser = parse_cors_rule)]
    pub cors_origins: Vec<(sealtrail_model::Tenant, String)>,
    /// How long any request but ingest may take before it answers 503 ("0s": no bound)
    /// [default: 30s]
    #[arg(long, env = "SEALTRAIL_REQUEST_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub request_timeout: Option<Duration>,
    /// Serve HTTPS with this certificate chain (PEM; with --tls-key). SIGHUP reads both files
    /// again without dropping connections
    #[arg(
        long,
        env = "SEALTRAIL_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert
    #[arg(
        long,
        env = "SEALTRAIL_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Accept JWT readers signed with this HS256 secret
    #[arg(
        long,
        env = "SEALTRAIL_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,
    /// Accept JWT readers signed with the RS256 / ES256 keys of this JWKS file (read again
    /// when it changes)
    #[arg(long, env = "SEALTRAIL_JWKS_FILE", value_name = "FILE")]
    pub jwks_file: Option<PathBuf>,
    /// The `iss` JWT readers must carry
    #[arg(long, env = "SEALTRAIL_JWT_ISSUER", value_name = "ISS")]
    pub jwt_issuer: Option<String>,
    /// The `aud` JWT readers must carry
    #[arg(long, env = "SEALTRAIL_JWT_AUDIENCE", value_name = "AUD")]
    pub jwt_audience: Option<String>,
    /// The JWT claim naming the tenant [default: tenant]
    #[arg(long, env = "SEALTRAIL_JWT_TENANT_CLAIM", value_name = "CLAIM")]
    pub jwt_tenant_claim: Option<String>,
    /// The JWT claim holding the roles (audit:read, audit:admin) [default: roles]
    #[arg(long, env = "SEALTRAIL_JWT_ROLES_CLAIM", value_name = "CLAIM")]
    pub jwt_roles_claim: Option<String>,
}

/// An address or a CIDR network.
fn parse_cors_rule(text: &str) -> Result<(sealtrail_model::Tenant, String), String> {
    sealtrail_server::cors::parse_rule(text)
}

fn parse_net(text: &str) -> Result<sealtrail_server::limits::IpNet, String> {
    let text = text.trim();
    text.parse::<sealtrail_server::limits::IpNet>()
        .or_else(|_| {
            text.parse::<std::net::IpAddr>()
                .map(sealtrail_server::limits::IpNet::from)
        })
        .map_err(|_| format!("{text} is not an address or CIDR network"))
}

/// The config file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    read_database_url: Option<String>,
    database_schema: Option<String>,
    #[serde(default)]
    no_migrate: bool,
    batch_max_events: Option<usize>,
    #[serde(default, with = "humantime_serde_opt")]
    batch_max_wait: Option<Duration>,
    queue_capacity: Option<usize>,
    index_max_lag: Option<u64>,
    signing_key: Option<PathBuf>,
    witness_file: Option<PathBuf>,
    checkpoint_every_events: Option<u64>,
    #[serde(default, with = "humantime_serde_opt")]
    checkpoint_every: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    checkpoint_heartbeat: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    retention_every: Option<Duration>,
    rate_limit_credential: Option<u32>,
    rate_limit_ip: Option<u32>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default)]
    cors_origins: Vec<String>,
    #[serde(default, with = "humantime_serde_opt")]
    request_timeout: Option<Duration>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    jwt_secret: Option<String>,
    jwks_file: Option<PathBuf>,
    jwt_issuer: Option<String>,
    jwt_audience: Option<String>,
    jwt_tenant_claim: Option<String>,
    jwt_roles_claim: Option<String>,
}

mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// The settled configuration of `serve`.
#[derive(Debug, Clone)]
pub(crate) struct ServeConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The PostgreSQL store, when one is configured instead of the embedded one.
    pub postgres: Option<PostgresSettings>,
    /// Most events per commit.
    pub batch_max_events: usize,
    /// How long to wait to fill a batch.
    pub batch_max_wait: Duration,
    /// Write-queue capacity in events.
    pub queue_capacity: usize,
    /// How far derived data may lag behind a tenant's log before ingest is refused.
    pub index_max_lag: u64,
    /// The configured signing key file.
    pub signing_key: Option<PathBuf>,
    /// Checkpoint cadence and witness.
    pub checkpoints: sealtrail_server::checkpointer::CheckpointPolicy,
    /// How often the retention job runs (zero: never).
    pub retention_every: Duration,
    /// Rate limits, trusted proxies and the request timeout.
    pub limits: sealtrail_server::limits::LimitSettings,
    /// JWT readers.
    pub jwt: sealtrail_server::jwt::JwtSettings,
    /// The origins each tenant allows to read from a browser.
    pub cors: sealtrail_server::cors::CorsSettings,
    /// HTTPS instead of HTTP.
    pub tls: Option<sealtrail_server::TlsFiles>,
}

/// Where the PostgreSQL store is.
#[derive(Debug, Clone)]
pub(crate) struct PostgresSettings {
    /// The primary.
    pub url: DatabaseUrl,
    /// A replica for event reads.
    pub read_url: Option<DatabaseUrl>,
    /// The schema.
    pub schema: String,
    /// Whether to migrate at start.
    pub migrate: bool,
}

impl ServeArgs {
    /// Merges flags and environment (already merged by clap) over the file and defaults.
    pub(crate) fn resolve(self) -> anyhow::Result<ServeConfig> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                read_file(Path::new(DEFAULT_CONFIG_FILE))?
            }
            None => FileConfig::default(),
        };
        let postgres = match self
            .database_url
            .or(file.database_url.map(DatabaseUrl::from))
        {
            Some(url) => {
                let scheme = url.expose().split("://").next().unwrap_or("");
                if !matches!(scheme, "postgres" | "postgresql") {
                    bail!(
                        "--database-url must be a postgres:// or postgresql:// URL, not {scheme:?}; \
                         leave it out to use the embedded store under --data-dir"
                    );
                }
                Some(PostgresSettings {
                    url,
                    read_url: self
                        .read_database_url
                        .or(file.read_database_url.map(DatabaseUrl::from)),
                    schema: self
                        .database_schema
                        .or(file.database_schema)
                        .unwrap_or_else(|| "sealtrail".to_owned()),
                    migrate: !(self.no_migrate || file.no_migrate),
                })
            }
            None => None,
        };
        Ok(ServeConfig {
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir: self
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("sealtrail-data")),
            postgres,
            batch_max_events: self
                .batch_max_events
                .or(file.batch_max_events)
                .unwrap_or(5_000),
            batch_max_wait: self
                .batch_max_wait
                .or(file.batch_max_wait)
                .unwrap_or(Duration::ZERO),
            queue_capacity: self
                .queue_capacity
                .or(file.queue_capacity)
                .unwrap_or(50_000),
            index_max_lag: self
                .index_max_lag
                .or(file.index_max_lag)
                .unwrap_or(sealtrail_store::derived::IndexerOptions::default().max_lag)
                .max(1),
            signing_key: self.signing_key.or(file.signing_key),
            checkpoints: {
                let defaults = sealtrail_server::checkpointer::CheckpointPolicy::default();
                sealtrail_server::checkpointer::CheckpointPolicy {
                    every_events: self
                        .checkpoint_every_events
                        .or(file.checkpoint_every_events)
                        .unwrap_or(defaults.every_events)
                        .max(1),
                    every: self
                        .checkpoint_every
                        .or(file.checkpoint_every)
                        .unwrap_or(defaults.every),
                    heartbeat: self
                        .checkpoint_heartbeat
                        .or(file.checkpoint_heartbeat)
                        .unwrap_or(defaults.heartbeat),
                    witness_file: self.witness_file.or(file.witness_file),
                    ..defaults
                }
            },
            retention_every: self
                .retention_every
                .or(file.retention_every)
                .unwrap_or(Duration::from_secs(24 * 3600)),
            limits: {
                let rate = |n: Option<u32>| {
                    n.and_then(std::num::NonZeroU32::new)
                        .map(sealtrail_server::limits::Rate)
                };
                let trusted_proxies = if self.trusted_proxies.is_empty() {
                    file.trusted_proxies
                        .iter()
                        .map(|t| parse_net(t).map_err(anyhow::Error::msg))
                        .collect::<anyhow::Result<Vec<_>>>()
                        .context("invalid trusted_proxies in the config file")?
                } else {
                    self.trusted_proxies
                };
                let defaults = sealtrail_server::limits::LimitSettings::default();
                sealtrail_server::limits::LimitSettings {
                    per_credential: rate(self.rate_limit_credential.or(file.rate_limit_credential)),
                    per_ip: rate(self.rate_limit_ip.or(file.rate_limit_ip)),
                    trusted_proxies,
                    request_timeout: match self.request_timeout.or(file.request_timeout) {
                        Some(Duration::ZERO) => None,
                        Some(d) => Some(d),
                        None => defaults.request_timeout,
                    },
                }
            },
            cors: sealtrail_server::cors::CorsSettings::new(if self.cors_origins.is_empty() {
                file.cors_origins
                    .iter()
                    .map(|t| parse_cors_rule(t).map_err(anyhow::Error::msg))
                    .collect::<anyhow::Result<Vec<_>>>()
                    .context("invalid cors_origins in the config file")?
            } else {
                self.cors_origins
            }),
            tls: match (
                self.tls_cert.or(file.tls_cert),
                self.tls_key.or(file.tls_key),
            ) {
                (Some(cert), Some(key)) => Some(sealtrail_server::TlsFiles { cert, key }),
                (None, None) => None,
                _ => bail!("tls_cert and tls_key go together: give both or neither"),
            },
            jwt: {
                let defaults = sealtrail_server::jwt::JwtSettings::default();
                sealtrail_server::jwt::JwtSettings {
                    secret: self
                        .jwt_secret
                        .or(file.jwt_secret)
                        .filter(|s| !s.is_empty())
                        .map(String::into_bytes),
                    jwks_file: self.jwks_file.or(file.jwks_file),
                    issuer: self.jwt_issuer.or(file.jwt_issuer),
                    audience: self.jwt_audience.or(file.jwt_audience),
                    tenant_claim: self
                        .jwt_tenant_claim
                        .or(file.jwt_tenant_claim)
                        .unwrap_or(defaults.tenant_claim),
                    roles_claim: self
                        .jwt_roles_claim
                        .or(file.jwt_roles_claim)
                        .unwrap_or(defaults.roles_claim),
                }
            },
        })
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("s.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/from-file\"\nbatch_max_wait = \"3ms\"\n",
        )
        .expect("write");
        let args = ServeArgs {
            data_dir: Some(PathBuf::from("/from-flag")),
            config: Some(file),
            ..Default::default()
        };
        let config = args.resolve().expect("resolve");
        assert_eq!(config.listen, "127.0.0.1:9000".parse().expect("addr"));
        assert_eq!(config.data_dir, PathBuf::from("/from-flag"));
        assert_eq!(config.batch_max_wait, Duration::from_millis(3));
        assert_eq!(config.queue_capacity, 50_000);
    }

    #[test]
    fn cors_origins_come_from_the_file_unless_flags_name_some() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("s.toml");
        std::fs::write(
            &file,
            "cors_origins = [\"acme=https://app.acme.example\"]\n",
        )
        .expect("write");
        let acme = sealtrail_model::validate_tenant("acme").expect("tenant");
        let globex = sealtrail_model::validate_tenant("globex").expect("tenant");
        let args = ServeArgs {
            config: Some(file.clone()),
            ..Default::default()
        };
        let cors = args.resolve().expect("resolve").cors;
        assert!(cors.allows(&acme, "https://app.acme.example"));
        let args = ServeArgs {
            config: Some(file.clone()),
            cors_origins: vec![parse_cors_rule("globex=http://localhost:3000").expect("rule")],
            ..Default::default()
        };
        let cors = args.resolve().expect("resolve").cors;
        assert!(!cors.allows(&acme, "https://app.acme.example"));
        assert!(cors.allows(&globex, "http://localhost:3000"));
        std::fs::write(&file, "cors_origins = [\"acme=app.acme.example\"]\n").expect("write");
        let args = ServeArgs {
            config: Some(file),
            ..Default::default()
        };
        let err = args.resolve().expect_err("no scheme");
        assert!(format!("{err:#}").contains("cors_origins"), "{err:#}");
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("s.toml");
        std::fs::write(&file, "listn = \"x\"\n").expect("write");
        let args = ServeArgs {
            config: Some(file),
            ..Default::default()
        };
        let err = args.resolve().expect_err("unknown key");
        assert!(format!("{err:#}").contains("listn"), "{err:#}");
    }

    #[test]
    fn a_database_url_selects_postgres_with_its_schema_and_migration_setting() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("s.toml");
        std::fs::write(
            &file,
            "database_url = \"postgres://db/x\"\ndatabase_schema = \"audit\"\nno_migrate = true\n",
        )
        .expect("write");
        let args = ServeArgs {
            config: Some(file),
            ..Default::default()
        };
        let pg = args.resolve().expect("resolve").postgres.expect("postgres");
        assert_eq!(
            (pg.url.expose(), pg.schema.as_str(), pg.migrate, pg.read_url),
            ("postgres://db/x", "audit", false, None)
        );
        let args = ServeArgs {
            database_url: Some(DatabaseUrl::from("mysql://db/x")),
            ..Default::default()
        };
        let err = args.resolve().expect_err("not postgres");
        assert!(format!("{err:#}").contains("postgres://"), "{err:#}");
    }
}
