//! `cargo run --release -p vigil-offline --example drift -- REFERENCE CURRENT [--json] ...`:
//! the same as `vigil drift`, for use before the binary wires it (and by the Evidently
//! comparison in `load-tests/evidently/`). Prints the engine's run time on stderr.

use clap::Parser;
use vigil_offline::{run_drift, DriftArgs};

#[derive(Parser)]
#[command(name = "drift", about = "Per-column drift between a reference and a current CSV file")]
struct Cli {
    #[command(flatten)]
    args: DriftArgs,
}

fn main() {
    let cli = Cli::parse();
    let start = std::time::Instant::now();
    let mut out = std::io::stdout().lock();
    if let Err(e) = run_drift(&cli.args, &mut out) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    eprintln!("elapsed_seconds={:.3}", start.elapsed().as_secs_f64());
}
