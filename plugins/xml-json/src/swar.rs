//! Eight bytes at a time: the scanners test a `u64` of input for the bytes
//! they stop at, instead of testing each byte, so a run of ordinary text
//! costs a few instructions per eight bytes and one branch.
//!
//! Each test leaves the high bit set in every byte of the word that
//! matched, and is exact (a match never spills into the next byte), so the
//! first match is at `mask.trailing_zeros() / 8` of a little-endian word.

const LOW: u64 = 0x7F7F_7F7F_7F7F_7F7F;
const ONES: u64 = 0x0101_0101_0101_0101;

/// The eight bytes at `at` as a little-endian word, if there are eight.
#[inline]
pub fn word_at(bytes: &[u8], at: usize) -> Option<u64> {
    let chunk = bytes.get(at..)?.first_chunk::<8>()?;
    Some(u64::from_le_bytes(*chunk))
}

/// Bytes of `word` that are zero.
#[inline]
fn zero(word: u64) -> u64 {
    // Bit 7 of `(b & 0x7F) + 0x7F` is set when the low bits are not all
    // zero, and no sum carries out of its byte; or-ing `b` adds its own bit 7.
    !((word & LOW).wrapping_add(LOW) | word | LOW)
}

/// Bytes of `word` equal to `byte`.
#[inline]
pub fn equal(word: u64, byte: u8) -> u64 {
    zero(word ^ (ONES * u64::from(byte)))
}

/// Bytes of `word` below 0x20: the C0 controls.
#[inline]
pub fn control(word: u64) -> u64 {
    zero(word & (ONES * 0xE0))
}

/// Bytes of `word` between `low` and `high`, both excluded, and below 0x80
/// (`high` at most 0x80).
#[inline]
fn between(word: u64, low: u8, high: u8) -> u64 {
    let seven = word & LOW;
    // Bit 7 of `0x7F + high - b` is set when `b < high`, of `b + 0x7F - low`
    // when `b > low`; neither carries out of its byte.
    let below = (ONES * (0x7F + u64::from(high))) - seven;
    let above = seven + ONES * (0x7F - u64::from(low));
    below & above & !word & !LOW
}

/// Bytes of `word` that are not ASCII name characters (`A`-`Z`, `a`-`z`,
/// `0`-`9`, `_`, `:`, `-`, `.`): where an ASCII name ends. Bytes past ASCII
/// are among them: names holding those are checked character by character.
#[inline]
pub fn not_name(word: u64) -> u64 {
    // Or-ing 0x20 lowercases letters, and maps nothing else onto them.
    let letters = between(word | (ONES * 0x20), b'a' - 1, b'z' + 1);
    let digits_colon = between(word, b'0' - 1, b':' + 1);
    let dash_dot = between(word, b'-' - 1, b'.' + 1);
    !(letters | digits_colon | dash_dot | equal(word, b'_')) & !LOW
}

/// Whether `a` and `b` are the same bytes. For the short strings compared
/// here (names, mostly), words compare faster than a call to `memcmp`.
#[inline]
pub fn same(a: &[u8], b: &[u8]) -> bool {
    let len = a.len();
    if len != b.len() {
        return false;
    }
    let word = |bytes: &[u8], at: usize| word_at(bytes, at).unwrap_or(0);
    if len >= 8 {
        // Whole words, the last one overlapping the one before it.
        let mut at = 0;
        while at + 8 < len {
            if word(a, at) != word(b, at) {
                return false;
            }
            at += 8;
        }
        return word(a, len - 8) == word(b, len - 8);
    }
    let half = |bytes: &[u8], at: usize| {
        bytes
            .get(at..)
            .and_then(<[u8]>::first_chunk::<4>)
            .map_or(0, |chunk| u32::from_le_bytes(*chunk))
    };
    if len >= 4 {
        return half(a, 0) == half(b, 0) && half(a, len - 4) == half(b, len - 4);
    }
    // 0 to 3 bytes: the first, middle and last cover them.
    len == 0 || (a[0] == b[0] && a[len / 2] == b[len / 2] && a[len - 1] == b[len - 1])
}

/// The offset of a match in `mask` (non-zero), counted from the word's start.
#[inline]
pub fn first(mask: u64) -> usize {
    (mask.trailing_zeros() / 8) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_matches() {
        let word = u64::from_le_bytes(*b"a<\x01<\x00\x1f \xff");
        assert_eq!(equal(word, b'<'), 0x80 << 8 | 0x80 << 24);
        assert_eq!(first(equal(word, b'<')), 1);
        assert_eq!(first(equal(word, 0xFF)), 7);
        assert_eq!(equal(word, b'>'), 0);
        assert_eq!(control(word), 0x80 << 16 | 0x80 << 32 | 0x80 << 40);
        assert_eq!(word_at(b"1234567", 0), None);
        for b in 0..=255u8 {
            let word = u64::from_le_bytes([b'a', b, b'a', b'a', b'a', b'a', b'a', b'a']);
            let name = b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'-' | b'.');
            assert_eq!(not_name(word), if name { 0 } else { 0x80 << 8 }, "{b}");
            let word = u64::from_le_bytes([b; 8]);
            assert_eq!(control(word) != 0, b < 0x20, "{b}");
            assert_eq!(equal(word, b'<') != 0, b == b'<', "{b}");
        }
        let names = [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "abcde",
            "abcdefgh",
            "abcdefghi",
            "abcdefghijklmnopq",
        ];
        for a in names {
            for b in names {
                assert_eq!(same(a.as_bytes(), b.as_bytes()), a == b, "{a} {b}");
            }
            let mut changed = a.as_bytes().to_vec();
            for i in 0..changed.len() {
                changed[i] ^= 1;
                assert!(!same(a.as_bytes(), &changed), "{a} {i}");
                changed[i] ^= 1;
            }
        }
        assert_eq!(
            word_at(b"12345678", 0),
            Some(word_at(b"012345678", 1).unwrap_or(0))
        );
    }
}
