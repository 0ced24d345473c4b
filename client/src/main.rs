//! `sosq`: the command-line client for customers, experts and admins. See `sosq --help`.

mod cli;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let out = cli::output::Output { json: cli.json };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            out.error(&format!("cannot start the async runtime: {e}"));
            std::process::exit(1);
        }
    };
    // Session commands and `queue --watch` end on a signal by themselves (politely, saying
    // how to come back); any other command is cut short by one, and then, like every
    // command however it ends, closes its connections before the process exits.
    let own_signals = cli.command.handles_signals();
    let result = runtime.block_on(async {
        let result = if own_signals {
            cli::run(cli).await
        } else {
            tokio::select! {
                result = cli::run(cli) => result,
                _ = cli::signals::interrupted() => Err(sosq::ClientError::Interrupted),
            }
        };
        cli::endpoints::close_all().await;
        result
    });
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            out.error(&e.to_string());
            1
        }
    };
    // A pending read of stdin would keep the runtime from shutting down; nothing else
    // needs to finish, so leave without waiting for it.
    runtime.shutdown_background();
    std::process::exit(code);
}
