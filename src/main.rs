use clap::Parser;

fn main() -> std::process::ExitCode {
    fletch::cli::run(fletch::cli::Cli::parse())
}
