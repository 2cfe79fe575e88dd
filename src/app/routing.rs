//! Where a typed line goes when several conversations are open: the rules
//! the REPL and the batch loop of `chat serve` share. Pure: text in,
//! decisions out.
//!
//! * `@NAME text` sends one line to the conversation called NAME (or
//!   numbered N: `@#3 text`, `@3 text`), whatever the current target is;
//!   `@@text` sends `@text` to the current target.
//! * `/to NAME` (or `/to #3`) chooses the current target.
//! * A name is the peer's label as shown (the local name of a pinned key,
//!   else the nickname it announced). A name two open conversations share is
//!   ambiguous: the user is asked for the number, which `/who` shows.

/// What a line typed at the prompt says about where it goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Routed<'a> {
    /// No `@`: the line goes to the current target.
    Plain(&'a str),
    /// `@NAME text`: this line goes to NAME (`text` may be empty).
    To { who: &'a str, text: &'a str },
}

/// Splits `@NAME text` from a line; `@@text` is the text `@text`.
pub fn split(line: &str) -> Routed<'_> {
    let Some(rest) = line.strip_prefix('@') else {
        return Routed::Plain(line);
    };
    if rest.starts_with('@') {
        return Routed::Plain(rest);
    }
    match rest.split_once(char::is_whitespace) {
        Some((who, text)) => Routed::To { who, text },
        None => Routed::To {
            who: rest,
            text: "",
        },
    }
}

/// An open conversation as the rules see it: its number and its name(s)
/// as shown.
#[derive(Debug, Clone)]
pub struct Open {
    /// Its number (the `#N` of `/who`).
    pub id: u64,
    /// Its name as shown.
    pub name: String,
}

/// Why a name found no conversation.
#[derive(Debug, PartialEq, Eq)]
pub enum NotFound {
    /// No open conversation is so called (or numbered).
    Nobody,
    /// Several are: their numbers.
    Ambiguous(Vec<u64>),
}

impl NotFound {
    /// A line for the user: why `who` found no conversation, and what is open.
    pub fn explain(&self, who: &str, open: &[Open]) -> String {
        match self {
            NotFound::Nobody if open.is_empty() => {
                format!("no conversation is called {who}: no one is connected")
            }
            NotFound::Nobody => format!(
                "no open conversation is called {who}; open: {}",
                describe_open(open)
            ),
            NotFound::Ambiguous(ids) => {
                let numbers: Vec<String> = ids.iter().map(|id| format!("#{id}")).collect();
                format!(
                    "{} open conversations are called {who} ({}): use the number instead",
                    ids.len(),
                    numbers.join(", ")
                )
            }
        }
    }
}

/// The open conversations as `#1 ada, #3 carol`.
pub fn describe_open(open: &[Open]) -> String {
    open.iter()
        .map(|o| format!("#{} {}", o.id, o.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The conversation `who` names: `#N` or `N` for a number, else a name as
/// shown (exactly, or else ignoring case if only one matches so).
pub fn find(who: &str, open: &[Open]) -> Result<u64, NotFound> {
    let number = who.strip_prefix('#').unwrap_or(who);
    if let Ok(id) = number.parse::<u64>() {
        if open.iter().any(|o| o.id == id) {
            return Ok(id);
        }
        if who.starts_with('#') {
            return Err(NotFound::Nobody);
        }
    }
    let exact: Vec<u64> = open
        .iter()
        .filter(|o| o.name == who)
        .map(|o| o.id)
        .collect();
    let matches = if exact.is_empty() {
        open.iter()
            .filter(|o| o.name.to_lowercase() == who.to_lowercase())
            .map(|o| o.id)
            .collect()
    } else {
        exact
    };
    match matches.as_slice() {
        [] => Err(NotFound::Nobody),
        [id] => Ok(*id),
        _ => Err(NotFound::Ambiguous(matches)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> Vec<Open> {
        [
            (1, "ada"),
            (3, "carol"),
            (4, "Dave"),
            (7, "dave"),
            (8, "eve"),
            (9, "eve"),
        ]
        .iter()
        .map(|&(id, name)| Open {
            id,
            name: name.into(),
        })
        .collect()
    }

    #[test]
    fn splits_an_addressed_line() {
        assert_eq!(split("hello"), Routed::Plain("hello"));
        assert_eq!(
            split("@ada hi there"),
            Routed::To {
                who: "ada",
                text: "hi there"
            }
        );
        assert_eq!(
            split("@ada"),
            Routed::To {
                who: "ada",
                text: ""
            }
        );
        assert_eq!(split("@@ada hi"), Routed::Plain("@ada hi"));
        assert_eq!(split("mail me @ada"), Routed::Plain("mail me @ada"));
    }

    #[test]
    fn finds_by_number_and_by_name() {
        let open = open();
        assert_eq!(find("ada", &open), Ok(1));
        assert_eq!(find("#3", &open), Ok(3));
        assert_eq!(find("3", &open), Ok(3));
        assert_eq!(find("#2", &open), Err(NotFound::Nobody));
        assert_eq!(find("CAROL", &open), Ok(3));
        // An exact match wins over one that differs in case.
        assert_eq!(find("dave", &open), Ok(7));
        assert_eq!(find("DAVE", &open), Err(NotFound::Ambiguous(vec![4, 7])));
        assert_eq!(find("eve", &open), Err(NotFound::Ambiguous(vec![8, 9])));
        assert_eq!(find("mallory", &open), Err(NotFound::Nobody));
        assert!(
            NotFound::Ambiguous(vec![8, 9])
                .explain("eve", &open)
                .contains("#8, #9")
        );
    }
}
