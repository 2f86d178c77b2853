//! Messages built without `core::fmt`.
//!
//! `format!` brings the formatting machinery (argument tables, padding, per-type `Display`) into
//! the browser module, which needs only strings joined and whole numbers written. Messages are
//! joined with `[..].concat()` and numbers written by [`int`]; `Display` implementations of
//! shared types write through `f.write_str`.

/// `n` in decimal, as `n.to_string()` writes it.
pub fn int<I: itoa::Integer>(n: I) -> String {
    itoa::Buffer::new().format(n).to_owned()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn whole_numbers_are_written_as_to_string_writes_them(a: u64, b: i64, c: u32) {
            prop_assert_eq!(super::int(a), a.to_string());
            prop_assert_eq!(super::int(b), b.to_string());
            prop_assert_eq!(super::int(c), c.to_string());
        }
    }
}
