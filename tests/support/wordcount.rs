//! The word count as the tests drive it: a Zipf-like corpus with its true counts, the
//! `wordcount` binary of `examples/wordcount` (a workspace member, built by the test command,
//! never by a test), and the check that what a run committed is exact.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// A generated corpus: its files' texts and the true count of every word in them.
pub struct Corpus {
    pub files: Vec<String>,
    pub truth: BTreeMap<String, u64>,
}

impl Corpus {
    /// `files` files of `lines` lines of `per_line` words each. Word `i` of `vocabulary` is
    /// drawn with weight 1/(i+1) (Zipf-like) from a fixed-seed LCG, so a test's corpus is the
    /// same on every run.
    pub fn zipf(files: usize, lines: usize, per_line: usize, vocabulary: usize) -> Corpus {
        let cumulative: Vec<f64> = (0..vocabulary)
            .scan(0.0, |acc, i| {
                *acc += 1.0 / (i as f64 + 1.0);
                Some(*acc)
            })
            .collect();
        let total = cumulative[vocabulary - 1];
        let mut seed = 42u64;
        let mut truth: BTreeMap<String, u64> = BTreeMap::new();
        let mut texts = Vec::with_capacity(files);
        for _ in 0..files {
            let mut text = String::new();
            for _ in 0..lines {
                for w in 0..per_line {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let u = (seed >> 11) as f64 / (1u64 << 53) as f64 * total;
                    let i = cumulative.partition_point(|c| *c < u).min(vocabulary - 1);
                    let word = format!("w{i}");
                    if w > 0 {
                        text.push(' ');
                    }
                    text.push_str(&word);
                    *truth.entry(word).or_default() += 1;
                }
                text.push('\n');
            }
            texts.push(text);
        }
        Corpus {
            files: texts,
            truth,
        }
    }

    /// The number of words in the corpus.
    pub fn words(&self) -> u64 {
        self.truth.values().sum()
    }

    /// Writes the files to `dir` as `corpus-<n>.txt`; returns their `file://` URIs.
    pub fn write_to(&self, dir: &Path) -> Vec<String> {
        std::fs::create_dir_all(dir).unwrap();
        self.files
            .iter()
            .enumerate()
            .map(|(n, text)| {
                let path = dir.join(format!("corpus-{n}.txt"));
                std::fs::write(&path, text).unwrap();
                format!("file://{}", path.display())
            })
            .collect()
    }

    /// Writes the files to HDFS under `dir` through WebHDFS; returns their `hdfs://` URIs.
    pub async fn upload(&self, cluster: &super::MiniCluster, dir: &str) -> Vec<String> {
        let web = yarnflow::hadoop::webhdfs::WebHdfs::new(cluster.webhdfs(), &super::user());
        web.mkdirs(dir).await.unwrap();
        let mut uris = Vec::new();
        for (n, text) in self.files.iter().enumerate() {
            let path = format!("{dir}/corpus-{n}.txt");
            web.create(&path, text.clone().into()).await.unwrap();
            uris.push(format!("{}{path}", cluster.hdfs_uri()));
        }
        uris
    }

    /// Checks committed `word,count` lines: no line committed twice, and the highest count of
    /// every word its true count (a lost record lowers it, a replayed one raises it). The error
    /// names the first few words that are wrong.
    pub fn check<'a>(&self, lines: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
        let mut seen: HashMap<&str, u32> = HashMap::new();
        let mut highest: BTreeMap<&str, u64> = BTreeMap::new();
        let mut garbled = Vec::new();
        for l in lines {
            *seen.entry(l).or_default() += 1;
            match l.rsplit_once(',').map(|(w, c)| (w, c.parse::<u64>())) {
                Some((word, Ok(count))) => {
                    let c = highest.entry(word).or_default();
                    *c = (*c).max(count);
                }
                _ => garbled.push(l),
            }
        }
        let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
        let wrong: Vec<_> = self
            .truth
            .iter()
            .filter(|(w, n)| highest.get(w.as_str()) != Some(n))
            .map(|(w, n)| (w, *n, highest.get(w.as_str()).copied()))
            .take(5)
            .collect();
        let extra = highest.len() as i64 - self.truth.len() as i64;
        if duplicated.is_empty() && wrong.is_empty() && garbled.is_empty() && extra == 0 {
            return Ok(());
        }
        Err(format!(
            "lines committed twice {duplicated:?}; wrong counts (word, true, highest) {wrong:?}; \
             {} garbled lines {:?}; {extra} words not in the corpus",
            garbled.len(),
            &garbled[..garbled.len().min(3)],
        ))
    }
}

/// The `wordcount` binary: next to `yarnflow` in the target dir, built by
/// `cargo test --workspace` (the README's test command) before any test runs.
pub fn wordcount_exe() -> PathBuf {
    let exe = Path::new(env!("CARGO_BIN_EXE_yarnflow")).with_file_name("wordcount");
    assert!(
        exe.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (it builds examples/wordcount)",
        exe.display()
    );
    exe
}
