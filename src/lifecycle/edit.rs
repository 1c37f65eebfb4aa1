//! Surgical edits of the top-level keys of a YAML document whose root is a
//! block mapping (a task file): only the lines of the edited keys change, so
//! comments, key order, quoting and blank lines elsewhere survive and a
//! `git diff` shows just the lifecycle lines.
//!
//! Text in, text out: this module does no file system or other I/O. It relies
//! on the budgeted parser to read the original and, unless where the parser found
//! the root's keys shows the line-level edit right by construction, to prove it.

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Value};
use yaml_rust2::Yaml;

use crate::task::yaml::{Budget, Shape, YamlError, parse_document, parse_document_shaped};

#[derive(Debug)]
pub enum Edit<'a> {
    Set(&'a str, Value),
    Remove(&'a str),
}

#[derive(Debug)]
pub struct Edited {
    pub text: String,
    /// False when the layout defeated line-level editing and the whole
    /// document was re-emitted (comments lost).
    pub surgical: bool,
}

#[derive(Debug)]
pub enum EditError {
    NotAMapping,
    Parse(YamlError),
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EditError::NotAMapping => write!(f, "the YAML document is not a mapping"),
            EditError::Parse(error) => write!(f, "cannot parse the YAML document: {error}"),
        }
    }
}

impl std::error::Error for EditError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EditError::NotAMapping => None,
            EditError::Parse(error) => Some(error),
        }
    }
}

/// Apply the edits to a YAML document whose root is a block mapping.
pub fn apply(text: &str, edits: &[Edit]) -> Result<Edited, EditError> {
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (Value::Object(original), shape) =
        parse_document_shaped(body, &Budget::default()).map_err(EditError::Parse)?
    else {
        return Err(EditError::NotAMapping);
    };
    Ok(apply_parsed(text, original, &shape, edits))
}

/// `apply` for a caller that has parsed `text` already, with `parse_document_shaped` and the
/// default budget: the document's mapping is `original`, `shape` where its keys stand.
pub fn apply_parsed(text: &str, original: Map<String, Value>, shape: &Shape, edits: &[Edit]) -> Edited {
    // A byte-order mark is kept where it was, outside the line scanning.
    if let Some(rest) = text.strip_prefix('\u{feff}') {
        let edited = apply_parsed(rest, original, shape, edits);
        return Edited {
            text: format!("\u{feff}{}", edited.text),
            ..edited
        };
    }
    let layout = Layout::scan(text, &original);
    // The line scan is a heuristic; only the parser's word lets its result through: where
    // it found the keys, when that settles it (`Layout::proven_by`; an empty result is no
    // mapping), else a parse of the result that yields exactly the expected mapping. The
    // expected mapping is built only when the proof does not settle it.
    let Some(layout) = layout else {
        return Edited {
            text: render_document(&edited_map(original, edits)),
            surgical: false,
        };
    };
    let candidate = layout.apply(edits);
    if !leaves_empty(&original, edits) && layout.proven_by(shape, text, edits) {
        return Edited {
            text: candidate,
            surgical: true,
        };
    }
    let expected = edited_map(original, edits);
    if parse_document(&candidate, &Budget::default()).is_ok_and(|v| same_mapping(&v, &expected)) {
        Edited {
            text: candidate,
            surgical: true,
        }
    } else {
        Edited {
            text: render_document(&expected),
            surgical: false,
        }
    }
}

/// Is the mapping `edits` make of `map` empty (`edited_map(map, edits).is_empty()`, without
/// building it)? Only if the last edit of every key there is, or is set, removes it.
fn leaves_empty(map: &Map<String, Value>, edits: &[Edit]) -> bool {
    fn key<'e>(edit: &Edit<'e>) -> &'e str {
        match edit {
            Edit::Set(key, _) | Edit::Remove(key) => key,
        }
    }
    let removed = |k: &str| {
        edits
            .iter()
            .rev()
            .find(|e| key(e) == k)
            .is_some_and(|e| matches!(e, Edit::Remove(_)))
    };
    map.keys().all(|k| removed(k)) && edits.iter().all(|e| removed(key(e)))
}

/// The mapping `edits` make of `map`: what an edited document must read as.
fn edited_map(mut map: Map<String, Value>, edits: &[Edit]) -> Map<String, Value> {
    for edit in edits {
        match edit {
            Edit::Set(key, value) => {
                map.insert((*key).to_owned(), value.clone());
            }
            Edit::Remove(key) => {
                map.shift_remove(*key);
            }
        }
    }
    map
}

/// Render one top-level `key: value` entry as block YAML text ending in '\n' (used for new keys).
pub fn render_entry(key: &str, value: &Value) -> String {
    let mut out = String::new();
    write_key(&mut out, key, value, 0);
    out
}

fn render_document(map: &Map<String, Value>) -> String {
    if map.is_empty() {
        return "{}\n".to_owned();
    }
    map.iter().map(|(k, v)| render_entry(k, v)).collect()
}

/// Deep equality that, unlike `Value`'s, also requires the same key order.
fn same_mapping(a: &Value, b: &Map<String, Value>) -> bool {
    matches!(a, Value::Object(a) if same_entries(a, b))
}

fn same_entries(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && same_value(va, vb))
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => same_entries(a, b),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_value(x, y))
        }
        _ => a == b,
    }
}

/// The original text cut into lines, with the line range of each top-level entry.
struct Layout<'t> {
    lines: Vec<&'t str>,
    text_len: usize,
    entries: Vec<Entry<'t>>,
    /// Index of the line where the mapping's body ends (a `...` marker or EOF).
    body_end: usize,
    newline: &'static str,
}

struct Entry<'t> {
    /// Borrowed from the text where the key is written as its own name (nearly always).
    key: Cow<'t, str>,
    start: usize,
    /// Exclusive; trailing blank and column-0 comment lines are left out because
    /// they introduce whatever follows.
    end: usize,
}

enum Body {
    Keep,
    Replace(String),
    Removed,
}

impl<'t> Layout<'t> {
    /// Returns `None` unless the key lines found are exactly the parsed keys, in order.
    fn scan(text: &'t str, original: &Map<String, Value>) -> Option<Self> {
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let mut starts = Vec::new();
        for (index, line) in lines.iter().enumerate() {
            if let Some(key_text) = key_text(line) {
                starts.push((index, key_name(key_text)?));
            }
        }
        if starts.len() != original.len() || starts.iter().zip(original.keys()).any(|((_, a), b)| a != b) {
            return None;
        }
        let first_body_line = starts.last().map_or(0, |(index, _)| *index);
        let body_end = (first_body_line..lines.len())
            .find(|&i| is_marker(trim_eol(lines[i]), "..."))
            .unwrap_or(lines.len());
        let next_starts: Vec<usize> = starts.iter().skip(1).map(|(next, _)| *next).collect();
        let mut entries = Vec::with_capacity(starts.len());
        for (position, (start, key)) in starts.into_iter().enumerate() {
            let mut end = next_starts.get(position).copied().unwrap_or(body_end);
            while end > start + 1 && is_trailing_filler(lines[end - 1]) {
                end -= 1;
            }
            entries.push(Entry { key, start, end });
        }
        let newline = if lines.first().is_some_and(|l| l.ends_with("\r\n")) {
            "\r\n"
        } else {
            "\n"
        };
        Some(Layout {
            lines,
            text_len: text.len(),
            entries,
            body_end,
            newline,
        })
    }

    /// Does the parser's account of the original (`shape`) show that `apply(edits)` reads as
    /// the original with the edits made, without parsing it? It does when the root is a
    /// block mapping whose every key starts a line the scan took for that key's (so each
    /// entry is exactly its lines, up to the next key), no anchor or alias could lose its
    /// other half, no entry is removed where a block scalar could take in its blank lines,
    /// each line break is one the scan splits at, the text ends in a line break with no `...`
    /// after which new keys would go, and every value set is one whose rendering reads back
    /// as itself (`exact_rendering`) within the budget.
    fn proven_by(&self, shape: &Shape, text: &str, edits: &[Edit]) -> bool {
        let budget = Budget::default();
        let mut added = 0;
        for edit in edits {
            match edit {
                Edit::Set(key, value) => match exact_rendering(value) {
                    Some((weight, height)) if height + 2 <= budget.max_depth => {
                        added += 2 + key.len() / 64 + weight;
                    }
                    _ => return false,
                },
                // The blank lines after a removed entry stay, and a block scalar before it
                // that keeps its trailing line breaks would take them in.
                Edit::Remove(_) if shape.block_scalars => return false,
                Edit::Remove(_) => {}
            }
        }
        let first = self.entries.first().map_or(self.body_end, |e| e.start);
        !shape.references
            && shape.spent + added <= budget.max_nodes
            && shape.keys.len() == self.entries.len()
            && shape
                .keys
                .iter()
                .zip(&self.entries)
                .all(|(&(line, column), entry)| line == entry.start + 1 && column == 0)
            && self.lines[..first].iter().all(|line| is_preamble(trim_eol(line)))
            && self.body_end == self.lines.len()
            && text.ends_with('\n')
            && (!text.as_bytes().contains(&b'\r')
                || !text
                    .bytes()
                    .zip(text.bytes().skip(1).chain([b'\n']))
                    .any(|(b, next)| b == b'\r' && next != b'\n'))
    }

    fn apply(&self, edits: &[Edit]) -> String {
        let mut bodies: Vec<Body> = self.entries.iter().map(|_| Body::Keep).collect();
        let mut appended: Vec<(&str, String)> = Vec::new();
        for edit in edits {
            let key = match edit {
                Edit::Set(key, _) | Edit::Remove(key) => *key,
            };
            let existing = self
                .entries
                .iter()
                .zip(&bodies)
                .position(|(entry, body)| entry.key == key && !matches!(body, Body::Removed));
            match (edit, existing) {
                (Edit::Set(_, value), Some(index)) => {
                    bodies[index] = Body::Replace(self.render(key, value));
                }
                (Edit::Set(_, value), None) => {
                    let rendered = self.render(key, value);
                    match appended.iter_mut().find(|(k, _)| *k == key) {
                        Some(slot) => slot.1 = rendered,
                        None => appended.push((key, rendered)),
                    }
                }
                (Edit::Remove(_), Some(index)) => bodies[index] = Body::Removed,
                (Edit::Remove(_), None) => appended.retain(|(k, _)| *k != key),
            }
        }

        let rendered: usize = bodies
            .iter()
            .map(|b| match b {
                Body::Replace(r) => r.len(),
                _ => 0,
            })
            .chain(appended.iter().map(|(_, r)| r.len()))
            .sum();
        let mut out = String::with_capacity(self.text_len + rendered + self.newline.len());
        let first = self.entries.first().map_or(self.body_end, |e| e.start);
        out.extend(self.lines[..first].iter().copied());
        for (index, (entry, body)) in self.entries.iter().zip(&bodies).enumerate() {
            match body {
                Body::Keep => out.extend(self.lines[entry.start..entry.end].iter().copied()),
                Body::Replace(rendered) => out.push_str(rendered),
                Body::Removed => {}
            }
            let gap_end = self
                .entries
                .get(index + 1)
                .map_or(self.body_end, |next| next.start);
            out.extend(self.lines[entry.end..gap_end].iter().copied());
        }
        if !appended.is_empty() && !out.is_empty() && !out.ends_with('\n') {
            out.push_str(self.newline);
        }
        for (_, rendered) in &appended {
            out.push_str(rendered);
        }
        out.extend(self.lines[self.body_end..].iter().copied());
        out
    }

    fn render(&self, key: &str, value: &Value) -> String {
        let rendered = render_entry(key, value);
        if self.newline == "\n" {
            rendered
        } else {
            rendered.replace('\n', self.newline)
        }
    }
}

/// `Some((nodes, nesting))` when `render_entry` writes `value` so that its lines read back as
/// exactly it (property-tested by `render_entry_round_trips`): strings, booleans, 64-bit
/// integers, nulls inside collections, and collections of those. Floats are left to the proof
/// (`-0.0` is written `-0`, which reads as an integer). The nodes are counted as the parser's
/// budget counts them.
fn exact_rendering(value: &Value) -> Option<(usize, usize)> {
    match value {
        Value::String(s) => Some((1 + s.len() / 64, 0)),
        Value::Bool(_) | Value::Null => Some((1, 0)),
        Value::Number(n) => n.as_i64().map(|_| (1, 0)),
        Value::Array(items) => collection_rendering(items.iter().map(|v| (0, v))),
        Value::Object(map) => collection_rendering(map.iter().map(|(k, v)| (1 + k.len() / 64, v))),
    }
}

/// `exact_rendering` of a collection, given each child with the weight of its key (if any).
fn collection_rendering<'v>(
    mut children: impl Iterator<Item = (usize, &'v Value)>,
) -> Option<(usize, usize)> {
    children.try_fold((1, 1), |(weight, height), (key_weight, child)| {
        let (w, h) = exact_rendering(child)?;
        Some((weight + key_weight + w, height.max(h + 1)))
    })
}

/// What may come before a block mapping's first key: blank lines, comments, directives and
/// a bare `---` (a `---` followed by a node, or a `{`, would start the root elsewhere).
fn is_preamble(line: &str) -> bool {
    let trimmed = line.trim_start_matches([' ', '\t']);
    let after_marker = line
        .strip_prefix("---")
        .filter(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
        .map(|rest| rest.trim_start_matches([' ', '\t']));
    trimmed.is_empty()
        || trimmed.starts_with('#')
        || line.starts_with('%')
        || after_marker.is_some_and(|rest| rest.is_empty() || rest.starts_with('#'))
}

fn trim_eol(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    line.strip_suffix('\r').unwrap_or(line)
}

fn is_trailing_filler(line: &str) -> bool {
    let line = trim_eol(line);
    line.trim().is_empty() || line.starts_with('#')
}

fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

/// The key of a top-level `key: value` line as written (quotes included), or
/// `None` for any other line.
fn key_text(line: &str) -> Option<&str> {
    let line = trim_eol(line);
    let key_end = match line.chars().next()? {
        '"' => closing_double_quote(line)?,
        '\'' => closing_single_quote(line)?,
        ' ' | '\t' | '#' | '?' | '[' | ']' | '{' | '}' | ',' | '&' | '*' | '!' | '|' | '>' | '%' | '@'
        | '`' => return None,
        '-' if is_marker(line, "---") || is_marker(line, "-") => return None,
        '.' if is_marker(line, "...") => return None,
        _ => plain_key_end(line)?,
    };
    let rest = line[key_end..].trim_start_matches([' ', '\t']);
    let after_colon = rest.strip_prefix(':')?;
    (after_colon.is_empty() || after_colon.starts_with([' ', '\t']))
        .then(|| line[..key_end].trim_end_matches([' ', '\t']))
}

fn closing_double_quote(line: &str) -> Option<usize> {
    let mut escaped = false;
    for (index, byte) in line.bytes().enumerate().skip(1) {
        match byte {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return Some(index + 1),
            _ => {}
        }
    }
    None
}

fn closing_single_quote(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut index = 1;
    while index < bytes.len() {
        if bytes[index] == b'\'' {
            if bytes.get(index + 1) == Some(&b'\'') {
                index += 2;
                continue;
            }
            return Some(index + 1);
        }
        index += 1;
    }
    None
}

/// Where a plain key ends: the first `:` followed by a blank, unless a
/// comment starts before it.
fn plain_key_end(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    for index in 0..bytes.len() {
        match bytes[index] {
            b'#' if index > 0 && matches!(bytes[index - 1], b' ' | b'\t') => return None,
            b':' if matches!(bytes.get(index + 1), None | Some(b' ' | b'\t')) => {
                return Some(index);
            }
            _ => {}
        }
    }
    None
}

/// Resolves the written key the way the parser does, quotes, escapes and all.
fn key_name(key_text: &str) -> Option<Cow<'_, str>> {
    if is_identifier(key_text) && reads_as_string(key_text) {
        return Some(Cow::Borrowed(key_text));
    }
    key_name_from_parser(key_text).map(Cow::Owned)
}

fn key_name_from_parser(key_text: &str) -> Option<String> {
    match parse_document(&format!("{key_text}: ~"), &Budget::default()) {
        Ok(Value::Object(map)) if map.len() == 1 => map.into_iter().next().map(|(k, _)| k),
        _ => None,
    }
}

fn write_key(out: &mut String, key: &str, value: &Value, indent: usize) {
    push_scalar(out, key);
    out.push(':');
    write_after_key(out, value, indent);
}

/// A string scalar: plain where that reads back as the very string, else double-quoted.
fn push_scalar(out: &mut String, s: &str) {
    if is_plain_safe(s) {
        out.push_str(s);
    } else {
        out.push_str(&double_quoted(s));
    }
}

/// A value on the line of its key or dash (empty collections as `[]` and `{}`).
fn push_inline(out: &mut String, value: &Value) {
    use std::fmt::Write;
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => push_scalar(out, s),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

fn write_after_key(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_entries(out, map, indent + 2, false);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_items(out, items, indent + 2, false);
        }
        _ => {
            out.push(' ');
            push_inline(out, value);
            out.push('\n');
        }
    }
}

/// `at_column` means the cursor already sits at `indent` (right after `- `).
fn write_entries(out: &mut String, map: &Map<String, Value>, indent: usize, at_column: bool) {
    for (index, (key, value)) in map.iter().enumerate() {
        if index > 0 || !at_column {
            out.push_str(&" ".repeat(indent));
        }
        write_key(out, key, value, indent);
    }
}

fn write_items(out: &mut String, items: &[Value], indent: usize, at_column: bool) {
    for (index, item) in items.iter().enumerate() {
        if index > 0 || !at_column {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str("- ");
        match item {
            Value::Object(map) if !map.is_empty() => write_entries(out, map, indent + 2, true),
            Value::Array(inner) if !inner.is_empty() => write_items(out, inner, indent + 2, true),
            _ => {
                push_inline(out, item);
                out.push('\n');
            }
        }
    }
}

/// A conservative character set, then proof from the parser that the text
/// reads back as this very string both as a key and as a value (so "true",
/// "123", "1e3", "~" get quoted while timestamps stay plain).
fn is_plain_safe(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let safe_first = first.is_ascii_alphanumeric() || matches!(first, '_' | '.' | '/');
    let safe_rest = chars
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '.' | '/' | ':' | '@' | '+' | '-'));
    if !safe_first || !safe_rest || s.ends_with([' ', ':']) || s.contains(": ") {
        return false;
    }
    // Our parser keeps these as strings (`.inf` has no JSON number), but other
    // tools people use on task files read them as floats or YAML 1.1 booleans.
    if !reads_as_string(s)
        || ["y", "n", "yes", "no", "on", "off"]
            .iter()
            .any(|word| s.eq_ignore_ascii_case(word))
    {
        return false;
    }
    is_identifier(s) || is_timestamp(s) || parser_reads_back_plain(s)
}

/// The proof: `s: s` parses as exactly that one entry.
fn parser_reads_back_plain(s: &str) -> bool {
    let mut expected = Map::new();
    expected.insert(s.to_owned(), Value::String(s.to_owned()));
    parse_document(&format!("{s}: {s}\n"), &Budget::default()).is_ok_and(|v| same_mapping(&v, &expected))
}

/// Read by the YAML core schema as a string (not a number, boolean or null)?
fn reads_as_string(s: &str) -> bool {
    if is_identifier(s) {
        // A letter or `_` first: never a number (Rust's float parser takes `inf` and `nan`,
        // but the parser's resolution asks for a digit first), so only these words are not
        // strings. Keys and lifecycle values are nearly all identifiers.
        return !matches!(s, "null" | "true" | "True" | "TRUE" | "false" | "False" | "FALSE");
    }
    // The daemon's own timestamps (one per transition): a `T` and dashes among the digits
    // make them no number, boolean or null.
    is_timestamp(s) || resolves_to_string(s)
}

fn resolves_to_string(s: &str) -> bool {
    matches!(Yaml::from_str(s), Yaml::String(_))
}

/// `status`, `in_progress`, `assigned_at`: a plain scalar with nothing in it that could
/// start a comment, an indicator or a document marker, so it needs no proof from the
/// parser. Keys and lifecycle values are nearly all of this shape, and the parser is the
/// slowest part of an edit.
fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && s.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The shape of the timestamps the daemon writes, `2026-02-05T15:00:00.123Z`: digits,
/// dashes and colons not followed by a blank, so plain; one per transition.
fn is_timestamp(s: &str) -> bool {
    const SHAPE: &[u8] = b"0000-00-00T00:00:00";
    let Some((head, fraction)) = s.strip_suffix('Z').and_then(|t| t.split_at_checked(SHAPE.len())) else {
        return false;
    };
    let head_fits = head.bytes().zip(SHAPE).all(|(c, &shape)| {
        if shape == b'0' {
            c.is_ascii_digit()
        } else {
            c == shape
        }
    });
    let fraction_fits = fraction.is_empty()
        || fraction
            .strip_prefix('.')
            .is_some_and(|d| (1..=9).contains(&d.len()) && d.bytes().all(|c| c.is_ascii_digit()));
    head_fits && fraction_fits
}

/// JSON-style double quoting, with every character that YAML does not treat as
/// plain printable text escaped (YAML also knows `\u`, so this stays valid).
fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            ' '..='~' => out.push(c),
            '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..
                if !matches!(c, '\u{2028}' | '\u{2029}' | '\u{FEFF}') =>
            {
                out.push(c);
            }
            '\u{0}'..='\u{FFFF}' => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            _ => out.push_str(&format!("\\U{:08X}", u32::from(c))),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    const TASK: &str = "\
---
# leading comment
id: 2026-02-05T1400-x   # trailing comment
title: \"Rich Terminal UI\"
status: pending
artefacts:
- a.py
- b.py
context:
  notes:
  - one
description: |
  multi line
  text

# comment before status
result:
  summary: old
tags: [a, b]
";

    fn parse(text: &str) -> Value {
        parse_document(text, &Budget::default()).unwrap()
    }

    /// Whether `needles` appear in `haystack` in the same order.
    fn is_subsequence(needles: &[&str], haystack: &[&str]) -> bool {
        let mut rest = haystack.iter();
        needles.iter().all(|n| rest.any(|h| h == n))
    }

    #[test]
    fn lifecycle_edit_touches_only_edited_lines() {
        let result = json!({
            "summary": "done: all good",
            "files": ["x.rs", "y.rs"],
            "notes": "first line\nsecond line\n",
            "checks": [{"name": "fmt", "ok": true}, {"name": "clippy", "ok": true}],
        });
        let edits = [
            Edit::Set("status", json!("assigned")),
            Edit::Set("assigned_at", json!("2026-02-05T15:00:00Z")),
            Edit::Set("result", result.clone()),
        ];
        let edited = apply(TASK, &edits).unwrap();
        assert!(edited.surgical);
        let expected_text = "\
---
# leading comment
id: 2026-02-05T1400-x   # trailing comment
title: \"Rich Terminal UI\"
status: assigned
artefacts:
- a.py
- b.py
context:
  notes:
  - one
description: |
  multi line
  text

# comment before status
result:
  summary: \"done: all good\"
  files:
    - x.rs
    - y.rs
  notes: \"first line\\nsecond line\\n\"
  checks:
    - name: fmt
      ok: true
    - name: clippy
      ok: true
tags: [a, b]
assigned_at: 2026-02-05T15:00:00Z
";
        assert_eq!(edited.text, expected_text);

        let old: Vec<&str> = TASK.lines().collect();
        let new: Vec<&str> = edited.text.lines().collect();
        let untouched: Vec<&str> = old
            .iter()
            .copied()
            .filter(|l| !matches!(*l, "status: pending" | "result:" | "  summary: old"))
            .collect();
        assert!(is_subsequence(&untouched, &new));

        let value = parse(&edited.text);
        assert_eq!(value["status"], "assigned");
        assert_eq!(value["assigned_at"], "2026-02-05T15:00:00Z");
        assert_eq!(value["result"], result);
        assert_eq!(value["description"], "multi line\ntext\n");
    }

    #[test]
    fn remove_keeps_surrounding_comments() {
        let edited = apply(TASK, &[Edit::Remove("result"), Edit::Remove("title")]).unwrap();
        assert!(edited.surgical);
        let expected = TASK
            .replace("title: \"Rich Terminal UI\"\n", "")
            .replace("result:\n  summary: old\n", "");
        assert_eq!(edited.text, expected);
        assert!(edited.text.contains("# comment before status\ntags"));
    }

    #[test]
    fn adds_keys_at_the_end() {
        let edited = apply(
            "a: 1 # one\nb: 2\n",
            &[
                Edit::Set("c", json!({"x": [], "z": {}})),
                Edit::Set("d", json!(null)),
            ],
        )
        .unwrap();
        assert!(edited.surgical);
        assert_eq!(edited.text, "a: 1 # one\nb: 2\nc:\n  x: []\n  z: {}\nd: null\n");
    }

    #[test]
    fn adds_a_missing_final_newline_and_respects_document_end() {
        let edited = apply("a: 1", &[Edit::Set("b", json!(true))]).unwrap();
        assert_eq!(edited.text, "a: 1\nb: true\n");
        let edited = apply("a: 1\n# tail\n...\n", &[Edit::Set("b", json!("x"))]).unwrap();
        assert!(edited.surgical);
        assert_eq!(edited.text, "a: 1\n# tail\nb: x\n...\n");
    }

    #[test]
    fn set_then_remove_and_remove_then_set() {
        let edited = apply(
            "a: 1\nb: 2\n",
            &[
                Edit::Set("n", json!(1)),
                Edit::Remove("n"),
                Edit::Remove("a"),
                Edit::Set("a", json!(3)),
            ],
        )
        .unwrap();
        assert!(edited.surgical);
        assert_eq!(edited.text, "b: 2\na: 3\n");
    }

    #[test]
    fn quoted_keys() {
        let text = "\"status\": x\n'it''s': y # c\n\"a\\\"b\": z\n";
        let edited = apply(
            text,
            &[
                Edit::Set("status", json!("done")),
                Edit::Set("a\"b", json!(2)),
                Edit::Set("it's", json!("q")),
            ],
        )
        .unwrap();
        assert!(edited.surgical);
        assert_eq!(edited.text, "status: done\n\"it's\": q\n\"a\\\"b\": 2\n");
    }

    #[test]
    fn crlf_line_endings_are_kept() {
        let text = "# c\r\nid: x\r\nstatus: pending\r\nlist:\r\n- a\r\nend: 1\r\n";
        let edited = apply(
            text,
            &[
                Edit::Set("status", json!("assigned")),
                Edit::Set("list", json!(["b"])),
                Edit::Set("new", json!("fresh")),
            ],
        )
        .unwrap();
        assert!(edited.surgical);
        assert_eq!(
            edited.text,
            "# c\r\nid: x\r\nstatus: assigned\r\nlist:\r\n  - b\r\nend: 1\r\nnew: fresh\r\n"
        );
    }

    #[test]
    fn flow_root_falls_back_to_re_emitting() {
        let edited = apply("{a: 1, b: [x]} # c\n", &[Edit::Set("c", json!("z"))]).unwrap();
        assert!(!edited.surgical);
        assert_eq!(edited.text, "a: 1\nb:\n  - x\nc: z\n");

        let edited = apply("a: 1\n", &[Edit::Remove("a")]).unwrap();
        assert!(!edited.surgical);
        assert_eq!(parse(&edited.text), json!({}));
    }

    #[test]
    fn broken_layouts_fall_back() {
        // Removing the anchor's owner would leave a dangling alias.
        let edited = apply("a: &x 1\nb: *x\n", &[Edit::Remove("a")]).unwrap();
        assert!(!edited.surgical);
        assert_eq!(edited.text, "b: 1\n");
    }

    #[test]
    fn errors() {
        assert!(matches!(apply("- a\n- b\n", &[]), Err(EditError::NotAMapping)));
        let err = apply("a: [\n", &[]).unwrap_err();
        assert!(
            matches!(err, EditError::Parse(YamlError::Syntax { .. })),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("cannot parse the YAML document: line ")
        );
    }

    #[test]
    fn rendering_quotes_only_what_needs_it() {
        for plain in [
            "pending",
            "2026-02-05T14:00:00Z",
            "a.py",
            "src/main.rs",
            "x y",
            "a:b",
        ] {
            assert_eq!(render_entry("k", &json!(plain)), format!("k: {plain}\n"));
        }
        for quoted in [
            "", "true", "null", "~", "123", "1.5", "1e3", "0x1F", "a: b", "a #b", " x", "x ", "-x", "x:",
            "yes", ".inf",
        ] {
            let line = render_entry("k", &json!(quoted));
            assert!(line.starts_with("k: \""), "{quoted:?} -> {line:?}");
        }
        assert_eq!(render_entry("1", &json!(1)), "\"1\": 1\n");
        assert_eq!(
            render_entry("m", &json!([[1, 2], [], {"a": [3]}])),
            "m:\n  - - 1\n    - 2\n  - []\n  - a:\n      - 3\n"
        );
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            tricky_string().prop_map(Value::String),
        ]
    }

    fn tricky_string() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "true",
                "1e3",
                "null",
                "~",
                "a: b",
                "#x",
                "x #y",
                " lead",
                "trail ",
                "é ü 日本",
                "'q'",
                "\"dq\"",
                "line\nbreak",
                "\u{85}",
                "\u{FEFF}",
                "---",
                "...",
                "- item",
                "2026-02-05T14:00:00Z",
                "key:",
                "[x]",
                "{y}",
                "&a",
                "*a",
                "!t",
                "%d",
                "@x",
            ])
            .prop_map(str::to_owned),
            "[a-z0-9 :#'\"\\-.\n]{0,12}",
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..4)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => "[a-z_]{1,6}",
            1 => tricky_string(),
            1 => any::<String>(),
        ]
    }

    /// The edits a lifecycle makes, on documents built to trip a line-level edit up.
    #[test]
    fn an_edit_is_proven_by_the_parse_only_where_it_is_right() {
        // Each with whether its layout allows the proof by construction, and whether it holds
        // a block scalar (which rules it out for removals).
        let documents = [
            (TASK, true, true),
            ("id: x\ntitle: t\n", true, false),
            ("%YAML 1.2\n---\n# c\n\nid: x\ntitle: t\n", true, false),
            ("id: x\r\ntitle: t\r\n", true, false),
            ("id: x\ntitle: |+\n  keep\n\n\n", true, true),
            ("id: x\nlist:\n- a\n# between\n- b\ntitle: t\n", true, false),
            (
                "id: x\ntitle: \"quoted\n  on two lines\"\nstatus: new\n",
                true,
                false,
            ),
            // Declined: the parse of the result decides.
            ("id: x\ntitle: |\n  no line break at the end", false, false),
            ("{\nid: x,\ntitle: t}\n", false, false),
            ("--- {id: x,\ntitle: t}\n", false, false),
            ("id: &a x\ntitle: *a\n", false, false),
            ("status: &s new\ntitle: *s\n", false, false),
            ("id: x\rtitle: t\n", false, false),
            ("id: x\ntitle: t\n...\n", false, false),
            ("--- !!map\nid: x\ntitle: t\n", false, false),
            ("? id\n: x\ntitle: t\n", false, false),
        ];
        // Each with whether its values alone allow the proof by construction.
        let edit_sets: [(Vec<Edit>, bool); 6] = [
            (
                vec![
                    Edit::Set("status", json!("assigned")),
                    Edit::Set("assigned_at", json!("2026-02-05T15:00:00Z")),
                ],
                true,
            ),
            (
                vec![
                    Edit::Set("title", json!("new: title # not a comment")),
                    Edit::Remove("id"),
                ],
                true,
            ),
            (
                vec![
                    Edit::Set("attempt", json!(3)),
                    Edit::Set("approved", json!(true)),
                    Edit::Remove("status"),
                ],
                true,
            ),
            (
                vec![Edit::Remove("title"), Edit::Set("title", json!("last"))],
                true,
            ),
            (
                vec![
                    Edit::Set("status", json!("error")),
                    Edit::Set(
                        "error",
                        json!({"message": "exit 1\n: x", "attempt": 2, "tags": ["a", null, {}], "n": []}),
                    ),
                ],
                true,
            ),
            (vec![Edit::Set("result", json!({"cost_usd": -0.0}))], false),
        ];
        for (text, layout_fast, block) in documents {
            let (Value::Object(original), shape) = parse_document_shaped(text, &Budget::default()).unwrap()
            else {
                panic!("{text:?} is not a mapping");
            };
            for (edits, values_fast) in &edit_sets {
                let layout = Layout::scan(text, &original);
                let proven = layout.as_ref().is_some_and(|l| l.proven_by(&shape, text, edits));
                let removes = edits.iter().any(|e| matches!(e, Edit::Remove(_)));
                assert_eq!(
                    proven,
                    layout_fast && *values_fast && !(block && removes),
                    "{text:?} {edits:?}"
                );
                let expected = edited_map(original.clone(), edits);
                let edited = apply_parsed(text, original.clone(), &shape, edits);
                let parsed = parse_document(&edited.text, &Budget::default());
                assert!(
                    parsed.as_ref().is_ok_and(|v| same_mapping(v, &expected)),
                    "{text:?} {edits:?} -> {:?} = {parsed:?}",
                    edited.text
                );
            }
        }
    }

    #[test]
    fn the_shape_places_the_root_keys_and_sees_references() {
        let (_, shape) = parse_document_shaped(
            "# c\nid: x\nlist:\n- a: 1\n  b: 2\n\"t t\": |\n  x\n",
            &Budget::default(),
        )
        .unwrap();
        assert_eq!(shape.keys, vec![(2, 0), (3, 0), (6, 0)]);
        assert!(!shape.references);
        assert!(shape.block_scalars);
        let (_, shape) = parse_document_shaped("a: [&x 1]\nb: *x\n", &Budget::default()).unwrap();
        assert!(shape.references);
        assert!(!shape.block_scalars);
        assert_eq!(shape.keys, vec![(1, 0), (2, 0)]);
    }

    /// The edits `ops` ask for (set or remove, key, value); every other one targets an existing
    /// key (`pick` among `keys`), so updates and removals happen.
    fn edits_of<'a>(
        ops: &'a [(bool, String, Value)],
        pick: &[prop::sample::Index],
        keys: &[&'a String],
    ) -> Vec<Edit<'a>> {
        ops.iter()
            .zip(pick)
            .enumerate()
            .map(|(i, ((set, key, value), index))| {
                let key = if i % 2 == 0 {
                    index.get(keys).as_str()
                } else {
                    key.as_str()
                };
                if *set {
                    Edit::Set(key, value.clone())
                } else {
                    Edit::Remove(key)
                }
            })
            .collect()
    }

    fn edit_ops() -> impl Strategy<Value = Vec<(bool, String, Value)>> {
        prop::collection::vec((any::<bool>(), key(), value()), 0..6)
    }

    #[test]
    fn identifiers_read_as_strings_as_the_parser_resolves_them() {
        for word in [
            "null", "Null", "NULL", "true", "True", "TRUE", "tRue", "false", "False", "FALSE", "inf",
            "Infinity", "nan", "NaN", "e5", "E10", "_1", "x-1", "yes", "No", "status", "t-000001",
        ] {
            assert!(is_identifier(word), "{word}");
            assert_eq!(reads_as_string(word), resolves_to_string(word), "{word}");
        }
    }

    #[test]
    fn shortcuts_skip_only_what_the_parser_would_prove() {
        for word in [
            "true",
            "True",
            "FALSE",
            "null",
            "Null",
            "yes",
            "no",
            "on",
            "status",
            "in_progress",
        ] {
            assert_eq!(
                key_name(word).map(Cow::into_owned),
                key_name_from_parser(word),
                "{word}"
            );
        }
        for not_a_timestamp in [
            "2026-02-05T14:00:00",
            "2026-02-05T14:00:00.Z",
            "2026-02-05 14:00:00Z",
            "2026-02-05T14:00:00.1234567890Z",
        ] {
            assert!(!is_timestamp(not_a_timestamp), "{not_a_timestamp}");
        }
    }

    /// One top-level entry of a hand-written task file, in one of the layouts people use;
    /// `{k}` is the key.
    fn entry_layout() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "{k}: plain value\n",
            "{k}: value # trailing comment\n",
            "\"{k}\": quoted key\n",
            "{k}: |\n  literal\n\n  kept\n",
            "{k}: |+\n  keep\n\n\n",
            "{k}: >-\n  folded\n  text\n",
            "{k}: [a,\n  b, c]\n",
            "{k}: {x: 1,\n  y: 2}\n",
            "{k}:\n- one\n# between\n- two\n",
            "{k}:\n  nested: map\n  deeper:\n    - 1\n",
            "{k}: a plain\n  scalar on two lines\n",
            "{k}: \"double\n  quoted\"\n",
            "{k}: 'single ''quoted'''\n",
            "{k}:\n",
            "# a comment line\n{k}: after a comment\n",
            "\n{k}: after a blank line\n",
            "{k}: >+\n  folded, kept\n\n",
            "{k}: value\n   \n\t\n",
            "{k}: a plain\n\n  scalar with a blank line\n\n",
            "{k}: |2-\n   indented\n",
        ])
    }

    proptest! {
        #[test]
        fn shortcuts_agree_with_the_parser(
            s in "[A-Za-z_][A-Za-z0-9_-]{0,30}|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?Z",
        ) {
            prop_assert!(is_identifier(&s) || is_timestamp(&s));
            prop_assert_eq!(reads_as_string(&s), resolves_to_string(&s));
            if reads_as_string(&s) {
                prop_assert!(parser_reads_back_plain(&s), "{s:?}");
                prop_assert_eq!(key_name(&s).map(Cow::into_owned), key_name_from_parser(&s));
            }
        }

        #[test]
        fn render_entry_round_trips(key in key(), value in value()) {
            let text = render_entry(&key, &value);
            let mut expected = Map::new();
            expected.insert(key, value);
            let parsed = parse_document(&text, &Budget::default());
            prop_assert!(
                parsed.as_ref().is_ok_and(|v| same_mapping(v, &expected)),
                "{text:?} -> {parsed:?}"
            );
        }

        #[test]
        fn edits_of_hand_written_layouts_parse_to_the_expected_map(
            layouts in prop::collection::vec(entry_layout(), 1..7),
            head in prop::sample::select(vec!["", "---\n", "# header\n\n", "%YAML 1.2\n---\n"]),
            ops in edit_ops(),
            pick in prop::collection::vec(any::<prop::sample::Index>(), 6),
        ) {
            let text: String = std::iter::once(head.to_string())
                .chain(layouts.iter().enumerate().map(|(i, l)| l.replace("{k}", &format!("k{i}"))))
                .collect();
            let Ok((Value::Object(original), shape)) = parse_document_shaped(&text, &Budget::default()) else {
                panic!("{text:?} does not parse as a mapping");
            };
            let keys: Vec<&String> = original.keys().collect();
            let edits = edits_of(&ops, &pick, &keys);
            let expected = edited_map(original.clone(), &edits);
            let edited = apply_parsed(&text, original.clone(), &shape, &edits);
            let parsed = parse_document(&edited.text, &Budget::default());
            prop_assert!(
                parsed.as_ref().is_ok_and(|v| same_mapping(v, &expected)),
                "{text:?} {edits:?} -> {:?} = {parsed:?}", edited.text
            );
        }

        #[test]
        fn edits_of_rendered_maps_parse_to_the_expected_map(
            pairs in prop::collection::vec((key(), value()), 1..6),
            ops in edit_ops(),
            pick in prop::collection::vec(any::<prop::sample::Index>(), 6),
        ) {
            let original: Map<String, Value> = pairs.into_iter().collect();
            let text = render_document(&original);
            let keys: Vec<&String> = original.keys().collect();
            let edits = edits_of(&ops, &pick, &keys);
            let expected = edited_map(original.clone(), &edits);
            let edited = apply(&text, &edits).unwrap();
            let parsed = parse_document(&edited.text, &Budget::default());
            prop_assert!(
                parsed.as_ref().is_ok_and(|v| same_mapping(v, &expected)),
                "{text:?} {edits:?} -> {:?} = {parsed:?}", edited.text
            );
            prop_assert_eq!(edited.surgical, !expected.is_empty(), "{:?}", edited.text);
            // Intake hands over the mapping it parsed; the edit must not depend on who parsed.
            let Ok((Value::Object(parsed_first), shape)) = parse_document_shaped(&text, &Budget::default()) else {
                panic!("{text:?} does not parse as a mapping");
            };
            let handed_over = apply_parsed(&text, parsed_first, &shape, &edits);
            prop_assert_eq!(&handed_over.text, &edited.text);
            prop_assert_eq!(handed_over.surgical, edited.surgical);
        }
    }
}
