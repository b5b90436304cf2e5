use std::process::ExitCode;

fn main() -> ExitCode {
    materializer::cli::main()
}
