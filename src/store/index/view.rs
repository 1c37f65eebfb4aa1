//! What the projection reads of an event: `EventView`, borrowed either from a log line or from
//! an `Event` the daemon holds. A rebuild decodes a million lines, and decoding each into an
//! `Event` (every member an owned string, `data` and `edits` maps of owned keys) was most of
//! its reading thread; a view decodes only the members the projection reads, borrowing their
//! text from the line. `EventView::decode(encode(e))` equals `EventView::of(e)` for every
//! event (tested), so a rebuilt index equals the incrementally maintained one.
//!
//! Members inside `data` are read as loosely as `serde_json::Value` reads them (a member of
//! an unexpected type is not an error, it just is not a string, a number, …), because that is
//! how the projection read them before views existed. Touches no file and no database.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::event::{self, DecodeError, Event};

type Text<'a> = Option<Cow<'a, str>>;

/// The members of an event the projection reads.
#[derive(Debug, Default, PartialEq, Deserialize)]
pub(super) struct EventView<'a> {
    pub seq: u64,
    #[serde(borrow)]
    pub ts: Cow<'a, str>,
    #[serde(borrow)]
    pub event: Cow<'a, str>,
    #[serde(default, borrow)]
    pub task_id: Text<'a>,
    #[serde(default, borrow)]
    pub run_id: Text<'a>,
    #[serde(default, borrow)]
    pub agent: Text<'a>,
    #[serde(default, borrow)]
    pub to: Text<'a>,
    #[serde(default, borrow)]
    pub path: Text<'a>,
    #[serde(default, borrow)]
    pub src: Text<'a>,
    #[serde(default, borrow)]
    pub op: Text<'a>,
    #[serde(default)]
    pub attempt: Option<u32>,
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub duration_ms: Option<u64>,
    #[serde(default, borrow)]
    pub log_paths: Option<Vec<Cow<'a, str>>>,
    #[serde(default, borrow)]
    pub summary: Text<'a>,
    #[serde(default, borrow)]
    pub error: Text<'a>,
    #[serde(default, borrow)]
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
    U64(u64),
    I64(i64),
    F64(f64),
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
            Loose::U64(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Loose::U64(n) => Some(*n as f64),
            Loose::I64(n) => Some(*n as f64),
            Loose::F64(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_strings(&self) -> Option<&[Cow<'a, str>]> {
        match self {
            Loose::Strings(list) => Some(list),
            _ => None,
        }
    }

    /// The same reading of a value the daemon holds.
    fn of(value: &'a Value) -> Loose<'a> {
        match value {
            Value::String(s) => Loose::Str(Cow::Borrowed(s)),
            Value::Bool(b) => Loose::Bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => Loose::U64(u),
                (None, Some(i), _) => Loose::I64(i),
                (None, None, Some(f)) => Loose::F64(f),
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
    /// Check a line's checksum and decode what the projection reads of it.
    pub fn decode(line: &'a str) -> Result<EventView<'a>, DecodeError> {
        event::verified_crc(line)?;
        serde_json::from_str(line).map_err(|e| DecodeError::Json(e.to_string()))
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

    /// Read the value of member `key` if it is one of ours; `false`: not ours, not read.
    fn read<'de: 'a, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        if key == "task"
            && let Some(task) = self.task()
        {
            *task = Some(map.next_value()?);
        } else if let Some(slot) = self.slot(key) {
            *slot = Some(map.next_value()?);
        } else {
            return Ok(false);
        }
        Ok(true)
    }
}

/// Decoding of the loosely read parts. A member seen twice keeps its last value, as a
/// `serde_json::Map` does.
impl<'de: 'a, 'a> Deserialize<'de> for Loose<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LooseVisitor(std::marker::PhantomData))
    }
}

struct LooseVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for LooseVisitor<'a> {
    type Value = Loose<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Loose<'a>, E> {
        Ok(Loose::Bool(b))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Loose<'a>, E> {
        Ok(Loose::U64(n))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Loose<'a>, E> {
        // serde_json hands non-negative integers to `visit_u64`, as `Value` stores them.
        Ok(u64::try_from(n).map_or(Loose::I64(n), Loose::U64))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Loose<'a>, E> {
        Ok(Loose::F64(n))
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Loose<'a>, E> {
        Ok(Loose::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Loose<'a>, E> {
        Ok(Loose::Str(Cow::Owned(s.to_string())))
    }
    fn visit_string<E>(self, s: String) -> Result<Loose<'a>, E> {
        Ok(Loose::Str(Cow::Owned(s)))
    }
    fn visit_unit<E>(self) -> Result<Loose<'a>, E> {
        Ok(Loose::Other)
    }
    fn visit_none<E>(self) -> Result<Loose<'a>, E> {
        Ok(Loose::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loose<'a>, A::Error> {
        let mut strings = Vec::new();
        while let Some(item) = seq.next_element::<Loose<'a>>()? {
            if let Loose::Str(s) = item {
                strings.push(s);
            }
        }
        Ok(Loose::Strings(strings))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loose<'a>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Loose::Other)
    }
}

/// A member name, borrowed from the line unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for KeyVisitor<'a> {
            type Value = Key<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(KeyVisitor(std::marker::PhantomData))
    }
}

/// Reads an object's members through `Members`; anything but an object reads as none.
struct ObjectVisitor<T>(std::marker::PhantomData<T>);

impl<'de: 'a, 'a, T: Members<'a>> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut out = T::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if !out.read(&key, &mut map)? {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(out)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(T::default())
    }
    fn visit_bool<E>(self, _: bool) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_i64<E>(self, _: i64) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_u64<E>(self, _: u64) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_f64<E>(self, _: f64) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_str<E>(self, _: &str) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_unit<E>(self) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_none<E>(self) -> Result<T, E> {
        Ok(T::default())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Data<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ObjectVisitor(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for TaskMeta<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ObjectVisitor(std::marker::PhantomData))
    }
}

/// Log lines decoded into views (`logread::stream_as`).
pub(super) struct Views;

impl crate::store::logread::Decode for Views {
    type Out<'l> = EventView<'l>;
    fn decode(line: &str) -> Result<EventView<'_>, DecodeError> {
        EventView::decode(line)
    }
    fn seq(out: &EventView<'_>) -> u64 {
        out.seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::encode;
    use crate::event::tests::{any_event, json_value};
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
            prop_assert_eq!(EventView::decode(&line).unwrap(), EventView::of(&e));
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
        let view = EventView::decode(&line).unwrap();
        assert_eq!(view, EventView::of(&e));
        assert_eq!(view.data.task, Some(TaskMeta::default()));
        assert_eq!(view.data.problem, Some(Loose::Other));
        assert_eq!(view.data.cost_usd.as_ref().and_then(Loose::as_f64), Some(-3.0));
        assert_eq!(view.data.input_tokens.as_ref().and_then(Loose::as_u64), None);
    }

    #[test]
    fn a_damaged_line_is_refused() {
        let line = encode(&Event::task("task_assigned", "t"));
        let damaged = line.replacen("\"t\"", "\"u\"", 1);
        assert_eq!(EventView::decode(&damaged), Err(DecodeError::ChecksumMismatch));
    }
}
