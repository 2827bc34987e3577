//! Recipes (`jobs/*.toml`): a saved mapping of a spreadsheet's columns onto a
//! job kind's fields, so that this month's HR export or scheduling sheet runs
//! as it is, without rewriting it.
//!
//! ```toml
//! kind = "meetings"
//! description = "Schedule meetings from a sheet with Date and Time columns"
//! date_order = "mdy"                      # dmy, mdy or ymd: how the file writes dates
//!
//! [fields]
//! title = "Subject"                       # a column
//! agenda = "{Topic}: {Notes}"             # a template ({{ and }} for braces)
//! start = { date = "Date", time = "Time" }  # a date column joined with a time column
//! timezone = { value = "America/New_York" } # a constant
//!
//! [defaults]                              # when the cell (or template) is empty
//! duration = "30"
//! ```
//!
//! Optional `rate`, `concurrency`, `max_attempts` are the run's defaults
//! (command-line flags win).
//!
//! The layer is kind-agnostic and pure: [`Applied`] turns a file's row into
//! the kind's fields (by their canonical names) before the kind's checker
//! sees it, and maps the checker's problems back to the file's own columns;
//! [`RecipeJob`] wraps a prepared kind so that ingest, the engine and the
//! report go on naming no kind. A run stores its resolved recipe (JSON, in
//! its options): `--resume` never rereads the TOML file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::csvin::{normalize_header, ColumnRef, Problem};
use crate::dates::{parse_date, parse_time, DateOrder};
use crate::kinds::{BoxFuture, Checker, Job, Kind, Reconciled, Runner};
use crate::store::{decode_cells, encode_cells, Claimed, Outcome};

/// Where a field's value comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A column of the file (by its header, case, spaces, `_` and `-` aside).
    Column(String),
    /// Text with `{Column}` substitutions.
    Template(String),
    /// A date column and, optionally, a time column, joined into a local
    /// date-time (`2027-03-10T09:00:00`).
    DateTime { date: String, time: Option<String> },
    /// The same value on every row.
    Value(String),
}

/// A field of the kind, where it comes from, and the recipe's line for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSource {
    pub field: String,
    /// `None`: only a default.
    pub source: Option<Source>,
    pub default: Option<String>,
    /// The recipe line that maps it (for errors).
    pub line: usize,
}

/// A recipe, resolved (as a run stores it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipe {
    /// The file's name, as messages show it.
    pub name: String,
    pub kind: String,
    pub description: String,
    pub fields: Vec<FieldSource>,
    pub date_order: Option<DateOrder>,
    pub rate: Option<String>,
    pub concurrency: Option<u16>,
    pub max_attempts: Option<u32>,
    /// No TOML file: `--date-order` without `--job`. Every column the kind
    /// knows maps onto its field, its date fields read in the order given.
    #[serde(default)]
    pub by_header: bool,
}

impl Recipe {
    /// The recipe of `--date-order` without `--job`: the file's own columns,
    /// as the kind reads them, with its date fields in `order`.
    pub fn by_header(kind: &dyn Kind, order: DateOrder) -> Result<Recipe, String> {
        if kind.date_fields().is_empty() {
            return Err(format!(
                "the {} kind has no date columns for --date-order",
                kind.name()
            ));
        }
        Ok(Recipe {
            name: "--date-order".into(),
            kind: kind.name().into(),
            description: String::new(),
            fields: Vec::new(),
            date_order: Some(order),
            rate: None,
            concurrency: None,
            max_attempts: None,
            by_header: true,
        })
    }
}

/// A recipe that cannot be used: the file, the line, what and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}, line {line}: {message}\n    fix: {fix}")]
pub struct RecipeError {
    pub file: String,
    pub line: usize,
    pub message: String,
    pub fix: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    kind: toml::Spanned<String>,
    description: Option<String>,
    date_order: Option<toml::Spanned<String>>,
    rate: Option<String>,
    concurrency: Option<u16>,
    max_attempts: Option<u32>,
    #[serde(default)]
    fields: std::collections::BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>>,
    #[serde(default)]
    defaults: std::collections::BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>>,
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl Recipe {
    /// Reads and checks a recipe file against the kinds this build knows.
    pub fn load(path: &Path) -> Result<Recipe, RecipeError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| RecipeError {
            file: file.clone(),
            line: 0,
            message: format!("cannot read it: {e}"),
            fix: "check the path (`webex-bulk jobs` lists the recipes)".into(),
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| file.clone());
        Recipe::parse(&name, &file, &text)
    }

    /// Parses recipe `text` (`file` names it in errors).
    pub fn parse(name: &str, file: &str, text: &str) -> Result<Recipe, RecipeError> {
        let err = |offset: usize, message: String, fix: &str| RecipeError {
            file: file.to_owned(),
            line: line_of(text, offset),
            message,
            fix: fix.to_owned(),
        };
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            err(offset, e.message().trim().to_owned(), "write it as the recipe format in README.md shows (kind, description, [fields], [defaults], date_order)")
        })?;
        let kind = crate::kinds::find(raw.kind.get_ref()).map_err(|_| {
            err(
                raw.kind.span().start,
                format!("`{}` is not a job kind", raw.kind.get_ref()),
                &format!("use one of: {}", crate::kinds::names().join(", ")),
            )
        })?;
        let date_order = match &raw.date_order {
            None => None,
            Some(o) => Some(DateOrder::parse(o.get_ref()).ok_or_else(|| {
                err(
                    o.span().start,
                    format!("`{}` is not a date order", o.get_ref()),
                    "write dmy (10.03.2027), mdy (3/10/2027) or ymd (2027/03/10)",
                )
            })?),
        };
        let field_name = |key: &toml::Spanned<String>| {
            canonical_field(kind, key.get_ref()).ok_or_else(|| {
                err(
                    key.span().start,
                    format!("the {} kind has no field `{}`", kind.name(), key.get_ref()),
                    &format!(
                        "use one of: {}",
                        kind.fields()
                            .iter()
                            .map(|f| f.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })
        };
        let mut fields: Vec<FieldSource> = Vec::new();
        let mut mapped: Vec<_> = raw.fields.iter().collect();
        mapped.sort_by_key(|(k, _)| k.span().start);
        for (key, value) in mapped {
            let field = field_name(key)?;
            let line = line_of(text, key.span().start);
            let bad = |what: &str| {
                err(
                    value.span().start,
                    format!("`{}` = {what}", key.get_ref()),
                    "write \"Column\", \"{Column} text\", { date = \"Date\", time = \"Time\" } or { value = \"constant\" }",
                )
            };
            let source = match value.get_ref() {
                toml::Value::String(s) if s.contains('{') || s.contains('}') => {
                    template_columns(s).map_err(|m| bad(&m))?;
                    Source::Template(s.clone())
                }
                toml::Value::String(s) => Source::Column(s.clone()),
                toml::Value::Table(t) => {
                    let text_of = |k: &str| t.get(k).and_then(|v| v.as_str()).map(str::to_owned);
                    let keys: Vec<&str> = t.keys().map(String::as_str).collect();
                    match keys.as_slice() {
                        ["value"] => Source::Value(value_text(&t["value"]).ok_or_else(|| {
                            bad("a value that is not text, a number or true/false")
                        })?),
                        _ if keys.iter().all(|k| *k == "date" || *k == "time")
                            && text_of("date").is_some() =>
                        {
                            Source::DateTime {
                                date: text_of("date").expect("checked"),
                                time: text_of("time"),
                            }
                        }
                        _ => {
                            return Err(bad("a table that is neither { date, time } nor { value }"))
                        }
                    }
                }
                _ => return Err(bad("neither a column, a template nor a table")),
            };
            if fields.iter().any(|f| f.field == field) {
                return Err(bad("a field mapped twice"));
            }
            fields.push(FieldSource {
                field,
                source: Some(source),
                default: None,
                line,
            });
        }
        let mut defaults: Vec<_> = raw.defaults.iter().collect();
        defaults.sort_by_key(|(k, _)| k.span().start);
        for (key, value) in defaults {
            let field = field_name(key)?;
            let text_value = value_text(value.get_ref()).ok_or_else(|| {
                err(
                    value.span().start,
                    format!(
                        "the default of `{}` is not text, a number or true/false",
                        key.get_ref()
                    ),
                    "write it as \"text\", 30 or true",
                )
            })?;
            match fields.iter_mut().find(|f| f.field == field) {
                Some(f) => f.default = Some(text_value),
                None => fields.push(FieldSource {
                    field,
                    source: None,
                    default: Some(text_value),
                    line: line_of(text, key.span().start),
                }),
            }
        }
        if fields.is_empty() {
            return Err(err(
                0,
                "the recipe maps no field".into(),
                "add a [fields] table: field = \"Column\"",
            ));
        }
        Ok(Recipe {
            name: name.to_owned(),
            kind: kind.name().to_owned(),
            description: raw.description.unwrap_or_default(),
            fields,
            date_order,
            rate: raw.rate,
            concurrency: raw.concurrency,
            max_attempts: raw.max_attempts,
            by_header: false,
        })
    }
}

/// A TOML scalar as text.
fn value_text(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The kind's canonical name of a field named by its name or an alias.
fn canonical_field(kind: &dyn Kind, name: &str) -> Option<String> {
    let folded = normalize_header(name);
    kind.fields()
        .iter()
        .find(|f| {
            normalize_header(f.name) == folded
                || f.aliases
                    .iter()
                    .any(|a| normalize_header(a.trim_end_matches('*')) == folded)
        })
        .map(|f| f.name.to_owned())
}

/// The fields of a `--date-order` recipe: every column that is one of the
/// kind's fields (as its header mapping reads them), its date fields read
/// as dates.
fn header_fields(recipe: &Recipe, header: &[String]) -> Vec<FieldSource> {
    let Ok(kind) = crate::kinds::find(&recipe.kind) else {
        return Vec::new();
    };
    let (mapping, _) = crate::header::map(header, kind.fields(), &[]);
    kind.fields()
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            let col = mapping.column(i)?;
            let source = if kind.date_fields().contains(&f.name) {
                Source::DateTime {
                    date: col.name.clone(),
                    time: None,
                }
            } else {
                Source::Column(col.name.clone())
            };
            Some(FieldSource {
                field: f.name.to_owned(),
                source: Some(source),
                default: None,
                line: 0,
            })
        })
        .collect()
}

/// A template's pieces: text, and `{Column}` references.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Column(String),
}

fn template_pieces(template: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(format!("the template \"{template}\" has a `{{` without its `}}`")),
                    }
                }
                if name.trim().is_empty() {
                    return Err(format!("the template \"{template}\" has an empty `{{}}`"));
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Column(name.trim().to_owned()));
            }
            '}' => return Err(format!("the template \"{template}\" has a `}}` without its `{{` (write `}}}}` for a brace)")),
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

fn template_columns(template: &str) -> Result<Vec<String>, String> {
    Ok(template_pieces(template)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Column(c) => Some(c),
            Piece::Text(_) => None,
        })
        .collect())
}

/// How one field is made from a row of a given file.
#[derive(Clone, Debug)]
enum Make {
    Column(usize),
    Template(Vec<(Option<usize>, String)>),
    DateTime { date: usize, time: Option<usize> },
    Value(String),
    Nothing,
}

#[derive(Clone, Debug)]
struct AppliedField {
    name: String,
    make: Make,
    default: Option<String>,
    /// The file's columns it comes from (first = where problems point).
    from: Vec<ColumnRef>,
}

/// A recipe applied to one file's header.
#[derive(Clone, Debug)]
pub struct Applied {
    fields: Vec<AppliedField>,
    date_order: Option<DateOrder>,
    /// The file's columns the recipe does not use.
    unused: Vec<String>,
    width: usize,
}

impl Applied {
    /// Finds every column the recipe names in `header`: a missing one is a
    /// problem naming the recipe's line and the closest columns the file has.
    pub fn new(
        recipe: &Recipe,
        header: &[String],
        date_order: Option<DateOrder>,
    ) -> Result<Applied, Vec<Problem>> {
        let by_header;
        let recipe = if recipe.by_header {
            by_header = Recipe {
                fields: header_fields(recipe, header),
                ..recipe.clone()
            };
            &by_header
        } else {
            recipe
        };
        let columns: Vec<ColumnRef> = header
            .iter()
            .enumerate()
            .map(|(i, name)| ColumnRef {
                index: i + 1,
                name: name.clone(),
            })
            .collect();
        let mut problems = Vec::new();
        let mut used = vec![false; header.len()];
        let mut find = |name: &str,
                        field: &FieldSource,
                        problems: &mut Vec<Problem>|
         -> Option<usize> {
            let folded = normalize_header(name);
            match columns
                .iter()
                .position(|c| normalize_header(&c.name) == folded)
            {
                Some(i) => {
                    used[i] = true;
                    Some(i)
                }
                None => {
                    let mut close: Vec<(f64, &str)> = header
                        .iter()
                        .map(|h| {
                            (
                                strsim::normalized_levenshtein(&normalize_header(h), &folded),
                                h.as_str(),
                            )
                        })
                        .filter(|(score, _)| *score > 0.5)
                        .collect();
                    close.sort_by(|a, b| b.0.total_cmp(&a.0));
                    let hint = match close.first() {
                        Some((_, h)) => format!("did you mean `{h}`? fix the recipe ({}, line {}) or the file's header", recipe.name, field.line),
                        None => format!("the file's columns are: {}; fix the recipe ({}, line {}) or the file's header", header.join(", "), recipe.name, field.line),
                    };
                    problems.push(Problem::line(
                        1,
                        format!("the recipe {} maps `{}` from the column `{name}`, which this file does not have", recipe.name, field.field),
                        hint,
                    ));
                    None
                }
            }
        };
        let mut fields = Vec::new();
        for f in &recipe.fields {
            let make = match &f.source {
                None => Some(Make::Nothing),
                Some(Source::Value(v)) => Some(Make::Value(v.clone())),
                Some(Source::Column(c)) => find(c, f, &mut problems).map(Make::Column),
                Some(Source::Template(t)) => {
                    let pieces = template_pieces(t).unwrap_or_default();
                    let mut out = Vec::new();
                    let mut ok = true;
                    for p in pieces {
                        match p {
                            Piece::Text(s) => out.push((None, s)),
                            Piece::Column(c) => match find(&c, f, &mut problems) {
                                Some(i) => out.push((Some(i), String::new())),
                                None => ok = false,
                            },
                        }
                    }
                    ok.then_some(Make::Template(out))
                }
                Some(Source::DateTime { date, time }) => {
                    let d = find(date, f, &mut problems);
                    let t = time.as_ref().map(|t| find(t, f, &mut problems));
                    match (d, t) {
                        (Some(d), None) => Some(Make::DateTime {
                            date: d,
                            time: None,
                        }),
                        (Some(d), Some(Some(t))) => Some(Make::DateTime {
                            date: d,
                            time: Some(t),
                        }),
                        _ => None,
                    }
                }
            };
            let Some(make) = make else { continue };
            let from = match &make {
                Make::Column(i) => vec![columns[*i].clone()],
                Make::Template(p) => p
                    .iter()
                    .filter_map(|(i, _)| i.map(|i| columns[i].clone()))
                    .collect(),
                Make::DateTime { date, time } => std::iter::once(columns[*date].clone())
                    .chain(time.map(|t| columns[t].clone()))
                    .collect(),
                Make::Value(_) | Make::Nothing => Vec::new(),
            };
            fields.push(AppliedField {
                name: f.field.clone(),
                make,
                default: f.default.clone(),
                from,
            });
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let unused = header
            .iter()
            .zip(&used)
            .filter(|(_, u)| !**u)
            .map(|(h, _)| h.clone())
            .collect();
        Ok(Applied {
            fields,
            date_order: date_order.or(recipe.date_order),
            unused,
            width: header.len(),
        })
    }

    /// The kind's header: the fields' canonical names.
    pub fn header(&self) -> Vec<String> {
        self.fields.iter().map(|f| f.name.clone()).collect()
    }

    /// Where field `i`'s problems point: its first source column, named
    /// with every column it comes from (`Date + Time → start`).
    fn column_of(&self, i: usize) -> Option<(usize, String)> {
        let f = self.fields.get(i)?;
        let names: Vec<&str> = f.from.iter().map(|c| c.name.as_str()).collect();
        match f.from.first() {
            Some(first) => Some((first.index, format!("{} → {}", names.join(" + "), f.name))),
            None => Some((0, format!("{} (the recipe's value)", f.name))),
        }
    }

    /// A row of the file as the kind's fields, or the problems of its dates.
    pub fn row(&self, cells: &[String], line: u64) -> Result<Vec<String>, Vec<Problem>> {
        let cell = |i: usize| cells.get(i).map(|s| s.trim()).unwrap_or("");
        let mut out = Vec::with_capacity(self.fields.len());
        let mut problems = Vec::new();
        for (n, f) in self.fields.iter().enumerate() {
            let value = match &f.make {
                Make::Column(i) => cell(*i).to_owned(),
                Make::Value(v) => v.clone(),
                Make::Nothing => String::new(),
                Make::Template(pieces) => {
                    // A template whose columns are all empty is empty (so
                    // that the default applies), not its bare text.
                    let any = pieces
                        .iter()
                        .any(|(i, _)| i.is_some_and(|i| !cell(i).is_empty()));
                    if any {
                        pieces
                            .iter()
                            .map(|(i, text)| match i {
                                Some(i) => cell(*i),
                                None => text.as_str(),
                            })
                            .collect()
                    } else {
                        String::new()
                    }
                }
                Make::DateTime { date, time } => {
                    let (d, t) = (cell(*date), time.map(cell).unwrap_or(""));
                    if d.is_empty() {
                        String::new()
                    } else {
                        match self.date_time(d, t) {
                            Ok(v) => v,
                            Err(message) => {
                                let (index, name) =
                                    self.column_of(n).unwrap_or((0, f.name.clone()));
                                problems.push(Problem {
                                    column: Some((index, name)),
                                    ..Problem::line(line, message, "write the date as the recipe's date_order says (or ISO 2027-03-10) and the time as 09:00 or 9:00 AM; a file with dates like 03/04/2027 needs date_order = \"dmy\" or \"mdy\" in the recipe, or --date-order")
                                });
                                String::new()
                            }
                        }
                    }
                }
            };
            out.push(if value.is_empty() {
                f.default.clone().unwrap_or_default()
            } else {
                value
            });
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems)
        }
    }

    fn date_time(&self, date: &str, time: &str) -> Result<String, String> {
        // An ISO date-time is taken as it is (with its offset, if any).
        if time.is_empty()
            && (chrono::DateTime::parse_from_rfc3339(date).is_ok()
                || chrono::NaiveDateTime::parse_from_str(date, "%Y-%m-%dT%H:%M:%S").is_ok()
                || chrono::NaiveDateTime::parse_from_str(date, "%Y-%m-%dT%H:%M").is_ok())
        {
            return Ok(date.to_owned());
        }
        // A date cell may carry its own time (`10.03.2027 09:00`).
        let (date, time) = match (time.is_empty(), date.split_once(' ')) {
            (true, Some((d, t))) => (d, t.trim()),
            _ => (date, time),
        };
        let d = parse_date(date, self.date_order)?;
        if time.is_empty() {
            return Ok(d.format("%Y-%m-%d").to_string());
        }
        let t = parse_time(time)?;
        Ok(format!("{}T{}", d.format("%Y-%m-%d"), t.format("%H:%M:%S")))
    }

    /// The kind's problem, pointed at the file's own column(s).
    fn map_problem(&self, mut p: Problem) -> Problem {
        if let Some((i, _)) = &p.column {
            if let Some(mapped) = self.column_of(i - 1) {
                p.column = Some(mapped);
            }
        }
        p
    }
}

/// A kind prepared for a run, read through a recipe.
pub struct RecipeJob {
    pub inner: Box<dyn Job>,
    pub recipe: Recipe,
    /// `--date-order`, which wins over the recipe's.
    pub date_order: Option<DateOrder>,
}

impl Job for RecipeJob {
    fn checker(
        &self,
        header: &[String],
        now: DateTime<Utc>,
    ) -> Result<Box<dyn Checker + '_>, Vec<Problem>> {
        let applied = Applied::new(&self.recipe, header, self.date_order)?;
        let inner = self
            .inner
            .checker(&applied.header(), now)
            .map_err(|problems| {
                problems
                    .into_iter()
                    .map(|p| applied.map_problem(p))
                    .collect::<Vec<_>>()
            })?;
        Ok(Box::new(RecipeChecker { inner, applied }))
    }

    fn runner(&self, header: &[String], uid: &str) -> Result<Arc<dyn Runner>, String> {
        let applied = Applied::new(&self.recipe, header, self.date_order).map_err(|problems| {
            problems
                .into_iter()
                .map(|p| p.message)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let inner = self.inner.runner(&applied.header(), uid)?;
        Ok(Arc::new(RecipeRunner { inner, applied }))
    }
}

struct RecipeChecker<'a> {
    inner: Box<dyn Checker + 'a>,
    applied: Applied,
}

impl Checker for RecipeChecker<'_> {
    fn width(&self) -> usize {
        self.applied.width
    }

    fn ignored(&self) -> (&[String], &'static str) {
        (&self.applied.unused, "used by the recipe")
    }

    fn check(
        &mut self,
        fields: &[String],
        line: u64,
        warnings: &mut Vec<Problem>,
    ) -> Result<Option<String>, Vec<Problem>> {
        let mapped = self.applied.row(fields, line)?;
        let mut inner_warnings = Vec::new();
        let result = self.inner.check(&mapped, line, &mut inner_warnings);
        warnings.extend(
            inner_warnings
                .into_iter()
                .map(|p| self.applied.map_problem(p)),
        );
        result.map_err(|problems| {
            problems
                .into_iter()
                .map(|p| self.applied.map_problem(p))
                .collect()
        })
    }

    fn finish(&self) -> Vec<Problem> {
        self.inner.finish()
    }

    fn preview(&self, fields: &[String], line: u64) -> Vec<(&'static str, String)> {
        match self.applied.row(fields, line) {
            Ok(mapped) => self.inner.preview(&mapped, line),
            Err(_) => Vec::new(),
        }
    }
}

/// Carries out a queued row read through the recipe (its stored cells are
/// the file's own; the kind gets its fields).
struct RecipeRunner {
    inner: Arc<dyn Runner>,
    applied: Applied,
}

impl RecipeRunner {
    fn mapped(&self, row: &Claimed) -> Result<Claimed, Box<Outcome>> {
        let failed = |error: String| Box::new(Outcome::failed(None, error));
        let cells = decode_cells(&row.original)
            .map_err(|e| failed(format!("the queued row is unreadable: {e}")))?;
        let fields = self
            .applied
            .row(&cells, row.line as u64)
            .map_err(|problems| {
                failed(
                    problems
                        .into_iter()
                        .map(|p| p.message)
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })?;
        Ok(Claimed {
            original: encode_cells(&fields),
            ..row.clone()
        })
    }
}

impl Runner for RecipeRunner {
    fn reconcile<'a>(
        &'a self,
        row: &'a Claimed,
        api: &'a mut crate::engine::Api<'_>,
    ) -> BoxFuture<'a, Reconciled> {
        Box::pin(async move {
            match self.mapped(row) {
                Ok(mapped) => self.inner.reconcile(&mapped, api).await,
                Err(outcome) => Reconciled::Settled(*outcome),
            }
        })
    }

    fn execute<'a>(
        &'a self,
        row: &'a Claimed,
        api: &'a mut crate::engine::Api<'_>,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match self.mapped(row) {
                Ok(mapped) => self.inner.execute(&mapped, api).await,
                Err(outcome) => *outcome,
            }
        })
    }

    fn check<'a>(
        &'a self,
        row: &'a Claimed,
        api: &'a mut crate::engine::Api<'_>,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match self.mapped(row) {
                Ok(mapped) => self.inner.check(&mapped, api).await,
                Err(outcome) => *outcome,
            }
        })
    }
}

/// The recipes in `dirs` (`jobs/` here and under `$WEBEX_BULK_HOME`): each
/// file with its recipe, or why it cannot be used.
pub fn list(dirs: &[PathBuf]) -> Vec<(PathBuf, Result<Recipe, RecipeError>)> {
    let mut found = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        for p in paths {
            let r = Recipe::load(&p);
            found.push((p, r));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULE: &str = r#"kind = "meetings"
description = "Meetings from a sheet with Date and Time columns"
date_order = "mdy"

[fields]
title = "Subject"
start = { date = "Date", time = "Time" }
hostEmail = "Organizer"
agenda = "{Topic}: {Notes} {{draft}}"
timezone = { value = "America/New_York" }

[defaults]
duration = 45
agenda = "No agenda"
"#;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_recipe_maps_columns_templates_dates_values_and_defaults() {
        let r = Recipe::parse("schedule.toml", "jobs/schedule.toml", SCHEDULE).unwrap();
        assert_eq!(r.kind, "meetings");
        let names: Vec<&str> = r.fields.iter().map(|f| f.field.as_str()).collect();
        // Defaults without a source come last.
        assert_eq!(
            names,
            [
                "title",
                "start",
                "hostEmail",
                "agenda",
                "timezone",
                "duration"
            ]
        );
        assert_eq!(r.fields[2].line, 8);
        let header = strings(&[
            "Subject",
            "Date",
            "Time",
            "organizer",
            "Topic",
            "Notes",
            "Room",
        ]);
        let a = Applied::new(&r, &header, None).unwrap();
        assert_eq!(a.unused, ["Room"]);
        let row = a
            .row(
                &strings(&[
                    "Sync",
                    "3/10/2027",
                    "9:00 AM",
                    "ann@x.com",
                    "Plan",
                    "Q2",
                    "B1",
                ]),
                2,
            )
            .unwrap();
        assert_eq!(
            row,
            strings(&[
                "Sync",
                "2027-03-10T09:00:00",
                "ann@x.com",
                "Plan: Q2 {draft}",
                "America/New_York",
                "45"
            ])
        );
        // Empty template columns: the default.
        let row = a
            .row(
                &strings(&["Sync", "3/10/2027", "14:30", "ann@x.com", "", "", ""]),
                3,
            )
            .unwrap();
        assert_eq!(row[3], "No agenda");
        assert_eq!(row[1], "2027-03-10T14:30:00");
        // A bad date points at the file's own columns.
        let problems = a
            .row(
                &strings(&["Sync", "13/10/2027", "9:00", "a@x.com", "", "", ""]),
                4,
            )
            .unwrap_err();
        assert_eq!(
            problems[0].column,
            Some((2, "Date + Time → start".to_owned()))
        );
        // --date-order wins over the recipe's.
        let a = Applied::new(&r, &header, Some(DateOrder::Dmy)).unwrap();
        let row = a
            .row(
                &strings(&["Sync", "10/3/2027", "9:00", "a@x.com", "", "", ""]),
                2,
            )
            .unwrap();
        assert_eq!(row[1], "2027-03-10T09:00:00");
    }

    #[test]
    fn a_missing_column_names_the_recipe_line_and_the_closest_column() {
        let r = Recipe::parse("schedule.toml", "jobs/schedule.toml", SCHEDULE).unwrap();
        let header = strings(&["Subjekt", "Date", "Time", "Organizer", "Topic", "Notes"]);
        let problems = Applied::new(&r, &header, None).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0]
                .message
                .contains("maps `title` from the column `Subject`"),
            "{problems:?}"
        );
        assert!(
            problems[0].fix.contains("did you mean `Subjekt`?")
                && problems[0].fix.contains("line 6"),
            "{problems:?}"
        );
    }

    #[test]
    fn mistakes_in_a_recipe_are_refused_with_their_line_and_fix() {
        let err = |text: &str| Recipe::parse("r.toml", "jobs/r.toml", text).unwrap_err();
        let e = err("kind = \"meetngs\"\n[fields]\ntitle = \"T\"\n");
        assert_eq!(
            (e.line, e.message.as_str()),
            (1, "`meetngs` is not a job kind")
        );
        assert!(e.fix.contains("meetings, users, user-settings"));
        let e =
            err("kind = \"users\"\n\n[fields]\nemail = \"Work Email\"\nfavourite = \"Colour\"\n");
        assert_eq!(e.line, 5);
        assert!(
            e.message.contains("no field `favourite`") && e.fix.contains("firstName"),
            "{e}"
        );
        let e = err("kind = \"meetings\"\ndate_order = \"dym\"\n[fields]\ntitle = \"T\"\n");
        assert_eq!(e.line, 2);
        assert!(e.fix.contains("dmy"));
        let e = err("kind = \"meetings\"\n[fields]\ntitle = \"{Subject\"\n");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("without its"), "{e}");
        let e = err("kind = \"meetings\"\ncolour = 1\n[fields]\ntitle = \"T\"\n");
        assert_eq!(e.line, 2, "{e}");
        let e = err("kind = \"meetings\"\n[fields]\nstart = { day = \"D\" }\n");
        assert_eq!(e.line, 3);
        assert!(err("kind = \"meetings\"\n")
            .message
            .contains("maps no field"));
    }

    #[test]
    fn a_recipe_round_trips_through_the_run_json() {
        let r = Recipe::parse("schedule.toml", "jobs/schedule.toml", SCHEDULE).unwrap();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(serde_json::from_value::<Recipe>(json).unwrap(), r);
    }
}
