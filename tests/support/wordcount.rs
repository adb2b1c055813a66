//! Word count fixtures shared by yarnflow's tests and the `wordcount` example's (which includes
//! this file by path): a Zipf-like corpus with its true counts, and the check that the highest
//! count per word of `word,count` lines is the true count. Only std, so either crate can use it.

#![allow(dead_code)] // two test crates use different parts

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Word `i` (written `w{i}`) is drawn with weight 1/(i+1), from a fixed-seed LCG.
pub struct ZipfCorpus {
    cumulative: Vec<f64>,
    seed: u64,
}

impl ZipfCorpus {
    pub fn new(words: usize, seed: u64) -> ZipfCorpus {
        let cumulative = (0..words)
            .scan(0.0, |acc, i| {
                *acc += 1.0 / (i as f64 + 1.0);
                Some(*acc)
            })
            .collect();
        ZipfCorpus { cumulative, seed }
    }

    /// The index of the next word drawn.
    pub fn next_word(&mut self) -> usize {
        self.seed = self
            .seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let words = self.cumulative.len();
        let u = (self.seed >> 11) as f64 / (1u64 << 53) as f64 * self.cumulative[words - 1];
        self.cumulative.partition_point(|c| *c < u).min(words - 1)
    }

    /// Writes `files` files `dir/corpus-{f}.txt` of `lines` words each, drawn in file order:
    /// their paths, and how often each word index was drawn.
    pub fn write(&mut self, dir: &Path, files: usize, lines: usize) -> (Vec<PathBuf>, Vec<u64>) {
        let mut truth = vec![0u64; self.cumulative.len()];
        let mut paths = Vec::new();
        for f in 0..files {
            let path = dir.join(format!("corpus-{f}.txt"));
            let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
            for _ in 0..lines {
                let w = self.next_word();
                writeln!(out, "w{w}").unwrap();
                truth[w] += 1;
            }
            out.flush().unwrap();
            paths.push(path);
        }
        (paths, truth)
    }
}

/// Text files of words `w0`, `w1`, ... drawn by [`ZipfCorpus`] (seed 42).
pub struct Corpus {
    pub paths: Vec<PathBuf>,
    /// Each (lowercase) word's number of occurrences over all files.
    pub truth: BTreeMap<String, u64>,
}

/// The corpus's shape.
pub struct Shape {
    pub files: usize,
    pub lines_per_file: usize,
    pub words_per_line: usize,
    /// Distinct words to draw from.
    pub vocabulary: usize,
    /// Every third word capitalized (`W12`) and words separated by `", "`, for a tokenizer;
    /// otherwise lowercase, separated by one space.
    pub mixed: bool,
}

impl Corpus {
    /// Writes `corpus-<i>.txt` files into `dir`.
    pub fn zipf(dir: &Path, shape: &Shape) -> Corpus {
        let mut draw = ZipfCorpus::new(shape.vocabulary, 42);
        let mut truth: BTreeMap<String, u64> = BTreeMap::new();
        let mut paths = Vec::new();
        let mut drawn = 0u64;
        for f in 0..shape.files {
            let path = dir.join(format!("corpus-{f}.txt"));
            let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
            for _ in 0..shape.lines_per_file {
                for k in 0..shape.words_per_line {
                    let i = draw.next_word();
                    drawn += 1;
                    if k > 0 {
                        out.write_all(if shape.mixed { b", " } else { b" " })
                            .unwrap();
                    }
                    let capital = shape.mixed && drawn.is_multiple_of(3);
                    write!(out, "{}{i}", if capital { 'W' } else { 'w' }).unwrap();
                    *truth.entry(format!("w{i}")).or_default() += 1;
                }
                out.write_all(b"\n").unwrap();
            }
            out.flush().unwrap();
            paths.push(path);
        }
        Corpus { paths, truth }
    }

    /// The files as a YAML flow list of `file://` URIs (`[ "file:///..", .. ]`).
    pub fn yaml_paths(&self) -> String {
        let uris: Vec<String> = self
            .paths
            .iter()
            .map(|p| format!("\"file://{}\"", p.display()))
            .collect();
        format!("[{}]", uris.join(", "))
    }

    /// Checks committed `word,count` lines: none committed twice (a replay), and every
    /// word's highest count its true count (a lost record lowers it, a replayed one raises it),
    /// for every word of the corpus and no other. The error names the first few that are wrong.
    pub fn check<'a>(&self, lines: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
        let mut seen: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
        let mut highest: BTreeMap<&str, u64> = BTreeMap::new();
        for l in lines {
            *seen.entry(l).or_default() += 1;
            let (word, count) = l
                .rsplit_once(',')
                .and_then(|(w, c)| Some((w, c.parse::<u64>().ok()?)))
                .ok_or_else(|| format!("not word,count: {l:?}"))?;
            let c = highest.entry(word).or_default();
            *c = (*c).max(count);
        }
        let mut twice: Vec<_> = seen.into_iter().filter(|(_, n)| *n > 1).collect();
        twice.sort();
        twice.truncate(5);
        let wrong: Vec<_> = (self.truth.iter())
            .filter(|(w, n)| highest.get(w.as_str()) != Some(n))
            .take(5)
            .map(|(w, n)| (w.as_str(), *n, highest.get(w.as_str()).copied()))
            .collect();
        if twice.is_empty() && wrong.is_empty() && highest.len() == self.truth.len() {
            return Ok(());
        }
        Err(format!(
            "lines committed twice {twice:?}; wrong counts (word, true, highest) {wrong:?}; \
             {} words counted of {}",
            highest.len(),
            self.truth.len()
        ))
    }
}
