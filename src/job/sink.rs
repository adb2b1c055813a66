//! The exactly-once `files` sink: a two-phase commit driven by checkpoints.
//!
//! * Between checkpoints a subtask buffers its output.
//! * On a barrier (`snapshot(cp)`) it writes the buffer to a hidden pending file
//!   `_part-<run id>-<subtask>-<cp>.pending` (atomically) and records it in its state.
//! * When the JobManager declares checkpoint `cp` complete (`notify_complete(cp)`) every
//!   pending file up to `cp` is renamed to `part-<run id>-<subtask>-<cp>`: only then can
//!   readers see it.
//! * On restore from checkpoint `cp`, pending files recorded in that checkpoint's state are
//!   committed (the completion notice may have been lost in the failure) and every other hidden
//!   file of the subtask's run is deleted: a pending file of a checkpoint that never completed
//!   (its records will be produced again from the restored source offset), or a temporary file
//!   of a write that crashed ([`crate::storage::temp_name`]).
//! * When the job ends for good (FINISHED, CANCELED, FAILED), [`finish_run`] does the same for
//!   all of its subtasks at once, from the latest completed checkpoint: nothing of the run is
//!   left hidden.
//!
//! The run id ([`RunId`], drawn at submission and kept across recoveries) makes every name
//! unique to one run of a job: another run of the same spec on the same directory, or another
//! job there, has names of its own, and no restore or cleanup touches them. Names without a run
//! id (`part-<subtask>-<cp>`) were written before run ids existed; a checkpoint state from then
//! (no `run_id`) still commits and cleans up under those names.
//!
//! Commits are idempotent: a pending file already renamed is not an error.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::graph::RunId;
use super::record::Record;
use crate::storage::{Location, StorageError};

/// The sink's part of a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkState {
    /// Checkpoint ids whose pending file is written but not yet known to be committed.
    pub pending: Vec<u64>,
    /// Set by the job master on a restore state only (never in a checkpoint): the job resumes
    /// from this checkpoint although newer ones completed (their metadata was corrupt and
    /// `execution.checkpointing.recover-from-older-on-corruption` is on), so the committed
    /// parts of checkpoints newer than it hold records that will be produced again: restore
    /// removes them first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_committed_after: Option<u64>,
    /// The run whose files `pending` names; absent in a state written before run ids (its
    /// files have names without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
}

/// What a sink file is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartKind {
    /// `part-…`: committed output, visible to readers.
    Committed,
    /// `_part-….pending`: written for a checkpoint, not yet committed.
    Pending,
    /// The blob store's temporary file of a pending file being written (`._part-….pending.<uuid>.tmp`).
    Temp,
}

/// A sink file's name taken apart: `part-<run id>-<subtask>-<checkpoint id>` and its hidden
/// forms. The one place that knows the names: everything that reads a directory (restore,
/// cleanup, tests counting output) goes through [`PartName::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartName {
    /// `None`: a name from before run ids (`part-<subtask>-<checkpoint id>`).
    pub run_id: Option<RunId>,
    pub subtask: u32,
    pub checkpoint_id: u64,
    pub kind: PartKind,
}

impl PartName {
    /// Parses a file name (no directory); `None` if it is not one of the sink's.
    pub fn parse(file_name: &str) -> Option<PartName> {
        if let Some(target) = crate::storage::temp_target(file_name) {
            let name = PartName::parse(target)?;
            return (name.kind == PartKind::Pending).then_some(PartName {
                kind: PartKind::Temp,
                ..name
            });
        }
        let (kind, body) = match file_name.strip_prefix("_part-") {
            Some(hidden) => (PartKind::Pending, hidden.strip_suffix(".pending")?),
            None => (PartKind::Committed, file_name.strip_prefix("part-")?),
        };
        let (rest, checkpoint) = body.rsplit_once('-')?;
        let (run_id, subtask) = match rest.rsplit_once('-') {
            Some((run, subtask)) => (Some(RunId::parse(run).ok()?), subtask),
            None => (None, rest),
        };
        Some(PartName {
            run_id,
            subtask: number(subtask)?,
            checkpoint_id: number(checkpoint)?,
            kind,
        })
    }

    /// The file name (for [`PartKind::Temp`], the name of the pending file it is written for).
    pub fn file_name(&self) -> String {
        let base = match &self.run_id {
            Some(run) => format!("part-{run}-{}-{}", self.subtask, self.checkpoint_id),
            None => format!("part-{}-{}", self.subtask, self.checkpoint_id),
        };
        match self.kind {
            PartKind::Committed => base,
            PartKind::Pending | PartKind::Temp => format!("_{base}.pending"),
        }
    }

    fn is_hidden(&self) -> bool {
        self.kind != PartKind::Committed
    }
}

/// Decimal digits only (`u64::from_str` would take a `+`).
fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

pub struct FileSink {
    dir: Location,
    run_id: RunId,
    subtask: u32,
    buffer: Vec<u8>,
    pending: Vec<u64>,
    /// Records written to the buffer since the last snapshot.
    pub buffered_records: u64,
}

impl FileSink {
    pub fn new(dir: Location, run_id: RunId, subtask: u32) -> FileSink {
        FileSink {
            dir,
            run_id,
            subtask,
            buffer: Vec::new(),
            pending: Vec::new(),
            buffered_records: 0,
        }
    }

    pub fn write_line(&mut self, line: &str) {
        self.buffer.extend_from_slice(line.as_bytes());
        self.buffer.push(b'\n');
        self.buffered_records += 1;
    }

    /// Writes `record`'s line ([`Record::to_line`]) without building it.
    pub fn write_record(&mut self, record: &Record) {
        record.write_line(&mut self.buffer);
        self.buffer.push(b'\n');
        self.buffered_records += 1;
    }

    /// Phase one: persist the buffer as a hidden pending file for checkpoint `cp`.
    pub async fn snapshot(&mut self, cp: u64) -> Result<SinkState, StorageError> {
        let data = Bytes::from(std::mem::take(&mut self.buffer));
        self.buffered_records = 0;
        // An empty checkpoint commits nothing: no empty part files.
        if !data.is_empty() {
            let name = part(Some(&self.run_id), self.subtask, cp, PartKind::Pending);
            self.dir
                .store
                .write(&self.dir.join(&name).path, data)
                .await?;
            self.pending.push(cp);
        }
        Ok(SinkState {
            pending: self.pending.clone(),
            run_id: Some(self.run_id.clone()),
            ..SinkState::default()
        })
    }

    /// Phase two: make every pending file up to `cp` visible.
    pub async fn notify_complete(&mut self, cp: u64) -> Result<(), StorageError> {
        let ready: Vec<u64> = self.pending.iter().copied().filter(|p| *p <= cp).collect();
        for p in ready {
            commit(&self.dir, Some(&self.run_id), self.subtask, p).await?;
            self.pending.retain(|x| *x != p);
        }
        Ok(())
    }

    /// Starts the subtask from a completed checkpoint's state (`None`: from scratch): commits
    /// what the state recorded, deletes every other hidden file of this run's subtask (and,
    /// for a state from before run ids, the subtask's hidden files without a run id), starts
    /// with an empty buffer. Other runs' files and other subtasks' files stay untouched.
    pub async fn restore(&mut self, state: Option<&SinkState>) -> Result<(), StorageError> {
        self.buffer.clear();
        self.buffered_records = 0;
        self.pending.clear();
        let states = BTreeMap::from_iter(state.map(|s| (self.subtask, s.clone())));
        let removed = settle(&self.dir, &self.run_id, &states, |n| {
            n.subtask == self.subtask
        })
        .await?;
        if !removed.is_empty() {
            tracing::info!(run_id = %self.run_id, subtask = self.subtask, removed = %removed.join(", "), "removed the files of checkpoints that never completed");
        }
        if let Some(state) = state
            && let Some(restored) = state.remove_committed_after
        {
            self.remove_committed_after(state, restored).await?;
        }
        Ok(())
    }

    /// Removes this subtask's committed parts of checkpoints newer than `restored` (of the run
    /// `state` belongs to): the job resumes from an older checkpoint because the newer ones
    /// are corrupt, so their records will be produced again.
    async fn remove_committed_after(
        &self,
        state: &SinkState,
        restored: u64,
    ) -> Result<(), StorageError> {
        for entry in self.dir.store.list(&self.dir.path).await? {
            let file_name = entry.path.rsplit('/').next().unwrap_or_default();
            let Some(name) = PartName::parse(file_name) else {
                continue;
            };
            if name.kind == PartKind::Committed
                && name.subtask == self.subtask
                && name.run_id == state.run_id
                && name.checkpoint_id > restored
            {
                tracing::warn!(subtask = self.subtask, restored_checkpoint = restored, file = %format!("{}{}", self.dir.store.base_uri(), entry.path),
                    "removing a committed part of a checkpoint newer than the restored one");
                self.dir.store.delete(&entry.path).await?;
            }
        }
        Ok(())
    }
}

/// Ends a run for good: commits what the latest completed checkpoint's sink states (`states`,
/// by subtask; empty if the job never completed one) recorded, then deletes every hidden file
/// of the run, whichever subtask wrote it. Returns the names deleted. Run it once every
/// subtask has stopped.
pub async fn finish_run(
    dir: &Location,
    run_id: &RunId,
    states: &BTreeMap<u32, SinkState>,
) -> Result<Vec<String>, StorageError> {
    settle(dir, run_id, states, |_| true).await
}

/// Commits what `states` record, then deletes the hidden files `selected` picks among those of
/// `run_id` (and, for subtasks whose state is from before run ids, among theirs without one).
async fn settle(
    dir: &Location,
    run_id: &RunId,
    states: &BTreeMap<u32, SinkState>,
    selected: impl Fn(&PartName) -> bool,
) -> Result<Vec<String>, StorageError> {
    for (subtask, state) in states {
        for cp in &state.pending {
            commit(dir, state.run_id.as_ref(), *subtask, *cp).await?;
        }
    }
    let legacy = |subtask: u32| states.get(&subtask).is_some_and(|s| s.run_id.is_none());
    let mut removed = Vec::new();
    for entry in dir.store.list(&dir.path).await? {
        let file_name = entry.path.rsplit('/').next().unwrap_or_default();
        let Some(name) = PartName::parse(file_name) else {
            continue;
        };
        let ours = match &name.run_id {
            Some(run) => run == run_id,
            None => legacy(name.subtask),
        };
        if ours && name.is_hidden() && selected(&name) {
            dir.store.delete(&entry.path).await?;
            removed.push(file_name.to_string());
        }
    }
    Ok(removed)
}

fn part(run_id: Option<&RunId>, subtask: u32, checkpoint_id: u64, kind: PartKind) -> String {
    PartName {
        run_id: run_id.cloned(),
        subtask,
        checkpoint_id,
        kind,
    }
    .file_name()
}

/// Renames one pending file to its committed name; done before (a repeated notice, a restore
/// after the rename) is fine.
async fn commit(
    dir: &Location,
    run_id: Option<&RunId>,
    subtask: u32,
    cp: u64,
) -> Result<(), StorageError> {
    let pending = dir.join(&part(run_id, subtask, cp, PartKind::Pending)).path;
    let committed = dir
        .join(&part(run_id, subtask, cp, PartKind::Committed))
        .path;
    match dir.store.rename(&pending, &committed).await {
        Ok(()) => Ok(()),
        Err(StorageError::NotFound { .. }) | Err(StorageError::AlreadyExists { .. })
            if dir.store.exists(&committed).await? =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::storage::local::LocalStore;

    fn dir(name: &str) -> Location {
        let path = std::env::temp_dir()
            .join(format!("yarnflow-sink-{name}-{}", std::process::id()))
            .display()
            .to_string();
        let _ = std::fs::remove_dir_all(&path);
        Location {
            store: Arc::new(LocalStore),
            path,
        }
    }

    fn run(id: &str) -> RunId {
        RunId::parse(id).unwrap()
    }

    /// Every file name in the directory, sorted.
    async fn names(d: &Location) -> Vec<String> {
        let mut names: Vec<String> = d
            .store
            .list(&d.path)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.path.rsplit('/').next().unwrap().to_string())
            .collect();
        names.sort();
        names
    }

    async fn visible(d: &Location) -> Vec<String> {
        let mut v = names(d).await;
        v.retain(|n| !n.starts_with('_') && !n.starts_with('.'));
        v
    }

    async fn put(d: &Location, name: &str) {
        d.store
            .write(&d.join(name).path, Bytes::from_static(b"x\n"))
            .await
            .unwrap();
    }

    #[test]
    fn part_names_parse_back_and_nothing_else_parses() {
        let r = run("0123abcd");
        for kind in [PartKind::Committed, PartKind::Pending] {
            for run_id in [Some(r.clone()), None] {
                let n = PartName {
                    run_id,
                    subtask: 3,
                    checkpoint_id: 17,
                    kind,
                };
                assert_eq!(PartName::parse(&n.file_name()), Some(n.clone()));
            }
        }
        assert_eq!(
            PartName::parse("part-my-job-2-40"),
            Some(PartName {
                run_id: Some(run("my-job")),
                subtask: 2,
                checkpoint_id: 40,
                kind: PartKind::Committed
            })
        );
        let temp = crate::storage::temp_name("_part-0123abcd-3-17.pending");
        let n = PartName::parse(&temp).unwrap();
        assert_eq!(
            (n.kind, n.subtask, n.checkpoint_id),
            (PartKind::Temp, 3, 17)
        );
        for other in [
            "part-",
            "part-1",
            "part-a-b",
            "part-r-1-+2",
            "_part-r-1-2",
            "_part-r-1-2.pendingx",
            "part-r.x-1-2",
            "_SUCCESS",
            "part-3.txt",
        ] {
            assert_eq!(PartName::parse(other), None, "{other}");
        }
    }

    #[tokio::test]
    async fn files_appear_only_when_their_checkpoint_completes() {
        let d = dir("two-phase");
        let mut s = FileSink::new(d.clone(), run("r1"), 0);
        s.write_line("1");
        s.write_line("2");
        s.snapshot(1).await.unwrap();
        assert!(
            visible(&d).await.is_empty(),
            "nothing visible before completion"
        );
        s.notify_complete(1).await.unwrap();
        s.notify_complete(1).await.unwrap(); // repeated notice: harmless
        assert_eq!(visible(&d).await, vec!["part-r1-0-1"]);
        let text = d
            .store
            .read(&format!("{}/part-r1-0-1", d.path))
            .await
            .unwrap();
        assert_eq!(text, Bytes::from_static(b"1\n2\n"));
        let _ = d.store.delete_dir(&d.path).await;
    }

    #[tokio::test]
    async fn restore_commits_recorded_files_and_discards_the_rest() {
        let d = dir("restore");
        let mut s = FileSink::new(d.clone(), run("r1"), 3);
        s.write_line("a");
        let state = s.snapshot(5).await.unwrap();
        // Checkpoint 5 completed, but the notice was lost in the crash; checkpoint 6 was
        // snapshotted and never completed.
        s.write_line("b");
        s.snapshot(6).await.unwrap();
        let mut fresh = FileSink::new(d.clone(), run("r1"), 3);
        fresh.restore(Some(&state)).await.unwrap();
        assert_eq!(
            names(&d).await,
            vec!["part-r1-3-5"],
            "the uncompleted pending file is gone"
        );
        // Restoring the same state again (a second failure) changes nothing.
        fresh.restore(Some(&state)).await.unwrap();
        assert_eq!(names(&d).await, vec!["part-r1-3-5"]);
        let _ = d.store.delete_dir(&d.path).await;
    }

    #[tokio::test]
    async fn two_runs_in_one_directory_never_touch_each_others_files() {
        let d = dir("two-runs");
        // Run 1 of a spec committed checkpoint 1 and has checkpoint 2 pending (it is still
        // running, or will be recovered).
        let mut first = FileSink::new(d.clone(), run("first"), 0);
        first.write_line("1a");
        first.snapshot(1).await.unwrap();
        first.notify_complete(1).await.unwrap();
        first.write_line("1b");
        let first_state = first.snapshot(2).await.unwrap();
        // Run 2 of the same spec on the same path: the same subtask and checkpoint ids.
        let mut second = FileSink::new(d.clone(), run("second"), 0);
        second.restore(None).await.unwrap();
        second.write_line("2a");
        second.snapshot(1).await.unwrap();
        second.notify_complete(1).await.unwrap();
        second.write_line("2b");
        second.snapshot(2).await.unwrap();
        // Run 2 fails over to its checkpoint 1 (which recorded nothing still pending).
        let mut again = FileSink::new(d.clone(), run("second"), 0);
        again
            .restore(Some(&SinkState {
                pending: vec![],
                run_id: Some(run("second")),
                ..SinkState::default()
            }))
            .await
            .unwrap();
        assert_eq!(
            names(&d).await,
            vec![
                "_part-first-0-2.pending",
                "part-first-0-1",
                "part-second-0-1"
            ],
            "run 2's restore removed its own pending file only"
        );
        // Run 1 recovers from its checkpoint 2 and commits it.
        FileSink::new(d.clone(), run("first"), 0)
            .restore(Some(&first_state))
            .await
            .unwrap();
        assert_eq!(
            names(&d).await,
            vec!["part-first-0-1", "part-first-0-2", "part-second-0-1"]
        );
        for (name, text) in [("part-first-0-2", "1b\n"), ("part-second-0-1", "2a\n")] {
            let read = d.store.read(&d.join(name).path).await.unwrap();
            assert_eq!(read, Bytes::from(text), "{name}");
        }
        let _ = d.store.delete_dir(&d.path).await;
    }

    #[tokio::test]
    async fn restore_removes_a_crashed_writers_temp_files_of_its_own_run_only() {
        let d = dir("temps");
        let own = crate::storage::temp_name("_part-r1-0-4.pending");
        let other_subtask = crate::storage::temp_name("_part-r1-1-4.pending");
        let other_run = crate::storage::temp_name("_part-r2-0-4.pending");
        let not_ours = crate::storage::temp_name("input.txt");
        for n in [&own, &other_subtask, &other_run, &not_ours] {
            put(&d, n).await;
        }
        FileSink::new(d.clone(), run("r1"), 0)
            .restore(None)
            .await
            .unwrap();
        let mut left = vec![other_subtask, other_run, not_ours];
        left.sort();
        assert_eq!(names(&d).await, left);
        let _ = d.store.delete_dir(&d.path).await;
    }

    #[tokio::test]
    async fn a_state_from_before_run_ids_commits_and_cleans_the_old_names() {
        let d = dir("legacy");
        put(&d, "_part-2-7.pending").await;
        put(&d, "_part-2-8.pending").await;
        put(&d, "_part-1-8.pending").await;
        // What a checkpoint stored before run ids holds.
        let state: SinkState = serde_json::from_str(r#"{"pending":[7]}"#).unwrap();
        assert_eq!(state.run_id, None);
        FileSink::new(d.clone(), run("job"), 2)
            .restore(Some(&state))
            .await
            .unwrap();
        assert_eq!(names(&d).await, vec!["_part-1-8.pending", "part-2-7"]);
        let _ = d.store.delete_dir(&d.path).await;
    }

    #[tokio::test]
    async fn a_cancelled_runs_hidden_files_are_removed_and_its_completed_checkpoint_committed() {
        let d = dir("finish");
        let mut s0 = FileSink::new(d.clone(), run("r1"), 0);
        let mut s1 = FileSink::new(d.clone(), run("r1"), 1);
        for s in [&mut s0, &mut s1] {
            s.write_line("x");
        }
        // Checkpoint 3 completed, but the job was cancelled before subtask 1 heard of it;
        // checkpoint 4 was pending.
        let latest = BTreeMap::from([
            (0, s0.snapshot(3).await.unwrap()),
            (1, s1.snapshot(3).await.unwrap()),
        ]);
        s0.notify_complete(3).await.unwrap();
        for s in [&mut s0, &mut s1] {
            s.write_line("y");
            s.snapshot(4).await.unwrap();
        }
        put(&d, &crate::storage::temp_name("_part-r1-0-5.pending")).await;
        put(&d, "_part-other-0-4.pending").await;
        let removed = finish_run(&d, &run("r1"), &latest).await.unwrap();
        assert_eq!(removed.len(), 3, "{removed:?}");
        assert_eq!(
            names(&d).await,
            vec!["_part-other-0-4.pending", "part-r1-0-3", "part-r1-1-3"]
        );
        let _ = d.store.delete_dir(&d.path).await;
    }

    #[tokio::test]
    async fn restore_from_an_older_checkpoint_removes_newer_committed_parts() {
        let d = dir("older");
        let mut s = FileSink::new(d.clone(), run("r"), 1);
        let mut other = FileSink::new(d.clone(), run("r"), 10);
        for cp in [4, 5, 6] {
            s.write_line(&cp.to_string());
            other.write_line(&cp.to_string());
            s.snapshot(cp).await.unwrap();
            other.snapshot(cp).await.unwrap();
            s.notify_complete(cp).await.unwrap();
            other.notify_complete(cp).await.unwrap();
        }
        // Checkpoint 6's metadata is corrupt: subtask 1 resumes from 4.
        let mut fresh = FileSink::new(d.clone(), run("r"), 1);
        let state = SinkState {
            pending: vec![],
            run_id: Some(run("r")),
            remove_committed_after: Some(4),
        };
        fresh.restore(Some(&state)).await.unwrap();
        assert_eq!(
            visible(&d).await,
            vec!["part-r-1-4", "part-r-10-4", "part-r-10-5", "part-r-10-6"],
            "only this subtask's newer parts go"
        );
        let _ = d.store.delete_dir(&d.path).await;
    }
}
