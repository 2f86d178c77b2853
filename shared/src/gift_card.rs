//! Gift card codes: 20 characters of Crockford's base32 alphabet (no I, L, O or U), 100 random
//! bits, shown as five groups of four (`7KQ2-…`). Codes are read forgivingly — any case, with
//! or without dashes and spaces, `O` as `0` and `I`/`L` as `1` — so a code typed from a printed
//! card still matches. Generation and hashing are the server's; this is only the shape.

/// The alphabet, 32 symbols: 5 bits each.
pub const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Symbols in a code.
pub const LENGTH: usize = 20;

/// The canonical form of a typed code (upper-case symbols, no separators), or `None` when it
/// cannot be a gift card code.
pub fn normalize(typed: &str) -> Option<String> {
    if typed.len() > 64 {
        return None;
    }
    let mut out = String::with_capacity(LENGTH);
    for c in typed.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
            return None;
        }
        out.push(c);
    }
    (out.len() == LENGTH).then_some(out)
}

/// A canonical code from 20 symbol indexes (each below 32).
pub fn from_symbols(symbols: &[u8; LENGTH]) -> String {
    symbols.iter().map(|s| ALPHABET[usize::from(*s & 31)] as char).collect()
}

/// The code as shown to people: groups of four joined by dashes.
pub fn display(canonical: &str) -> String {
    canonical.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c)).collect::<Vec<_>>().join("-")
}

/// The last four symbols, which identify a card to its owner without revealing it.
pub fn last4(canonical: &str) -> String {
    canonical[canonical.len().saturating_sub(4)..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_codes_are_read_forgivingly_and_nothing_else_passes() {
        let code = from_symbols(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 31]);
        assert_eq!(code, "123456789ABCDEFGHJKZ");
        assert_eq!(display(&code), "1234-5678-9ABC-DEFG-HJKZ");
        assert_eq!(normalize("1234-5678-9abc-defg-hjkz").as_deref(), Some(code.as_str()));
        assert_eq!(normalize(" 1234 5678 9ABC DEFG HJKZ ").as_deref(), Some(code.as_str()));
        assert_eq!(normalize("I234-5678-9ABC-DEFG-HJKZ").as_deref(), Some(code.as_str()), "I reads as 1");
        assert_eq!(normalize("1234-5678-9ABC-DEFG-HJK"), None, "too short");
        assert_eq!(normalize("1234-5678-9ABC-DEFG-HJKZZ"), None, "too long");
        assert_eq!(normalize("1234-5678-9ABC-DEFG-HJKU"), None, "U is not a symbol");
        assert_eq!(normalize("1234-5678-9ABC-DEFG-HJK\u{e9}"), None);
        assert_eq!(normalize(&"1".repeat(100)), None);
        assert_eq!(last4(&code), "HJKZ");
    }
}
