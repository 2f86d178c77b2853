use clap::Parser;
use sync_server::config::{Cli, Command};

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
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
