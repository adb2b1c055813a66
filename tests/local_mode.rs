//! `yarnflow local` runs the shipped exactly-once example end to end: its committed output is
//! exactly the numbers 0..1,999,999, each once. Bad job specs are one clear line.

use std::collections::HashSet;

#[test]
fn the_exactly_once_example_commits_every_number_once() {
    let dir = std::env::temp_dir().join(format!("yarnflow-local-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_yarnflow"))
        .args(["local", "examples/exactly-once.yaml", "--workdir"])
        .arg(&dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("FINISHED"), "{stdout}");
    let mut seen = HashSet::new();
    let mut lines = 0u64;
    for e in std::fs::read_dir(dir.join("output")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        assert!(
            name.starts_with("part-"),
            "only committed files remain visible or at all: {name}"
        );
        for l in std::fs::read_to_string(e.path()).unwrap().lines() {
            lines += 1;
            assert!(seen.insert(l.parse::<u64>().unwrap()), "duplicate {l}");
        }
    }
    assert_eq!(lines, 2_000_000);
    assert!((0..2_000_000u64).all(|n| seen.contains(&n)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_malformed_job_spec_is_one_line_naming_file_and_position() {
    let dir = std::env::temp_dir().join(format!("yarnflow-badspec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "name: bad\npipeline:\n  - source: { kind: sequence, to: 10 }\n  - explode: {}\n  - sink: { kind: files }\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_yarnflow"))
        .arg("local")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("bad.yaml:4:") && err.contains("explode") && err.contains("`map`"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
