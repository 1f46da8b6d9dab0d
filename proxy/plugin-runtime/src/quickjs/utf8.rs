//! The UTF-8 decoding behind the `TextDecoder` global (`globals.js`), in Rust: a loop over
//! bytes in JavaScript costs a plugin tens of microseconds per token or body it decodes.
//! Invalid sequences become U+FFFD one maximal subpart at a time, as the Encoding
//! Standard says (and as Rust's lossy decoding does).

use rquickjs::{Ctx, Exception, Function, Object};

/// `decode(bytes, fatal, stream)`: `{text, used}`, the text of `bytes` (a binary string,
/// one character per byte, as the crypto bindings take bytes) and how many of them it
/// used; with `stream`, an incomplete sequence at the end is left unused for the next
/// call. With `fatal`, invalid UTF-8 throws a `TypeError` instead of becoming U+FFFD.
pub(super) fn decoder<'js>(ctx: &Ctx<'js>) -> rquickjs::Result<Function<'js>> {
    Function::new(
        ctx.clone(),
        |ctx: Ctx<'js>, bytes: String, fatal: bool, stream: bool| {
            let data = super::bindings::bytes(true, &bytes);
            let Some((text, used)) = decode(&data, fatal, stream) else {
                return Err(Exception::throw_type(
                    &ctx,
                    "decode: the data is not valid UTF-8",
                ));
            };
            let result = Object::new(ctx)?;
            result.set("text", text)?;
            result.set("used", used)?;
            Ok(result)
        },
    )
}

/// The text of `data` and how many bytes it used; `None` when `fatal` and `data` is not
/// UTF-8 (an incomplete sequence at the end counts only without `stream`).
fn decode(data: &[u8], fatal: bool, stream: bool) -> Option<(String, usize)> {
    let mut text = String::with_capacity(data.len());
    let mut rest = data;
    loop {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                text.push_str(valid);
                return Some((text, data.len()));
            }
            Err(error) => {
                let (valid, after) = rest.split_at(error.valid_up_to());
                text.push_str(std::str::from_utf8(valid).ok()?);
                // `None`: an incomplete sequence at the end, kept for the next call.
                let invalid = error.error_len();
                if invalid.is_none() && stream {
                    return Some((text, data.len() - after.len()));
                }
                if fatal {
                    return None;
                }
                text.push('\u{fffd}');
                match invalid {
                    Some(length) => rest = &after[length..],
                    None => return Some((text, data.len())),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_sequences_become_one_replacement_per_maximal_subpart() {
        assert_eq!(
            decode(b"caf\xc3\xa9", false, false),
            Some(("café".into(), 5))
        );
        // The Encoding Standard's examples: an unexpected continuation, a truncated
        // three-byte sequence, and bytes that can never start one.
        assert_eq!(
            decode(b"a\x80b", false, false),
            Some(("a\u{fffd}b".into(), 3))
        );
        assert_eq!(
            decode(b"\xe2\x82z", false, false),
            Some(("\u{fffd}z".into(), 3))
        );
        assert_eq!(
            decode(b"\xf0\x80\x80", false, false),
            Some(("\u{fffd}\u{fffd}\u{fffd}".into(), 3))
        );
        assert_eq!(decode(b"a\x80", true, false), None);
    }

    #[test]
    fn streaming_keeps_an_incomplete_sequence_for_the_next_call() {
        assert_eq!(decode(b"ab\xe2\x82", false, true), Some(("ab".into(), 2)));
        assert_eq!(decode(b"ab\xe2\x82", true, true), Some(("ab".into(), 2)));
        assert_eq!(
            decode(b"ab\xe2\x82", false, false),
            Some(("ab\u{fffd}".into(), 4))
        );
        assert_eq!(decode(b"ab\xe2\x82", true, false), None);
        assert_eq!(decode(b"\xe2\x82\xac", false, true), Some(("€".into(), 3)));
    }
}
