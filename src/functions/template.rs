//! PostgreSQL's date/time template patterns (`YYYY-MM-DD HH24:MI:SS`, `FMMonth`, `DDDth`,
//! `"text"`), parsed once for [`super::to_char`] (formatting) and [`super::to_timestamp`]
//! (reading).

/// Letter case of a text pattern as written (`MONTH`, `Month`, `month`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Case {
    /// `MONTH`.
    Upper,
    /// `Month`.
    Capital,
    /// `month`.
    Lower,
}

impl Case {
    pub(crate) fn of(written: &str) -> Case {
        let mut letters = written.chars().filter(|c| c.is_alphabetic());
        match (letters.next(), letters.next()) {
            (Some(a), _) if a.is_lowercase() => Case::Lower,
            (Some(_), Some(b)) if b.is_lowercase() => Case::Capital,
            _ => Case::Upper,
        }
    }

    pub(crate) fn apply(self, s: &str) -> String {
        match self {
            Case::Upper => s.to_uppercase(),
            Case::Lower => s.to_lowercase(),
            Case::Capital => {
                let mut c = s.chars();
                c.next()
                    .map(|f| {
                        f.to_uppercase()
                            .chain(c.flat_map(char::to_lowercase))
                            .collect()
                    })
                    .unwrap_or_default()
            }
        }
    }
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item {
    /// Text copied (`to_char`) or skipped (`to_timestamp`).
    Literal(String),
    /// A pattern such as `YYYY`.
    Field {
        /// The pattern, upper case.
        pattern: &'static str,
        /// How it was written.
        case: Case,
        /// `FM`: no padding.
        fill: bool,
        /// `TH` / `th`: an ordinal suffix.
        ordinal: Option<Case>,
    },
}

/// PostgreSQL's patterns, longest first where one begins another.
const PATTERNS: &[&str] = &[
    "HH24", "HH12", "HH", "MI", "SSSSS", "SSSS", "SS", "MS", "US", "FF1", "FF2", "FF3", "FF4",
    "FF5", "FF6", "A.M.", "P.M.", "AM", "PM", "Y,YYY", "YYYY", "YYY", "YY", "IYYY", "IYY", "IY",
    "IDDD", "ID", "IW", "I", "Y", "MONTH", "MON", "MM", "DAY", "DY", "DDD", "DD", "D", "WW", "W",
    "CC", "J", "Q", "A.D.", "B.C.", "AD", "BC", "TZ", "OF",
];

/// The `n` characters of `chars` at `i`, ASCII-uppercased ("" past the end). Patterns are ASCII:
/// compared char by char (a full uppercasing can change the length: 'ß' becomes "SS").
pub(crate) fn upper_at(chars: &[char], i: usize, n: usize) -> String {
    chars
        .get(i..i + n)
        .map(|s| s.iter().map(char::to_ascii_uppercase).collect())
        .unwrap_or_default()
}

/// `template` as literal text and fields.
pub(crate) fn parse(template: &str) -> Vec<Item> {
    let chars: Vec<char> = template.chars().collect();
    let mut items = Vec::new();
    let mut literal = String::new();
    let mut i = 0;
    let upper_at = |i: usize, n: usize| upper_at(&chars, i, n);
    while i < chars.len() {
        match chars[i] {
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    literal.push(chars[i]);
                    i += 1;
                }
                i += 1;
                continue;
            }
            '\\' if i + 1 < chars.len() => {
                literal.push(chars[i + 1]);
                i += 2;
                continue;
            }
            _ => {}
        }
        let fill = upper_at(i, 2) == "FM";
        let start = if fill { i + 2 } else { i };
        let found = PATTERNS
            .iter()
            .find(|p| upper_at(start, p.chars().count()) == **p);
        match found {
            Some(p) => {
                if !literal.is_empty() {
                    items.push(Item::Literal(std::mem::take(&mut literal)));
                }
                let n = p.chars().count();
                let written: String = chars[start..start + n].iter().collect();
                let mut end = start + n;
                let ordinal = (upper_at(end, 2) == "TH").then(|| {
                    let w: String = chars[end..end + 2].iter().collect();
                    end += 2;
                    Case::of(&w)
                });
                items.push(Item::Field {
                    pattern: p,
                    case: Case::of(&written),
                    fill,
                    ordinal,
                });
                i = end;
            }
            None => {
                literal.push(chars[i]);
                i += 1;
            }
        }
    }
    if !literal.is_empty() {
        items.push(Item::Literal(literal));
    }
    items
}
