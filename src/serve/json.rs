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

/// Powers of ten up to 10^19, each exact as an `f64` (all are up to
/// 10^22): the scales of the numbers read and written here.
pub(super) const POW10: [f64; 20] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19,
];

/// Short decimals have fewer digits than this: two different decimals of
/// at most 15 digits never read as the same `f64` (DBL_DIG), which is what
/// makes the digits found below the shortest ones.
const SHORT_DIGITS: i64 = 1_000_000_000_000_000;

/// Room for a short decimal's text, at most 22 bytes: a sign, then 15
/// digits and a point and a `0` (`-123456789012345.0`), or `0.`
/// and a fraction of up to 19 digits (`-0.0000123456789012345`).
const SHORT_TEXT: usize = 24;

/// `x` as serde_json writes it (zmij's shortest digits that read back as
/// `x`, or `null` when not finite). A short decimal, the usual feature
/// value (`7.4`, `0.076`, `34.0`), is written without zmij: a fifth of the
/// instructions, for each feature of every prediction-log line. Anything
/// else is serde_json's.
pub(super) fn float(out: &mut Vec<u8>, x: f64) {
    match short_decimal(x.abs()) {
        Some((digits, scale)) => fixed(out, x.is_sign_negative(), digits, scale),
        None => value(out, &x),
    }
}

/// `a` (not negative) as `digits × 10^-scale` with the fewest digits, when
/// that takes at most 15 and zmij writes it without an exponent (its
/// leading digit is 10^-5 or more). The smallest `scale` at which the
/// nearest whole number to `a × 10^scale` reads back as `a` gives it: a
/// decimal `m × 10^-s` of at most 15 digits that reads as `a` is within
/// 0.23 of the computed `a × 10^s` (two roundings of 2^-53 each, times
/// `m` < 10^15), so it is found at its own `s`; the division is of two
/// exact values, correctly rounded, which is how the decimal reads; and no
/// shorter decimal reads as `a` (it would be found at a smaller `s`).
fn short_decimal(a: f64) -> Option<(i64, usize)> {
    for (scale, &ten) in POW10.iter().enumerate() {
        let y = a * ten;
        // Infinities too; NaN is no number to write here.
        if y.is_nan() || y >= SHORT_DIGITS as f64 {
            return None;
        }
        // Signed conversions: the hardware has them, unsigned ones take a
        // dozen instructions more.
        let digits = (y + 0.5) as i64;
        if digits as f64 / ten == a {
            // A leading digit below 10^-5 is written with an exponent.
            return (scale <= 5 || digits as f64 >= POW10[scale - 5]).then_some((digits, scale));
        }
    }
    None
}

/// `digits × 10^-scale` as zmij writes a number in fixed notation: the
/// whole part, a point and the fraction's `scale` digits, or `.0` when
/// there are none (`7.4`, `0.076`, `34.0`).
fn fixed(out: &mut Vec<u8>, negative: bool, digits: i64, scale: usize) {
    // Unsigned: a division by ten is then three instructions fewer.
    let mut digits = digits.unsigned_abs();
    // Its length first, so it is written in place from the right, zeros
    // already there.
    let (mut count, mut next) = (1usize, 10u64);
    while count < 15 && digits >= next {
        count += 1;
        next *= 10;
    }
    let whole = count.saturating_sub(scale).max(1);
    let len = usize::from(negative) + whole + 1 + scale.max(1);
    let mut text = [b'0'; SHORT_TEXT];
    let mut at = len;
    let mut push = |byte: u8| {
        at -= 1;
        text[at] = byte;
    };
    if scale == 0 {
        push(b'0');
    }
    for _ in 0..scale {
        push(b'0' + (digits % 10) as u8);
        digits /= 10;
    }
    push(b'.');
    for _ in 0..whole {
        push(b'0' + (digits % 10) as u8);
        digits /= 10;
    }
    if negative {
        text[0] = b'-';
    }
    // All of `text` and then cut: a copy of a constant size is a few
    // moves where one of `len` bytes is a call.
    out.extend_from_slice(&text);
    out.truncate(out.len() - (SHORT_TEXT - len));
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

    /// `x` as ours and as serde_json write it.
    fn both(x: f64) -> (String, String) {
        let mut ours = Vec::new();
        float(&mut ours, x);
        (
            String::from_utf8(ours).unwrap(),
            serde_json::to_string(&x).unwrap(),
        )
    }

    /// `m × 10^-s` with its trailing zeros taken off.
    fn normal(mut m: i64, mut s: usize) -> (i64, usize) {
        while s > 0 && m % 10 == 0 {
            m /= 10;
            s -= 1;
        }
        (m, s)
    }

    proptest! {
        /// Any number at all, as serde_json (zmij) writes it.
        #[test]
        fn floats_are_written_as_serde_json_writes_them(bits in any::<u64>()) {
            let (ours, theirs) = both(f64::from_bits(bits));
            prop_assert_eq!(ours, theirs);
        }

        /// A decimal of at most 15 digits, as a feature value is sent, is
        /// written as serde_json writes it, and without zmij: its own
        /// digits are found.
        #[test]
        fn short_decimals_are_their_own_digits(
            m in prop_oneof![0i64..1_000, 0i64..1_000_000, 0i64..SHORT_DIGITS],
            s in 0usize..20,
            negative in any::<bool>(),
        ) {
            let x: f64 = format!("{}{m}e-{s}", if negative { "-" } else { "" }).parse().unwrap();
            let (ours, theirs) = both(x);
            prop_assert_eq!(&ours, &theirs);
            let (digits, scale) = normal(m, s);
            let fixed = m == 0 || i64::from(digits.ilog10()) - scale as i64 >= -5;
            prop_assert_eq!(short_decimal(x.abs()), fixed.then_some((digits, scale)), "{}", ours);
        }
    }

    proptest! {
        /// The numbers a few steps from a short decimal need all their
        /// digits: the fast path must not take them for their neighbour.
        #[test]
        fn neighbours_of_short_decimals_are_written_as_serde_json_writes_them(
            m in prop_oneof![0i64..1_000, 0i64..1_000_000, 0i64..SHORT_DIGITS],
            s in 0usize..20,
            steps in -3i64..=3,
        ) {
            let x: f64 = format!("{m}e-{s}").parse().unwrap();
            let x = f64::from_bits(x.to_bits().saturating_add_signed(steps));
            let (ours, theirs) = both(x);
            prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn edge_floats_are_written_as_serde_json_writes_them() {
        for x in [
            0.0,
            -0.0,
            1.0,
            -1.0,
            100.0,
            0.1 + 0.2,
            1e-5,
            -1e-5,
            9.99999e-6,
            1.5e-5,
            1e-6,
            999_999_999_999_999.0,
            99_999_999_999_999.9,
            1e15,
            1e16,
            123_456_789_012_345.6,
            0.000_123_456_789_012_345,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            f64::EPSILON,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            let (ours, theirs) = both(x);
            assert_eq!(ours, theirs, "{x:e}");
        }
        // The fast path writes the common ones itself.
        assert_eq!(short_decimal(1.0), Some((1, 0)));
        assert_eq!(short_decimal(0.076), Some((76, 3)));
        assert_eq!(short_decimal(1e-5), Some((1, 5)));
        assert_eq!(short_decimal(1e-6), None, "zmij writes 1e-6");
        assert_eq!(short_decimal(0.1 + 0.2), None, "17 digits");
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
