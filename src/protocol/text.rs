//! File names inside message text. On the wire (and on a terminal) a
//! message is bytes, and a name in it is the name's own bytes, UTF-8 or
//! not, escaped only when shown. Our roles build messages as `String`s, so
//! a name's bytes that are not UTF-8 ride in private-use characters
//! (U+F780..U+F7FF, one per byte) from [`name`] until [`raw`] puts the
//! bytes back, where the text is sent or shown.

use std::borrow::Cow;

/// First of the 128 private-use characters that stand for bytes 0x80..=0xFF.
const BASE: u32 = 0xF700;

/// Whether `w` (3 bytes) is the UTF-8 of a stand-in character.
fn is_stand_in(w: &[u8]) -> bool {
    w[0] == 0xEF && (w[1] == 0x9E || w[1] == 0x9F) && w[2] & 0xC0 == 0x80
}

/// `bytes` as text for a message: valid UTF-8 as it is, each other byte as
/// its stand-in character. A name's own stand-in characters (valid UTF-8
/// in the private-use range) go byte by byte too, so [`raw`] gives back
/// exactly the name.
pub fn name(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        if !bytes.windows(3).any(is_stand_in) {
            return Cow::Borrowed(s);
        }
    }
    let stand_in = |b: u8| char::from_u32(BASE + u32::from(b)).unwrap_or('\u{fffd}');
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if (0xF780..=0xF7FF).contains(&u32::from(c)) {
                let mut b = [0u8; 4];
                out.extend(c.encode_utf8(&mut b).bytes().map(stand_in));
            } else {
                out.push(c);
            }
        }
        // Invalid bytes are never ASCII, so BASE + b is in the range.
        out.extend(chunk.invalid().iter().map(|&b| stand_in(b)));
    }
    Cow::Owned(out)
}

/// The message bytes of `text`: every stand-in character back to its byte.
pub fn raw(text: &[u8]) -> Cow<'_, [u8]> {
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

    #[test]
    fn a_names_own_private_use_characters_come_back() {
        // U+F780 (EF 9E 80) is a stand-in's code; in a name it is itself.
        for n in [
            &b"\xef\x9e\x80\x80"[..],
            b"\xef\x9e\x80",
            b"a\xef\x9f\xbfb\xff",
        ] {
            assert_eq!(raw(name(n).as_bytes()).as_ref(), n);
        }
    }

    proptest! {
        #[test]
        fn any_name_round_trips(n in proptest::collection::vec(any::<u8>(), 0..64)) {
            let t = name(&n);
            let back = raw(t.as_bytes()).into_owned();
            prop_assert_eq!(back, n);
        }
    }
}
