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

/// `s` as a JSON string. Text with nothing to escape (the usual names,
/// ids and labels) is copied as it is; anything else is serde_json's.
pub(super) fn string(out: &mut Vec<u8>, s: &str) {
    if !s.bytes().any(|b| ESCAPED[usize::from(b)]) {
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
    use super::*;

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
