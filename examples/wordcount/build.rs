//! The rpath to libjvm: yarnflow links libhdfs (feature `hdfs`) and hands libjvm's directory to
//! its dependents as `DEP_YARNFLOW_JVM_PATH`, so this binary starts without LD_LIBRARY_PATH,
//! like `yarnflow` itself.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_YARNFLOW_JVM_PATH");
    if let Ok(path) = std::env::var("DEP_YARNFLOW_JVM_PATH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{path}");
    }
}
