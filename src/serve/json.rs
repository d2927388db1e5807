//! JSON text written straight into a buffer, byte for byte what serde_json
//! writes, for the two things written once a request: the infer answer and
//! the prediction-log line. serde_json's derived writers escaped every key
//! and went through its generic map machinery for each field (~7 000
//! instructions a one-row answer, `valgrind --tool=callgrind`).

use serde::Serialize;

/// The bytes a JSON string cannot hold as they are: the quote, the
/// backslash and the control characters (RFC 8259 §7). Where a string's
/// plain run ends, both when writing one and when reading one.
pub(super) const ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// How many bytes of `s` come before the first [`ESCAPED`] one (all of
/// them when there is none). Eight bytes at a time: a byte-by-byte table
/// lookup was ~5 instructions a byte, and a request's strings are a third
/// of its body.
pub(super) fn plain_len(s: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // The high bit of each byte of `w` that is below `n` (exact up to the
    // first such byte, the only one read: a borrow may mark later ones).
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS;
    let mut at = 0;
    while let Some(word) = s.get(at..at + 8) {
        let w = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        let found = below(w, 0x20)
            | below(w ^ (ONES * u64::from(b'"')), 1)
            | below(w ^ (ONES * u64::from(b'\\')), 1);
        if found != 0 {
            return at + found.trailing_zeros() as usize / 8;
        }
        at += 8;
    }
    at + s[at..]
        .iter()
        .position(|&b| ESCAPED[usize::from(b)])
        .unwrap_or(s.len() - at)
}

/// `s` as a JSON string. Text with nothing to escape (the usual names,
/// ids and labels) is copied as it is; anything else is serde_json's.
pub(super) fn string(out: &mut Vec<u8>, s: &str) {
    if plain_len(s.as_bytes()) == s.len() {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        value(out, s);
    }
}

/// Any plain value as serde_json writes it. Writing into a `Vec` cannot fail.
pub(super) fn value<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(&mut *out, value).expect("JSON of plain values into memory");
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Word at a time, the same place as the table read a byte at a time.
        #[test]
        fn the_plain_run_ends_where_the_table_says(
            s in prop::collection::vec(
                prop_oneof![
                    4 => 0x20u8..0x7f,
                    1 => prop::sample::select(vec![b'"', b'\\', 0x00, 0x1f, 0x7f, 0x80, 0xff, 0xa2, 0xdc]),
                ],
                0..40,
            ),
        ) {
            let want = s.iter().position(|&b| ESCAPED[usize::from(b)]).unwrap_or(s.len());
            prop_assert_eq!(plain_len(&s), want);
        }
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        for s in [
            "",
            "wine-quality",
            "3f1c9a2e-0b7d-4c1e-9f3a-2d5e6b7c8a90",
            "é ünïcode ✓",
            "quote \" inside",
            "back\\slash",
            "new\nline",
            "tab\tand\u{1}control",
            "\u{7f} delete is not escaped",
        ] {
            let mut ours = Vec::new();
            string(&mut ours, s);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(s).unwrap(),
                "{s:?}"
            );
        }
    }
}
