//! The `yarnflow` binary: one artifact for every role (client commands, the YARN
//! ApplicationMaster, TaskManagers), so YARN localizes a single file. All behaviour lives in the
//! library; this only hands over to the CLI, with the built-in operators only (a job binary
//! registers its own: see `examples/wordcount`).

fn main() -> std::process::ExitCode {
    yarnflow::main(yarnflow::api::Operators::new())
}
