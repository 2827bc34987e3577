//! Reading spreadsheets: encodings, the header row, and the shape of a problem.
//!
//! This module does the I/O of reading a CSV file record by record (streaming:
//! memory does not grow with the file) and hashes the bytes as they pass, so
//! a run can recognise a file it has seen before. What a row *means* is the
//! business of the job kind (see `kinds`), which only sees plain strings.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// How the bytes of a file are to be read.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
pub enum Encoding {
    /// UTF-16 when the file starts with its byte-order mark, else UTF-8 (±
    /// BOM), else (when the start of the file is not UTF-8) Windows-1252,
    /// with a warning that names the guess.
    #[value(name = "auto")]
    Auto,
    /// UTF-8, with or without a byte-order mark.
    #[value(name = "utf-8", alias = "utf8")]
    Utf8,
    /// UTF-16 (little- or big-endian by its byte-order mark; little-endian
    /// without one), as Webex's own exports are written.
    #[value(name = "utf-16", alias = "utf16")]
    Utf16,
    /// Windows-1252 ("ANSI"), what Excel writes on Western Windows machines.
    #[value(name = "windows-1252", alias = "cp1252", alias = "latin1")]
    Windows1252,
}

/// What the cells' bytes are, once UTF-16 has been turned into UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cells {
    Utf8,
    Windows1252,
}

/// The field delimiters a header is sniffed for, in order of preference.
pub const DELIMITERS: [u8; 3] = [b',', b';', b'\t'];

/// Reads `--delimiter`: one character, or `tab`.
pub fn parse_delimiter(spec: &str) -> Result<u8, String> {
    match spec {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        s if s.len() == 1 && s.is_ascii() && s != "\"" => Ok(s.as_bytes()[0]),
        _ => Err(format!(
            "`{spec}` is not a delimiter; write one character such as , or ; (or tab)"
        )),
    }
}

/// The delimiter of a file whose header line is `line`: the one of
/// [`DELIMITERS`] that appears most often outside quotes (a comma on a tie
/// or when none does). Pure.
pub fn sniff_delimiter(line: &[u8]) -> u8 {
    let mut counts = [0usize; DELIMITERS.len()];
    let mut quoted = false;
    for b in line {
        match *b {
            b'"' => quoted = !quoted,
            b'\n' if !quoted => break,
            b => {
                if !quoted {
                    if let Some(i) = DELIMITERS.iter().position(|d| *d == b) {
                        counts[i] += 1;
                    }
                }
            }
        }
    }
    let mut best = 0;
    for i in 1..DELIMITERS.len() {
        if counts[i] > counts[best] {
            best = i;
        }
    }
    DELIMITERS[best]
}

/// A delimiter as people name it.
fn delimiter_name(d: u8) -> String {
    match d {
        b'\t' => "tab".to_owned(),
        d => format!("`{}`", d as char),
    }
}

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The row (or file) cannot be sent as it is.
    Error,
    /// Worth knowing; the row still goes ahead.
    Warning,
}

/// One thing wrong with an input file, located precisely enough to fix it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// The file's own line number (the header is line 1); 0 for the file as a whole.
    pub line: u64,
    /// 1-based column number and the header's own spelling of it, when one column is at fault.
    pub column: Option<(usize, String)>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl Problem {
    /// An error in one cell.
    pub fn cell(
        line: u64,
        column: &ColumnRef,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Problem {
            severity: Severity::Error,
            line,
            column: Some((column.index, column.name.clone())),
            message: message.into(),
            fix: fix.into(),
        }
    }

    /// An error about a whole line (or, with line 0, the whole file).
    pub fn line(line: u64, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Error,
            line,
            column: None,
            message: message.into(),
            fix: fix.into(),
        }
    }

    /// The same problem, downgraded to a warning.
    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }

    /// Formats the problem for a person, naming the file.
    pub fn display<'a>(&'a self, file: &'a Path) -> impl fmt::Display + 'a {
        ProblemDisplay {
            problem: self,
            file,
        }
    }
}

struct ProblemDisplay<'a> {
    problem: &'a Problem,
    file: &'a Path,
}

impl fmt::Display for ProblemDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.problem;
        let kind = match p.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{kind}: {}", self.file.display())?;
        if p.line > 0 {
            write!(f, ", line {}", p.line)?;
        }
        if let Some((index, name)) = &p.column {
            write!(f, ", column {index} ({name})")?;
        }
        write!(f, ": {}", p.message)?;
        if !p.fix.is_empty() {
            write!(f, "\n    fix: {}", p.fix)?;
        }
        Ok(())
    }
}

/// A column as the file names it: where it is and how its header is spelled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnRef {
    /// 1-based position in the row.
    pub index: usize,
    /// The header cell, as written in the file.
    pub name: String,
}

/// Folds a header for matching: case, spaces, `_` and `-` do not count, so
/// `Host Email`, `host_email` and `hostEmail` are one column.
pub fn normalize_header(raw: &str) -> String {
    raw.chars()
        .filter(|c| !c.is_whitespace() && *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Why a file could not be read at all (as opposed to a row being invalid).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// The file is not valid UTF-8 and no other encoding was asked for.
    #[error("{path}, line {line}: the file is not valid UTF-8 (column {column} holds bytes that are not UTF-8)\n    fix: save the file as \"CSV UTF-8\" in Excel, or pass --encoding windows-1252 if it came from Excel on Windows")]
    NotUtf8 {
        path: PathBuf,
        line: u64,
        column: usize,
    },
    /// The CSV structure is broken (for example an unterminated quote).
    #[error("{path}, line {line}: the CSV structure is broken: {detail}\n    fix: check the quotes on and above this line; every opening \" needs a closing \"")]
    Malformed {
        path: PathBuf,
        line: u64,
        detail: String,
    },
    /// The file has no header row.
    #[error("{path}: the file is empty\n    fix: the first line must be a header row naming the columns")]
    Empty { path: PathBuf },
}

/// Where the line breaks are in the text that went past the CSV parser (to
/// give every record its true line number).
struct Tap {
    /// Bytes seen so far.
    offset: u64,
    /// `\n` bytes before the oldest entry of `breaks`.
    lines_before: u64,
    /// Offsets of `\r`/`\n` bytes the parser may not have reached yet;
    /// bounded by the reader's buffers, not by the file.
    breaks: std::collections::VecDeque<(u64, u8)>,
}

impl Tap {
    fn new() -> Tap {
        Tap {
            offset: 0,
            lines_before: 0,
            breaks: std::collections::VecDeque::new(),
        }
    }

    /// The line on which the record that the parser began reading at byte
    /// `start` really starts: the parser may begin at the end of the
    /// previous line or on blank lines, which it then skips.
    fn line_at(&mut self, start: u64) -> u64 {
        let mut pos = start;
        while let Some(&(at, byte)) = self.breaks.front() {
            if at > pos {
                break;
            }
            if at == pos {
                pos += 1;
            }
            if byte == b'\n' {
                self.lines_before += 1;
            }
            self.breaks.pop_front();
        }
        self.lines_before + 1
    }
}

/// A reader that shows every byte to the [`Tap`].
struct TapReader<R> {
    inner: R,
    tap: std::rc::Rc<std::cell::RefCell<Tap>>,
}

impl<R: Read> Read for TapReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut tap = self.tap.borrow_mut();
        let base = tap.offset;
        for (i, b) in buf[..n].iter().enumerate() {
            if *b == b'\n' || *b == b'\r' {
                tap.breaks.push_back((base + i as u64, *b));
            }
        }
        tap.offset += n as u64;
        Ok(n)
    }
}

/// A reader that hashes the file's own bytes as they pass (before any
/// decoding), so a run recognises a file it has seen before.
struct HashReader<R> {
    inner: R,
    hasher: std::rc::Rc<std::cell::RefCell<Sha256>>,
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.borrow_mut().update(&buf[..n]);
        Ok(n)
    }
}

/// The most the start of a file is read ahead to sniff its encoding and
/// delimiter (at least its whole first line, up to this).
const SNIFF: usize = 64 * 1024;

/// A CSV file opened for streaming, one record at a time.
pub struct CsvFile {
    path: PathBuf,
    /// What the cells' bytes are (UTF-16 files are decoded to UTF-8 first).
    cells: Cells,
    reader: csv::Reader<TapReader<Box<dyn Read>>>,
    tap: std::rc::Rc<std::cell::RefCell<Tap>>,
    hasher: std::rc::Rc<std::cell::RefCell<Sha256>>,
    headers: Vec<String>,
    record: csv::ByteRecord,
    /// How the file was read, when it was guessed: said once, as a warning.
    guesses: Vec<String>,
}

impl CsvFile {
    /// Opens `path` and reads its header row. `delimiter`: `None` sniffs it
    /// from the header line.
    pub fn open(path: &Path, encoding: Encoding, delimiter: Option<u8>) -> Result<Self, ReadError> {
        let file = File::open(path).map_err(|source| ReadError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_reader(path, Box::new(file), encoding, delimiter)
    }

    /// Reads CSV from any reader; `path` is only used to name the source in
    /// messages. The start of the file (its first line at least) is read
    /// ahead to tell its encoding and its delimiter.
    pub fn from_reader(
        path: &Path,
        inner: Box<dyn Read>,
        encoding: Encoding,
        delimiter: Option<u8>,
    ) -> Result<Self, ReadError> {
        let io_error = |source| ReadError::Io {
            path: path.to_owned(),
            source,
        };
        let hasher = std::rc::Rc::new(std::cell::RefCell::new(Sha256::new()));
        let mut raw = BufReader::with_capacity(
            256 * 1024,
            HashReader {
                inner,
                hasher: hasher.clone(),
            },
        );
        let head = read_head(&mut raw).map_err(io_error)?;
        let mut guesses = Vec::new();
        let utf16 = head.starts_with(b"\xFF\xFE") || head.starts_with(b"\xFE\xFF");
        let rest = io::Cursor::new(head.clone()).chain(raw);
        let (text, first_line, cells): (Box<dyn Read>, Vec<u8>, Cells) = if utf16
            || encoding == Encoding::Utf16
        {
            let le = !head.starts_with(b"\xFE\xFF");
            let codec = if le {
                encoding_rs::UTF_16LE
            } else {
                encoding_rs::UTF_16BE
            };
            let decoded = codec.decode_with_bom_removal(&head).0.into_owned();
            if encoding == Encoding::Auto {
                guesses.push(format!(
                    "read as UTF-16 ({}-endian, by its byte-order mark)",
                    if le { "little" } else { "big" }
                ));
            }
            let reader = encoding_rs_io::DecodeReaderBytesBuilder::new()
                .encoding(Some(codec))
                .build(rest);
            (Box::new(reader), decoded.into_bytes(), Cells::Utf8)
        } else {
            let cells = match encoding {
                Encoding::Windows1252 => Cells::Windows1252,
                Encoding::Utf8 => Cells::Utf8,
                _ if looks_like_windows_1252(&head) => {
                    guesses.push("its start is not UTF-8, so it is read as Windows-1252 (what Excel writes on Western Windows machines); if its accents look wrong in the report, pass --encoding".to_owned());
                    Cells::Windows1252
                }
                // UTF-8; a bad byte further on is refused, naming its line.
                _ => Cells::Utf8,
            };
            (Box::new(rest), head, cells)
        };
        let delimiter = match delimiter {
            Some(d) => d,
            None => {
                let d = sniff_delimiter(&first_line);
                if d != b',' {
                    guesses.push(format!(
                        "its fields are separated by {} (pass --delimiter to choose another)",
                        delimiter_name(d)
                    ));
                }
                d
            }
        };
        let tap = std::rc::Rc::new(std::cell::RefCell::new(Tap::new()));
        let reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .delimiter(delimiter)
            .buffer_capacity(256 * 1024)
            .from_reader(TapReader {
                inner: text,
                tap: tap.clone(),
            });
        let mut file = CsvFile {
            path: path.to_owned(),
            cells,
            reader,
            tap,
            hasher,
            headers: Vec::new(),
            record: csv::ByteRecord::new(),
            guesses,
        };
        let raw = match file.reader.byte_headers() {
            Ok(h) => h.clone(),
            Err(e) => return Err(file.csv_error(e, 1)),
        };
        if raw.is_empty() || (raw.len() == 1 && raw[0].is_empty()) {
            return Err(ReadError::Empty {
                path: path.to_owned(),
            });
        }
        let mut headers = Vec::with_capacity(raw.len());
        for (i, cell) in raw.iter().enumerate() {
            let cell = if i == 0 {
                cell.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(cell)
            } else {
                cell
            };
            headers.push(file.decode(cell, 1, i + 1)?.trim().to_owned());
        }
        file.headers = headers;
        Ok(file)
    }

    /// The header row, decoded and trimmed.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// The file's path as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the next record into `fields` (which then holds exactly its
    /// cells). Returns the
    /// record's line number, or `None` at the end of the file. Blank lines
    /// are skipped by the CSV reader.
    pub fn next_record(&mut self, fields: &mut Vec<String>) -> Result<Option<u64>, ReadError> {
        let line_hint = self.reader.position().line();
        match self.reader.read_byte_record(&mut self.record) {
            Ok(false) => return Ok(None),
            Ok(true) => {}
            Err(e) => return Err(self.csv_error(e, line_hint)),
        }
        let line = match self.record.position() {
            Some(p) => self.tap.borrow_mut().line_at(p.byte()),
            None => line_hint,
        };
        let record = std::mem::take(&mut self.record);
        // The strings of the previous record are reused (no allocation per cell).
        for (i, cell) in record.iter().enumerate() {
            match self.decode(cell, line, i + 1) {
                Ok(text) => match fields.get_mut(i) {
                    Some(field) => {
                        field.clear();
                        field.push_str(&text);
                    }
                    None => fields.push(text.into_owned()),
                },
                Err(e) => {
                    self.record = record;
                    fields.clear();
                    return Err(e);
                }
            }
        }
        fields.truncate(record.len());
        self.record = record;
        Ok(Some(line))
    }

    /// The SHA-256 of every byte read so far (the file's own bytes, before
    /// any decoding), hex-encoded. After the last record it is the hash of
    /// the whole file.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.hasher.borrow().clone().finalize())
    }

    /// How the file was read where that was guessed (an encoding, a
    /// delimiter), each a sentence: worth one warning.
    pub fn guesses(&self) -> &[String] {
        &self.guesses
    }

    fn decode<'a>(
        &self,
        cell: &'a [u8],
        line: u64,
        column: usize,
    ) -> Result<std::borrow::Cow<'a, str>, ReadError> {
        match self.cells {
            Cells::Utf8 => std::str::from_utf8(cell)
                .map(std::borrow::Cow::Borrowed)
                .map_err(|_| ReadError::NotUtf8 {
                    path: self.path.clone(),
                    line,
                    column,
                }),
            Cells::Windows1252 => Ok(encoding_rs::WINDOWS_1252
                .decode_without_bom_handling(cell)
                .0),
        }
    }

    fn csv_error(&self, e: csv::Error, line_hint: u64) -> ReadError {
        let line = e.position().map(|p| p.line()).unwrap_or(line_hint);
        match e.into_kind() {
            csv::ErrorKind::Io(source) => ReadError::Io {
                path: self.path.clone(),
                source,
            },
            other => ReadError::Malformed {
                path: self.path.clone(),
                line,
                detail: format!("{other:?}"),
            },
        }
    }
}

/// Whether the start of a file is Windows-1252 rather than UTF-8: it has
/// bytes that are not UTF-8, no UTF-8 byte-order mark and no UTF-8
/// character beyond ASCII (a file with both is broken, not Windows-1252:
/// reading it so would send garbled text). Pure.
fn looks_like_windows_1252(head: &[u8]) -> bool {
    if head.starts_with(b"\xEF\xBB\xBF") {
        return false;
    }
    let mut invalid = false;
    let mut seen = 0;
    for chunk in head.utf8_chunks() {
        if !chunk.valid().is_ascii() {
            return false;
        }
        seen += chunk.valid().len() + chunk.invalid().len();
        // A character cut at the end of what was read is not a bad byte.
        if !chunk.invalid().is_empty() && seen < head.len() {
            invalid = true;
        }
    }
    invalid
}

/// Reads the start of a file: its first line at least (unless the file is
/// shorter), and what the reads that brought it gave, up to [`SNIFF`]
/// bytes. Waits for no more than the first line (a pipe may be slow).
fn read_head(raw: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    while head.len() < SNIFF && !head.contains(&b'\n') {
        let n = raw.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(head)
}

/// A pragmatic check of an email address: one `@`, a non-empty local part
/// without spaces, and a domain of at least two dot-separated labels made of
/// letters, digits and hyphens. It refuses what Webex refuses in practice
/// (typos such as `jane@acme`, `jane.acme.com`, `jane@@acme.com`).
pub fn is_valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    if local.is_empty()
        || local.len() > 64
        || email.len() > 254
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
        || local
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>()[],;:\"@\\".contains(c))
    {
        return false;
    }
    let Some((_, tld)) = domain.rsplit_once('.') else {
        return false;
    };
    domain.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    }) && tld.len() >= 2
        && !tld.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Rows = Vec<(u64, Vec<String>)>;

    fn read_all(bytes: &[u8], encoding: Encoding) -> Result<(Vec<String>, Rows), ReadError> {
        let mut file = CsvFile::from_reader(
            Path::new("t.csv"),
            Box::new(io::Cursor::new(bytes.to_vec())),
            encoding,
            None,
        )?;
        let headers = file.headers().to_vec();
        let mut rows = Vec::new();
        let mut fields = Vec::new();
        while let Some(line) = file.next_record(&mut fields)? {
            rows.push((line, fields.clone()));
        }
        Ok((headers, rows))
    }

    #[test]
    fn headers_fold_case_spaces_underscores_and_hyphens() {
        assert_eq!(normalize_header("Host Email"), "hostemail");
        assert_eq!(normalize_header("host_email"), "hostemail");
        assert_eq!(normalize_header("hostEmail"), "hostemail");
        assert_eq!(normalize_header(" co-Hosts "), "cohosts");
    }

    #[test]
    fn bom_is_stripped_and_line_numbers_are_the_files_own() {
        let (headers, rows) = read_all(
            b"\xEF\xBB\xBFtitle,start\na,1\n\n\"multi\nline\",2\nc,3\n",
            Encoding::Utf8,
        )
        .unwrap();
        assert_eq!(headers, vec!["title", "start"]);
        let lines: Vec<u64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(lines, vec![2, 4, 6]);
        let (_, crlf) = read_all(b"title,start\r\na,1\r\n\r\n\r\nb,2", Encoding::Utf8).unwrap();
        assert_eq!(crlf.iter().map(|r| r.0).collect::<Vec<_>>(), vec![2, 5]);
        assert_eq!(rows[1].1[0], "multi\nline");
    }

    #[test]
    fn non_utf8_names_the_first_bad_line_and_column() {
        let err = read_all(b"title,agenda\nok,fine\nCaf\xe9,x\n", Encoding::Utf8).unwrap_err();
        match err {
            ReadError::NotUtf8 { line, column, .. } => assert_eq!((line, column), (3, 1)),
            other => panic!("unexpected {other:?}"),
        }
        let (_, rows) = read_all(b"title,agenda\nCaf\xe9 \x80,x\n", Encoding::Windows1252).unwrap();
        assert_eq!(rows[0].1[0], "Café €");
    }

    #[test]
    fn hash_covers_the_whole_file() {
        let bytes = b"a,b\n1,2\n";
        let mut file = CsvFile::from_reader(
            Path::new("t"),
            Box::new(io::Cursor::new(bytes.to_vec())),
            Encoding::Utf8,
            None,
        )
        .unwrap();
        let mut f = Vec::new();
        while file.next_record(&mut f).unwrap().is_some() {}
        assert_eq!(file.sha256_hex(), hex::encode(Sha256::digest(bytes)));
    }

    #[test]
    fn emails() {
        for ok in [
            "jane@acme.com",
            "jane.doe+x@mail.acme.co.uk",
            "a@b.io",
            "josé@acme.com",
        ] {
            assert!(is_valid_email(ok), "{ok}");
        }
        for bad in [
            "",
            "jane",
            "jane@acme",
            "@acme.com",
            "jane@@acme.com",
            "jane doe@acme.com",
            "jane@acme..com",
            "jane@-acme.com",
            "jane.@acme.com",
            "jane@acme.c",
            "jane@1.2",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }

    fn guesses_of(bytes: &[u8], encoding: Encoding) -> Vec<String> {
        CsvFile::from_reader(
            Path::new("t.csv"),
            Box::new(io::Cursor::new(bytes.to_vec())),
            encoding,
            None,
        )
        .unwrap()
        .guesses()
        .to_vec()
    }

    #[test]
    fn the_delimiter_is_sniffed_from_the_header_line() {
        assert_eq!(sniff_delimiter(b"title;start;hostEmail\n1,2;3"), b';');
        assert_eq!(sniff_delimiter(b"title\tstart\thost\n"), b'\t');
        assert_eq!(sniff_delimiter(b"title,start,host"), b',');
        assert_eq!(sniff_delimiter(b"title"), b',', "none: a comma");
        // Quoted delimiters do not count.
        assert_eq!(sniff_delimiter(b"\"a;b;c\",x,y"), b',');
        assert_eq!(parse_delimiter("tab"), Ok(b'\t'));
        assert_eq!(parse_delimiter(";"), Ok(b';'));
        assert!(parse_delimiter(";;").is_err());
        assert!(parse_delimiter("\"").is_err());
    }

    #[test]
    fn a_semicolon_file_from_a_european_excel_reads_and_says_so() {
        let (headers, rows) = read_all(
            b"Title;Start;Host Email\r\nSync;2027-01-12 09:00;a@b.co\r\n",
            Encoding::Auto,
        )
        .unwrap();
        assert_eq!(headers, ["Title", "Start", "Host Email"]);
        assert_eq!(
            rows,
            vec![(
                2,
                vec![
                    "Sync".to_string(),
                    "2027-01-12 09:00".into(),
                    "a@b.co".into()
                ]
            )]
        );
        let guesses = guesses_of(b"a;b\n1;2\n", Encoding::Auto);
        assert_eq!(guesses.len(), 1);
        assert!(guesses[0].contains("`;`"), "{guesses:?}");
    }

    #[test]
    fn utf16_with_its_byte_order_mark_reads_in_either_order() {
        let text = "Title\tHost Email\r\nCaf\u{e9} \u{2615}\ta@b.co\r\n";
        let le: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        let be: Vec<u8> = [0xFE, 0xFF]
            .into_iter()
            .chain(text.encode_utf16().flat_map(u16::to_be_bytes))
            .collect();
        for bytes in [le, be] {
            let (headers, rows) = read_all(&bytes, Encoding::Auto).unwrap();
            assert_eq!(headers, ["Title", "Host Email"]);
            assert_eq!(
                rows,
                vec![(2, vec!["Caf\u{e9} \u{2615}".to_string(), "a@b.co".into()])]
            );
            let guesses = guesses_of(&bytes, Encoding::Auto);
            assert!(guesses.iter().any(|g| g.contains("UTF-16")), "{guesses:?}");
            assert!(guesses.iter().any(|g| g.contains("tab")), "{guesses:?}");
        }
    }

    #[test]
    fn windows_1252_is_guessed_when_the_start_is_not_utf8_and_never_when_it_is() {
        let bytes = b"title,city\nx,M\xfcnchen\n";
        let (_, rows) = read_all(bytes, Encoding::Auto).unwrap();
        assert_eq!(rows[0].1[1], "M\u{fc}nchen");
        let guesses = guesses_of(bytes, Encoding::Auto);
        assert!(guesses[0].contains("Windows-1252"), "{guesses:?}");
        // UTF-8 (with its accents) is read as UTF-8, and says nothing.
        let utf8 = "title,city\nx,M\u{fc}nchen\n".as_bytes();
        assert_eq!(
            read_all(utf8, Encoding::Auto).unwrap().1[0].1[1],
            "M\u{fc}nchen"
        );
        assert!(guesses_of(utf8, Encoding::Auto).is_empty());
        // A UTF-8 byte-order mark, or UTF-8 accents, beside a bad byte: the
        // file is broken, not Windows-1252; refused, never garbled.
        let bom = b"\xEF\xBB\xBFtitle,city\nx,Caf\xe9\n";
        assert!(matches!(
            read_all(bom, Encoding::Auto),
            Err(ReadError::NotUtf8 { line: 2, .. })
        ));
        let mixed = "title,city\nx,M\u{fc}nchen\ny,Caf"
            .bytes()
            .chain([0xe9, b'\n'])
            .collect::<Vec<u8>>();
        assert!(matches!(
            read_all(&mixed, Encoding::Auto),
            Err(ReadError::NotUtf8 { line: 3, .. })
        ));
        // Forced UTF-8 still refuses the bytes, naming line and column.
        assert!(matches!(
            read_all(bytes, Encoding::Utf8),
            Err(ReadError::NotUtf8 {
                line: 2,
                column: 2,
                ..
            })
        ));
    }

    #[test]
    fn the_hash_is_of_the_files_own_bytes_whatever_the_encoding() {
        let bytes: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("a\n1\n".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        let mut file = CsvFile::from_reader(
            Path::new("t"),
            Box::new(io::Cursor::new(bytes.clone())),
            Encoding::Auto,
            None,
        )
        .unwrap();
        let mut fields = Vec::new();
        while file.next_record(&mut fields).unwrap().is_some() {}
        assert_eq!(file.sha256_hex(), hex::encode(Sha256::digest(&bytes)));
    }
}
