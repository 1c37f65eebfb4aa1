//! A JSON reader over one log line, for the index's views (`view`): an object's members are
//! visited in order, strings are borrowed from the line unless they hold escapes, and values
//! nobody reads are skipped without being built. Reading views through serde's derive (a
//! visitor call per member, an `IgnoredAny` per unread one) was ~40% of a rebuild's reading
//! thread. It accepts exactly JSON (RFC 8259, nesting as deep as serde_json allows) and reads
//! numbers as serde_json does: a non-negative integer as `u64`, a negative one as `i64`,
//! anything else as the nearest `f64`. Reads text only: no file, nothing about events.

use std::borrow::Cow;
use std::fmt;

/// Nesting deeper than serde_json accepts (127 levels) is refused rather than recursed into.
const MAX_DEPTH: usize = 127;

/// What is wrong with the text, and where (a byte offset into it).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Error {
    what: Cow<'static, str>,
    at: usize,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

pub(super) type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Number {
    U64(u64),
    I64(i64),
    F64(f64),
}

/// What the next value is, by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

pub(super) struct Reader<'a> {
    text: &'a str,
    at: usize,
    depth: usize,
}

impl<'a> Reader<'a> {
    pub fn new(text: &'a str) -> Reader<'a> {
        Reader {
            text,
            at: 0,
            depth: 0,
        }
    }

    /// An error at the reader's position.
    pub fn error(&self, what: impl Into<Cow<'static, str>>) -> Error {
        Error {
            what: what.into(),
            at: self.at,
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8, what: &'static str) -> Result<()> {
        self.skip_whitespace();
        if self.peek() != Some(byte) {
            return Err(self.error(what));
        }
        self.at += 1;
        Ok(())
    }

    /// The next value's kind, without reading it.
    pub fn kind(&mut self) -> Result<Kind> {
        self.skip_whitespace();
        Ok(match self.peek() {
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Array,
            Some(b'"') => Kind::String,
            Some(b'-' | b'0'..=b'9') => Kind::Number,
            Some(b't' | b'f') => Kind::Bool,
            Some(b'n') => Kind::Null,
            Some(_) => return Err(self.error("expected a value")),
            None => return Err(self.error("the text ends where a value should be")),
        })
    }

    /// Nothing but whitespace is left.
    pub fn end(&mut self) -> Result<()> {
        self.skip_whitespace();
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("trailing characters after the value")),
        }
    }

    /// Read an object, handing each member's name to `member`, which reads or skips its value.
    pub fn members(&mut self, mut member: impl FnMut(&mut Self, Cow<'a, str>) -> Result<()>) -> Result<()> {
        self.sequence(b'{', b'}', |r| {
            if r.kind()? != Kind::String {
                return Err(r.error("expected a member name"));
            }
            let name = r.string()?;
            r.eat(b':', "expected ':' after a member name")?;
            member(r, name)
        })
    }

    /// Read an array, `element` reading or skipping each element.
    pub fn elements(&mut self, element: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        self.sequence(b'[', b']', element)
    }

    fn sequence(&mut self, open: u8, close: u8, mut item: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        self.eat(
            open,
            if open == b'{' {
                "expected an object"
            } else {
                "expected an array"
            },
        )?;
        if self.depth == MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        self.depth += 1;
        self.skip_whitespace();
        if self.peek() == Some(close) {
            self.at += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            item(self)?;
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b) if b == close => {
                    self.at += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(self.error(format!("expected ',' or '{}'", close as char))),
            }
        }
    }

    /// Read a string: borrowed from the text unless it holds escapes.
    pub fn string(&mut self) -> Result<Cow<'a, str>> {
        self.eat(b'"', "expected a string")?;
        let start = self.at;
        let plain = self.plain_run();
        match self.peek() {
            Some(b'"') => {
                self.at += 1;
                return Ok(Cow::Borrowed(&self.text[start..plain]));
            }
            Some(b'\\') => {}
            Some(_) => return Err(self.error("control character in a string")),
            None => return Err(self.error("unterminated string")),
        }
        let mut owned = String::with_capacity(plain - start + 16);
        owned.push_str(&self.text[start..plain]);
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(Cow::Owned(owned));
                }
                Some(b'\\') => {
                    self.at += 1;
                    owned.push(self.escape()?);
                }
                Some(_) => return Err(self.error("control character in a string")),
                None => return Err(self.error("unterminated string")),
            }
            let run = self.at;
            let end = self.plain_run();
            owned.push_str(&self.text[run..end]);
        }
    }

    /// Advance over characters that stand for themselves in a string; returns where they end
    /// (at a quote, a backslash, a control character or the end of the text: all ASCII, so
    /// always a character boundary).
    fn plain_run(&mut self) -> usize {
        // Eight bytes at a time (as serde_json does): strings are most of a line.
        const ONES: u64 = u64::MAX / 255;
        const HIGH: u64 = ONES << 7;
        let has_byte = |word: u64, byte: u8| {
            let x = word ^ (ONES * u64::from(byte));
            x.wrapping_sub(ONES) & !x
        };
        let rest = &self.bytes()[self.at..];
        let mut words = rest.chunks_exact(8);
        for (i, chunk) in (&mut words).enumerate() {
            let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            let control = word.wrapping_sub(ONES * 0x20) & !word;
            let stops = (control | has_byte(word, b'"') | has_byte(word, b'\\')) & HIGH;
            if stops != 0 {
                // The lowest flagged byte is a real stop (a false flag needs a stop below it).
                self.at += i * 8 + stops.trailing_zeros() as usize / 8;
                return self.at;
            }
        }
        let tail = words.remainder();
        self.at += rest.len() - tail.len();
        self.at += tail
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
            .unwrap_or(tail.len());
        self.at
    }

    /// The character of the escape after a backslash.
    fn escape(&mut self) -> Result<char> {
        let Some(b) = self.peek() else {
            return Err(self.error("unterminated escape"));
        };
        self.at += 1;
        Ok(match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4()?;
                let code = match unit {
                    0xD800..=0xDBFF => {
                        if !self.bytes()[self.at..].starts_with(b"\\u") {
                            return Err(self.error("lone leading surrogate in a \\u escape"));
                        }
                        self.at += 2;
                        let low = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(self.error("lone leading surrogate in a \\u escape"));
                        }
                        0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    }
                    0xDC00..=0xDFFF => {
                        return Err(self.error("lone trailing surrogate in a \\u escape"));
                    }
                    _ => unit,
                };
                char::from_u32(code).expect("surrogates handled above")
            }
            _ => {
                self.at -= 1;
                return Err(self.error("invalid escape"));
            }
        })
    }

    fn hex4(&mut self) -> Result<u32> {
        let digits = self.bytes().get(self.at..self.at + 4);
        let value = digits
            .and_then(|d| std::str::from_utf8(d).ok())
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|d| u32::from_str_radix(d, 16).ok());
        let Some(value) = value else {
            return Err(self.error("expected four hex digits in a \\u escape"));
        };
        self.at += 4;
        Ok(value)
    }

    /// Read a number.
    pub fn number(&mut self) -> Result<Number> {
        self.skip_whitespace();
        let start = self.at;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        // The integer part, accumulated while it fits (it nearly always does).
        let mut significand = Some(0u64);
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                while let Some(digit @ b'0'..=b'9') = self.peek() {
                    significand = significand
                        .and_then(|s| s.checked_mul(10))
                        .and_then(|s| s.checked_add(u64::from(digit - b'0')));
                    self.at += 1;
                }
            }
            _ => return Err(self.error("expected a number")),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.digits("expected a digit after the decimal point")?;
            integer = false;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.digits("expected a digit in the exponent")?;
            integer = false;
        }
        match significand.filter(|_| integer) {
            Some(s) if !negative => Ok(Number::U64(s)),
            Some(s) => {
                // As serde_json: `-0`, and what `i64` cannot hold, become floats.
                let negated = (s as i64).wrapping_neg();
                Ok(if negated >= 0 {
                    Number::F64(-(s as f64))
                } else {
                    Number::I64(negated)
                })
            }
            None => match self.text[start..self.at].parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Number::F64(f)),
                _ => Err(Error {
                    what: "number out of range".into(),
                    at: start,
                }),
            },
        }
    }

    /// One or more decimal digits.
    fn digits(&mut self, what: &'static str) -> Result<()> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.error(what));
        }
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        Ok(())
    }

    /// Read `true` or `false`.
    pub fn bool(&mut self) -> Result<bool> {
        self.skip_whitespace();
        let rest = &self.bytes()[self.at..];
        let (value, len) = if rest.starts_with(b"true") {
            (true, 4)
        } else if rest.starts_with(b"false") {
            (false, 5)
        } else {
            return Err(self.error("expected true or false"));
        };
        self.at += len;
        Ok(value)
    }

    /// Read `null`.
    pub fn null(&mut self) -> Result<()> {
        self.skip_whitespace();
        if !self.bytes()[self.at..].starts_with(b"null") {
            return Err(self.error("expected null"));
        }
        self.at += 4;
        Ok(())
    }

    /// `None` for `null`, else what `read` reads.
    pub fn optional<T>(&mut self, read: impl FnOnce(&mut Self) -> Result<T>) -> Result<Option<T>> {
        if self.kind()? == Kind::Null {
            self.null()?;
            return Ok(None);
        }
        read(self).map(Some)
    }

    /// Read a value and forget it (checked all the same: the text must be JSON).
    pub fn skip(&mut self) -> Result<()> {
        match self.kind()? {
            Kind::Object => self.members(|r, _| r.skip()),
            Kind::Array => self.elements(Reader::skip),
            Kind::String => self.string().map(drop),
            Kind::Number => self.number().map(drop),
            Kind::Bool => self.bool().map(drop),
            Kind::Null => self.null(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::json_value;
    use proptest::prelude::*;
    use serde_json::Value;

    /// What the reader makes of a text, as a `Value` (objects keep their last duplicate).
    fn read_value(r: &mut Reader) -> Result<Value> {
        Ok(match r.kind()? {
            Kind::Object => {
                let mut map = serde_json::Map::new();
                r.members(|r, name| {
                    map.insert(name.into_owned(), read_value(r)?);
                    Ok(())
                })?;
                Value::Object(map)
            }
            Kind::Array => {
                let mut items = Vec::new();
                r.elements(|r| {
                    items.push(read_value(r)?);
                    Ok(())
                })?;
                Value::Array(items)
            }
            Kind::String => Value::String(r.string()?.into_owned()),
            Kind::Number => match r.number()? {
                Number::U64(n) => Value::from(n),
                Number::I64(n) => Value::from(n),
                Number::F64(f) => Value::from(f),
            },
            Kind::Bool => Value::Bool(r.bool()?),
            Kind::Null => {
                r.null()?;
                Value::Null
            }
        })
    }

    fn read_all(text: &str) -> Result<Value> {
        let mut r = Reader::new(text);
        let value = read_value(&mut r)?;
        r.end()?;
        Ok(value)
    }

    fn skips(text: &str) -> Result<()> {
        let mut r = Reader::new(text);
        r.skip()?;
        r.end()
    }

    proptest! {
        /// Whatever serde_json writes (compact, as the log does, or pretty), the reader reads
        /// back as serde_json does, and can skip.
        #[test]
        fn reads_back_what_serde_json_writes(value in json_value()) {
            for text in [serde_json::to_string(&value).unwrap(), serde_json::to_string_pretty(&value).unwrap()] {
                prop_assert_eq!(read_all(&text), Ok(value.clone()));
                prop_assert_eq!(skips(&text), Ok(()));
            }
        }
    }

    #[test]
    fn reads_what_serde_json_reads() {
        for text in [
            r#"{"a":1,"b":[true,false,null],"c":{"d":"e"}}"#,
            r#" { "a" : -5 , "b" : 1.5e3 , "c" : [ ] , "d" : { } } "#,
            r#""tab\there, quote\" slash\/ back\\ \u00e9 \ud83d\ude00 \b\f\n\r""#,
            "\"unescaped é and 😀\"",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "-0",
            "0.1",
            "-0.0",
            "1E-7",
            "2.5e+300",
            r#"{"a":1,"a":2}"#,
            "[[[[[]]]]]",
        ] {
            let ours = read_all(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let theirs: Value = serde_json::from_str(text).unwrap();
            assert_eq!(ours, theirs, "{text}");
            // Same number kinds, not just equal values (`-0` is a float to both).
            if let (Value::Number(a), Value::Number(b)) = (&ours, &theirs) {
                assert_eq!(
                    (a.is_u64(), a.is_i64(), a.is_f64()),
                    (b.is_u64(), b.is_i64(), b.is_f64())
                );
            }
            assert_eq!(skips(text), Ok(()), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_json() {
        for text in [
            "",
            "{",
            "[1,]",
            "{\"a\"}",
            "{\"a\":1,}",
            "{a:1}",
            "01",
            "1.",
            ".5",
            "1e",
            "-",
            "+1",
            "\"open",
            "\"bad \\x escape\"",
            "\"\\u12\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"raw\ncontrol\"",
            "tru",
            "nul",
            "1e400",
            "[1] 2",
            "NaN",
        ] {
            assert!(read_all(text).is_err(), "read {text:?}");
            assert!(skips(text).is_err(), "skipped {text:?}");
            assert!(
                serde_json::from_str::<Value>(text).is_err(),
                "serde_json reads {text:?}"
            );
        }
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let mut r = Reader::new(r#"["plain é", "esc\n"]"#);
        let mut got = Vec::new();
        r.elements(|r| {
            got.push(r.string()?);
            Ok(())
        })
        .unwrap();
        assert!(matches!(got[0], Cow::Borrowed("plain é")));
        assert!(matches!(&got[1], Cow::Owned(s) if s == "esc\n"));
    }

    #[test]
    fn nesting_beyond_serde_jsons_limit_is_refused_not_recursed() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(
            skips(&deep)
                .unwrap_err()
                .to_string()
                .starts_with("nested too deeply")
        );
        let nested = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        assert_eq!(skips(&nested(MAX_DEPTH)), Ok(()));
        assert!(serde_json::from_str::<Value>(&nested(MAX_DEPTH)).is_ok());
        assert!(skips(&nested(MAX_DEPTH + 1)).is_err());
        assert!(serde_json::from_str::<Value>(&nested(MAX_DEPTH + 1)).is_err());
    }

    #[test]
    fn errors_say_where() {
        let e = read_all(r#"{"a":tru}"#).unwrap_err();
        assert_eq!(e.to_string(), "expected true or false at byte 5");
    }
}
