//! A strict RFC 8259 parser producing [`Value`]s with Go's decoding semantics where they matter
//! for signatures (numbers through `float64`, lone surrogates become U+FFFD).

use crate::error::Error;
use crate::value::{MAX_SAFE_INTEGER, Map, Value};

/// Maximum nesting of arrays and objects; TUF metadata needs about 6.
pub const MAX_DEPTH: usize = 128;

/// Parses one JSON text (surrounding whitespace allowed, nothing else).
///
/// Stricter than Go in three deliberate ways: invalid UTF-8 is refused (Go would substitute
/// U+FFFD), duplicate object keys are refused (Go keeps the last), and numbers must be integral
/// and within ±2^53 (Go would fail later when canonicalising, or lose precision).
pub fn from_slice(input: &[u8]) -> Result<Value, Error> {
    let mut p = Parser { s: input, i: 0 };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.syntax("trailing characters after JSON value"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn syntax(&self, msg: &'static str) -> Error {
        Error::Syntax {
            offset: self.i,
            msg,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn expect_lit(&mut self, lit: &'static [u8], v: Value) -> Result<Value, Error> {
        if self.s[self.i..].starts_with(lit) {
            self.i += lit.len();
            Ok(v)
        } else {
            Err(self.syntax("invalid literal"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, Error> {
        match self.peek() {
            None => Err(self.syntax("unexpected end of input")),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b't') => self.expect_lit(b"true", Value::Bool(true)),
            Some(b'f') => self.expect_lit(b"false", Value::Bool(false)),
            Some(b'n') => self.expect_lit(b"null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.syntax("unexpected character")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, Error> {
        if depth > MAX_DEPTH {
            return Err(Error::TooDeep(MAX_DEPTH));
        }
        self.i += 1; // '{'
        let mut members: Vec<(String, Value)> = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Value::Object(Map::new()));
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.syntax("expected object key"));
            }
            let key = self.string()?;
            self.ws();
            if self.peek() != Some(b':') {
                return Err(self.syntax("expected ':'"));
            }
            self.i += 1;
            self.ws();
            let v = self.value(depth)?;
            members.push((key, v));
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    break;
                }
                _ => return Err(self.syntax("expected ',' or '}'")),
            }
        }
        // Sorting a list of indices keeps the duplicate check O(n log n) for large targets maps.
        let mut order: Vec<usize> = (0..members.len()).collect();
        order.sort_unstable_by(|&a, &b| members[a].0.cmp(&members[b].0));
        if let Some(w) = order
            .windows(2)
            .find(|w| members[w[0]].0 == members[w[1]].0)
        {
            return Err(Error::DuplicateKey {
                key: members[w[0]].0.clone(),
            });
        }
        let mut map = Map::new();
        for (k, v) in members {
            map.push_unchecked(k, v);
        }
        Ok(Value::Object(map))
    }

    fn array(&mut self, depth: usize) -> Result<Value, Error> {
        if depth > MAX_DEPTH {
            return Err(Error::TooDeep(MAX_DEPTH));
        }
        self.i += 1; // '['
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth)?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.syntax("expected ',' or ']'")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let digits = self
            .s
            .get(self.i..self.i + 4)
            .ok_or_else(|| self.syntax("short \\u escape"))?;
        let mut v = 0u32;
        for &d in digits {
            let n = (d as char)
                .to_digit(16)
                .ok_or_else(|| self.syntax("bad hex digit in \\u escape"))?;
            v = v * 16 + n;
        }
        self.i += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, Error> {
        self.i += 1; // opening quote
        let mut out: Vec<u8> = Vec::new();
        loop {
            let start = self.i;
            // Copy the run of plain bytes in one go.
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.i += 1;
            }
            out.extend_from_slice(&self.s[start..self.i]);
            match self.peek() {
                None => return Err(self.syntax("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    break;
                }
                Some(b'\\') => {
                    self.i += 1;
                    let esc = self
                        .peek()
                        .ok_or_else(|| self.syntax("unterminated escape"))?;
                    self.i += 1;
                    let c = match esc {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => {
                            self.i -= 1;
                            return Err(self.syntax("invalid escape"));
                        }
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                Some(_) => return Err(self.syntax("control character in string")),
            }
        }
        String::from_utf8(out).map_err(|_| Error::Syntax {
            offset: self.i,
            msg: "string is not valid UTF-8",
        })
    }

    /// Decodes the code point after `\u`, pairing surrogates. Like Go, a lone or mismatched
    /// surrogate decodes to U+FFFD rather than failing.
    fn unicode_escape(&mut self) -> Result<char, Error> {
        let hi = self.hex4()?;
        if !(0xD800..0xDC00).contains(&hi) {
            return Ok(char::from_u32(hi).unwrap_or('\u{FFFD}'));
        }
        if self.s[self.i..].starts_with(b"\\u") {
            let save = self.i;
            self.i += 2;
            let lo = self.hex4()?;
            if (0xDC00..0xE000).contains(&lo) {
                let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                return Ok(char::from_u32(cp).unwrap_or('\u{FFFD}'));
            }
            // Not a low surrogate: Go emits U+FFFD for `hi` and decodes the next escape anew.
            self.i = save;
        }
        Ok('\u{FFFD}')
    }

    fn number(&mut self) -> Result<Value, Error> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.syntax("invalid number")),
        }
        let mut integral_literal = true;
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.syntax("digit expected after '.'"));
            }
            self.digits();
            integral_literal = false;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.syntax("digit expected in exponent"));
            }
            self.digits();
            integral_literal = false;
        }
        // The scanned bytes are ASCII by construction.
        let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default();
        let num_err = |msg| Error::Number { offset: start, msg };
        let n = if integral_literal {
            text.parse::<i64>()
                .map_err(|_| num_err("integer out of range"))?
        } else {
            // Go parses into float64 and its canonical encoder then requires an integral value.
            let f: f64 = text.parse().map_err(|_| num_err("invalid number"))?;
            if !f.is_finite() || f.floor() != f {
                return Err(num_err("non-integral number"));
            }
            if f.abs() > MAX_SAFE_INTEGER as f64 {
                return Err(num_err("integer out of range"));
            }
            f as i64
        };
        if n.unsigned_abs() > MAX_SAFE_INTEGER as u64 {
            return Err(num_err("integer out of range"));
        }
        Ok(Value::Number(n))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }
}
