//! Reading a finished run's stdout file back into a one-line summary and,
//! when the agent printed JSON, token and cost metrics.
//!
//! This file only reads the stdout file it is given. It may not touch the
//! event log or task files; the caller decides where the summary goes.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::{Map, Value};

/// Only this much of the end of the file is read for the last line, so a
/// multi-gigabyte log costs nothing extra.
const TAIL_BYTES: u64 = 64 * 1024;
/// Stdout shorter than this is also tried as one whole JSON object.
const WHOLE_JSON_LIMIT: u64 = 1024 * 1024;
const LINE_CHARS: usize = 1000;

/// Summary of a finished run's stdout.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StdoutReport {
    /// Last non-empty line, trimmed, at most 1,000 characters.
    pub last_line: Option<String>,
    /// The whole stdout if it is one JSON object (only under 1 MiB); failing
    /// that, the last line if it is a JSON object, which is how streaming
    /// agents (`--output-format stream-json`, JSONL events) end.
    pub json: Option<Map<String, Value>>,
}

/// Read the report from a stdout file, looking only at its last 64 KiB for
/// the last line. A last line longer than that is reported from the part
/// that fits.
pub fn read_stdout_report(path: &Path) -> io::Result<StdoutReport> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let whole = len < WHOLE_JSON_LIMIT;
    let start = if whole { 0 } else { len.saturating_sub(TAIL_BYTES) };
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    // The agent's grandchildren may in rare cases still be appending; the
    // cap keeps the read bounded anyway.
    file.take(if whole { WHOLE_JSON_LIMIT } else { TAIL_BYTES })
        .read_to_end(&mut bytes)?;

    let whole_json = if whole { json_object(&bytes) } else { None };
    let tail = &bytes[bytes.len().saturating_sub(TAIL_BYTES as usize)..];
    let tail_is_file_start = start == 0 && tail.len() == bytes.len();
    let last = last_nonempty_line(tail, tail_is_file_start);

    let json = whole_json.or_else(|| {
        last.as_ref()
            .filter(|line| line.complete)
            .and_then(|line| json_object(line.text.as_bytes()))
    });
    let last_line = last.map(|line| line.text.chars().take(LINE_CHARS).collect());
    Ok(StdoutReport { last_line, json })
}

struct Line {
    text: String,
    /// False when the line's beginning lies before the bytes that were read.
    complete: bool,
}

fn last_nonempty_line(buf: &[u8], starts_at_line_start: bool) -> Option<Line> {
    let segments: Vec<&[u8]> = buf.split(|b| *b == b'\n').collect();
    segments.iter().enumerate().rev().find_map(|(i, segment)| {
        let text = String::from_utf8_lossy(segment);
        let text = text.trim();
        (!text.is_empty()).then(|| Line {
            text: text.to_string(),
            complete: i > 0 || starts_at_line_start,
        })
    })
}

fn json_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// Token counts copied from a `usage` object under the same names.
const USAGE_KEYS: [&str; 5] = [
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "cached_input_tokens",
];

/// Per-model counters in Claude Code's `modelUsage`, and the `usage` name
/// each one is summed into when `usage` itself is missing.
const MODEL_USAGE_KEYS: [(&str, &str); 4] = [
    ("inputTokens", "input_tokens"),
    ("outputTokens", "output_tokens"),
    ("cacheCreationInputTokens", "cache_creation_input_tokens"),
    ("cacheReadInputTokens", "cache_read_input_tokens"),
];

/// Token and cost figures from an agent's JSON result, shaped for
/// `result.metrics`: `cost_usd`, token counts, `model` and `num_turns`,
/// each only when present. Understands Claude Code's `--output-format json`
/// (`total_cost_usd`, `usage`, `modelUsage`) and a plain `cost_usd`.
/// Returns `None` when nothing relevant is there.
pub fn metrics_from_json(obj: &Map<String, Value>) -> Option<Value> {
    let mut metrics = Map::new();
    if let Some(cost) = ["total_cost_usd", "cost_usd"]
        .iter()
        .find_map(|k| obj.get(*k).filter(|v| v.is_number()))
    {
        metrics.insert("cost_usd".into(), cost.clone());
    }

    let model_usage = obj.get("modelUsage").and_then(Value::as_object);
    match obj.get("usage").and_then(Value::as_object) {
        Some(usage) => {
            for key in USAGE_KEYS {
                if let Some(n) = usage.get(key).filter(|v| v.is_number()) {
                    metrics.insert(key.into(), n.clone());
                }
            }
        }
        None => {
            for (camel, snake) in MODEL_USAGE_KEYS {
                let counts: Vec<u64> = model_usage
                    .into_iter()
                    .flat_map(|m| m.values())
                    .filter_map(|per_model| per_model.get(camel).and_then(Value::as_u64))
                    .collect();
                if !counts.is_empty() {
                    metrics.insert(snake.into(), counts.iter().sum::<u64>().into());
                }
            }
        }
    }

    let model = match obj.get("model").and_then(Value::as_str) {
        Some(model) => Some(model.to_string()),
        None => model_usage
            .filter(|m| !m.is_empty())
            .map(|m| m.keys().cloned().collect::<Vec<_>>().join(", ")),
    };
    if let Some(model) = model.filter(|m| !m.is_empty()) {
        metrics.insert("model".into(), model.into());
    }
    if let Some(turns) = obj.get("num_turns").filter(|v| v.is_number()) {
        metrics.insert("num_turns".into(), turns.clone());
    }

    (!metrics.is_empty()).then_some(Value::Object(metrics))
}

/// The agent's own summary: the `result` string of its JSON output, trimmed,
/// when it is not empty.
pub fn summary_from_json(obj: &Map<String, Value>) -> Option<String> {
    obj.get("result")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::fs;
    use std::io::Write;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn report_of(content: &[u8]) -> StdoutReport {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        fs::write(&path, content).unwrap();
        read_stdout_report(&path).unwrap()
    }

    const CLAUDE_RESULT: &str = r#"{"type":"result","subtype":"success","is_error":false,
        "duration_ms":2345,"num_turns":3,"result":"  Fixed the parser.\n","session_id":"abc",
        "total_cost_usd":0.0123,
        "usage":{"input_tokens":10,"cache_creation_input_tokens":100,
                 "cache_read_input_tokens":2000,"output_tokens":50,
                 "server_tool_use":{"web_search_requests":0},"service_tier":"standard"},
        "modelUsage":{"claude-sonnet-4-5":{"inputTokens":10,"outputTokens":50,"costUSD":0.0123}}}"#;

    #[test]
    fn last_nonempty_line_is_trimmed() {
        let report = report_of(b"first\n  the end \r\n\n   \n");
        assert_eq!(report.last_line.as_deref(), Some("the end"));
        assert_eq!(report.json, None);
    }

    #[test]
    fn empty_file_has_nothing() {
        assert_eq!(report_of(b""), StdoutReport::default());
        assert_eq!(report_of(b"\n \n\t\n"), StdoutReport::default());
    }

    #[test]
    fn missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_stdout_report(&dir.path().join("nope")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn long_line_is_capped_at_1000_chars() {
        let line = "é".repeat(3000);
        let report = report_of(format!("{line}\n").as_bytes());
        assert_eq!(report.last_line.unwrap().chars().count(), 1000);
    }

    #[test]
    fn invalid_utf8_does_not_fail() {
        let report = report_of(b"ok\nbad \xff\xfe bytes\n");
        assert_eq!(report.last_line.as_deref(), Some("bad \u{fffd}\u{fffd} bytes"));
    }

    #[test]
    fn big_file_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        let mut file = File::create(&path).unwrap();
        let filler = "x".repeat(99) + "\n";
        for _ in 0..30_000 {
            file.write_all(filler.as_bytes()).unwrap();
        }
        file.write_all(b"{\"result\": \"not the whole file\"}\nfinal words\n\n")
            .unwrap();
        drop(file);
        let report = read_stdout_report(&path).unwrap();
        assert_eq!(report.last_line.as_deref(), Some("final words"));
        assert_eq!(report.json, None);
    }

    #[test]
    fn huge_sparse_file_is_read_from_the_tail_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        let mut file = File::create(&path).unwrap();
        // 16 GiB of holes: reading it whole would not finish in any
        // reasonable time, so passing shows only the tail was touched.
        file.set_len(16 << 30).unwrap();
        file.seek(SeekFrom::End(0)).unwrap();
        file.write_all(b"\nlast line\n").unwrap();
        drop(file);
        let report = read_stdout_report(&path).unwrap();
        assert_eq!(report.last_line.as_deref(), Some("last line"));
    }

    #[test]
    fn whole_json_object_gives_metrics_and_summary() {
        let report = report_of(CLAUDE_RESULT.as_bytes());
        let obj = report.json.expect("json parsed");
        assert_eq!(
            metrics_from_json(&obj),
            Some(json!({
                "cost_usd": 0.0123,
                "input_tokens": 10,
                "output_tokens": 50,
                "cache_creation_input_tokens": 100,
                "cache_read_input_tokens": 2000,
                "model": "claude-sonnet-4-5",
                "num_turns": 3,
            }))
        );
        assert_eq!(summary_from_json(&obj).as_deref(), Some("Fixed the parser."));
    }

    #[test]
    fn metrics_keep_claude_key_order() {
        let obj = object(serde_json::from_str(CLAUDE_RESULT).unwrap());
        let metrics = metrics_from_json(&obj).unwrap();
        let keys: Vec<&str> = metrics.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "cost_usd",
                "input_tokens",
                "output_tokens",
                "cache_creation_input_tokens",
                "cache_read_input_tokens",
                "model",
                "num_turns"
            ]
        );
    }

    #[test]
    fn last_jsonl_line_is_used_when_stdout_is_a_stream() {
        let stream = format!(
            "{{\"type\":\"system\",\"model\":\"m\"}}\n{}\n",
            CLAUDE_RESULT.replace('\n', " ")
        );
        let report = report_of(stream.as_bytes());
        let obj = report.json.expect("last line parsed");
        assert_eq!(obj["type"], "result");
    }

    #[test]
    fn non_object_json_is_ignored() {
        assert_eq!(report_of(b"[1, 2, 3]\n").json, None);
        assert_eq!(report_of(b"42").json, None);
        assert_eq!(report_of(b"{\"a\":1} trailing").json, None);
    }

    #[test]
    fn plain_cost_and_model_usage_fallback() {
        let obj = object(json!({
            "cost_usd": 1.5,
            "modelUsage": {
                "claude-haiku": {"inputTokens": 5, "outputTokens": 1},
                "claude-opus": {"inputTokens": 7, "outputTokens": 2, "cacheReadInputTokens": 3}
            }
        }));
        assert_eq!(
            metrics_from_json(&obj),
            Some(json!({
                "cost_usd": 1.5,
                "input_tokens": 12,
                "output_tokens": 3,
                "cache_read_input_tokens": 3,
                "model": "claude-haiku, claude-opus",
            }))
        );
    }

    #[test]
    fn irrelevant_json_gives_no_metrics_or_summary() {
        let obj = object(json!({
            "type": "message", "usage": "n/a", "cost_usd": "free", "result": {"x": 1}, "model": 7
        }));
        assert_eq!(metrics_from_json(&obj), None);
        assert_eq!(summary_from_json(&obj), None);
        let blank = object(json!({"result": "   "}));
        assert_eq!(summary_from_json(&blank), None);
    }
}
