use clap::{CommandFactory, Parser};

/// mimalloc rather than the system allocator: a request allocates and frees many small buffers
/// across the runtime's threads, where glibc's arenas contend (measured by `bench_saturation`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::error::Error as _;
use sync_server::config::{Cli, Command};

/// Parses the settings; a bad value is reported on one line that names its environment variable.
fn settings() -> Cli {
    Cli::try_parse().unwrap_or_else(|e| {
        use clap::error::{ContextKind, ContextValue, ErrorKind};
        if e.kind() == ErrorKind::ValueValidation || e.kind() == ErrorKind::InvalidValue {
            let arg = match e.get(ContextKind::InvalidArg) {
                Some(ContextValue::String(a)) => a.clone(),
                _ => String::new(),
            };
            let long = arg.trim_start_matches("--").split([' ', '=']).next().unwrap_or("").to_owned();
            let cmd = Cli::command();
            let found = cmd.get_arguments().find(|a| a.get_long() == Some(long.as_str()));
            let env = found.and_then(|a| a.get_env().map(|v| v.to_string_lossy().into_owned()));
            let secret = found.is_some_and(|a| a.is_hide_env_values_set());
            if let Some(env) = env {
                let value = match e.get(ContextKind::InvalidValue) {
                    // A secret's value is never printed, not even a wrong one.
                    Some(ContextValue::String(_)) if secret => "***".to_owned(),
                    Some(ContextValue::String(v)) => v.clone(),
                    _ => String::new(),
                };
                let why = e.source().map(|s| s.to_string()).unwrap_or_else(|| "not a valid value".into());
                eprintln!("error: {env}: invalid value '{value}': {why}");
                std::process::exit(2);
            }
        }
        e.exit()
    })
}

#[tokio::main]
async fn main() {
    let cli = settings();
    sync_server::app::init_tracing(&cli.settings.log_format);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => sync_server::app::run(cli.settings).await,
        Command::Import { file } => sync_server::import::run(&cli.settings, &file).await.map(|summary| println!("{summary}")),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
