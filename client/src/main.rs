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
    let result = runtime.block_on(cli::run(cli));
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
