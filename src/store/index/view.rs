//! What the projection reads of an event: `EventView`, borrowed either from a log line or from
//! an `Event` the daemon holds. A rebuild decodes a million lines, and decoding each into an
//! `Event` (every member an owned string, `data` and `edits` maps of owned keys) was most of
//! its reading thread; a view reads only the members the projection reads (`json::Reader`),
//! borrowing their text from the line, and skips the rest. `Views::decode(encode(e))`
//! equals `EventView::of(e)` for every event (tested), so a rebuilt index equals the
//! incrementally maintained one. A line an `Event` could not be decoded from (a member of the
//! wrong type, a required one missing) is not decoded into a view either.
//!
//! Members inside `data` are read as loosely as `serde_json::Value` reads them (a member of
//! an unexpected type is not an error, it just is not a string, a number, …), because that is
//! how the projection read them before views existed. A member seen twice keeps its last
//! value, as in a `serde_json::Map`. Touches no file and no database.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::json::{self, Kind, Number, Reader};
use crate::event::{DecodeError, Event};

type Text<'a> = Option<Cow<'a, str>>;

/// The members of an event the projection reads.
#[derive(Debug, Default, PartialEq)]
pub(super) struct EventView<'a> {
    pub seq: u64,
    pub ts: Cow<'a, str>,
    pub event: Cow<'a, str>,
    pub task_id: Text<'a>,
    pub run_id: Text<'a>,
    pub agent: Text<'a>,
    pub to: Text<'a>,
    pub path: Text<'a>,
    pub src: Text<'a>,
    pub op: Text<'a>,
    pub attempt: Option<u32>,
    pub pid: Option<u32>,
    pub exit_code: Option<i32>,
    pub duration_ms: Option<u64>,
    pub log_paths: Option<Vec<Cow<'a, str>>>,
    pub summary: Text<'a>,
    pub error: Text<'a>,
    pub data: Data<'a>,
}

/// The members of `data` the projection reads; each `None` when absent.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Data<'a> {
    /// `data.task`: the task file's metadata, on events that describe a task file.
    pub task: Option<TaskMeta<'a>>,
    /// `data.problem`: present (of whatever type) on events about an inconsistent file.
    pub problem: Option<Loose<'a>>,
    pub kind: Option<Loose<'a>>,
    pub model: Option<Loose<'a>>,
    pub cost_usd: Option<Loose<'a>>,
    pub input_tokens: Option<Loose<'a>>,
    pub output_tokens: Option<Loose<'a>>,
    pub cache_creation_input_tokens: Option<Loose<'a>>,
    pub cache_read_input_tokens: Option<Loose<'a>>,
    pub num_turns: Option<Loose<'a>>,
}

/// `data.task`, of which the projection reads five members (none, if it is not an object).
#[derive(Debug, Default, PartialEq)]
pub(super) struct TaskMeta<'a> {
    pub title: Option<Loose<'a>>,
    pub agent: Option<Loose<'a>>,
    pub priority: Option<Loose<'a>>,
    pub depends_on: Option<Loose<'a>>,
    pub approval_required: Option<Loose<'a>>,
}

/// A JSON value as far as the projection reads it: `Value::as_str`, `as_bool`, `as_u64`,
/// `as_f64`, and the strings of an array.
#[derive(Debug, PartialEq)]
pub(super) enum Loose<'a> {
    Str(Cow<'a, str>),
    Bool(bool),
    /// A number, as serde_json reads it.
    Number(Number),
    /// An array: its string elements (the others are skipped, as the projection skipped them).
    Strings(Vec<Cow<'a, str>>),
    /// `null` or an object.
    Other,
}

impl<'a> Loose<'a> {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Loose::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Loose::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Loose::Number(Number::U64(n)) => Some(*n),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Loose::Number(Number::U64(n)) => Some(*n as f64),
            Loose::Number(Number::I64(n)) => Some(*n as f64),
            Loose::Number(Number::F64(n)) => Some(*n),
            _ => None,
        }
    }

    pub fn as_strings(&self) -> Option<&[Cow<'a, str>]> {
        match self {
            Loose::Strings(list) => Some(list),
            _ => None,
        }
    }

    /// Read a value from a line.
    fn read(r: &mut Reader<'a>) -> json::Result<Loose<'a>> {
        Ok(match r.kind()? {
            Kind::String => Loose::Str(r.string()?),
            Kind::Bool => Loose::Bool(r.bool()?),
            Kind::Number => Loose::Number(r.number()?),
            Kind::Array => {
                let mut strings = Vec::new();
                r.elements(|r| {
                    if r.kind()? == Kind::String {
                        strings.push(r.string()?);
                    } else {
                        r.skip()?;
                    }
                    Ok(())
                })?;
                Loose::Strings(strings)
            }
            Kind::Object | Kind::Null => {
                r.skip()?;
                Loose::Other
            }
        })
    }

    /// The same reading of a value the daemon holds.
    fn of(value: &'a Value) -> Loose<'a> {
        match value {
            Value::String(s) => Loose::Str(Cow::Borrowed(s)),
            Value::Bool(b) => Loose::Bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => Loose::Number(Number::U64(u)),
                (None, Some(i), _) => Loose::Number(Number::I64(i)),
                (None, None, Some(f)) => Loose::Number(Number::F64(f)),
                (None, None, None) => Loose::Other,
            },
            Value::Array(items) => Loose::Strings(
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(Cow::Borrowed))
                    .collect(),
            ),
            Value::Null | Value::Object(_) => Loose::Other,
        }
    }
}

impl<'a> EventView<'a> {
    /// The view of a line's object: its members of ours read as `Event` types them (a
    /// text may be null), the others skipped.
    fn read(line: &'a str) -> json::Result<EventView<'a>> {
        let mut r = Reader::new(line);
        let mut view = EventView::default();
        let (mut seq, mut ts, mut event) = (None, None, None);
        r.members(|r, name| {
            match &*name {
                "seq" => seq = Some(integer(r)?),
                "ts" => ts = Some(r.string()?),
                "event" => event = Some(r.string()?),
                "task_id" => view.task_id = r.optional(Reader::string)?,
                "run_id" => view.run_id = r.optional(Reader::string)?,
                "agent" => view.agent = r.optional(Reader::string)?,
                "to" => view.to = r.optional(Reader::string)?,
                "path" => view.path = r.optional(Reader::string)?,
                "src" => view.src = r.optional(Reader::string)?,
                "op" => view.op = r.optional(Reader::string)?,
                "summary" => view.summary = r.optional(Reader::string)?,
                "error" => view.error = r.optional(Reader::string)?,
                "attempt" => view.attempt = r.optional(integer)?,
                "pid" => view.pid = r.optional(integer)?,
                "exit_code" => view.exit_code = r.optional(integer)?,
                "duration_ms" => view.duration_ms = r.optional(integer)?,
                "log_paths" => view.log_paths = r.optional(strings)?,
                "data" => view.data = Data::read(r)?,
                _ => r.skip()?,
            }
            Ok(())
        })?;
        r.end()?;
        let missing = |name: &str| r.error(format!("missing member `{name}`"));
        view.seq = seq.ok_or_else(|| missing("seq"))?;
        view.ts = ts.ok_or_else(|| missing("ts"))?;
        view.event = event.ok_or_else(|| missing("event"))?;
        Ok(view)
    }

    /// The view of an event the daemon holds (what `decode` reads back from its line).
    pub fn of(ev: &'a Event) -> EventView<'a> {
        let text = |s: &'a Option<String>| s.as_deref().map(Cow::Borrowed);
        EventView {
            seq: ev.seq,
            ts: Cow::Borrowed(&ev.ts),
            event: Cow::Borrowed(&ev.event),
            task_id: text(&ev.task_id),
            run_id: text(&ev.run_id),
            agent: text(&ev.agent),
            to: text(&ev.to),
            path: text(&ev.path),
            src: text(&ev.src),
            op: text(&ev.op),
            attempt: ev.attempt,
            pid: ev.pid,
            exit_code: ev.exit_code,
            duration_ms: ev.duration_ms,
            log_paths: ev
                .log_paths
                .as_ref()
                .map(|paths| paths.iter().map(|p| Cow::Borrowed(p.as_str())).collect()),
            summary: text(&ev.summary),
            error: text(&ev.error),
            data: ev.data.as_ref().map(Data::of).unwrap_or_default(),
        }
    }
}

impl<'a> Members<'a> for Data<'a> {
    fn slot(&mut self, key: &str) -> Option<&mut Option<Loose<'a>>> {
        Some(match key {
            "problem" => &mut self.problem,
            "kind" => &mut self.kind,
            "model" => &mut self.model,
            "cost_usd" => &mut self.cost_usd,
            "input_tokens" => &mut self.input_tokens,
            "output_tokens" => &mut self.output_tokens,
            "cache_creation_input_tokens" => &mut self.cache_creation_input_tokens,
            "cache_read_input_tokens" => &mut self.cache_read_input_tokens,
            "num_turns" => &mut self.num_turns,
            _ => return None,
        })
    }

    fn task(&mut self) -> Option<&mut Option<TaskMeta<'a>>> {
        Some(&mut self.task)
    }
}

impl<'a> Members<'a> for TaskMeta<'a> {
    fn slot(&mut self, key: &str) -> Option<&mut Option<Loose<'a>>> {
        Some(match key {
            "title" => &mut self.title,
            "agent" => &mut self.agent,
            "priority" => &mut self.priority,
            "depends_on" => &mut self.depends_on,
            "approval_required" => &mut self.approval_required,
            _ => return None,
        })
    }
}

/// An object of which some members are read (`Data`, `TaskMeta`), from a line or from a map
/// the daemon holds, the same way.
trait Members<'a>: Default {
    /// Where the member `key` goes, if it is one of ours.
    fn slot(&mut self, key: &str) -> Option<&mut Option<Loose<'a>>>;

    /// `task`, the one member read as an object of its own (in `Data` only).
    fn task(&mut self) -> Option<&mut Option<TaskMeta<'a>>> {
        None
    }

    fn of(map: &'a Map<String, Value>) -> Self {
        let mut out = Self::default();
        for (key, value) in map {
            if key == "task"
                && let Some(task) = out.task()
            {
                *task = Some(value.as_object().map(TaskMeta::of).unwrap_or_default());
            } else if let Some(slot) = out.slot(key) {
                *slot = Some(Loose::of(value));
            }
        }
        out
    }

    /// The same reading of a value in a line: anything but an object reads as no members.
    fn read(r: &mut Reader<'a>) -> json::Result<Self> {
        let mut out = Self::default();
        if r.kind()? != Kind::Object {
            r.skip()?;
            return Ok(out);
        }
        r.members(|r, key| {
            if key == "task"
                && let Some(task) = out.task()
            {
                *task = Some(TaskMeta::read(r)?);
            } else if let Some(slot) = out.slot(&key) {
                *slot = Some(Loose::read(r)?);
            } else {
                r.skip()?;
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// An integer member, as `serde` reads one into `T`: an integer in `T`'s range, nothing else.
fn integer<T: TryFrom<u64> + TryFrom<i64>>(r: &mut Reader) -> json::Result<T> {
    let value = match r.number()? {
        Number::U64(n) => T::try_from(n).ok(),
        Number::I64(n) => T::try_from(n).ok(),
        Number::F64(_) => None,
    };
    value.ok_or_else(|| r.error("expected an integer in range"))
}

/// An array of strings.
fn strings<'a>(r: &mut Reader<'a>) -> json::Result<Vec<Cow<'a, str>>> {
    let mut out = Vec::new();
    r.elements(|r| {
        out.push(r.string()?);
        Ok(())
    })?;
    Ok(out)
}

/// Log lines decoded into views (`logread::stream_as`).
pub(super) struct Views;

impl crate::store::logread::Decode for Views {
    type Out<'l> = EventView<'l>;
    fn read(line: &str) -> Result<EventView<'_>, DecodeError> {
        EventView::read(line).map_err(|e| DecodeError::Json(e.to_string()))
    }
    fn seq(out: &EventView<'_>) -> u64 {
        out.seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::{any_event, json_value};
    use crate::event::{self, encode};
    use crate::store::logread::Decode;
    use proptest::prelude::*;

    /// A `data` map using the names the projection reads, with values of any type.
    fn projected_data() -> impl Strategy<Value = Option<Map<String, Value>>> {
        let meta_key = prop_oneof![
            Just("title".to_string()),
            Just("agent".to_string()),
            Just("priority".to_string()),
            Just("depends_on".to_string()),
            Just("approval_required".to_string()),
            "[a-z_]{1,8}",
        ];
        let meta = prop_oneof![
            prop::collection::vec((meta_key, json_value()), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            json_value(),
        ];
        let key = prop_oneof![
            Just("problem"),
            Just("kind"),
            Just("model"),
            Just("cost_usd"),
            Just("input_tokens"),
            Just("output_tokens"),
            Just("cache_creation_input_tokens"),
            Just("cache_read_input_tokens"),
            Just("num_turns"),
            Just("other"),
        ];
        prop::option::of(
            (
                prop::option::of(meta),
                prop::collection::vec((key, json_value()), 0..6),
            )
                .prop_map(|(meta, entries)| {
                    let mut map: Map<String, Value> =
                        entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                    if let Some(meta) = meta {
                        map.insert("task".into(), meta);
                    }
                    map
                }),
        )
    }

    proptest! {
        /// The daemon's index projects the views of the events it holds, a rebuild the views
        /// it decodes from their lines: the two must agree for every event.
        #[test]
        fn a_line_decodes_to_the_view_of_its_event(
            mut e in any_event(),
            data in projected_data(),
            (agent, to, op, summary, duration_ms) in (
                prop::option::of(".*"), prop::option::of(".*"), prop::option::of(".*"),
                prop::option::of(".*"), prop::option::of(any::<u64>())),
        ) {
            e.data = data;
            (e.agent, e.to, e.op, e.summary, e.duration_ms) = (agent, to, op, summary, duration_ms);
            let line = encode(&e);
            prop_assert_eq!(Views::decode(&line).unwrap(), EventView::of(&e));
        }
    }

    #[test]
    fn members_of_unexpected_types_read_as_absent_values() {
        let mut e = Event::task("task_assigned", "t");
        e.data = Some(Map::from_iter([
            ("task".to_string(), Value::from(5)),
            ("problem".to_string(), Value::Null),
            ("cost_usd".to_string(), Value::from(-3)),
            ("input_tokens".to_string(), Value::from("many")),
        ]));
        let line = encode(&e);
        let view = Views::decode(&line).unwrap();
        assert_eq!(view, EventView::of(&e));
        assert_eq!(view.data.task, Some(TaskMeta::default()));
        assert_eq!(view.data.problem, Some(Loose::Other));
        assert_eq!(view.data.cost_usd.as_ref().and_then(Loose::as_f64), Some(-3.0));
        assert_eq!(view.data.input_tokens.as_ref().and_then(Loose::as_u64), None);
    }

    /// A line as the journal writes one, around any object text.
    fn line_of(object: &str) -> String {
        let crc = crc32c::crc32c(object.as_bytes());
        format!(r#"{},"crc":"{crc:08x}"}}"#, &object[..object.len() - 1])
    }

    #[test]
    fn a_line_no_event_could_be_decoded_from_is_refused() {
        let base = r#""v":1,"ts":"t","event":"task_assigned""#;
        for members in [
            r#""ts":"t","event":"e""#,
            r#""v":1,"seq":1,"event":"e""#,
            r#""v":1,"seq":1,"ts":"t""#,
            &format!(r#"{base},"seq":"1""#),
            &format!(r#"{base},"seq":-1"#),
            &format!(r#"{base},"seq":1.5"#),
            &format!(r#"{base},"seq":1,"attempt":4294967296"#),
            &format!(r#"{base},"seq":1,"exit_code":2147483648"#),
            &format!(r#"{base},"seq":1,"task_id":5"#),
            &format!(r#"{base},"seq":1,"log_paths":["a",1]"#),
            &format!(r#"{base},"seq":1,"event":null"#),
        ] {
            let line = line_of(&format!("{{{members}}}"));
            assert!(event::decode(&line).is_err(), "an event from {line}");
            assert!(
                matches!(Views::decode(&line), Err(DecodeError::Json(_))),
                "a view from {line}"
            );
        }
        let fine = line_of(&format!(
            r#"{{{base},"seq":7,"task_id":null,"exit_code":-1,"attempt":null,"from":"x","data":null}}"#
        ));
        let view = Views::decode(&fine).unwrap();
        assert_eq!(view, EventView::of(&event::decode(&fine).unwrap()));
        assert_eq!((view.seq, view.exit_code, view.task_id), (7, Some(-1), None));
    }

    #[test]
    fn a_damaged_line_is_refused() {
        let line = encode(&Event::task("task_assigned", "t"));
        let damaged = line.replacen("\"t\"", "\"u\"", 1);
        assert_eq!(Views::decode(&damaged), Err(DecodeError::ChecksumMismatch));
    }
}
