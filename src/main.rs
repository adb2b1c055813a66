//! The `yarnflow` binary: one artifact for every role (client commands, the YARN
//! ApplicationMaster, TaskManagers), so YARN localizes a single file. All behaviour lives in the
//! library; this only hands over to the CLI.

fn main() -> std::process::ExitCode {
    yarnflow::cli::main()
}
