//! `sosq`: the command-line client for customers, experts and admins. See `sosq --help`.

mod cli;

use clap::Parser;

fn main() {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => usage_error(e),
    };
    let out = cli::output::Output { json: cli.json };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            out.error(
                "local_failure",
                &format!("cannot start the async runtime: {e}"),
            );
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
            out.error(e.code(), &e.to_string());
            1
        }
    };
    // A pending read of stdin would keep the runtime from shutting down; nothing else
    // needs to finish, so leave without waiting for it.
    runtime.shutdown_background();
    std::process::exit(code);
}

/// Ends the process on a command line clap could not read: `--help` and `--version` print
/// as usual (exit 0); a usage error is clap's text and exit 2, or under `--json` (before or
/// after the subcommand) one JSON error line with code `usage` and exit 2.
fn usage_error(error: clap::Error) -> ! {
    use clap::error::ErrorKind;
    let asked = matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    );
    if asked || !json_wanted(std::env::args_os()) {
        error.exit();
    }
    let text = error.render().to_string();
    let message = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("the command line is not understood")
        .trim_start_matches("error: ");
    let out = cli::output::Output { json: true };
    out.error("usage", message);
    std::process::exit(2);
}

/// Whether `--json` is among the arguments (before a `--` that ends the options): clap did
/// not get far enough to say.
fn json_wanted(args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    args.skip(1)
        .take_while(|arg| arg != "--")
        .any(|arg| arg == "--json")
}
