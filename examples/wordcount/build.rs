//! When yarnflow has the `libhdfs` feature (`DEP_YARNFLOW_LIBHDFS`), make the linker take
//! yarnflow's own `JNI_CreateJavaVM` and `JNI_GetCreatedJavaVMs` (they load libjvm at run time)
//! for libhdfs's references, as `proto/build.rs` does for `yarnflow`: the binary then links no
//! libjvm. Any job binary built on yarnflow needs the same lines.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_YARNFLOW_LIBHDFS");
    if std::env::var_os("DEP_YARNFLOW_LIBHDFS").is_some() {
        for symbol in ["JNI_CreateJavaVM", "JNI_GetCreatedJavaVMs"] {
            println!("cargo:rustc-link-arg=-Wl,-u,{symbol}");
        }
    }
}
