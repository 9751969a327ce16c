//! `sealtrail keys create|list|revoke`: API keys managed on the store itself, embedded or
//! PostgreSQL, with the server stopped or running. Creation and revocation go through the same
//! functions as `POST /keys` and `DELETE /keys/{id}`, so they are recorded in the key's tenant
//! (`audit.key_created`, `audit.key_revoked`), with the command line as actor.

use std::io::Write;

use sealtrail_store::{Scope, TenantScope};

/// `sealtrail keys` options.
#[derive(Debug, clap::Args)]
pub(crate) struct KeysArgs {
    #[command(subcommand)]
    action: KeysAction,
    #[command(flatten)]
    store: crate::StoreArgs,
}

#[derive(Debug, clap::Subcommand)]
enum KeysAction {
    /// Create a key and print it as JSON (`id`, `token`, `tenant`, `scopes`, `name`,
    /// `created_at`); the token is shown only here
    Create {
        /// The tenant it is bound to, or `*` (all tenants: admin keys only)
        #[arg(long)]
        tenant: String,
        /// What it may do: ingest, read, admin; repeatable or comma-separated
        #[arg(long = "scope", value_name = "SCOPE", value_delimiter = ',', required = true, value_parser = parse_scope)]
        scopes: Vec<Scope>,
        /// A name for people
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List keys, without tokens
    List {
        /// Only this tenant's keys
        #[arg(long)]
        tenant: Option<String>,
        /// JSON (as `GET /keys` answers) instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key, at once
    Revoke {
        /// The key's id
        id: String,
    },
}

fn parse_scope(text: &str) -> Result<Scope, String> {
    Scope::parse(text.trim()).ok_or_else(|| format!("{text} is not ingest, read or admin"))
}

fn tenant_scope(text: &str) -> anyhow::Result<TenantScope> {
    if text == "*" {
        return Ok(TenantScope::All);
    }
    sealtrail_store::Tenant::parse(text)
        .map(TenantScope::One)
        .map_err(|e| anyhow::anyhow!("--tenant {text}: {e}"))
}

/// Who the command line acts as, in the events it records.
fn actor() -> sealtrail_model::Actor {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_default();
    sealtrail_model::Actor {
        id: "sealtrail-cli".into(),
        actor_type: sealtrail_model::ActorType::System,
        name: Some(if user.is_empty() {
            "sealtrail keys (command line)".to_owned()
        } else {
            format!("sealtrail keys (command line, {user})")
        }),
        email: None,
    }
}

pub(crate) fn run(args: &KeysArgs) -> anyhow::Result<()> {
    let runtime = crate::tool_runtime()?;
    runtime.block_on(async {
        let store = args.store.open().await?;
        let result = act(store.as_ref(), &args.action).await;
        store.shutdown().await;
        result
    })
}

async fn act(store: &dyn sealtrail_store::Store, action: &KeysAction) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match action {
        KeysAction::Create {
            tenant,
            scopes,
            name,
        } => {
            let tenant = tenant_scope(tenant)?;
            let mut scopes = scopes.clone();
            scopes.sort();
            scopes.dedup();
            anyhow::ensure!(
                tenant != TenantScope::All || scopes.contains(&Scope::Admin),
                "only admin keys may be bound to all tenants (*)"
            );
            anyhow::ensure!(
                name.chars().count() <= 128,
                "--name is longer than 128 characters"
            );
            let created =
                sealtrail_server::keys::create_key(store, tenant, scopes, name.clone(), actor())
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot create the key: {e}"))?;
            writeln!(out, "{}", serde_json::to_string_pretty(&created)?)?;
            eprintln!("sealtrail keys: the token is shown only now; keep it somewhere safe");
        }
        KeysAction::List { tenant, json } => {
            let scope = match tenant {
                Some(t) => tenant_scope(t)?,
                None => TenantScope::All,
            };
            let keys = store
                .list_keys(scope)
                .await
                .map_err(|e| anyhow::anyhow!("cannot list keys: {e}"))?;
            if *json {
                let items: Vec<sealtrail_server::keys::KeyView> =
                    keys.into_iter().map(Into::into).collect();
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "items": items }))?
                )?;
            } else {
                writeln!(
                    out,
                    "{:<36}  {:<20}  {:<18}  {:<27}  {:<27}  NAME",
                    "ID", "TENANT", "SCOPES", "CREATED", "REVOKED"
                )?;
                for k in keys {
                    let scopes: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
                    writeln!(
                        out,
                        "{:<36}  {:<20}  {:<18}  {:<27}  {:<27}  {}",
                        k.id,
                        k.tenant.as_str(),
                        scopes.join(","),
                        k.created_at.to_rfc3339(),
                        k.revoked_at
                            .map_or_else(|| "-".to_owned(), |t| t.to_rfc3339()),
                        k.name
                    )?;
                }
            }
        }
        KeysAction::Revoke { id } => {
            let key = sealtrail_server::keys::revoke_key(store, id, actor())
                .await
                .map_err(|e| anyhow::anyhow!("cannot revoke the key: {e}"))?
                .ok_or_else(|| anyhow::anyhow!("no key {id}"))?;
            eprintln!(
                "sealtrail keys: key {} of tenant {} is revoked",
                key.id,
                key.tenant.as_str()
            );
        }
    }
    Ok(())
}
