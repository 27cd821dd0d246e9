//! PostgreSQL's COPY text and CSV formats: rows written (`COPY … TO STDOUT`) and read
//! (`COPY … FROM STDIN`) exactly as PostgreSQL writes and reads them.
//!
//! The reader is hand-written rather than taken from the `csv` crate because COPY's rules
//! are not plain CSV: an unquoted empty field is NULL where a quoted one is an empty string,
//! a line `\.` ends the data, and the text format has its own backslash escapes.

use datafusion::arrow::array::{ArrayRef, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use std::sync::Arc;

use crate::error::{EddyError, Result};

/// The three formats of PostgreSQL's COPY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    /// Tab-separated, backslash escapes, `\N` for NULL.
    Text,
    /// Comma-separated, quoted fields, NULL an unquoted empty field.
    Csv,
    /// PGCOPY: a header, then each row as length-prefixed binary values.
    Binary,
}

/// How rows are written or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOptions {
    /// The format.
    pub format: CopyFormat,
    /// Field separator (one character; text: tab, CSV: comma).
    pub delimiter: char,
    /// The text of a NULL (text: `\N`, CSV: empty).
    pub null: String,
    /// A header line with the column names (CSV only).
    pub header: bool,
    /// CSV quote character.
    pub quote: char,
    /// CSV escape character (the quote unless given).
    pub escape: char,
    /// CSV: quote every non-NULL value of these columns (`*`: all).
    pub force_quote: ForceQuote,
}

/// `FORCE_QUOTE` of CSV output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForceQuote {
    /// Only values that need quotes are quoted.
    None,
    /// `FORCE_QUOTE *`.
    All,
    /// These columns.
    Columns(Vec<String>),
}

/// Appends one row in text or CSV format (with its newline) to `out`. `cells` are the
/// values' text (`None`: NULL); `force` says which columns CSV quotes whatever they hold.
pub fn write_row(cells: &[Option<&str>], force: &[bool], opts: &CopyOptions, out: &mut Vec<u8>) {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            push_char(out, opts.delimiter);
        }
        match cell {
            None => out.extend_from_slice(opts.null.as_bytes()),
            Some(v) if opts.format == CopyFormat::Csv => csv_field(
                v,
                force.get(i).copied().unwrap_or(false),
                cells.len(),
                opts,
                out,
            ),
            Some(v) => text_field(v, opts.delimiter, out),
        }
    }
    out.push(b'\n');
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// A value in the text format: backslash, the delimiter and control characters escaped.
fn text_field(v: &str, delimiter: char, out: &mut Vec<u8>) {
    for c in v.chars() {
        match c {
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' if delimiter == '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\u{b}' => out.extend_from_slice(b"\\v"),
            c if c == delimiter => {
                out.push(b'\\');
                push_char(out, c);
            }
            c => push_char(out, c),
        }
    }
}

/// A value in CSV: quoted when it holds the delimiter, a quote, a line break, equals the NULL
/// text (so it reads back as a value), or is `\.` alone in a one-column row.
fn csv_field(v: &str, force: bool, columns: usize, opts: &CopyOptions, out: &mut Vec<u8>) {
    let needs = force
        || v == opts.null
        || (columns == 1 && v == "\\.")
        || v.chars()
            .any(|c| c == opts.delimiter || c == opts.quote || c == '\n' || c == '\r');
    if !needs {
        out.extend_from_slice(v.as_bytes());
        return;
    }
    push_char(out, opts.quote);
    for c in v.chars() {
        if c == opts.quote || c == opts.escape {
            push_char(out, opts.escape);
        }
        push_char(out, c);
    }
    push_char(out, opts.quote);
}

/// The header line of CSV (and text) output: the column names as values.
pub fn write_header(names: &[&str], opts: &CopyOptions, out: &mut Vec<u8>) {
    let cells: Vec<Option<&str>> = names.iter().map(|n| Some(*n)).collect();
    // A name is quoted like a value, never forced, and never taken for NULL in text format.
    write_row(&cells, &[], opts, out);
}

/// Most bytes one row may take: past this the data is refused rather than buffered.
pub const MAX_ROW_BYTES: usize = 64 << 20;

/// Reads COPY data as it arrives, in pieces cut anywhere, into text columns.
pub struct CopyReader {
    opts: CopyOptions,
    /// What the table calls the columns (for errors).
    names: Vec<String>,
    /// Bytes received but not yet a whole row.
    pending: Vec<u8>,
    /// One builder per column.
    columns: Vec<StringBuilder>,
    /// Rows in the builders.
    rows: usize,
    /// The line each of those rows starts on.
    row_lines: Vec<usize>,
    /// Lines read so far (1-based number of the next line).
    line: usize,
    /// The header line is still to be skipped.
    skip_header: bool,
    /// `\.` was read: everything after it is ignored.
    ended: bool,
    /// The raw field being read.
    raw: Vec<u8>,
    /// Raw fields of the row being read (offsets into `fields_buf`), and whether each was quoted.
    fields: Vec<(usize, usize, bool)>,
    fields_buf: Vec<u8>,
    /// The decoded fields of the row being appended (offsets into `raw`; `None`: NULL).
    values: Vec<Option<(usize, usize)>>,
    /// Binary format: each column's type (the format carries none), and whether the header
    /// has been read.
    binary: Option<(Vec<DataType>, bool)>,
}

impl CopyReader {
    /// A reader of rows with columns named `names` (the table's, in the order the rows give them).
    pub fn new(opts: CopyOptions, names: Vec<String>) -> Self {
        let columns = names.iter().map(|_| StringBuilder::new()).collect();
        CopyReader {
            skip_header: opts.header,
            opts,
            names,
            pending: Vec::new(),
            columns,
            rows: 0,
            row_lines: Vec::new(),
            line: 1,
            ended: false,
            raw: Vec::new(),
            fields: Vec::new(),
            fields_buf: Vec::new(),
            values: Vec::new(),
            binary: None,
        }
    }

    /// A reader of binary (PGCOPY) rows whose columns have `types`, in order.
    pub fn binary(opts: CopyOptions, names: Vec<String>, types: Vec<DataType>) -> Result<Self> {
        if let Some((name, t)) = names
            .iter()
            .zip(&types)
            .find(|(_, t)| !super::pgcopy::readable(t))
        {
            return Err(EddyError::not_supported(format!(
                "COPY FROM STDIN in binary format into column \"{name}\" of type {t}: send \
                 text or CSV"
            )));
        }
        let mut reader = CopyReader::new(opts, names);
        reader.binary = Some((types, false));
        Ok(reader)
    }

    /// Binary format: every whole row in `pending` is added to the columns.
    fn feed_binary(&mut self) -> Result<()> {
        let Some((types, header_read)) = self.binary.take() else {
            return Ok(());
        };
        let result = self.binary_rows(&types, header_read);
        let header_read = header_read || matches!(result, Ok(true));
        self.binary = Some((types, header_read));
        result.map(|_| ())
    }

    /// Reads the header (unless read) and the whole rows; whether the header has been read.
    fn binary_rows(&mut self, types: &[DataType], header_read: bool) -> Result<bool> {
        use super::pgcopy::{field_text, header, row, Piece};
        let mut at = 0;
        if !header_read {
            match header(&self.pending)? {
                Some(n) => at = n,
                None => return Ok(false),
            }
        }
        let pending = std::mem::take(&mut self.pending);
        let mut text = String::new();
        let result = loop {
            if self.ended {
                break Ok(());
            }
            match row(&pending[at..], types.len()) {
                Err(e) => break Err(e),
                Ok(Piece::Incomplete) => break Ok(()),
                Ok(Piece::End(n)) => {
                    at += n;
                    self.ended = true;
                }
                Ok(Piece::Row(fields, n)) => {
                    let mut cells: Vec<Option<String>> = Vec::with_capacity(fields.len());
                    for (f, t) in fields.iter().zip(types) {
                        match f {
                            None => cells.push(None),
                            Some(bytes) => {
                                text.clear();
                                if let Err(e) = field_text(bytes, t, &mut text) {
                                    return Err(self.error(e.sqlstate(), e.to_string()));
                                }
                                cells.push(Some(text.clone()));
                            }
                        }
                    }
                    for (column, cell) in self.columns.iter_mut().zip(&cells) {
                        column.append_option(cell.as_deref());
                    }
                    self.rows += 1;
                    self.row_lines.push(self.line);
                    self.line += 1;
                    at += n;
                }
            }
        };
        self.pending = pending[at..].to_vec();
        result.map(|()| true)
    }

    /// Rows read and not yet taken.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The line the next row starts on (for error messages).
    pub fn line(&self) -> usize {
        self.line
    }

    /// Reads `data`: every whole row in it is added to the columns; a row cut at the end
    /// waits for the next piece.
    pub fn feed(&mut self, data: &[u8]) -> Result<()> {
        if self.ended {
            return Ok(());
        }
        self.pending.extend_from_slice(data);
        if self.binary.is_some() {
            self.feed_binary()?;
            return self.check_pending();
        }
        let mut at = 0;
        while !self.ended {
            let Some(len) = self.next_record(&self.pending[at..]) else {
                break;
            };
            let record = std::mem::take(&mut self.pending);
            let result = self.record(&record[at..at + len]);
            self.pending = record;
            result?;
            at += len;
        }
        self.pending.drain(..at);
        self.check_pending()
    }

    /// Refuses a row that does not end within [`MAX_ROW_BYTES`].
    fn check_pending(&self) -> Result<()> {
        if self.pending.len() > MAX_ROW_BYTES {
            return Err(EddyError::LimitExceeded(format!(
                "COPY row starting at line {} is longer than {} MiB",
                self.line,
                MAX_ROW_BYTES >> 20
            )));
        }
        Ok(())
    }

    /// The end of the data: a last row without its newline is read too.
    pub fn finish(&mut self) -> Result<()> {
        if self.binary.is_some() {
            if !self.pending.is_empty() || !self.ended {
                return Err(self.error("22P04", "COPY binary data ended without its trailer"));
            }
            return Ok(());
        }
        if !self.ended && !self.pending.is_empty() {
            let mut last = std::mem::take(&mut self.pending);
            last.push(b'\n');
            if self.opts.format == CopyFormat::Csv && self.next_record(&last).is_none() {
                return Err(self.error("22P04", "unterminated CSV quoted field"));
            }
            self.record(&last)?;
        }
        Ok(())
    }

    /// The rows read so far, as text columns, and the line each row starts on; the reader
    /// starts empty again.
    pub fn take(&mut self) -> (Vec<ArrayRef>, Vec<usize>) {
        self.rows = 0;
        let columns = self
            .columns
            .iter_mut()
            .map(|c| Arc::new(c.finish()) as ArrayRef)
            .collect();
        (columns, std::mem::take(&mut self.row_lines))
    }

    /// Length of the first whole record in `data` (with its line end), if it holds one.
    fn next_record(&self, data: &[u8]) -> Option<usize> {
        if self.opts.format != CopyFormat::Csv {
            return memchr::memchr(b'\n', data).map(|i| i + 1);
        }
        // CSV: a newline inside quotes belongs to the field.
        let (quote, escape) = (self.opts.quote as u8, self.opts.escape as u8);
        let mut in_quotes = false;
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            if in_quotes {
                if b == escape && escape != quote && i + 1 < data.len() {
                    let next = data[i + 1];
                    if next == quote || next == escape {
                        i += 2;
                        continue;
                    }
                }
                if b == quote {
                    in_quotes = false;
                }
            } else if b == quote {
                in_quotes = true;
            } else if b == b'\n' {
                return Some(i + 1);
            }
            i += 1;
        }
        None
    }

    fn error(&self, code: &'static str, message: impl Into<String>) -> EddyError {
        EddyError::Data {
            code,
            message: format!("{} (COPY data line {})", message.into(), self.line),
        }
    }

    /// One whole record (with its line end).
    fn record(&mut self, record: &[u8]) -> Result<()> {
        let lines = record.iter().filter(|&&b| b == b'\n').count().max(1);
        let mut body = record.strip_suffix(b"\n").unwrap_or(record);
        body = body.strip_suffix(b"\r").unwrap_or(body);
        let result = if body == b"\\." {
            self.ended = true;
            Ok(())
        } else if self.skip_header {
            self.skip_header = false;
            Ok(())
        } else {
            self.split(body).and_then(|()| self.append())
        };
        self.line += lines;
        result
    }

    /// Splits a record into raw fields (`fields`): text escapes undone, CSV quotes removed.
    fn split(&mut self, body: &[u8]) -> Result<()> {
        self.fields.clear();
        self.fields_buf.clear();
        let delim = self.opts.delimiter as u8;
        if self.opts.format == CopyFormat::Csv {
            let (quote, escape) = (self.opts.quote as u8, self.opts.escape as u8);
            let mut i = 0;
            loop {
                self.raw.clear();
                let mut quoted = false;
                let mut in_quotes = false;
                while i < body.len() {
                    let b = body[i];
                    if in_quotes {
                        if b == escape
                            && i + 1 < body.len()
                            && (body[i + 1] == quote || body[i + 1] == escape)
                            && (escape != quote || body[i + 1] == quote)
                        {
                            self.raw.push(body[i + 1]);
                            i += 2;
                            continue;
                        }
                        if b == quote {
                            in_quotes = false;
                        } else {
                            self.raw.push(b);
                        }
                    } else if b == quote {
                        in_quotes = true;
                        quoted = true;
                    } else if b == delim {
                        break;
                    } else {
                        self.raw.push(b);
                    }
                    i += 1;
                }
                if in_quotes {
                    return Err(self.error("22P04", "unterminated CSV quoted field"));
                }
                self.push_field(quoted);
                if i >= body.len() {
                    break;
                }
                i += 1; // the delimiter
            }
        } else {
            for field in body.split(|&b| b == delim) {
                // A delimiter escaped with a backslash belongs to the field.
                let start = self.fields_buf.len();
                self.fields_buf.extend_from_slice(field);
                self.fields.push((start, self.fields_buf.len(), false));
            }
            self.join_escaped_delimiters();
        }
        Ok(())
    }

    fn push_field(&mut self, quoted: bool) {
        let start = self.fields_buf.len();
        self.fields_buf.extend_from_slice(&self.raw);
        self.fields.push((start, self.fields_buf.len(), quoted));
    }

    /// Text format: a field ending in an odd run of backslashes ended at an escaped
    /// delimiter, so it continues into the next one.
    fn join_escaped_delimiters(&mut self) {
        // The common case: no field ends in a backslash, nothing to join.
        if !self
            .fields
            .iter()
            .any(|&(s, e, _)| e > s && self.fields_buf[e - 1] == b'\\')
        {
            return;
        }
        let delim = self.opts.delimiter as u8;
        let mut joined: Vec<(usize, usize, bool)> = Vec::with_capacity(self.fields.len());
        let mut buf = Vec::with_capacity(self.fields_buf.len());
        let mut current: Vec<u8> = Vec::new();
        let mut open = false;
        for &(s, e, _) in &self.fields {
            let f = &self.fields_buf[s..e];
            if open {
                current.push(delim);
            }
            current.extend_from_slice(f);
            let trailing = f.iter().rev().take_while(|&&b| b == b'\\').count();
            if trailing % 2 == 1 {
                open = true;
                continue;
            }
            open = false;
            let start = buf.len();
            buf.extend_from_slice(&current);
            joined.push((start, buf.len(), false));
            current.clear();
        }
        if open {
            let start = buf.len();
            buf.extend_from_slice(&current);
            joined.push((start, buf.len(), false));
        }
        self.fields = joined;
        self.fields_buf = buf;
    }

    /// Adds the split row to the columns.
    fn append(&mut self) -> Result<()> {
        let n = self.columns.len();
        if self.fields.len() < n {
            let missing = &self.names[self.fields.len()];
            return Err(self.error("22P04", format!("missing data for column \"{missing}\"")));
        }
        if self.fields.len() > n {
            return Err(self.error("22P04", "extra data after last expected column"));
        }
        let csv = self.opts.format == CopyFormat::Csv;
        let null = self.opts.null.as_bytes();
        // Decode and check every field before appending any, so a bad field leaves no
        // half row behind.
        let mut values = std::mem::take(&mut self.values);
        values.clear();
        let mut text = std::mem::take(&mut self.raw);
        text.clear();
        for i in 0..n {
            let (s, e, quoted) = self.fields[i];
            let raw = &self.fields_buf[s..e];
            if raw == null && !quoted {
                values.push(None);
                continue;
            }
            let start = text.len();
            if csv {
                text.extend_from_slice(raw);
            } else {
                unescape(raw, &mut text);
            }
            values.push(Some((start, text.len())));
        }
        // One UTF-8 check for the row; a field is valid when it also starts and ends on a
        // character boundary (a byte sequence cut by a delimiter does not).
        let row = std::str::from_utf8(&text).ok();
        let bad = values.iter().position(|v| {
            v.is_some_and(|(s, e)| match row {
                Some(r) => r.get(s..e).is_none(),
                None => std::str::from_utf8(&text[s..e]).is_err(),
            })
        });
        if let Some(i) = bad {
            let e = self.error(
                "22021",
                format!(
                    "invalid byte sequence for encoding \"UTF8\" in column \"{}\"",
                    self.names[i]
                ),
            );
            self.raw = text;
            self.values = values;
            return Err(e);
        }
        if let Some(row) = row {
            for (column, value) in self.columns.iter_mut().zip(&values) {
                column.append_option(value.and_then(|(s, e)| row.get(s..e)));
            }
        }
        self.values = values;
        self.raw = text;
        self.rows += 1;
        self.row_lines.push(self.line);
        Ok(())
    }
}

/// Undoes the text format's backslash escapes (`\n`, `\t`, `\\`, octal `\123`, hex `\x41`,
/// and `\c` for any other character c).
fn unescape(raw: &[u8], out: &mut Vec<u8>) {
    if memchr::memchr(b'\\', raw).is_none() {
        out.extend_from_slice(raw);
        return;
    }
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\\' || i + 1 == raw.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let c = raw[i + 1];
        i += 2;
        match c {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                let mut k = 0;
                while k < 2 && i < raw.len() && (b'0'..=b'7').contains(&raw[i]) {
                    v = v * 8 + u32::from(raw[i] - b'0');
                    i += 1;
                    k += 1;
                }
                out.push((v & 0xff) as u8);
            }
            b'x' if i < raw.len() && raw[i].is_ascii_hexdigit() => {
                let mut v = 0u32;
                let mut k = 0;
                while k < 2 && i < raw.len() && raw[i].is_ascii_hexdigit() {
                    v = v * 16 + (raw[i] as char).to_digit(16).unwrap_or(0);
                    i += 1;
                    k += 1;
                }
                out.push(v as u8);
            }
            other => out.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};

    fn opts(format: CopyFormat) -> CopyOptions {
        let csv = format == CopyFormat::Csv;
        CopyOptions {
            format,
            delimiter: if csv { ',' } else { '\t' },
            null: if csv { String::new() } else { "\\N".into() },
            header: false,
            quote: '"',
            escape: '"',
            force_quote: ForceQuote::None,
        }
    }

    fn written(cells: &[Option<&str>], o: &CopyOptions) -> String {
        let mut out = Vec::new();
        write_row(cells, &[], o, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn read(o: CopyOptions, columns: usize, pieces: &[&[u8]]) -> Result<Vec<Vec<Option<String>>>> {
        let names = (0..columns).map(|i| format!("c{i}")).collect();
        let mut r = CopyReader::new(o, names);
        for p in pieces {
            r.feed(p)?;
        }
        r.finish()?;
        let (cols, _) = r.take();
        let n = cols.first().map_or(0, |c| c.len());
        Ok((0..n)
            .map(|row| {
                cols.iter()
                    .map(|c| {
                        let s = c.as_string::<i32>();
                        (!s.is_null(row)).then(|| s.value(row).to_string())
                    })
                    .collect()
            })
            .collect())
    }

    #[test]
    fn text_rows_are_written_as_postgres_writes_them() {
        let o = opts(CopyFormat::Text);
        let line = written(
            &[Some("a\tb"), None, Some("back\\slash\nnew"), Some("")],
            &o,
        );
        assert_eq!(line, "a\\tb\t\\N\tback\\\\slash\\nnew\t\n");
    }

    #[test]
    fn csv_rows_quote_only_what_needs_it() {
        let o = opts(CopyFormat::Csv);
        let line = written(
            &[
                Some("plain"),
                Some("a,b"),
                Some("say \"hi\""),
                None,
                Some(""),
            ],
            &o,
        );
        // An empty string is quoted: unquoted empty is NULL.
        assert_eq!(line, "plain,\"a,b\",\"say \"\"hi\"\"\",,\"\"\n");
    }

    #[test]
    fn what_is_written_reads_back_the_same_in_pieces_cut_anywhere() {
        for format in [CopyFormat::Text, CopyFormat::Csv] {
            let o = opts(format);
            let rows: Vec<Vec<Option<&str>>> = vec![
                vec![Some("x"), None, Some("")],
                vec![Some("tab\there"), Some("line\nbreak"), Some("q\"uote,\\")],
                vec![Some("\\N"), Some("\\."), Some("ünïcode")],
            ];
            let mut data = Vec::new();
            for r in &rows {
                write_row(r, &[], &o, &mut data);
            }
            for cut in 1..data.len() {
                let got = read(o.clone(), 3, &[&data[..cut], &data[cut..]]).unwrap();
                let want: Vec<Vec<Option<String>>> = rows
                    .iter()
                    .map(|r| r.iter().map(|c| c.map(str::to_string)).collect())
                    .collect();
                assert_eq!(got, want, "{format:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn end_marker_header_crlf_and_a_last_line_without_newline() {
        let mut o = opts(CopyFormat::Csv);
        o.header = true;
        let got = read(o, 2, &[b"a,b\r\n1,2\r\n3,\"\"\n\\.\nignored,after\n"]).unwrap();
        assert_eq!(
            got,
            vec![
                vec![Some("1".into()), Some("2".into())],
                vec![Some("3".into()), Some("".into())]
            ]
        );
        let got = read(opts(CopyFormat::Text), 2, &[b"1\t2\n3\t\\N"]).unwrap();
        assert_eq!(got[1], vec![Some("3".into()), None]);
        // Octal and hex escapes, an escaped delimiter.
        let got = read(opts(CopyFormat::Text), 1, &[b"\\101\\x42C\\\td\n"]).unwrap();
        assert_eq!(got[0], vec![Some("ABC\td".into())]);
    }

    #[test]
    fn wrong_rows_say_what_and_where() {
        let e = read(opts(CopyFormat::Text), 2, &[b"1\t2\n3\n"]).unwrap_err();
        assert_eq!(e.sqlstate(), "22P04");
        assert_eq!(
            e.to_string(),
            "missing data for column \"c1\" (COPY data line 2)"
        );
        let e = read(opts(CopyFormat::Csv), 1, &[b"1\n2,3\n"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "extra data after last expected column (COPY data line 2)"
        );
        let e = read(opts(CopyFormat::Csv), 1, &[b"\"open\n"]).unwrap_err();
        assert!(
            e.to_string().contains("unterminated CSV quoted field"),
            "{e}"
        );
        let e = read(opts(CopyFormat::Text), 2, &[b"ok\t\xff\n"]).unwrap_err();
        assert_eq!(e.sqlstate(), "22021");
        assert!(e.to_string().contains("column \"c1\""), "{e}");
        // Two halves of é (C3 A9), one per field: the row's bytes are UTF-8, its fields not.
        let e = read(opts(CopyFormat::Text), 2, &[b"\\303\t\\251\n"]).unwrap_err();
        assert_eq!(e.sqlstate(), "22021");
        assert!(e.to_string().contains("column \"c0\""), "{e}");
    }
}
