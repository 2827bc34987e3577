//! Reading a workbook (`.xlsx`, `.xlsm`, `.xlsb`, `.xls`, `.ods`) the way
//! [`crate::csvin::CsvFile`] reads a CSV: a header row, then records with
//! the sheet's own row numbers as their lines. With calamine.
//!
//! Cells become text as a person reads them: numbers without a trailing
//! `.0`, a date-formatted cell as an ISO date (`2030-03-29`, with
//! `T09:00:00` when it has a time of day), a time-only cell as `09:00`,
//! `true`/`false`. Blank rows are skipped (their numbers still count).
//!
//! Memory: calamine holds the whole sheet (about 30 to 60 bytes a cell, plus
//! its text) while it is read: a 100,000-row sheet of ten columns takes
//! tens of megabytes. CSV stays flat; save a very large sheet as CSV.

use std::path::{Path, PathBuf};

use calamine::{open_workbook_auto, Data, Reader};
use sha2::{Digest, Sha256};

use crate::csvin::ReadError;

/// Whether `path` names a workbook (by its extension).
pub fn is_workbook(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        matches!(
            e.to_ascii_lowercase().as_str(),
            "xlsx" | "xlsm" | "xlsb" | "xls" | "ods"
        )
    })
}

/// One sheet of a workbook, read row by row.
pub struct SheetFile {
    headers: Vec<String>,
    /// The data rows with their sheet row numbers, in order.
    rows: std::vec::IntoIter<(u64, Vec<String>)>,
    sha256: String,
    guesses: Vec<String>,
}

/// A cell as text.
fn text(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::String(s) => s.trim().to_owned(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Float(f) => f.to_string(),
        Data::Bool(b) => b.to_string(),
        Data::DateTime(dt) => {
            let (y, mo, d, h, mi, s, _) = dt.to_ymd_hms_milli();
            if dt.as_f64() < 1.0 {
                format!("{h:02}:{mi:02}")
            } else if (h, mi, s) == (0, 0, 0) {
                format!("{y:04}-{mo:02}-{d:02}")
            } else {
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}")
            }
        }
        Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Error(e) => format!("#{e:?}"),
    }
}

impl SheetFile {
    /// Opens the workbook at `path` and reads `sheet` (`None`: the first).
    pub fn open(path: &Path, sheet: Option<&str>) -> Result<SheetFile, ReadError> {
        let io = |detail: String| ReadError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(detail),
        };
        let bytes = std::fs::read(path).map_err(|source| ReadError::Io {
            path: path.to_owned(),
            source,
        })?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let mut book = open_workbook_auto(path)
            .map_err(|e| io(format!("not a workbook calamine can read ({e})")))?;
        let names = book.sheet_names();
        let name = match sheet {
            Some(s) => names
                .iter()
                .find(|n| n.eq_ignore_ascii_case(s))
                .cloned()
                .ok_or_else(|| {
                    io(format!(
                        "it has no sheet `{s}` (it has {}); pass --sheet with one of them",
                        names.join(", ")
                    ))
                })?,
            None => names.first().cloned().ok_or_else(|| ReadError::Empty {
                path: path.to_owned(),
            })?,
        };
        let range = book
            .worksheet_range(&name)
            .map_err(|e| io(format!("cannot read its sheet `{name}` ({e})")))?;
        let first_row = range.start().map(|(r, _)| u64::from(r)).unwrap_or(0);
        let mut rows = range
            .rows()
            .enumerate()
            .map(|(i, cells)| {
                (
                    first_row + i as u64 + 1,
                    cells.iter().map(text).collect::<Vec<_>>(),
                )
            })
            .filter(|(_, cells)| cells.iter().any(|c| !c.is_empty()));
        let Some((_, headers)) = rows.next() else {
            return Err(ReadError::Empty {
                path: path.to_owned(),
            });
        };
        let rows: Vec<(u64, Vec<String>)> = rows.collect();
        let mut guesses = Vec::new();
        if sheet.is_none() && names.len() > 1 {
            guesses.push(format!(
                "read its first sheet, `{name}`, of {} (pass --sheet to choose another)",
                names.len()
            ));
        }
        Ok(SheetFile {
            headers,
            rows: rows.into_iter(),
            sha256,
            guesses,
        })
    }

    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// The next row into `fields`, with its sheet row number.
    pub fn next_record(&mut self, fields: &mut Vec<String>) -> Option<u64> {
        let (line, cells) = self.rows.next()?;
        *fields = cells;
        Some(line)
    }

    pub fn sha256_hex(&self) -> String {
        self.sha256.clone()
    }

    pub fn guesses(&self) -> &[String] {
        &self.guesses
    }
}

/// Where a file's rows come from: a CSV or a workbook's sheet.
pub enum Table {
    Csv(crate::csvin::CsvFile),
    Sheet(SheetFile),
}

impl Table {
    /// Opens a workbook by its extension, anything else as CSV.
    pub fn open(
        path: &Path,
        encoding: crate::csvin::Encoding,
        delimiter: Option<u8>,
        sheet: Option<&str>,
    ) -> Result<Table, ReadError> {
        if is_workbook(path) {
            return SheetFile::open(path, sheet).map(Table::Sheet);
        }
        if let Some(s) = sheet {
            return Err(ReadError::Io {
                path: PathBuf::from(path),
                source: std::io::Error::other(format!("--sheet {s} is for workbooks (.xlsx, .xlsm, .xlsb, .xls, .ods), and this file is read as CSV")),
            });
        }
        crate::csvin::CsvFile::open(path, encoding, delimiter).map(Table::Csv)
    }

    pub fn headers(&self) -> &[String] {
        match self {
            Table::Csv(f) => f.headers(),
            Table::Sheet(f) => f.headers(),
        }
    }

    pub fn next_record(&mut self, fields: &mut Vec<String>) -> Result<Option<u64>, ReadError> {
        match self {
            Table::Csv(f) => f.next_record(fields),
            Table::Sheet(f) => Ok(f.next_record(fields)),
        }
    }

    pub fn sha256_hex(&self) -> String {
        match self {
            Table::Csv(f) => f.sha256_hex(),
            Table::Sheet(f) => f.sha256_hex(),
        }
    }

    pub fn guesses(&self) -> &[String] {
        match self {
            Table::Csv(f) => f.guesses(),
            Table::Sheet(f) => f.guesses(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workbook_reads_with_its_row_numbers_dates_and_numbers() {
        use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("book.xlsx");
        let mut book = Workbook::new();
        let notes = book.add_worksheet();
        notes.set_name("Notes").unwrap();
        notes.write(0, 0, "ignore me").unwrap();
        let sheet = book.add_worksheet();
        sheet.set_name("Meetings").unwrap();
        let date = Format::new().set_num_format("dd.mm.yyyy");
        let time = Format::new().set_num_format("hh:mm");
        // Two blank rows above the header: it is row 3.
        for (c, h) in ["Subject", "Date", "Time", "Minutes", "Stamp"]
            .iter()
            .enumerate()
        {
            sheet.write(2, c as u16, *h).unwrap();
        }
        sheet.write(3, 0, "Planning").unwrap();
        sheet
            .write_datetime_with_format(3, 1, ExcelDateTime::from_ymd(2030, 3, 29).unwrap(), &date)
            .unwrap();
        sheet
            .write_datetime_with_format(3, 2, ExcelDateTime::from_hms(9, 30, 0).unwrap(), &time)
            .unwrap();
        sheet.write(3, 3, 45).unwrap();
        sheet
            .write_datetime_with_format(
                3,
                4,
                ExcelDateTime::from_ymd(2030, 4, 1)
                    .unwrap()
                    .and_hms(14, 5, 0)
                    .unwrap(),
                &Format::new().set_num_format("yyyy-mm-dd hh:mm"),
            )
            .unwrap();
        // A blank row, then one more: row 6.
        sheet.write(5, 0, "Review & <sign-off>").unwrap();
        sheet.write(5, 3, 1.5).unwrap();
        book.save(&path).unwrap();

        let mut t =
            Table::open(&path, crate::csvin::Encoding::Auto, None, Some("meetings")).unwrap();
        assert_eq!(t.headers(), ["Subject", "Date", "Time", "Minutes", "Stamp"]);
        let mut fields = Vec::new();
        assert_eq!(t.next_record(&mut fields).unwrap(), Some(4));
        assert_eq!(
            fields,
            [
                "Planning",
                "2030-03-29",
                "09:30",
                "45",
                "2030-04-01T14:05:00"
            ]
        );
        assert_eq!(t.next_record(&mut fields).unwrap(), Some(6));
        assert_eq!(fields[0], "Review & <sign-off>");
        assert_eq!(fields[3], "1.5");
        assert_eq!(t.next_record(&mut fields).unwrap(), None);
        assert_eq!(t.sha256_hex().len(), 64);
        assert!(t.guesses().is_empty());
        // The first sheet by default, said as a guess; an unknown sheet named.
        let t = Table::open(&path, crate::csvin::Encoding::Auto, None, None).unwrap();
        assert_eq!(t.headers(), ["ignore me"]);
        assert!(t.guesses()[0].contains("--sheet"));
        let Err(e) = Table::open(&path, crate::csvin::Encoding::Auto, None, Some("Budget")) else {
            panic!("an unknown sheet")
        };
        assert!(
            e.to_string()
                .contains("no sheet `Budget` (it has Notes, Meetings)"),
            "{e}"
        );
    }
}
