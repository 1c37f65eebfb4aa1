//! The event vocabulary, which is also the JSONL line format of `events.jsonl` (schema `v`).
//! A line is one compact JSON object whose last member is `"crc"`: CRC-32C, as 8 hex digits,
//! of the line with that member removed. Encoding and decoding only; appending and fsync live
//! in `store::journal`.

use std::io::Write;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const SCHEMA_VERSION: u32 = 1;

/// One event. `seq` and `ts` are set by the journal when the event is appended.
///
/// Events that change a file carry the *intent*: `op`, `src` (the file before), `path` (the
/// file after), `src_ino` and `src_crc` (identity of the source, so recovery never mistakes a
/// newer file of the same name for it) and `edits` (lifecycle keys to set, or remove when null).
/// A batch's operations all complete before the next batch is written, so only the last
/// batch can be unfinished: recovery re-runs its operations, in order, where their source
/// still exists unchanged.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub v: u32,
    pub seq: u64,
    /// `seq` of the first event of the group commit this event was written in.
    #[serde(default)]
    pub batch: u64,
    pub ts: String,
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_ino: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_crc: Option<u32>,
    /// The file operation this event orders: `move` (write `path` from `src` with `edits`,
    /// then remove `src`), `reject` (sidecar, then rename `src` to `path` unchanged), `remove`
    /// (delete `src`), `create` (write `data.content` to `path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edits: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_paths: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The command file's content, on events caused by a command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Map<String, Value>>,
    /// Anything else worth keeping: costs, problem kinds, follow-up task contents, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Map<String, Value>>,
}

impl Event {
    pub fn new(name: &str) -> Event {
        Event {
            v: SCHEMA_VERSION,
            event: name.to_string(),
            ..Event::default()
        }
    }

    pub fn task(name: &str, task_id: &str) -> Event {
        Event {
            task_id: Some(task_id.to_string()),
            ..Event::new(name)
        }
    }

    pub fn with_data(mut self, key: &str, value: Value) -> Event {
        self.data
            .get_or_insert_with(Map::new)
            .insert(key.to_string(), value);
        self
    }

    pub fn data_str(&self, key: &str) -> Option<&str> {
        self.data.as_ref()?.get(key)?.as_str()
    }
}

const CRC_SUFFIX_LEN: usize = r#","crc":"00000000"}"#.len();

/// Serialize an event as one line, without the trailing newline.
pub fn encode(event: &Event) -> String {
    encode_line(event).0
}

/// `encode`, also giving the checksum the line carries.
pub fn encode_line(event: &Event) -> (String, u32) {
    let mut line = Vec::with_capacity(512);
    let crc = write_line(&mut line, event);
    (String::from_utf8(line).expect("serde_json writes UTF-8"), crc)
}

/// Append the event's line (without a newline) to `buf`, giving the checksum it carries. The
/// journal writes a batch's lines straight into its buffer: no line of its own to grow and
/// copy per event.
pub fn write_line(buf: &mut Vec<u8>, event: &Event) -> u32 {
    let start = buf.len();
    serde_json::to_writer(&mut *buf, event).expect("events always serialize");
    let crc = crc32c::crc32c(&buf[start..]);
    buf.pop(); // the closing brace; the crc member takes its place
    write!(buf, r#","crc":"{crc:08x}"}}"#).expect("writing to a Vec cannot fail");
    crc
}

/// Why a line is not a valid event.
#[derive(Debug, Clone, PartialEq)]
pub enum DecodeError {
    NoChecksum,
    ChecksumMismatch,
    Json(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::NoChecksum => f.write_str("the line has no crc member at its end"),
            DecodeError::ChecksumMismatch => f.write_str("the crc does not match the line"),
            DecodeError::Json(e) => write!(f, "the line is not a valid event: {e}"),
        }
    }
}

/// A line's body (without the crc member and the closing brace) and the checksum it claims.
fn split_crc(line: &str) -> Result<(&str, u32), DecodeError> {
    if line.len() < CRC_SUFFIX_LEN + 1 || !line.ends_with("\"}") {
        return Err(DecodeError::NoChecksum);
    }
    let (body, suffix) = line.split_at(line.len() - CRC_SUFFIX_LEN);
    let hex = suffix
        .strip_prefix(r#","crc":""#)
        .and_then(|s| s.strip_suffix("\"}"))
        .ok_or(DecodeError::NoChecksum)?;
    let claimed = u32::from_str_radix(hex, 16).map_err(|_| DecodeError::NoChecksum)?;
    Ok((body, claimed))
}

/// The checksum a line (without newline) claims, if it ends in a crc member.
pub fn claimed_crc(line: &str) -> Option<u32> {
    split_crc(line).ok().map(|(_, claimed)| claimed)
}

/// The line's checksum, if the line carries it and its content matches it (no parsing).
pub fn verified_crc(line: &str) -> Result<u32, DecodeError> {
    verified(line).map(|(_, crc)| crc)
}

/// The body of a line whose content matches its checksum, and the checksum.
fn verified(line: &str) -> Result<(&str, u32), DecodeError> {
    let (body, claimed) = split_crc(line)?;
    let crc = crc32c::crc32c_append(crc32c::crc32c(body.as_bytes()), b"}");
    if crc != claimed {
        return Err(DecodeError::ChecksumMismatch);
    }
    Ok((body, crc))
}

/// Check the CRC of a line (without newline) and parse it. The whole line is parsed, its
/// `crc` member included (an `Event` ignores members it does not know), so the body needs
/// no copy of its own.
pub fn decode(line: &str) -> Result<Event, DecodeError> {
    verified(line)?;
    parse(line)
}

/// Parse a line whose checksum was verified (`verified_crc`).
pub fn parse(line: &str) -> Result<Event, DecodeError> {
    serde_json::from_str(line).map_err(|e| DecodeError::Json(e.to_string()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_and_detects_damage() {
        let mut e = Event::task("task_assigned", "t-1");
        e.seq = 7;
        e.ts = "2026-01-01T00:00:00.000Z".into();
        e.to = Some("assigned".into());
        let line = encode(&e);
        assert!(line.ends_with("\"}"));
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["seq"], 7);
        assert_eq!(decode(&line).unwrap(), e);
        let damaged = line.replacen("t-1", "t-2", 1);
        assert_eq!(decode(&damaged), Err(DecodeError::ChecksumMismatch));
        assert_eq!(decode(&line[..line.len() - 5]), Err(DecodeError::NoChecksum));
        assert_eq!(decode(""), Err(DecodeError::NoChecksum));
    }

    #[test]
    fn a_float_reads_back_exactly() {
        // serde_json's default float parser can miss by one unit in the last place; the
        // index projects events as written and a rebuild as read, so they must agree.
        let mut e = Event::new("cost_update");
        e.data = Some(Map::from_iter([(
            "cost_usd".to_string(),
            Value::from(2.960370734992276e252),
        )]));
        assert_eq!(decode(&encode(&e)), Ok(e));
    }

    pub(crate) fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            // Finite floats only: JSON has no others (serde_json makes them null).
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".*".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::vec((".*", inner), 0..4)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    fn json_map() -> impl Strategy<Value = Option<Map<String, Value>>> {
        prop::option::of(
            prop::collection::vec(("[a-z_]{1,8}", json_value()), 0..5)
                .prop_map(|entries| entries.into_iter().collect()),
        )
    }

    prop_compose! {
        pub(crate) fn any_event()(
            (seq, batch, event, ts) in (any::<u64>(), any::<u64>(), "[a-z_]{1,20}", ".*"),
            (task_id, run_id, path, src) in (
                prop::option::of(".*"), prop::option::of(".*"), prop::option::of(".*"), prop::option::of(".*")),
            (src_ino, src_crc, attempt, pid, exit_code) in (
                prop::option::of(any::<u64>()), prop::option::of(any::<u32>()), prop::option::of(any::<u32>()),
                prop::option::of(any::<u32>()), prop::option::of(any::<i32>())),
            (error, log_paths) in (prop::option::of(".*"), prop::option::of(prop::collection::vec(".*", 0..3))),
            (edits, data, command) in (json_map(), json_map(), json_map()),
        ) -> Event {
            Event {
                v: 1, seq, batch, ts, event, task_id, run_id, path, src, src_ino, src_crc, attempt, pid,
                exit_code, error, log_paths, edits, data, command,
                ..Event::default()
            }
        }
    }

    proptest! {
        /// The index projects the events it is handed, a rebuild the lines it reads back: the
        /// two agree because every event reads back from its line exactly as it was.
        #[test]
        fn every_event_reads_back_from_its_line_as_it_was(e in any_event()) {
            prop_assert_eq!(decode(&encode(&e)), Ok(e));
        }
    }
}
