//! The sources a subtask reads from (`sequence`, `text-files`), each with its checkpointed
//! position ([`SourceState`]).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::operators::{Record, TextPool};
use super::spec::SourceSpec;
use crate::storage::StorageError;

/// The `sequence` source of one subtask: numbers `n` in `from..to` with
/// `n % parallelism == subtask`, resumable from `next`. It is its own checkpointed state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequenceSource {
    pub next: u64,
    pub to: Option<u64>,
    pub step: u64,
}

impl SequenceSource {
    pub fn new(from: u64, to: Option<u64>, subtask: u32, parallelism: u32) -> SequenceSource {
        let p = parallelism.max(1) as u64;
        let s = subtask as u64 % p;
        let next = from + (s + p - from % p) % p;
        SequenceSource { next, to, step: p }
    }

    /// Up to `max` more numbers (fewer at the end of a bounded range).
    pub fn poll(&mut self, max: usize, out: &mut Vec<Record>) {
        for _ in 0..max {
            if self.to.is_some_and(|to| self.next >= to) {
                return;
            }
            out.push(Record::Int(self.next as i64));
            self.next += self.step;
        }
    }

    pub fn finished(&self) -> bool {
        self.to.is_some_and(|to| self.next >= to)
    }
}

/// A source's checkpointed position, part of a subtask's state.
///
/// Serialized without a tag: the variants have disjoint fields (`next`/`to`/`step` against
/// `files`/`file`/`offset`/`line`), so checkpoints written before the text-files source existed,
/// whose source state is a bare [`SequenceSource`], still read as [`SourceState::Sequence`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SourceState {
    Sequence(SequenceSource),
    TextFiles(TextFilesPosition),
}

impl SourceState {
    fn kind(&self) -> &'static str {
        match self {
            SourceState::Sequence(_) => "sequence",
            SourceState::TextFiles(_) => "text-files",
        }
    }
}

/// Where the `text-files` source of one subtask stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextFilesPosition {
    /// This subtask's files (URIs) in reading order: file `i` of the spec belongs to subtask
    /// `i % parallelism`.
    pub files: Vec<String>,
    /// Index in `files` of the file being read; `files.len()` once every file is done.
    pub file: usize,
    /// Byte offset in that file of the next line to emit (always just after a `\n`, or 0).
    pub offset: u64,
    /// Lines of that file emitted so far: the 0-based number of the next line.
    pub line: u64,
}

/// A batch of lines ends at this many bytes too: what a subtask holds ahead of back-pressure
/// (a batch is processed and emitted whole) stays small however long the lines are.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// The `text-files` source of one subtask: the lines of its files, one [`Record::Text`] each,
/// without the line terminator (`\n` or `\r\n`; a last line without one counts too). Bytes
/// that are not UTF-8 become U+FFFD.
///
/// A file is read whole on first use (the blob store reads whole blobs), so each file should
/// fit in memory; a restore reads it again and continues at the checkpointed byte offset.
#[derive(Debug, Clone)]
pub struct TextFilesSource {
    position: TextFilesPosition,
    /// The content of `position.file`, once read.
    content: Option<Bytes>,
}

impl TextFilesSource {
    pub fn new(paths: &[String], subtask: u32, parallelism: u32) -> TextFilesSource {
        let p = parallelism.max(1) as usize;
        let s = subtask as usize % p;
        TextFilesSource {
            position: TextFilesPosition {
                files: paths
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % p == s)
                    .map(|(_, f)| f.clone())
                    .collect(),
                file: 0,
                offset: 0,
                line: 0,
            },
            content: None,
        }
    }

    pub fn position(&self) -> &TextFilesPosition {
        &self.position
    }

    /// Continues from a checkpointed position.
    pub fn restore(&mut self, position: TextFilesPosition) {
        self.position = position;
        self.content = None;
    }

    pub fn finished(&self) -> bool {
        self.position.file >= self.position.files.len()
    }

    /// Up to `max` more lines (fewer at the end of the last file, or once they hold
    /// [`MAX_BATCH_BYTES`]).
    pub async fn poll(&mut self, max: usize, out: &mut Vec<Record>) -> Result<(), String> {
        self.poll_reusing(max, out, &mut TextPool::default()).await
    }

    /// [`poll`](Self::poll) into text buffers from `pool`.
    pub async fn poll_reusing(
        &mut self,
        max: usize,
        out: &mut Vec<Record>,
        pool: &mut TextPool,
    ) -> Result<(), String> {
        let mut emitted = 0;
        let mut bytes = 0;
        while emitted < max && bytes < MAX_BATCH_BYTES && !self.finished() {
            let content = match &self.content {
                Some(c) => c.clone(),
                None => {
                    let c = self.read_current().await?;
                    self.content = Some(c.clone());
                    c
                }
            };
            let mut at = self.position.offset as usize;
            while emitted < max && bytes < MAX_BATCH_BYTES && at < content.len() {
                let rest = &content[at..];
                let (line, next) = match rest.iter().position(|b| *b == b'\n') {
                    Some(i) => (&rest[..i], at + i + 1),
                    None => (rest, content.len()),
                };
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let mut text = pool.take();
                // `from_utf8` first: faster than the lossy scan for the usual valid line.
                match std::str::from_utf8(line) {
                    Ok(line) => text.push_str(line),
                    Err(_) => text.push_str(&String::from_utf8_lossy(line)),
                }
                out.push(Record::Text(text));
                bytes += next - at;
                at = next;
                emitted += 1;
                self.position.line += 1;
            }
            self.position.offset = at as u64;
            if at >= content.len() {
                tracing::debug!(file = %self.position.files[self.position.file], lines = self.position.line, "text file read");
                self.position.file += 1;
                self.position.offset = 0;
                self.position.line = 0;
                self.content = None;
            }
        }
        Ok(())
    }

    /// Reads the current file and checks that the position fits it.
    async fn read_current(&self) -> Result<Bytes, String> {
        let uri = &self.position.files[self.position.file];
        let location = crate::storage::open(uri)
            .await
            .map_err(|e| format!("text-files source: {e}"))?;
        let content = location
            .store
            .read(&location.path)
            .await
            .map_err(|e| match e {
                StorageError::NotFound { .. } => format!("text-files source: {uri}: no such file"),
                e => format!("text-files source: cannot read {uri}: {e}"),
            })?;
        let offset = self.position.offset;
        if offset > content.len() as u64
            || (offset > 0 && content.get(offset as usize - 1) != Some(&b'\n'))
        {
            return Err(format!(
                "text-files source: {uri}: the checkpointed position (byte {offset}, line {}) is not a line start of the file ({} bytes); was the file changed?",
                self.position.line,
                content.len()
            ));
        }
        Ok(content)
    }
}

/// The source of one subtask.
#[derive(Debug, Clone)]
pub enum Source {
    Sequence(SequenceSource),
    TextFiles(TextFilesSource),
}

impl Source {
    /// The source a spec describes, for one subtask.
    pub fn new(spec: &SourceSpec, subtask: u32, parallelism: u32) -> Source {
        match spec {
            SourceSpec::Sequence { from, to, .. } => {
                Source::Sequence(SequenceSource::new(*from, *to, subtask, parallelism))
            }
            SourceSpec::TextFiles { paths } => {
                Source::TextFiles(TextFilesSource::new(paths, subtask, parallelism))
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Source::Sequence(_) => "sequence",
            Source::TextFiles(_) => "text-files",
        }
    }

    pub fn snapshot(&self) -> SourceState {
        match self {
            Source::Sequence(s) => SourceState::Sequence(s.clone()),
            Source::TextFiles(t) => SourceState::TextFiles(t.position.clone()),
        }
    }

    /// Continues from a checkpointed state, which must be of this kind of source.
    pub fn restore(&mut self, state: SourceState) -> Result<(), String> {
        match (self, state) {
            (Source::Sequence(s), SourceState::Sequence(state)) => *s = state,
            (Source::TextFiles(t), SourceState::TextFiles(state)) => t.restore(state),
            (this, state) => {
                return Err(format!(
                    "the checkpointed source state belongs to a {} source, but the job's source is {}",
                    state.kind(),
                    this.kind()
                ));
            }
        }
        Ok(())
    }

    /// Up to `max` more records, their text buffers from `pool`.
    pub async fn poll_reusing(
        &mut self,
        max: usize,
        out: &mut Vec<Record>,
        pool: &mut TextPool,
    ) -> Result<(), String> {
        match self {
            Source::Sequence(s) => {
                s.poll(max, out);
                Ok(())
            }
            Source::TextFiles(t) => t.poll_reusing(max, out, pool).await,
        }
    }

    /// A bounded source that has emitted everything.
    pub fn finished(&self) -> bool {
        match self {
            Source::Sequence(s) => s.finished(),
            Source::TextFiles(t) => t.finished(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_splits_by_modulo_and_resumes() {
        let mut all = Vec::new();
        for s in 0..4 {
            let mut src = SequenceSource::new(3, Some(103), s, 4);
            let mut out = Vec::new();
            src.poll(10, &mut out);
            let mut resumed = src.clone();
            resumed.poll(1000, &mut out);
            assert!(resumed.finished());
            for r in out {
                let Record::Int(n) = r else { panic!() };
                assert_eq!(n as u32 % 4, s);
                all.push(n);
            }
        }
        all.sort();
        assert_eq!(all, (3..103).collect::<Vec<i64>>());
    }
    /// Files under a fresh temp dir, as `file://` URIs.
    fn text_files(name: &str, contents: &[&str]) -> (std::path::PathBuf, Vec<String>) {
        let dir =
            std::env::temp_dir().join(format!("yarnflow-text-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let uris = contents
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let f = dir.join(format!("in-{i}.txt"));
                std::fs::write(&f, c).unwrap();
                format!("file://{}", f.display())
            })
            .collect();
        (dir, uris)
    }

    fn lines(records: Vec<Record>) -> Vec<String> {
        records.iter().map(Record::to_line).collect()
    }

    const FILES: [&str; 5] = ["a\nb\n", "c\r\nd", "", "e\n\nf\n", "g"];

    #[tokio::test]
    async fn text_files_split_by_index_modulo_parallelism() {
        let (dir, uris) = text_files("split", &FILES);
        let mut per_subtask = Vec::new();
        for s in 0..2 {
            let mut src = TextFilesSource::new(&uris, s, 2);
            let expected: Vec<String> = uris.iter().skip(s as usize).step_by(2).cloned().collect();
            assert_eq!(src.position().files, expected);
            let mut out = Vec::new();
            src.poll(1000, &mut out).await.unwrap();
            assert!(src.finished());
            per_subtask.push(lines(out));
        }
        // Files 0, 2, 4 and 1, 3; "\r\n" and a missing last newline end lines too.
        assert_eq!(per_subtask[0], vec!["a", "b", "g"]);
        assert_eq!(per_subtask[1], vec!["c", "d", "e", "", "f"]);
        // More subtasks than files: the extra ones are done at once.
        let mut idle = TextFilesSource::new(&uris[..1], 1, 2);
        let mut out = Vec::new();
        idle.poll(10, &mut out).await.unwrap();
        assert!(idle.finished() && out.is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Long lines end a batch by bytes: a poll holds at most `MAX_BATCH_BYTES` plus one line.
    #[tokio::test]
    async fn a_batch_of_long_lines_is_bounded_by_bytes() {
        let line = "x".repeat(100 * 1024);
        let text = format!("{line}\n").repeat(10);
        let (dir, uris) = text_files("long", &[text.as_str()]);
        let mut src = TextFilesSource::new(&uris, 0, 1);
        let mut out = Vec::new();
        src.poll(10_000, &mut out).await.unwrap();
        assert_eq!(out.len(), MAX_BATCH_BYTES.div_ceil(line.len() + 1));
        while !src.finished() {
            src.poll(10_000, &mut out).await.unwrap();
        }
        assert_eq!(out.len(), 10);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn text_files_resume_exactly_at_every_checkpointed_position() {
        let (dir, uris) = text_files("resume", &FILES);
        let mut all = Vec::new();
        TextFilesSource::new(&uris, 0, 1)
            .poll(1000, &mut all)
            .await
            .unwrap();
        let all = lines(all);
        assert_eq!(all, vec!["a", "b", "c", "d", "e", "", "f", "g"]);
        for cut in 0..=all.len() {
            let mut src = Source::new(
                &SourceSpec::TextFiles {
                    paths: uris.clone(),
                },
                0,
                1,
            );
            let mut head = Vec::new();
            src.poll_reusing(cut, &mut head, &mut TextPool::default())
                .await
                .unwrap();
            // Through JSON, as in checkpoint metadata.
            let json = serde_json::to_string(&src.snapshot()).unwrap();
            let state: SourceState = serde_json::from_str(&json).unwrap();
            assert!(matches!(state, SourceState::TextFiles(_)), "{json}");
            let mut resumed = Source::new(&SourceSpec::TextFiles { paths: vec![] }, 0, 1);
            resumed.restore(state).unwrap();
            let mut tail = Vec::new();
            while !resumed.finished() {
                resumed
                    .poll_reusing(2, &mut tail, &mut TextPool::default())
                    .await
                    .unwrap();
            }
            let mut both = lines(head);
            both.extend(lines(tail));
            assert_eq!(both, all, "cut after {cut} lines: {json}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn text_files_errors_name_the_uri() {
        let (dir, uris) = text_files("errors", &["one\ntwo\n"]);
        let missing = format!("file://{}/absent.txt", dir.display());
        let mut src = TextFilesSource::new(std::slice::from_ref(&missing), 0, 1);
        let e = src.poll(10, &mut Vec::new()).await.unwrap_err();
        assert_eq!(e, format!("text-files source: {missing}: no such file"));

        // A checkpointed offset that is no longer a line start: the file changed.
        let mut src = TextFilesSource::new(&uris, 0, 1);
        src.restore(TextFilesPosition {
            files: uris.clone(),
            file: 0,
            offset: 2,
            line: 1,
        });
        let e = src.poll(10, &mut Vec::new()).await.unwrap_err();
        assert!(
            e.contains(&uris[0]) && e.contains("byte 2") && !e.contains('\n'),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn sequence_checkpoints_from_before_text_files_still_restore() {
        let old = r#"{"next":42,"to":100,"step":4}"#;
        let state: SourceState = serde_json::from_str(old).unwrap();
        let mut src = Source::new(
            &SourceSpec::Sequence {
                from: 0,
                to: Some(100),
                rate: None,
            },
            2,
            4,
        );
        src.restore(state.clone()).unwrap();
        assert_eq!(src.snapshot(), state);
        assert_eq!(serde_json::to_string(&src.snapshot()).unwrap(), old);
        let mut text = Source::new(&SourceSpec::TextFiles { paths: vec![] }, 0, 1);
        let e = text.restore(state).unwrap_err();
        assert!(
            e.contains("sequence source") && e.contains("text-files"),
            "{e}"
        );
    }
}
