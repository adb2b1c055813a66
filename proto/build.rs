//! Build script: compiles the protobuf definitions under `proto/` without `protoc`.
//!
//! * `proto/hadoop/**.proto` (Hadoop's wire messages, written for this project) go through
//!   protox + prost-build into `$OUT_DIR/hadoop.*.rs`;
//! * `proto/yarnflow/*.proto` (our own messages and the JobManager<->TaskManager gRPC service) go
//!   through protox + tonic-prost-build into `$OUT_DIR/yarnflow.*.rs`.
//!
//! With the `libhdfs` feature it also makes the linker take yarnflow's own `JNI_CreateJavaVM` and
//! `JNI_GetCreatedJavaVMs` (`src/storage/jvm.rs`, which load libjvm at run time) for libhdfs's
//! references, so the `-ljvm` hdfs-sys asks for is dropped (`--as-needed`): no binary links
//! libjvm or has a runpath into a JDK. Crates depending on yarnflow learn of the feature through
//! `DEP_YARNFLOW_LIBHDFS` (`links = "yarnflow"`) and pass the same (`examples/wordcount/build.rs`).

use std::path::{Path, PathBuf};

/// The libjvm functions libhdfs calls, defined by yarnflow (`src/storage/jvm.rs`).
const JNI_SHIMS: [&str; 2] = ["JNI_CreateJavaVM", "JNI_GetCreatedJavaVMs"];

fn protos_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            protos_under(&path, out);
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
}

/// Files relative to `root`, and every directory holding one as an include path.
fn relative(root: &Path, files: &[PathBuf]) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut includes: Vec<PathBuf> = Vec::new();
    let mut rel = Vec::new();
    for f in files {
        let parent = f.parent().expect("a file has a parent").to_path_buf();
        if !includes.contains(&parent) {
            includes.push(parent.clone());
        }
        rel.push(
            f.strip_prefix(&parent)
                .expect("under its parent")
                .to_path_buf(),
        );
    }
    let _ = root;
    (rel, includes)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");

    let hadoop_root = Path::new("proto/hadoop");
    let mut hadoop = Vec::new();
    protos_under(hadoop_root, &mut hadoop);
    if !hadoop.is_empty() {
        let (files, includes) = relative(hadoop_root, &hadoop);
        let fds = protox::compile(&files, &includes)?;
        prost_build::Config::new().compile_fds(fds)?;
    }

    let ours_root = Path::new("proto/yarnflow");
    let mut ours = Vec::new();
    protos_under(ours_root, &mut ours);
    if !ours.is_empty() {
        let (files, includes) = relative(ours_root, &ours);
        let fds = protox::compile(&files, &includes)?;
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .compile_fds(fds)?;
    }

    if std::env::var_os("CARGO_FEATURE_LIBHDFS").is_some() {
        for symbol in JNI_SHIMS {
            println!("cargo:rustc-link-arg=-Wl,-u,{symbol}");
        }
        // For binaries of crates that depend on yarnflow: DEP_YARNFLOW_LIBHDFS in their build
        // scripts.
        println!("cargo:LIBHDFS=1");
    }
    Ok(())
}
