//! The `qetta` command line.

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
        let config = load_config()?;
        crate::telemetry::init(config.log_format);
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(config).await,
            Command::Migrate => migrate(config).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
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
    app.run(app::shutdown_signal()).await?;
    Ok(())
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let db = app::open_database(&config).await?;
    db.close().await;
    eprintln!("migrations applied to {}", config.database_url_for_display());
    Ok(())
}
