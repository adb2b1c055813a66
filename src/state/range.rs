//! The key groups one subtask owns.
//!
//! A stand-in until `job::key_groups` lands with Flink's `KeyGroupRange` and the assignment
//! functions; then this type moves there and the state backend imports it from there.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The key groups `start..=end` (inclusive, as Flink's `KeyGroupRange`). Never empty: every
/// subtask owns at least one key group, since max parallelism ≥ parallelism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyGroupRange {
    pub start: u32,
    pub end: u32,
}

impl KeyGroupRange {
    /// `start..=end`; `None` if `end < start`.
    pub fn new(start: u32, end: u32) -> Option<KeyGroupRange> {
        (start <= end).then_some(KeyGroupRange { start, end })
    }

    /// How many key groups.
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize + 1
    }

    /// Always false (a range has at least one key group); here for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn contains(&self, key_group: u32) -> bool {
        (self.start..=self.end).contains(&key_group)
    }

    /// The position of `key_group` in this range, if it is in it.
    pub fn index_of(&self, key_group: u32) -> Option<usize> {
        self.contains(key_group)
            .then(|| (key_group - self.start) as usize)
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + use<> {
        self.start..=self.end
    }

    /// The key groups in both ranges.
    pub fn intersection(&self, other: &KeyGroupRange) -> Option<KeyGroupRange> {
        KeyGroupRange::new(self.start.max(other.start), self.end.min(other.end))
    }
}

impl fmt::Display for KeyGroupRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_inclusive_and_intersect() {
        let r = KeyGroupRange::new(4, 7).unwrap();
        assert_eq!((r.len(), r.to_string()), (4, "4..=7".to_string()));
        assert_eq!(
            (r.index_of(4), r.index_of(7), r.index_of(8)),
            (Some(0), Some(3), None)
        );
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![4, 5, 6, 7]);
        assert_eq!(KeyGroupRange::new(7, 6), None);
        let other = KeyGroupRange::new(6, 10).unwrap();
        assert_eq!(r.intersection(&other), KeyGroupRange::new(6, 7));
        assert_eq!(r.intersection(&KeyGroupRange::new(8, 9).unwrap()), None);
    }
}
