//! `host`: the pipeline host's command line. All logic lives in the library.

fn main() -> std::process::ExitCode {
    pipeline_host::cli::main()
}
