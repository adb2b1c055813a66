//! The rpath to libjvm: when yarnflow links libhdfs (feature `libhdfs`) it hands libjvm's
//! directory to its dependents as `DEP_YARNFLOW_JVM_PATH`, so this binary starts without
//! LD_LIBRARY_PATH, like `yarnflow` itself. The default (hdfs-native) build sets nothing.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_YARNFLOW_JVM_PATH");
    if let Ok(path) = std::env::var("DEP_YARNFLOW_JVM_PATH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{path}");
    }
}
