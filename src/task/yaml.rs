//! Budgeted YAML loading: turns the text of one YAML document into a
//! `serde_json::Value`, refusing documents whose aliases or nesting would
//! expand beyond a [`Budget`] ("alias bombs") before the expansion is built.
//!
//! Pure text in, value out: this module does no file system or other I/O and
//! knows nothing about tasks or lifecycles.

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Number, Value};
use yaml_rust2::Yaml;
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};

/// How much a document may expand to once every alias is resolved.
///
/// A scalar costs one node plus one per 64 bytes of its text, so that a single
/// huge anchored string cannot be fanned out through aliases either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub max_nodes: usize,
    pub max_depth: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_nodes: 100_000,
            max_depth: 64,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum YamlError {
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    MultipleDocuments {
        line: usize,
    },
    Empty,
    TooComplex {
        line: usize,
        column: usize,
        message: String,
    },
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            YamlError::Syntax {
                line,
                column,
                message,
            } => write!(f, "line {line}, column {column}: {message}"),
            YamlError::MultipleDocuments { line } => write!(
                f,
                "line {line}: a second YAML document starts here, but only one is allowed"
            ),
            YamlError::Empty => write!(f, "the YAML document is empty"),
            YamlError::TooComplex {
                line,
                column,
                message,
            } => write!(f, "line {line}, column {column}: too complex: {message}"),
        }
    }
}

impl std::error::Error for YamlError {}

/// Parses `text`, which must hold exactly one non-null YAML document.
pub fn parse_document(text: &str, budget: &Budget) -> Result<Value, YamlError> {
    parse_document_shaped(text, budget).map(|(value, _)| value)
}

/// Where the keys of a document's root mapping stand, learnt while parsing it: what lets
/// `lifecycle::edit` know its line-level edit is right without parsing its result again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    /// Line (1-based) and column (0-based) of each key of the root mapping, in order.
    pub keys: Vec<(usize, usize)>,
    /// An anchor or an alias occurs somewhere: cutting lines away could leave an alias
    /// without its anchor.
    pub references: bool,
    /// What the document cost of the budget (edits must not take it over).
    pub spent: usize,
    /// A literal or folded block scalar occurs: one that keeps its trailing line breaks
    /// (`|+`) takes in the blank lines after it, so removing the entry that follows it
    /// could change it.
    pub block_scalars: bool,
}

/// `parse_document`, also telling where the root mapping's keys are.
pub fn parse_document_shaped(text: &str, budget: &Budget) -> Result<(Value, Shape), YamlError> {
    // Editors on Windows often start UTF-8 files with a byte-order mark; it is not content.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser::new_from_str(text);
    let mut builder = Builder::new(budget);
    let mut root: Option<Value> = None;
    let mut shape = Shape::default();
    // Nesting level of the next node (1: an entry of the root), and nodes seen at level 1.
    let (mut depth, mut root_nodes, mut root_is_mapping) = (0usize, 0usize, false);
    loop {
        let (event, mark) = parser.next_token().map_err(scan_error)?;
        match &event {
            Event::Scalar(_, _, anchor, _)
            | Event::SequenceStart(anchor, _)
            | Event::MappingStart(anchor, _) => {
                shape.references |= *anchor != 0;
                shape.block_scalars |= matches!(
                    event,
                    Event::Scalar(_, TScalarStyle::Literal | TScalarStyle::Folded, ..)
                );
                if depth == 0 {
                    root_is_mapping = matches!(event, Event::MappingStart(..));
                } else if depth == 1 {
                    if root_is_mapping && root_nodes % 2 == 0 {
                        shape.keys.push((mark.line(), mark.col()));
                    }
                    root_nodes += 1;
                }
                if !matches!(event, Event::Scalar(..)) {
                    depth += 1;
                }
            }
            Event::Alias(_) => {
                shape.references = true;
                if depth == 1 {
                    root_nodes += 1;
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
        match event {
            Event::StreamEnd => break,
            Event::DocumentStart if root.is_some() => {
                return Err(YamlError::MultipleDocuments { line: mark.line() });
            }
            Event::Nothing | Event::StreamStart | Event::DocumentStart | Event::DocumentEnd => {}
            node_event => {
                if let Some(value) = builder.feed(node_event, mark)? {
                    root = Some(value);
                }
            }
        }
    }
    shape.spent = builder.spent;
    match root {
        None | Some(Value::Null) => Err(YamlError::Empty),
        Some(value) => Ok((value, shape)),
    }
}

/// A finished node together with what it costs to copy it through an alias.
struct Node {
    value: Value,
    weight: usize,
    /// Number of nested collection levels inside the node (0 for scalars).
    height: usize,
}

struct Frame {
    kind: FrameKind,
    anchor: usize,
    weight: usize,
    height: usize,
}

enum FrameKind {
    Seq(Vec<Value>),
    Map {
        map: Map<String, Value>,
        pending_key: Option<String>,
    },
}

/// Builds the value from parser events with an explicit stack, so that deep
/// nesting is bounded by the budget rather than by the thread's stack.
struct Builder<'b> {
    budget: &'b Budget,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    spent: usize,
}

impl<'b> Builder<'b> {
    fn new(budget: &'b Budget) -> Self {
        Builder {
            budget,
            stack: Vec::new(),
            anchors: HashMap::new(),
            spent: 0,
        }
    }

    /// Consumes one node event; returns the root value once it is complete.
    fn feed(&mut self, event: Event, mark: Marker) -> Result<Option<Value>, YamlError> {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let weight = 1 + text.len() / 64;
                self.charge(weight, mark)?;
                let value = resolve_scalar(text, style, tag.as_ref());
                self.finish(
                    Node {
                        value,
                        weight,
                        height: 0,
                    },
                    anchor,
                    mark,
                )
            }
            Event::Alias(id) => {
                let Some(target) = self.anchors.get(&id) else {
                    return Err(too_complex(
                        mark,
                        "alias refers to an anchor that is still being defined".to_owned(),
                    ));
                };
                let (weight, height) = (target.weight, target.height);
                if self.stack.len() + height > self.budget.max_depth {
                    return Err(too_complex(
                        mark,
                        format!("alias would nest deeper than {} levels", self.budget.max_depth),
                    ));
                }
                // Charged before cloning, so an over-budget expansion is never built.
                self.charge(weight, mark)?;
                let value = self.anchors[&id].value.clone();
                self.finish(
                    Node {
                        value,
                        weight,
                        height,
                    },
                    0,
                    mark,
                )
            }
            Event::SequenceStart(anchor, _) => {
                self.open(FrameKind::Seq(Vec::new()), anchor, mark)?;
                Ok(None)
            }
            Event::MappingStart(anchor, _) => {
                let kind = FrameKind::Map {
                    map: Map::new(),
                    pending_key: None,
                };
                self.open(kind, anchor, mark)?;
                Ok(None)
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return Ok(None);
                };
                let value = match frame.kind {
                    FrameKind::Seq(items) => Value::Array(items),
                    FrameKind::Map { map, .. } => Value::Object(map),
                };
                let node = Node {
                    value,
                    weight: frame.weight,
                    height: frame.height,
                };
                self.finish(node, frame.anchor, mark)
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => Ok(None),
        }
    }

    fn charge(&mut self, weight: usize, mark: Marker) -> Result<(), YamlError> {
        self.spent = self.spent.saturating_add(weight);
        if self.spent > self.budget.max_nodes {
            return Err(too_complex(
                mark,
                format!(
                    "document expands to more than {} nodes (alias expansion?)",
                    self.budget.max_nodes
                ),
            ));
        }
        Ok(())
    }

    fn open(&mut self, kind: FrameKind, anchor: usize, mark: Marker) -> Result<(), YamlError> {
        if self.awaiting_key() {
            return Err(complex_key(mark));
        }
        if self.stack.len() >= self.budget.max_depth {
            return Err(too_complex(
                mark,
                format!("nesting is deeper than {} levels", self.budget.max_depth),
            ));
        }
        self.charge(1, mark)?;
        self.stack.push(Frame {
            kind,
            anchor,
            weight: 1,
            height: 1,
        });
        Ok(())
    }

    fn awaiting_key(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Frame {
                kind: FrameKind::Map {
                    pending_key: None,
                    ..
                },
                ..
            })
        )
    }

    fn finish(&mut self, node: Node, anchor: usize, mark: Marker) -> Result<Option<Value>, YamlError> {
        if anchor != 0 {
            let copy = Node {
                value: node.value.clone(),
                weight: node.weight,
                height: node.height,
            };
            self.anchors.insert(anchor, copy);
        }
        let Some(parent) = self.stack.last_mut() else {
            return Ok(Some(node.value));
        };
        parent.weight = parent.weight.saturating_add(node.weight);
        parent.height = parent.height.max(node.height + 1);
        match &mut parent.kind {
            FrameKind::Seq(items) => items.push(node.value),
            FrameKind::Map { map, pending_key } => match pending_key.take() {
                Some(key) => {
                    map.insert(key, node.value);
                }
                None => {
                    let key = key_string(node.value).ok_or_else(|| complex_key(mark))?;
                    if map.contains_key(&key) {
                        return Err(YamlError::Syntax {
                            line: mark.line(),
                            column: mark.col() + 1,
                            message: format!("duplicate key `{key}`"),
                        });
                    }
                    *pending_key = Some(key);
                }
            },
        }
        Ok(None)
    }
}

fn scan_error(error: ScanError) -> YamlError {
    let mark = *error.marker();
    // The scanner caps flow nesting on its own (and may hit that cap while
    // looking ahead, before our depth check sees the events); it is the same
    // failure as our depth limit, so it is reported the same way.
    if error.info() == "recursion limit exceeded" {
        return too_complex(mark, "nesting is too deep".to_owned());
    }
    YamlError::Syntax {
        line: mark.line(),
        column: mark.col() + 1,
        message: error.info().to_owned(),
    }
}

fn too_complex(mark: Marker, message: String) -> YamlError {
    YamlError::TooComplex {
        line: mark.line(),
        column: mark.col() + 1,
        message,
    }
}

fn complex_key(mark: Marker) -> YamlError {
    YamlError::Syntax {
        line: mark.line(),
        column: mark.col() + 1,
        message: "a mapping or sequence cannot be used as a mapping key".to_owned(),
    }
}

/// JSON objects only have string keys, so scalar keys use their string form.
fn key_string(value: Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s),
        Value::Null => Some("null".to_owned()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

fn resolve_scalar(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Value {
    if style != TScalarStyle::Plain {
        return Value::String(text);
    }
    if let Some(tag) = tag {
        let core = tag.handle == "tag:yaml.org,2002:";
        // Like yaml-rust2's own loader: core type tags resolve as usual,
        // anything else (`!!str`, local tags) keeps the text as a string.
        if !(core && matches!(tag.suffix.as_str(), "bool" | "int" | "float" | "null")) {
            return Value::String(text);
        }
    }
    match Yaml::from_str(&text) {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Integer(i) => Value::Number(i.into()),
        Yaml::Real(real) => real
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map_or(Value::String(text), Value::Number),
        _ => Value::String(text),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn parse(text: &str) -> Result<Value, YamlError> {
        parse_document(text, &Budget::default())
    }

    const TASK: &str = "\
# leading comment
id: 2026-02-05T1400-x   # trailing comment
title: \"Rich Terminal UI\"
status: pending
priority: 3
ratio: 1.5
done: false
owner: ~
created: 2026-02-05T14:00:00Z
artefacts:
- a.py
- b.py
context:
  notes:
  - one
description: |
  multi line
  text
tags: [a, b]
";

    #[test]
    fn ordinary_task_file() {
        let value = parse(TASK).unwrap();
        let expected = json!({
            "id": "2026-02-05T1400-x",
            "title": "Rich Terminal UI",
            "status": "pending",
            "priority": 3,
            "ratio": 1.5,
            "done": false,
            "owner": null,
            "created": "2026-02-05T14:00:00Z",
            "artefacts": ["a.py", "b.py"],
            "context": {"notes": ["one"]},
            "description": "multi line\ntext\n",
            "tags": ["a", "b"],
        });
        assert_eq!(value, expected);
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        let expected_keys: Vec<&String> = expected.as_object().unwrap().keys().collect();
        assert_eq!(keys, expected_keys, "key order must be preserved");
    }

    #[test]
    fn scalar_resolution() {
        let value =
            parse("a: '1'\nb: !!str 2\nc: 0x10\nd: .inf\ne: yes\nf: 1e3\ng: \"true\"\nh: -7\ni: 1_000\n")
                .unwrap();
        assert_eq!(
            value,
            json!({"a": "1", "b": "2", "c": 16, "d": ".inf", "e": "yes", "f": 1000.0,
                   "g": "true", "h": -7, "i": "1_000"})
        );
    }

    #[test]
    fn non_string_keys_use_their_string_form() {
        let value = parse("1: a\ntrue: b\n~: c\n1.5: d\n").unwrap();
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["1", "true", "null", "1.5"]);
    }

    #[test]
    fn complex_key_is_rejected() {
        let err = parse("? [a, b]\n: c\n").unwrap_err();
        assert!(matches!(err, YamlError::Syntax { line: 1, .. }), "{err:?}");
        assert!(err.to_string().contains("mapping key"), "{err}");
    }

    #[test]
    fn duplicate_key_is_rejected_with_position() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(
            err,
            YamlError::Syntax {
                line: 3,
                column: 1,
                message: "duplicate key `a`".to_owned()
            }
        );
        assert_eq!(err.to_string(), "line 3, column 1: duplicate key `a`");
    }

    #[test]
    fn leading_document_marker() {
        assert_eq!(parse("---\na: 1\n").unwrap(), json!({"a": 1}));
        assert_eq!(parse("a: 1\n...\n").unwrap(), json!({"a": 1}));
    }

    #[test]
    fn two_documents() {
        assert_eq!(
            parse("a: 1\n---\nb: 2\n"),
            Err(YamlError::MultipleDocuments { line: 2 })
        );
        assert_eq!(
            parse("---\na: 1\n---\n"),
            Err(YamlError::MultipleDocuments { line: 3 })
        );
    }

    #[test]
    fn syntax_error_position() {
        let err = parse("a: 1\nb:\n   c: 2\n  d: 3\n").unwrap_err();
        let YamlError::Syntax { line, column, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!((*line, *column), (4, 4), "{err}");
        assert!(err.to_string().starts_with("line 4, column 4: "), "{err}");

        let err = parse("a: 1\nb: c: d\n").unwrap_err();
        assert!(
            matches!(
                err,
                YamlError::Syntax {
                    line: 2,
                    column: 5,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "line 2, column 5: mapping values are not allowed in this context"
        );
    }

    #[test]
    fn empty_documents() {
        for text in ["", "\n\n", "# only\n# comments\n", "---\n", "~\n", "--- null\n"] {
            assert_eq!(parse(text), Err(YamlError::Empty), "{text:?}");
        }
    }

    #[test]
    fn alias_within_budget_is_expanded() {
        let text = "base: &b\n  x: 1\n  y: [1, 2]\nfirst: *b\nsecond: *b\nname: &n bob\nwho: *n\n";
        let value = parse(text).unwrap();
        assert_eq!(value["first"], json!({"x": 1, "y": [1, 2]}));
        assert_eq!(value["second"], value["base"]);
        assert_eq!(value["who"], "bob");
    }

    #[test]
    fn recursive_alias_is_rejected() {
        let err = parse("a: &a [1, *a]\n").unwrap_err();
        assert!(matches!(err, YamlError::TooComplex { .. }), "{err:?}");
    }

    #[test]
    fn depth_is_limited() {
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let err = parse(&deep).unwrap_err();
        assert!(
            matches!(
                err,
                YamlError::TooComplex {
                    line: 1,
                    column: 65,
                    ..
                }
            ),
            "{err:?}"
        );
        let deeper = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let err = parse(&deeper).unwrap_err();
        assert!(matches!(err, YamlError::TooComplex { .. }), "{err:?}");
        let block = (0..200).fold(String::new(), |text, level| {
            format!("{text}{}k{level}:\n", " ".repeat(level))
        });
        let err = parse(&block).unwrap_err();
        assert!(matches!(err, YamlError::TooComplex { line: 65, .. }), "{err:?}");
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(parse(&ok).is_ok());

        // An alias may not smuggle depth past the limit either.
        let budget = Budget {
            max_nodes: 1000,
            max_depth: 4,
        };
        let text = "a: &a [[1]]\nb: [[*a]]\n";
        let err = parse_document(text, &budget).unwrap_err();
        assert!(matches!(err, YamlError::TooComplex { line: 2, .. }), "{err:?}");
    }

    #[test]
    fn one_huge_anchored_string_cannot_be_fanned_out() {
        let text = format!(
            "a: &a {}\nb: [{}]\n",
            "x".repeat(1 << 20),
            vec!["*a"; 10_000].join(",")
        );
        let err = parse(&text).unwrap_err();
        assert!(matches!(err, YamlError::TooComplex { .. }), "{err:?}");
    }

    /// `a` anchors `width` scalars; each following level lists the previous
    /// anchor ten times, so the document would expand to `width * 10^levels`.
    fn alias_bomb(width: usize, levels: usize) -> String {
        let scalars: Vec<String> = (0..width).map(|i| format!("v{i}")).collect();
        let mut text = format!("a: &a [{}]\n", scalars.join(","));
        let names = ["a", "b", "c", "d", "e", "f", "g", "h"];
        for level in 1..=levels {
            let (prev, name) = (names[level - 1], names[level]);
            let refs = vec![format!("*{prev}"); 10].join(",");
            text.push_str(&format!("{name}: &{name} [{refs}]\n"));
        }
        text
    }

    fn assert_bomb_rejected(text: &str) -> Duration {
        let start = Instant::now();
        let result = parse(text);
        let elapsed = start.elapsed();
        assert!(matches!(result, Err(YamlError::TooComplex { .. })), "{result:?}");
        // A generous sanity bound for slow CI machines; the target is < 100 ms.
        assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
        elapsed
    }

    #[test]
    fn alias_bomb_is_rejected_quickly() {
        let text = alias_bomb(1_000, 6);
        assert!(text.len() < 8_000, "{}", text.len());
        let elapsed = assert_bomb_rejected(&text);
        println!("alias bomb ({} bytes) rejected in {elapsed:?}", text.len());
    }

    #[test]
    fn larger_alias_bomb_is_rejected_quickly() {
        let text = alias_bomb(3_500, 7);
        assert!(text.len() > 19_000, "{}", text.len());
        let elapsed = assert_bomb_rejected(&text);
        println!("alias bomb ({} bytes) rejected in {elapsed:?}", text.len());
    }

    fn assert_bounded(text: &str) {
        let start = Instant::now();
        let _ = parse(text);
        let elapsed = start.elapsed();
        assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    }

    proptest! {
        #[test]
        fn never_panics_on_strings(text in any::<String>()) {
            assert_bounded(&text);
        }

        #[test]
        fn never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            assert_bounded(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn never_panics_on_yaml_like_text(text in "[a-c0-9:&*!?|>#'\"\\[\\]{},. \t\n-]{0,300}") {
            assert_bounded(&text);
        }
    }
}
