//! Hadoop's variable-length integers (`WritableUtils.writeVLong` / `readVLong`): one byte for
//! -112..=127, else a length/sign byte followed by the big-endian magnitude.

/// Appends `v` in Hadoop's encoding.
pub fn write_vlong(out: &mut Vec<u8>, v: i64) {
    if (-112..=127).contains(&v) {
        out.push(v as u8);
        return;
    }
    let (mut len, i) = if v < 0 { (-120i32, !v) } else { (-112i32, v) };
    let mut tmp = i;
    while tmp != 0 {
        tmp >>= 8;
        len -= 1;
    }
    out.push(len as i8 as u8);
    let n = if len < -120 {
        -(len + 120)
    } else {
        -(len + 112)
    };
    for idx in (1..=n).rev() {
        out.push((i >> ((idx - 1) * 8)) as u8);
    }
}

/// Reads one value from the front of `input`, advancing it; `None` if truncated.
pub fn read_vlong(input: &mut &[u8]) -> Option<i64> {
    let (&first, rest) = input.split_first()?;
    let first = first as i8;
    let size = if first >= -112 {
        1
    } else if first < -120 {
        (-119 - first as i32) as usize
    } else {
        (-111 - first as i32) as usize
    };
    if size == 1 {
        *input = rest;
        return Some(first as i64);
    }
    if rest.len() < size - 1 {
        return None;
    }
    let mut i: i64 = 0;
    for &b in &rest[..size - 1] {
        i = (i << 8) | b as i64;
    }
    *input = &rest[size - 1..];
    let negative = first < -120 || (-112..0).contains(&first);
    Some(if negative { !i } else { i })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_matches_hadoop_bytes() {
        // Golden bytes from WritableUtils: 127 → 7f, 128 → 8f 80, -113 → 87 70, 300 → 8e 01 2c.
        for (v, bytes) in [
            (0i64, vec![0x00]),
            (127, vec![0x7f]),
            (-112, vec![0x90]),
            (128, vec![0x8f, 0x80]),
            (300, vec![0x8e, 0x01, 0x2c]),
            (-113, vec![0x87, 0x70]),
        ] {
            let mut out = Vec::new();
            write_vlong(&mut out, v);
            assert_eq!(out, bytes, "{v}");
            let mut s = out.as_slice();
            assert_eq!(read_vlong(&mut s), Some(v));
            assert!(s.is_empty());
        }
        for v in [i64::MIN, i64::MAX, -1, 1 << 40, -(1 << 33), 65535] {
            let mut out = Vec::new();
            write_vlong(&mut out, v);
            assert_eq!(read_vlong(&mut out.as_slice()), Some(v));
        }
        assert_eq!(read_vlong(&mut [0x8e, 0x01].as_slice()), None);
        assert_eq!(read_vlong(&mut [].as_slice()), None);
    }
}
