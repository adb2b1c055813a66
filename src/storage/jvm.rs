//! libjvm, loaded at run time for libhdfs (feature `libhdfs`): the binary links no libjvm and
//! has no runpath into a JDK, so it starts on any host, and only a process that opens an HDFS
//! store with `storage.hdfs.client: libhdfs` needs a JDK (found through `JAVA_HOME`).
//!
//! libhdfs calls exactly two libjvm functions, `JNI_CreateJavaVM` and `JNI_GetCreatedJavaVMs`.
//! They are defined here, so the linker resolves libhdfs's references to them and, with rustc's
//! `--as-needed`, drops the `-ljvm` that hdfs-sys asks for; each forwards to the real one in the
//! libjvm that [`load`] opened. The build scripts (`proto/build.rs`, and any job binary's, e.g.
//! `examples/wordcount/build.rs`) pass `-u` for both, so these definitions are always linked.

use std::ffi::c_void;
use std::path::PathBuf;
use std::sync::OnceLock;

use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};

/// `jint JNI_CreateJavaVM(JavaVM **pvm, void **penv, void *args)`.
type CreateJavaVm = unsafe extern "C" fn(*mut *mut c_void, *mut *mut c_void, *mut c_void) -> i32;
/// `jint JNI_GetCreatedJavaVMs(JavaVM **vmBuf, jsize bufLen, jsize *nVMs)`.
type GetCreatedJavaVms = unsafe extern "C" fn(*mut *mut c_void, i32, *mut i32) -> i32;

/// JNI's generic error code.
const JNI_ERR: i32 = -1;

/// The two entry points of the loaded libjvm (which stays loaded for the process's life).
struct Jvm {
    create: CreateJavaVm,
    created: GetCreatedJavaVms,
    _library: Library,
}

static JVM: OnceLock<Result<Jvm, String>> = OnceLock::new();

/// Loads libjvm once per process: `$JAVA_HOME/lib/server/libjvm.so` (JDK 9 and later),
/// `$JAVA_HOME/jre/lib/<arch>/server/libjvm.so` (JDK 8), else `libjvm.so` through the library
/// path (`LD_LIBRARY_PATH`). The error is one line naming `JAVA_HOME` and what was tried.
pub fn load() -> Result<(), String> {
    loaded().as_ref().map(|_| ()).map_err(Clone::clone)
}

fn loaded() -> &'static Result<Jvm, String> {
    JVM.get_or_init(|| open_first(&candidates()))
}

fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(home) = std::env::var_os("JAVA_HOME").filter(|h| !h.is_empty()) {
        let home = PathBuf::from(home);
        out.push(home.join("lib/server/libjvm.so"));
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            other => other,
        };
        out.push(home.join(format!("jre/lib/{arch}/server/libjvm.so")));
    }
    out.push(PathBuf::from("libjvm.so"));
    out
}

/// The first of `paths` that loads, with both entry points.
fn open_first(paths: &[PathBuf]) -> Result<Jvm, String> {
    let mut tried = Vec::new();
    for path in paths {
        // A path with a slash is a file; a bare name goes through the library path.
        if path.components().count() > 1 && !path.exists() {
            tried.push(format!("{}: no such file", path.display()));
            continue;
        }
        match open(path) {
            Ok(jvm) => return Ok(jvm),
            Err(e) => tried.push(first_line(&e)),
        }
    }
    let home = match std::env::var_os("JAVA_HOME") {
        Some(h) if !h.is_empty() => format!("JAVA_HOME={}", h.to_string_lossy()),
        _ => "JAVA_HOME is not set".to_string(),
    };
    Err(format!(
        "libhdfs needs a JVM, but libjvm.so could not be loaded ({home}; tried {}): set JAVA_HOME to a JDK, or use storage.hdfs.client: native",
        tried.join("; ")
    ))
}

fn open(path: &std::path::Path) -> Result<Jvm, String> {
    // SAFETY: libjvm's initialisers only set up the library; RTLD_GLOBAL as the java launcher
    // loads it, so the JDK's own libraries (libjava, ...) bind to this copy.
    let library = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL) }
        .map_err(|e| describe(path, &e))?;
    // SAFETY: the JNI invocation API's signatures (jni.h); the library is never unloaded.
    let (create, created) = unsafe {
        let create = library
            .get::<CreateJavaVm>(b"JNI_CreateJavaVM\0")
            .map_err(|e| describe(path, &e))?;
        let created = library
            .get::<GetCreatedJavaVms>(b"JNI_GetCreatedJavaVMs\0")
            .map_err(|e| describe(path, &e))?;
        (*create, *created)
    };
    Ok(Jvm {
        create,
        created,
        _library: library,
    })
}

/// libloading's error with its cause (dlerror's text, which names the file and why).
fn describe(path: &std::path::Path, e: &libloading::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => cause.to_string(),
        None => format!("{}: {e}", path.display()),
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().trim().to_string()
}

fn jvm() -> Option<&'static Jvm> {
    match loaded() {
        Ok(jvm) => Some(jvm),
        Err(e) => {
            // libhdfs reports only the JNI error code; say why once.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| eprintln!("yarnflow: {e}"));
            None
        }
    }
}

/// libhdfs's `JNI_CreateJavaVM`, forwarded to the loaded libjvm.
///
/// # Safety
/// As the JNI function: valid pointers from the caller.
#[allow(non_snake_case)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn JNI_CreateJavaVM(
    pvm: *mut *mut c_void,
    penv: *mut *mut c_void,
    args: *mut c_void,
) -> i32 {
    match jvm() {
        // SAFETY: the caller's pointers go to the function they were meant for.
        Some(jvm) => unsafe { (jvm.create)(pvm, penv, args) },
        None => JNI_ERR,
    }
}

/// libhdfs's `JNI_GetCreatedJavaVMs`, forwarded to the loaded libjvm.
///
/// # Safety
/// As the JNI function: valid pointers from the caller.
#[allow(non_snake_case)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn JNI_GetCreatedJavaVMs(
    vms: *mut *mut c_void,
    len: i32,
    count: *mut i32,
) -> i32 {
    match jvm() {
        // SAFETY: as above.
        Some(jvm) => unsafe { (jvm.created)(vms, len, count) },
        None => JNI_ERR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_libjvm_is_one_line_naming_java_home() {
        let Err(e) = open_first(&[
            PathBuf::from("/nonexistent-jdk/lib/server/libjvm.so"),
            PathBuf::from("libjvm-not-here.so"),
        ]) else {
            panic!("loaded a libjvm that does not exist");
        };
        assert!(
            e.contains("JAVA_HOME")
                && e.contains("libjvm.so")
                && e.contains("/nonexistent-jdk/lib/server/libjvm.so: no such file")
                && e.contains("libjvm-not-here.so")
                && !e.contains('\n'),
            "{e}"
        );
    }
}
