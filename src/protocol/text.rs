//! File names inside message text. On the wire (and on a terminal) a
//! message is bytes, and a name in it is the name's own bytes, UTF-8 or
//! not, escaped only when shown. Our roles build messages as `String`s, so
//! a name's bytes that are not UTF-8 ride in private-use characters
//! (U+F780..U+F7FF, one per byte) from [`name`] until [`raw`] puts the
//! bytes back, where the text is sent or shown.

use std::borrow::Cow;

/// First of the 128 private-use characters that stand for bytes 0x80..=0xFF.
const BASE: u32 = 0xF700;

/// `bytes` as text for a message: valid UTF-8 as it is, each other byte as
/// its stand-in character.
pub fn name(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for &b in chunk.invalid() {
            // Invalid bytes are never ASCII, so BASE + b is in the range.
            out.push(char::from_u32(BASE + u32::from(b)).unwrap_or('\u{fffd}'));
        }
    }
    Cow::Owned(out)
}

/// The message bytes of `text`: every stand-in character back to its byte.
pub fn raw(text: &[u8]) -> Cow<'_, [u8]> {
    let is_stand_in =
        |w: &[u8]| w[0] == 0xEF && (w[1] == 0x9E || w[1] == 0x9F) && w[2] & 0xC0 == 0x80;
    if !text.windows(3).any(is_stand_in) {
        return Cow::Borrowed(text);
    }
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if i + 3 <= text.len() && is_stand_in(&text[i..i + 3]) {
            out.push(0x80 + ((text[i + 1] - 0x9E) << 6) + (text[i + 2] & 0x3F));
            i += 3;
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn utf8_names_are_left_alone() {
        assert!(matches!(name("é/a b".as_bytes()), Cow::Borrowed("é/a b")));
        assert!(matches!(raw(b"plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn other_bytes_come_back() {
        let n = b"x\xff/\xc3\xa9\x80\xed\xa0\x80";
        let text = format!("skipping \"{}\"", name(n));
        assert_eq!(
            raw(text.as_bytes()).as_ref(),
            b"skipping \"x\xff/\xc3\xa9\x80\xed\xa0\x80\""
        );
    }

    proptest! {
        #[test]
        fn any_name_round_trips(n in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assume!(std::str::from_utf8(&n).map_or(true, |s| !s.chars().any(|c| (0xF780..=0xF7FF).contains(&(c as u32)))));
            let t = name(&n);
            let back = raw(t.as_bytes()).into_owned();
            prop_assert_eq!(back, n);
        }
    }
}
