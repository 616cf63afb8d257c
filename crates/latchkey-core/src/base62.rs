//! Fixed-width base62 (alphabet `0-9A-Za-z`) for big-endian byte strings and integers.
//!
//! SPEC 2.2 fixes the widths: 32 random bytes become exactly 43 characters and a CRC32 exactly
//! 6, both left-padded with `0`, so every token of a type has the same length.

use thiserror::Error;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum Base62Error {
    #[error("not a base62 character")]
    InvalidCharacter,
    #[error("value does not fit")]
    Overflow,
}

fn digit_value(c: u8) -> Option<u32> {
    match c {
        b'0'..=b'9' => Some(u32::from(c - b'0')),
        b'A'..=b'Z' => Some(u32::from(c - b'A') + 10),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 36),
        _ => None,
    }
}

/// Writes `bytes` (a big-endian number) in base62, left-padded with `0` to `width` characters.
/// Returns `None` when the number needs more than `width` characters.
pub fn encode_bytes(bytes: &[u8], width: usize) -> Option<String> {
    // Long division over 32-bit limbs by 62^5, five digits a pass: every id and access token
    // issued writes one (a division per byte and digit was 1.5 % of issuance's CPU).
    const FIVE_DIGITS: u64 = 62 * 62 * 62 * 62 * 62;
    let head = bytes.len() % 4;
    let mut limbs: Vec<u32> = Vec::with_capacity(bytes.len() / 4 + 1);
    if head > 0 {
        limbs.push(
            bytes[..head]
                .iter()
                .fold(0, |acc, &b| (acc << 8) | u32::from(b)),
        );
    }
    for chunk in bytes[head..].chunks_exact(4) {
        limbs.push(u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]));
    }
    let mut digits: Vec<u8> = Vec::with_capacity(width + 5);
    let mut first = 0;
    loop {
        while limbs.get(first) == Some(&0) {
            first += 1;
        }
        if first == limbs.len() {
            break;
        }
        let mut rem: u64 = 0;
        for limb in &mut limbs[first..] {
            let acc = (rem << 32) | u64::from(*limb);
            // acc < 62^5 * 2^32, so the quotient fits in 32 bits.
            *limb = u32::try_from(acc / FIVE_DIGITS).ok()?;
            rem = acc % FIVE_DIGITS;
        }
        for _ in 0..5 {
            digits.push(ALPHABET[usize::try_from(rem % 62).ok()?]);
            rem /= 62;
        }
    }
    // The last pass wrote the number's leading zeros too.
    while digits.last() == Some(&b'0') {
        digits.pop();
    }
    if digits.len() > width {
        return None;
    }
    digits.resize(width, b'0');
    digits.reverse();
    String::from_utf8(digits).ok()
}

/// Reads a base62 string into a big-endian number of exactly `len` bytes.
pub fn decode_bytes(text: &str, len: usize) -> Result<Vec<u8>, Base62Error> {
    let mut out = vec![0u8; len];
    for c in text.bytes() {
        let mut carry = digit_value(c).ok_or(Base62Error::InvalidCharacter)?;
        for b in out.iter_mut().rev() {
            let acc = u32::from(*b) * 62 + carry;
            *b = (acc & 0xff) as u8;
            carry = acc >> 8;
        }
        if carry != 0 {
            return Err(Base62Error::Overflow);
        }
    }
    Ok(out)
}

/// Writes a `u32` in base62, left-padded to `width`.
pub fn encode_u32(value: u32, width: usize) -> Option<String> {
    encode_bytes(&value.to_be_bytes(), width)
}

/// Reads a base62 string of at most 6 characters into a `u32`, without allocating.
pub fn decode_u32(text: &str) -> Option<u32> {
    if text.len() > 6 {
        return None;
    }
    let mut value: u64 = 0;
    for c in text.bytes() {
        value = value * 62 + u64::from(digit_value(c)?);
    }
    u32::try_from(value).ok()
}

/// True when every character is in the alphabet.
pub fn is_base62(text: &str) -> bool {
    text.bytes().all(|c| digit_value(c).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rstest::rstest;

    #[rstest]
    #[case(0, "000000")]
    #[case(61, "00000z")]
    #[case(62, "000010")]
    #[case(u32::MAX, "4gfFC3")]
    fn encodes_u32(#[case] value: u32, #[case] expected: &str) {
        assert_eq!(encode_u32(value, 6).as_deref(), Some(expected));
    }

    #[test]
    fn thirty_two_bytes_fit_in_43_characters() {
        let max = [0xffu8; 32];
        let text = encode_bytes(&max, 43);
        assert_eq!(text.as_ref().map(String::len), Some(43));
        assert_eq!(encode_bytes(&max, 42), None);
        assert_eq!(
            encode_bytes(&[0u8; 32], 43).as_deref(),
            Some("0".repeat(43).as_str())
        );
    }

    #[test]
    fn rejects_foreign_characters() {
        assert_eq!(decode_bytes("ab-c", 4), Err(Base62Error::InvalidCharacter));
        assert_eq!(decode_bytes("zzzzzzz", 4), Err(Base62Error::Overflow));
    }

    /// The schoolbook division by 62 that `encode_bytes` replaced, byte by byte and digit by
    /// digit: every token and id written before must be written the same.
    fn encode_by_long_division(bytes: &[u8], width: usize) -> Option<String> {
        let mut num = bytes.to_vec();
        let mut digits = Vec::new();
        while num.iter().any(|&b| b != 0) {
            let mut rem = 0u32;
            for b in &mut num {
                let acc = (rem << 8) | u32::from(*b);
                *b = u8::try_from(acc / 62).unwrap();
                rem = acc % 62;
            }
            digits.push(ALPHABET[rem as usize]);
        }
        if digits.len() > width {
            return None;
        }
        digits.resize(width, b'0');
        digits.reverse();
        Some(String::from_utf8(digits).unwrap())
    }

    proptest! {
        #[test]
        fn same_text_as_long_division(
            zeros in 0usize..9,
            rest in proptest::collection::vec(any::<u8>(), 0..40),
            width in 0usize..60,
        ) {
            let mut bytes = vec![0u8; zeros];
            bytes.extend(rest);
            prop_assert_eq!(encode_bytes(&bytes, width), encode_by_long_division(&bytes, width));
        }

        #[test]
        fn bytes_round_trip(bytes in proptest::array::uniform32(any::<u8>())) {
            let text = encode_bytes(&bytes, 43).unwrap_or_default();
            prop_assert_eq!(text.len(), 43);
            prop_assert!(is_base62(&text));
            prop_assert_eq!(decode_bytes(&text, 32), Ok(bytes.to_vec()));
        }

        #[test]
        fn u32_round_trip(value in any::<u32>()) {
            let text = encode_u32(value, 6).unwrap_or_default();
            prop_assert_eq!(text.len(), 6);
            prop_assert_eq!(decode_u32(&text), Some(value));
            prop_assert_eq!(decode_bytes(&text, 4), Ok(value.to_be_bytes().to_vec()));
        }
    }
}
