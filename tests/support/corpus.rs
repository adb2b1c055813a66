//! A Zipf-like word corpus, one word per line, the same on every run: what word count tests and
//! benchmarks feed the `text-files` source and check the counts against.

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
