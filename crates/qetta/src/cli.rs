//! The `qetta` command line.

// The command line talks to the terminal: banners, `config show`, command results.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::app::{self, App};
use crate::clock::SystemClock;
use crate::config::{Config, Sources};

#[derive(Parser)]
#[command(name = "qetta", version, about = "Qetta Connect: KFTC OpenBanking and Toss Certification connections, self-hosted.")]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default). With no configuration: SQLite under ./data, generated
    /// secrets, and the built-in provider sandbox, on http://127.0.0.1:8080.
    Serve,
    /// Apply database migrations and exit (they also run at every start).
    Migrate,
    /// Run the provider sandbox alone (KFTC under /kftc, Toss under /toss, Kakao under /kakao,
    /// Naver under /naver), for tests, demos
    /// and load tests of clients other than this service.
    Sandbox {
        /// Port to listen on (0 = any free port).
        #[arg(long, default_value_t = 8090)]
        port: u16,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
    },
    /// Encryption keys of stored tokens.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Check a running deployment end to end (health, a throwaway user, status, the Toss test,
    /// and with the embedded sandbox a KFTC connect, balance and disconnect). Exit 1 on failure.
    Smoke {
        /// The deployment's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The sandbox user who consents (kim, lee, park, choi).
        #[arg(long, default_value = "kim")]
        sandbox_user: String,
    },
    /// Probe a running service for container health checks (no shell or curl needed): GET the URL
    /// and exit 0 on a 2xx answer, 1 otherwise. `--ignore redis` also accepts a 503 from `/ready`
    /// whose only failing parts are the ignored ones (the service keeps working on its fallbacks
    /// while Redis is down).
    Health {
        /// What to probe (default: `/ready` on 127.0.0.1 and `PORT`, or 8080).
        #[arg(long)]
        url: Option<String>,
        /// A `/ready` check whose failure still counts as healthy (repeatable: `--ignore redis`).
        #[arg(long, value_parser = ["database", "redis"])]
        ignore: Vec<String>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3)]
        timeout_secs: u64,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Administrators of the /admin dashboard (besides QETTA_ADMIN_EMAILS). Needs only the database.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Check what the service needs: configuration, database, migrations, encryption keys,
    /// Redis, the clock, and the configured providers' reachability. One line per check; exit 1
    /// when one fails.
    Doctor,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Make the account registered with EMAIL an administrator (bound to that account; takes
    /// effect at its next request).
    Grant { email: String },
    /// Take administration away from EMAIL (at its next request, on every replica).
    Revoke { email: String },
    /// List the administrators, where each grant came from, and its account.
    List,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration, secrets hidden, with where each value came from.
    Show,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a new key entry (`id:base64`) to put first in QETTA_ENCRYPTION_KEYS.
    Generate {
        /// The key id (default: k + today's date).
        #[arg(long)]
        id: Option<String>,
    },
    /// Re-encrypt every stored token that is not on the active (first) key, in batches. Safe while
    /// the service runs; run again to resume.
    Rotate {
        #[arg(long, default_value_t = 100)]
        batch: i64,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain of the whole audit log; exit 1 if an entry was altered or removed.
    Verify,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let command = cli.command.unwrap_or(Command::Serve);
        if let Command::Keys { command: KeysCommand::Generate { id } } = &command {
            let id = id.clone().unwrap_or_else(|| format!("k{}", chrono::Utc::now().format("%Y%m%d")));
            crate::vault::KeyRing::parse(&format!("{id}:{}", "A".repeat(43) + "="))?;
            println!("{}", crate::vault::KeyRing::generate_entry(&id));
            return Ok(());
        }
        if let Command::Smoke { url, sandbox_user } = &command {
            return crate::smoke::run(url, sandbox_user).await.map_err(anyhow::Error::from);
        }
        if let Command::Doctor = &command {
            let checks = crate::operator::doctor(&Sources::load()?).await;
            return if crate::operator::report(&checks) { Ok(()) } else { Err(DoctorFailed.into()) };
        }
        if let Command::Health { url, ignore, timeout_secs } = &command {
            return health(url.as_deref(), ignore, *timeout_secs).await;
        }
        let config = load_config()?;
        crate::telemetry::init(config.log_format, config.otel.as_ref());
        match command {
            Command::Serve => serve(config).await,
            Command::Migrate => migrate(config).await,
            Command::Sandbox { port, host } => sandbox(config, host, port).await,
            Command::Keys { command: KeysCommand::Rotate { batch } } => rotate(config, batch).await,
            Command::Keys { command: KeysCommand::Generate { .. } } => unreachable!("handled above"),
            Command::Audit { command: AuditCommand::Verify } => audit_verify(config).await,
            Command::Admin { command } => admin(config, command).await,
            Command::Smoke { .. } | Command::Doctor | Command::Health { .. } => unreachable!("handled above"),
            Command::Config { command: ConfigCommand::Show } => {
                print!("{}", crate::operator::show(&config));
                Ok(())
            }
        }
    });
    // Outside the runtime: the exporter's last export blocks.
    crate::telemetry::shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<DoctorFailed>().is_some() => ExitCode::FAILURE,
        Err(e)
            if e.downcast_ref::<AuditBroken>().is_some()
                || e.downcast_ref::<crate::smoke::SmokeFailed>().is_some()
                || e.downcast_ref::<Unhealthy>().is_some() =>
        {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn load_config() -> anyhow::Result<Config> {
    let sources = Sources::load()?;
    Ok(Config::from_sources(&sources)?)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Before the port opens (see `shutdown_signal`).
    let shutdown = app::shutdown_signal();
    let app = App::build(config, Arc::new(SystemClock)).await?;
    let addr = app.local_addr();
    let public = app.state().config.public_url.clone();
    eprintln!("Qetta Connect {} listening on http://{addr}", env!("CARGO_PKG_VERSION"));
    eprintln!("  page:   {public}/oauth");
    eprintln!("  api:    {public}/api/v1");
    eprintln!("  health: {public}/health");
    for note in &app.banner.notes {
        eprintln!("  {note}");
    }
    for warning in &app.banner.warnings {
        tracing::warn!("{warning}");
    }
    app.run(shutdown).await?;
    Ok(())
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let db = app::open_database(&config).await?;
    db.close().await;
    eprintln!("migrations applied to {}", config.database_url_for_display());
    Ok(())
}

async fn sandbox(config: Config, host: std::net::IpAddr, port: u16) -> anyhow::Result<()> {
    let shutdown = app::shutdown_signal();
    let sc = qetta_sandbox::SandboxConfig::from_lookup(|k| config.sources.get(k))?;
    let sandbox = qetta_sandbox::Sandbox::new(sc);
    let listener = tokio::net::TcpListener::bind((host, port)).await.map_err(|e| anyhow::anyhow!("cannot listen on {host}:{port}: {e}"))?;
    let addr = listener.local_addr()?;
    println!("Qetta sandbox listening on http://{addr}");
    println!("  KFTC base: http://{addr}/kftc   (KFTC_API_BASE)");
    println!("  Toss base: http://{addr}/toss   (TOSS_OAUTH_BASE and TOSS_API_BASE)");
    println!("  Toss public key (TOSS_RSA_PUBLIC_KEY): {}", sandbox.toss_public_key_base64());
    println!("  Kakao base: http://{addr}/kakao  (discovery: /kakao/.well-known/openid-configuration)");
    println!("  Naver base: http://{addr}/naver  (discovery: /naver/.well-known/openid-configuration)");
    qetta_sandbox::serve(listener, sandbox, shutdown).await?;
    Ok(())
}

async fn rotate(config: Config, batch: i64) -> anyhow::Result<()> {
    if !(1..=10_000).contains(&batch) {
        anyhow::bail!("--batch must be between 1 and 10000");
    }
    config.check_shared_keys()?;
    let db = app::open_database(&config).await?;
    let (ring, _) = crate::keys::load_ring(&config)?;
    crate::keys::verify_against_store(&db, &ring).await?;
    let vault = crate::vault::Vault::new(ring);
    // A rotation never runs unaudited: record its start first, or refuse.
    let started = crate::store::audit::NewEntry {
        actor: "cli:keys-rotate".into(),
        action: "key_rotation".into(),
        outcome: "started".into(),
        detail: serde_json::json!({"active_key": vault.active_key_id(), "batch": batch}),
        ..Default::default()
    };
    crate::store::audit::append(&db, &started, chrono::Utc::now().timestamp())
        .await
        .map_err(|e| anyhow::anyhow!("the audit log cannot be written ({e}); nothing was re-encrypted"))?;
    let report = crate::keys::rotate(&db, &vault, batch).await?;
    let entry = crate::store::audit::NewEntry {
        actor: "cli:keys-rotate".into(),
        action: "key_rotation".into(),
        outcome: if report.remaining == 0 { "ok".into() } else { "partial".into() },
        detail: serde_json::json!({"active_key": vault.active_key_id(), "resealed": report.resealed, "skipped": report.skipped, "remaining": report.remaining}),
        ..Default::default()
    };
    crate::store::audit::append(&db, &entry, chrono::Utc::now().timestamp()).await?;
    println!(
        "active key {}: re-encrypted {} row(s) (connections, Toss token and identities), {} changed meanwhile (already on the active key), {} remaining",
        vault.active_key_id(),
        report.resealed,
        report.skipped,
        report.remaining
    );
    db.close().await;
    Ok(())
}

async fn admin(config: Config, command: AdminCommand) -> anyhow::Result<()> {
    let db = app::open_database(&config).await?;
    let now = chrono::Utc::now().timestamp();
    let result = match command {
        AdminCommand::Grant { email } => crate::admin::grant(&db, &email, now).await.map(|user_id| {
            println!("granted: {email} (account {user_id}) is an administrator from its next request");
        }),
        AdminCommand::Revoke { email } => crate::admin::revoke(&db, &email, now).await.map(|found| {
            if found {
                println!("revoked: {email} is no longer an administrator (from its next request)");
            } else {
                println!("{email} was not an administrator");
            }
            let listed = crate::auth::password::normalize_email(&email).is_ok_and(|e| config.admin_emails.contains(&e));
            if listed {
                eprintln!("warning: QETTA_ADMIN_EMAILS still names {email}: every start grants it again; remove it there too");
            }
        }),
        AdminCommand::List => crate::store::admin::list(&db).await.map_err(Into::into).map(|grants| {
            if grants.is_empty() {
                println!("no administrators (set QETTA_ADMIN_EMAILS or run `qetta admin grant EMAIL`)");
            }
            for g in grants {
                let source = if g.source == crate::store::admin::SOURCE_ENV { "QETTA_ADMIN_EMAILS" } else { "qetta admin grant" };
                let at = chrono::DateTime::from_timestamp(g.granted_at, 0).map(|d| d.to_rfc3339()).unwrap_or_default();
                println!("{}\taccount {}\tfrom {source}\tsince {at}", g.email, g.user_id.as_deref().unwrap_or("-"));
            }
        }),
    };
    db.close().await;
    Ok(result?)
}

#[derive(Debug, thiserror::Error)]
#[error("a check failed")]
struct DoctorFailed;

#[derive(Debug, thiserror::Error)]
#[error("unhealthy: {0}")]
struct Unhealthy(String);

/// `qetta health`: one GET, exit 0 on 2xx (or a `/ready` 503 failing only on ignored checks).
async fn health(url: Option<&str>, ignore: &[String], timeout_secs: u64) -> anyhow::Result<()> {
    let url = match url {
        Some(u) => u.to_string(),
        None => {
            format!("http://127.0.0.1:{}/ready", std::env::var("PORT").ok().filter(|p| !p.trim().is_empty() && p.trim() != "0").as_deref().unwrap_or("8080"))
        }
    };
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(timeout_secs.max(1))).redirect(reqwest::redirect::Policy::none()).build()?;
    let response = client.get(&url).send().await.map_err(|e| Unhealthy(format!("{url}: {e}")))?;
    let status = response.status();
    if status.is_success() {
        println!("healthy: {url} answered {status}");
        return Ok(());
    }
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let failing: Vec<&str> = body["failing"].as_array().map(|a| a.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_default();
    if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && !failing.is_empty() && failing.iter().all(|f| ignore.iter().any(|i| i == f)) {
        println!("healthy: {url} answered {status}, failing only on ignored checks ({})", failing.join(", "));
        return Ok(());
    }
    let detail = if failing.is_empty() { String::new() } else { format!(" (failing: {})", failing.join(", ")) };
    Err(Unhealthy(format!("{url} answered {status}{detail}")).into())
}

#[derive(Debug, thiserror::Error)]
#[error("audit log BROKEN at entry {id}: {reason}")]
struct AuditBroken {
    id: i64,
    reason: &'static str,
}

async fn audit_verify(config: Config) -> anyhow::Result<()> {
    // Read-only: no migrations, nothing written.
    let db = app::connect_database_read_only(&config).await?;
    let result = crate::store::audit::verify(&db).await?;
    db.close().await;
    match result {
        crate::store::audit::Verification::Intact { entries } => {
            println!("audit log intact: {entries} entries");
            Ok(())
        }
        crate::store::audit::Verification::Broken { id, reason } => Err(AuditBroken { id, reason }.into()),
    }
}
