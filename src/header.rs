//! A file's header mapped onto a kind's fields: one mapping for every kind
//! (a kind declares its [`Field`]s and [`Rule`]s; recipes will rename
//! columns before this runs). Pure.
//!
//! Headers match when they are equal once folded ([`normalize_header`]:
//! case, spaces, `_` and `-` do not count), to the field's name or one of
//! its aliases.

use crate::csvin::{normalize_header, ColumnRef, Problem};

/// A field a kind reads from a file.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    /// The canonical column name, as the README documents it.
    pub name: &'static str,
    /// Other headers that mean the same field. One ending in `*` matches
    /// every header that starts with it (Control Hub's
    /// `User ID/Email (Required)`).
    pub aliases: &'static [&'static str],
}

impl Field {
    /// A field known by its name only.
    pub const fn named(name: &'static str) -> Field {
        Field { name, aliases: &[] }
    }

    fn matches(&self, folded: &str) -> bool {
        normalize_header(self.name) == folded
            || self
                .aliases
                .iter()
                .any(|alias| match alias.strip_suffix('*') {
                    Some(prefix) => folded.starts_with(&normalize_header(prefix)),
                    None => normalize_header(alias) == folded,
                })
    }
}

/// What a kind requires of a header (fields by their index in its list).
#[derive(Clone, Copy, Debug)]
pub enum Rule {
    /// The field must have a column; `fix` says how to add it (`None`: "add
    /// a column named ...").
    Required {
        field: usize,
        fix: Option<&'static str>,
    },
    /// At least one of these fields must have a column.
    OneOf {
        fields: &'static [usize],
        fix: &'static str,
    },
}

/// Where each field sits in a file.
#[derive(Clone, Debug)]
pub struct Mapping {
    /// For each field (by index), its column.
    slots: Vec<Option<ColumnRef>>,
    /// The columns that are none of the fields, in file order.
    pub unmatched: Vec<ColumnRef>,
    /// How many columns the header has.
    pub width: usize,
}

impl Mapping {
    /// The column of field `field`, if the file has one.
    pub fn column(&self, field: usize) -> Option<&ColumnRef> {
        self.slots.get(field).and_then(Option::as_ref)
    }

    /// The field's cell in `row` (trimmed), unless the column is missing or
    /// the cell is empty.
    pub fn get<'a>(&self, field: usize, row: &'a [String]) -> Option<(&ColumnRef, &'a str)> {
        let col = self.column(field)?;
        let value = row.get(col.index - 1).map(|s| s.trim()).unwrap_or("");
        (!value.is_empty()).then_some((col, value))
    }
}

/// Maps `headers` onto `fields`, checking `rules`. Returns the mapping and
/// every problem with it (a column repeated, a required one missing): the
/// header is usable only when there are none. A kind may add its own
/// problems about the unmatched columns before it decides.
pub fn map(headers: &[String], fields: &[Field], rules: &[Rule]) -> (Mapping, Vec<Problem>) {
    let mut slots: Vec<Option<ColumnRef>> = vec![None; fields.len()];
    let mut unmatched = Vec::new();
    let mut problems = Vec::new();
    for (i, raw) in headers.iter().enumerate() {
        let col = ColumnRef {
            index: i + 1,
            name: raw.clone(),
        };
        let folded = normalize_header(raw);
        match fields.iter().position(|f| f.matches(&folded)) {
            Some(field) => match &slots[field] {
                Some(first) => problems.push(Problem::cell(
                    1,
                    &col,
                    format!(
                        "column {} ({raw}) repeats column {} ({})",
                        col.index, first.index, first.name
                    ),
                    "keep one of the two columns and delete the other",
                )),
                None => slots[field] = Some(col),
            },
            None => unmatched.push(col),
        }
    }
    for rule in rules {
        match *rule {
            Rule::Required { field, fix } if slots[field].is_none() => {
                let name = fields[field].name;
                problems.push(Problem::line(
                    1,
                    format!("the header has no `{name}` column"),
                    fix.map(str::to_owned).unwrap_or_else(|| format!("add a column named {name} to the first line (case, spaces, _ and - do not matter)")),
                ));
            }
            Rule::OneOf { fields: any, fix } if any.iter().all(|f| slots[*f].is_none()) => {
                let names: Vec<String> = any
                    .iter()
                    .map(|f| format!("`{}`", fields[*f].name))
                    .collect();
                let message = match names.as_slice() {
                    [a, b] => format!("the header has neither an {a} nor a {b} column"),
                    _ => format!("the header has none of the columns {}", names.join(", ")),
                };
                problems.push(Problem::line(1, message, fix));
            }
            _ => {}
        }
    }
    let mapping = Mapping {
        slots,
        unmatched,
        width: headers.len(),
    };
    (mapping, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: [Field; 4] = [
        Field::named("title"),
        Field {
            name: "hostEmail",
            aliases: &["host", "User ID/Email*"],
        },
        Field::named("end"),
        Field::named("duration"),
    ];
    const RULES: [Rule; 2] = [
        Rule::Required {
            field: 0,
            fix: None,
        },
        Rule::OneOf {
            fields: &[2, 3],
            fix: "add an end or a duration column",
        },
    ];

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_and_aliases_match_folded_and_the_rest_is_unmatched() {
        let headers = strings(&["Notes", "TITLE", "User ID/Email (Required)", "Dur-ation"]);
        let (m, problems) = map(&headers, &FIELDS, &RULES);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(m.column(0).unwrap().index, 2);
        assert_eq!(m.column(1).unwrap().name, "User ID/Email (Required)");
        assert!(m.column(2).is_none());
        assert_eq!(m.column(3).unwrap().index, 4);
        assert_eq!(m.unmatched.iter().map(|c| c.index).collect::<Vec<_>>(), [1]);
        let row = strings(&["x", "  Sync ", "a@b.c", ""]);
        assert_eq!(m.get(0, &row).map(|(_, v)| v), Some("Sync"));
        assert_eq!(m.get(3, &row), None, "an empty cell is no value");
        assert_eq!(m.width, 4);
    }

    #[test]
    fn repeats_and_missing_columns_are_each_a_problem() {
        let headers = strings(&["host", "Host Email", "start"]);
        let (_, problems) = map(&headers, &FIELDS, &RULES);
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "column 2 (Host Email) repeats column 1 (host)",
                "the header has no `title` column",
                "the header has neither an `end` nor a `duration` column",
            ]
        );
        assert_eq!(problems[0].column.as_ref().map(|c| c.0), Some(2));
    }
}
