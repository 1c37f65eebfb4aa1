//! Aligned plain-text tables for the human output of the query commands: columns padded to
//! their widest cell, two spaces apart, the last column unpadded. Pure formatting.

/// The width of each column: its widest cell (header included).
pub(super) fn widths(headers: &[&str], rows: &[Vec<String>]) -> Vec<usize> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    widths
}

/// One line of cells padded to `widths` (the last cell unpadded), with its newline.
pub(super) fn line<S: AsRef<str>>(widths: &[usize], cells: &[S]) -> String {
    let mut out = String::new();
    for (i, cell) in cells.iter().enumerate() {
        let cell = cell.as_ref();
        if i > 0 {
            out.push_str("  ");
        }
        out.push_str(cell);
        if i + 1 < cells.len() {
            let pad = widths
                .get(i)
                .copied()
                .unwrap_or(0)
                .saturating_sub(cell.chars().count());
            out.extend(std::iter::repeat_n(' ', pad));
        }
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out.push('\n');
    out
}

/// Render `rows` under `headers`.
pub(super) fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let widths = widths(headers, rows);
    let mut out = line(&widths, headers);
    for row in rows {
        out.push_str(&line(&widths, row));
    }
    out
}

/// A cell for an optional value: `—` when absent or empty; one line.
pub(super) fn opt(value: Option<&str>) -> String {
    match value {
        Some(v) if !v.is_empty() => one_line(v),
        _ => "—".into(),
    }
}

/// Newlines and tabs folded into spaces, so a cell never breaks the table.
pub(super) fn one_line(text: &str) -> String {
    text.replace(['\n', '\r', '\t'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_the_last_is_not_padded() {
        let t = render(
            &["ID", "STATUS", "TITLE"],
            &[
                vec!["a".into(), "done".into(), "x".into()],
                vec!["long-id".into(), "in_progress".into(), "y z".into()],
            ],
        );
        assert_eq!(
            t,
            "ID       STATUS       TITLE\na        done         x\nlong-id  in_progress  y z\n"
        );
        assert_eq!(opt(None), "—");
        assert_eq!(opt(Some("a\nb")), "a b");
    }
}
