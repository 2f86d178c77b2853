//! A small JSON reader into `serde_json::Value` and writer out of it, for the browser cart.
//!
//! `serde_json::from_str::<Value>` goes through serde's deserializer and visitor machinery, about
//! 10 KB of the WebAssembly module; this reader builds the same `Value` directly. It accepts and
//! rejects what `serde_json` does (RFC 8259, nesting up to 127 levels, no trailing characters, no
//! lone surrogates) and reads integers exactly as it does. A number with a fraction or an exponent
//! is computed from its digits in `f64` arithmetic, which may differ from `serde_json`'s correctly
//! rounded result in the last bit; no field the cart reads is such a number (integers written
//! as `5.0` are read exactly).

use serde_json::{Map, Number, Value};
use std::fmt;

/// Where a text stopped being JSON (a byte offset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonError {
    pub at: usize,
}

impl JsonError {
    /// What went wrong, for people.
    pub fn message(&self) -> String {
        ["not JSON at byte ", &crate::text::int(self.at)].concat()
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// `v` as `serde_json::to_string` writes it, byte for byte (keys in the map's sorted order),
/// without serde's serializer: the browser module carries none.
pub fn write(out: &mut Vec<u8>, v: &Value) {
    use crate::wire::fast_json::{int, list, string, uint};
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => uint(out, u),
            (None, Some(i)) => int(out, i),
            // A float, written as `Number`'s `Display` writes it (with zmij), without a formatter.
            _ => out.extend_from_slice(zmij::Buffer::new().format_finite(n.as_f64().unwrap_or(0.0)).as_bytes()),
        },
        Value::String(s) => string(out, s),
        Value::Array(a) => list(out, a, write),
        Value::Object(m) => {
            out.push(b'{');
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, k);
                out.push(b':');
                write(out, v);
            }
            out.push(b'}');
        }
    }
}

/// `v` as text (see [`write`]).
pub fn text(v: &Value) -> String {
    let mut out = Vec::new();
    write(&mut out, v);
    // Only whole strings and ASCII were written.
    String::from_utf8(out).unwrap_or_default()
}

/// An object of `fields`, built without `json!` (which goes through serde's serializer for every
/// value that is not a literal).
pub fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    insert_all(&mut fields.into_iter())
}

/// One function for every size of [`object`]: collecting into the map sorts the fields first,
/// which copied a sort routine into the module for each size.
fn insert_all(fields: &mut dyn Iterator<Item = (&str, Value)>) -> Value {
    let mut m = Map::new();
    for (k, v) in fields {
        m.insert(k.to_owned(), v);
    }
    Value::Object(m)
}

/// How deep arrays and objects may nest, as in `serde_json`.
const MAX_DEPTH: usize = 127;

/// Reads `text` as one JSON value, with only whitespace around it.
pub fn parse(text: &str) -> Result<Value, JsonError> {
    let mut r = Reader { s: text.as_bytes(), text, at: 0 };
    let v = r.value(0)?;
    r.space();
    if r.at == r.s.len() { Ok(v) } else { Err(r.fail()) }
}

struct Reader<'a> {
    s: &'a [u8],
    text: &'a str,
    at: usize,
}

impl Reader<'_> {
    fn fail(&self) -> JsonError {
        JsonError { at: self.at }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Result<(), JsonError> {
        if self.peek() == Some(b) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.fail())
        }
    }

    fn word(&mut self, w: &[u8], v: Value) -> Result<Value, JsonError> {
        if self.s[self.at..].starts_with(w) {
            self.at += w.len();
            Ok(v)
        } else {
            Err(self.fail())
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.space();
        match self.peek() {
            Some(b'{') => {
                let mut map = Map::new();
                self.items(depth, b'}', |r, depth| {
                    r.space();
                    r.eat(b'"')?;
                    let key = r.string()?;
                    r.space();
                    r.eat(b':')?;
                    map.insert(key, r.value(depth)?);
                    Ok(())
                })?;
                Ok(Value::Object(map))
            }
            Some(b'[') => {
                let mut list = Vec::new();
                self.items(depth, b']', |r, depth| {
                    list.push(r.value(depth)?);
                    Ok(())
                })?;
                Ok(Value::Array(list))
            }
            Some(b'"') => {
                self.at += 1;
                self.string().map(Value::String)
            }
            Some(b't') => self.word(b"true", Value::Bool(true)),
            Some(b'f') => self.word(b"false", Value::Bool(false)),
            Some(b'n') => self.word(b"null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.fail()),
        }
    }

    /// The items of an array or object at `depth` (its opening bracket next), each read by
    /// `item` one level deeper, separated by commas, up to `close`.
    fn items(&mut self, depth: usize, close: u8, mut item: impl FnMut(&mut Self, usize) -> Result<(), JsonError>) -> Result<(), JsonError> {
        if depth >= MAX_DEPTH {
            return Err(self.fail());
        }
        self.at += 1;
        self.space();
        if self.peek() == Some(close) {
            self.at += 1;
            return Ok(());
        }
        loop {
            item(self, depth + 1)?;
            self.space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(c) if c == close => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(self.fail()),
            }
        }
    }

    /// The rest of a string whose opening quote was read.
    fn string(&mut self) -> Result<String, JsonError> {
        let mut out = String::new();
        let mut run = self.at;
        loop {
            match self.peek() {
                None => return Err(self.fail()),
                Some(b'"') => {
                    out.push_str(self.text.get(run..self.at).ok_or_else(|| self.fail())?);
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    out.push_str(self.text.get(run..self.at).ok_or_else(|| self.fail())?);
                    self.at += 1;
                    let c = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.at += 1;
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                // A leading surrogate must be followed by a trailing one.
                                self.eat(b'\\')?;
                                self.eat(b'u')?;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.fail());
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            self.at -= 1;
                            char::from_u32(code).ok_or_else(|| self.fail())?
                        }
                        _ => return Err(self.fail()),
                    };
                    out.push(c);
                    self.at += 1;
                    run = self.at;
                }
                Some(0..0x20) => return Err(self.fail()),
                Some(_) => self.at += 1,
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut n = 0;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(b @ b'0'..=b'9') => b - b'0',
                Some(b @ b'a'..=b'f') => b - b'a' + 10,
                Some(b @ b'A'..=b'F') => b - b'A' + 10,
                _ => return Err(self.fail()),
            };
            n = n * 16 + u32::from(d);
            self.at += 1;
        }
        Ok(n)
    }

    fn digits(&mut self) -> usize {
        let from = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        self.at - from
    }

    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.at;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        let int_from = self.at;
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.fail()),
        }
        let int_digits = &self.s[int_from..self.at];
        let mut fraction: &[u8] = &[];
        let mut exponent: i64 = 0;
        let mut is_float = false;
        if self.peek() == Some(b'.') {
            self.at += 1;
            let from = self.at;
            if self.digits() == 0 {
                return Err(self.fail());
            }
            fraction = &self.s[from..self.at];
            is_float = true;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            let minus = match self.peek() {
                Some(b'-') => {
                    self.at += 1;
                    true
                }
                Some(b'+') => {
                    self.at += 1;
                    false
                }
                _ => false,
            };
            let from = self.at;
            if self.digits() == 0 {
                return Err(self.fail());
            }
            for d in &self.s[from..self.at] {
                exponent = exponent.saturating_mul(10).saturating_add(i64::from(d - b'0'));
            }
            if minus {
                exponent = -exponent;
            }
            is_float = true;
        }
        if !is_float {
            // Integers as serde_json reads them: u64, else i64 (but -0 is a float), else f64.
            let mut n: u64 = 0;
            let mut fits = true;
            for d in int_digits {
                match n.checked_mul(10).and_then(|n| n.checked_add(u64::from(d - b'0'))) {
                    Some(m) => n = m,
                    None => fits = false,
                }
            }
            if fits && !negative {
                return Ok(Value::Number(n.into()));
            }
            if fits && negative && n != 0 && n <= 1 << 63 {
                return Ok(Value::Number((n as i64).wrapping_neg().into()));
            }
        }
        // Digits into a mantissa (those past 19 only move the exponent), then powers of ten.
        let mut mantissa: u64 = 0;
        let mut scale: i64 = exponent;
        let mut kept = 0;
        for (i, d) in int_digits.iter().chain(fraction).enumerate() {
            if kept < 19 {
                mantissa = mantissa * 10 + u64::from(d - b'0');
                if mantissa > 0 {
                    kept += 1;
                }
                if i >= int_digits.len() {
                    scale -= 1;
                }
            } else if i < int_digits.len() {
                scale += 1;
            }
        }
        // Then powers of ten at most 10^22 at a time (each exact in f64). Past ±800 the answer is
        // 0 or out of range whatever the digits, so the loops stay short for any exponent.
        let mut f = mantissa as f64;
        scale = scale.clamp(-800, 800);
        while scale > 0 && f.is_finite() && f != 0.0 {
            let k = scale.min(22);
            f *= 10f64.powi(k as i32);
            scale -= k;
        }
        while scale < 0 && f != 0.0 {
            let k = (-scale).min(22);
            f /= 10f64.powi(k as i32);
            scale += k;
        }
        if negative {
            f = -f;
        }
        if !f.is_finite() {
            self.at = start;
            return Err(self.fail());
        }
        Number::from_f64(f).map(Value::Number).ok_or(JsonError { at: start })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Equal, but for numbers with a fraction or exponent, which may differ in the last bits.
    fn close(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                x == y || (x - y).abs() <= 1e-15 * x.abs().max(y.abs())
            }
            (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y)),
            (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().zip(y).all(|((k, x), (l, y))| k == l && close(x, y)),
            _ => a == b,
        }
    }

    fn same(text: &str) {
        let theirs = serde_json::from_str::<Value>(text);
        let ours = parse(text);
        match (&theirs, &ours) {
            (Ok(a), Ok(b)) => assert!(close(a, b), "{text:?}: serde_json {a:?}, ours {b:?}"),
            (Err(_), Err(_)) => {}
            _ => panic!("{text:?}: serde_json {theirs:?}, ours {ours:?}"),
        }
    }

    #[test]
    fn reads_and_refuses_what_serde_json_does() {
        for text in [
            "null",
            " true ",
            "false",
            "0",
            "-0",
            "1",
            "-1",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "5.0",
            "1e3",
            "1E+2",
            "2.50",
            "-7.000",
            "0.5",
            "1e400",
            "-1e400",
            "1e-330",
            "0e999999",
            "123456789012345678901234.5e-3",
            "0.000123",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "+1",
            "\"\"",
            "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"",
            "\"\\u00e9\\u20AC\"",
            "\"\\ud83c\\udf89\"",
            "\"\\ud83c\"",
            "\"\\udf89\"",
            "\"\\ud83cx\"",
            "\"\\x\"",
            "\"tab\there\"",
            "\"é ✓ 🎉\"",
            "\"open",
            "[]",
            "[ ]",
            "[1,2,]",
            "[1 2]",
            "{}",
            "{ }",
            "{\"a\":1,\"a\":2}",
            "{\"a\":1,}",
            "{a:1}",
            "{\"a\" 1}",
            "{\"a\":[{\"b\":null}],\"c\":{\"d\":\"e\"}}",
            "[1] x",
            "",
            "  ",
            "nul",
            "truex",
            "[\"\\u0000\"]",
        ] {
            same(text);
        }
    }

    #[test]
    fn nests_as_deep_as_serde_json_does_and_no_deeper() {
        for depth in [127, 128, 129, 300] {
            same(&format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
            same(&format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)));
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(|n| Value::Number(n.into())),
            any::<i64>().prop_map(|n| Value::Number(n.into())),
            (-1_000_000i64..1_000_000).prop_map(|n| serde_json::json!(n as f64)),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((".{0,6}", inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn writes_what_serde_json_writes(v in json_value(), floats in proptest::collection::vec(any::<f64>().prop_filter("finite", |f| f.is_finite()), 0..4)) {
            let v = Value::Array(vec![v, Value::Array(floats.into_iter().map(|f| serde_json::json!(f)).collect())]);
            prop_assert_eq!(text(&v), serde_json::to_string(&v).unwrap());
        }

        #[test]
        fn reads_what_serde_json_writes(v in json_value()) {
            let compact = serde_json::to_string(&v).unwrap();
            prop_assert_eq!(parse(&compact).unwrap(), v.clone());
            let pretty = serde_json::to_string_pretty(&v).unwrap();
            prop_assert_eq!(parse(&pretty).unwrap(), v);
        }

        #[test]
        fn mangled_text_is_read_or_refused_as_serde_json_does(v in json_value(), cut in any::<prop::sample::Index>(), junk in "[\\[\\]{}\",:\\\\0-9a-z .eE+-]{0,3}") {
            let text = serde_json::to_string(&v).unwrap();
            let mut at = cut.index(text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            same(&format!("{}{}{}", &text[..at], junk, &text[at..]));
        }
    }
}
