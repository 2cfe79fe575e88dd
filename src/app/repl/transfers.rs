//! Files on their way, as status rows just above the prompt: one row per
//! transfer that has run for a while (`sending report.pdf to bob:
//! 3.2/10.0 MiB (32%), 1.5 MiB/s, 5s left`), drawn again at most four times
//! a second, gone once the transfer is over (its outcome is printed as a
//! notice). Pure: the times come in as arguments.
//!
//! As with `chat send --file`'s bar ([`crate::app::progress`]), a row
//! appears only once a transfer has run for [`SHOW_AFTER`] and is not
//! finished, so small files never flash one, and the rate is measured over
//! the recent part of the transfer.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::conversations::Id;
use super::screen;
use crate::app::progress::{REDRAW, RateWindow, SHOW_AFTER};

/// Most status rows shown at once; the last says how many more there are.
const MAX_ROWS: usize = 3;

/// Narrowest the names of the files may be cut to.
const MIN_NAMES: usize = 12;

/// Which way the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    /// Our offer.
    Sending,
    /// The peer's offer.
    Receiving,
}

/// A transfer: its conversation, its direction, its offer number.
pub type Key = (Id, Direction, u64);

/// One transfer's progress.
struct Transfer {
    /// The offer's names, safe for the terminal ("report.pdf").
    names: String,
    /// The peer's name, safe for the terminal.
    peer: String,
    total: u64,
    done: u64,
    /// When the first count of bytes came.
    started: Option<Instant>,
    rate: RateWindow,
    /// Has a row (from the time it has run for [`SHOW_AFTER`] to its end).
    shown: bool,
}

/// The transfers of every conversation.
#[derive(Default)]
pub struct Transfers {
    entries: BTreeMap<Key, Transfer>,
    last_draw: Option<Instant>,
}

impl Transfers {
    /// A transfer of `total` bytes of the files `names` with `peer` (both
    /// safe for the terminal). Its clock starts with its first
    /// [`Transfers::update`].
    pub fn add(&mut self, key: Key, names: String, peer: String, total: u64) {
        self.entries.entry(key).or_insert(Transfer {
            names,
            peer,
            total,
            done: 0,
            started: None,
            rate: RateWindow::default(),
            shown: false,
        });
    }

    /// `done` bytes of transfer `key` have gone, at `now`. Returns whether
    /// the rows should be drawn again now: a row appears, its last byte has
    /// gone, or the rows were last drawn [`REDRAW`] ago or more. A transfer not (or no longer)
    /// added is ignored.
    pub fn update(&mut self, key: Key, done: u64, now: Instant) -> bool {
        let Some(transfer) = self.entries.get_mut(&key) else {
            return false;
        };
        let started = *transfer.started.get_or_insert(now);
        let at = now.saturating_duration_since(started);
        transfer.rate.record(at, done);
        let before = std::mem::replace(&mut transfer.done, done);
        if !transfer.shown && at >= SHOW_AFTER && done < transfer.total {
            transfer.shown = true;
            return true;
        }
        // The last byte is drawn at once: the row then waits for the verdict.
        let finished = before < transfer.total && done >= transfer.total;
        transfer.shown && (finished || self.last_draw.is_none_or(|last| now >= last + REDRAW))
    }

    /// Transfer `key` is over; returns whether it had a row.
    pub fn remove(&mut self, key: Key) -> bool {
        self.entries.remove(&key).is_some_and(|t| t.shown)
    }

    /// Conversation `id` is over, and its transfers with it; returns
    /// whether any had a row.
    pub fn remove_conversation(&mut self, id: Id) -> bool {
        let mut had_row = false;
        self.entries.retain(|key, transfer| {
            let keep = key.0 != id;
            had_row |= !keep && transfer.shown;
            keep
        });
        had_row
    }

    /// The rows to draw at `now` on a terminal `width` columns wide (none
    /// when nothing has run long enough). Notes the time, for
    /// [`Transfers::update`].
    pub fn rows(&mut self, now: Instant, width: usize) -> Vec<String> {
        self.last_draw = Some(now);
        let budget = screen::budget(width);
        let shown: Vec<(&Key, &Transfer)> = self.entries.iter().filter(|(_, t)| t.shown).collect();
        let mut rows = Vec::new();
        for (i, (key, transfer)) in shown.iter().enumerate() {
            if i + 1 == MAX_ROWS && shown.len() > MAX_ROWS {
                rows.push(format!("and {} more transfers", shown.len() - i));
                break;
            }
            let rate = transfer
                .started
                .and_then(|s| transfer.rate.per_second(now.saturating_duration_since(s)));
            rows.push(row(
                key.1,
                &transfer.names,
                &transfer.peer,
                (transfer.done, transfer.total),
                rate,
                budget,
            ));
        }
        rows
    }
}

/// One status row, no wider than `budget` columns: `sending NAMES to PEER:
/// DONE/TOTAL UNIT (P%), RATE/s, T left`. The names are cut first when the
/// row would be too wide. Every row starts with "sending" or "receiving",
/// so it cannot pass for a peer's row.
pub fn row(
    direction: Direction,
    names: &str,
    peer: &str,
    (done, total): (u64, u64),
    rate: Option<f64>,
    budget: usize,
) -> String {
    let (verb, with) = match direction {
        Direction::Sending => ("sending", "to"),
        Direction::Receiving => ("receiving", "from"),
    };
    let done = done.min(total);
    let percent = (u128::from(done) * 100)
        .checked_div(u128::from(total))
        .unwrap_or(100);
    let unit = Unit::for_amount(total);
    let mut figures = format!(
        "{}/{} {} ({percent}%)",
        unit.amount(done),
        unit.amount(total),
        unit.name
    );
    if let Some(rate) = rate.filter(|r| *r >= 1.0 && done < total) {
        let left = Duration::from_secs_f64(((total - done) as f64 / rate).min(359_999.0));
        let unit = Unit::for_amount(rate as u64);
        figures.push_str(&format!(
            ", {} {}/s, {} left",
            unit.amount(rate as u64),
            unit.name,
            short_duration(left)
        ));
    }
    let peer = screen::truncate(peer, budget / 4);
    let fixed = format!(" {with} {peer}: {figures}");
    let room = budget.saturating_sub(screen::width(verb) + 1 + screen::width(&fixed));
    let names = screen::truncate(names, room.max(MIN_NAMES));
    screen::truncate(&format!("{verb} {names}{fixed}"), budget)
}

/// A unit for amounts of bytes.
struct Unit {
    bytes: u64,
    name: &'static str,
}

impl Unit {
    /// The largest unit of which `amount` holds at least one.
    fn for_amount(amount: u64) -> Self {
        [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")]
            .into_iter()
            .map(|(shift, name)| Unit {
                bytes: 1 << shift,
                name,
            })
            .find(|unit| amount >= unit.bytes)
            .unwrap_or(Unit {
                bytes: 1,
                name: "B",
            })
    }

    /// `amount` in this unit: "12.3", or "512" for bytes.
    fn amount(&self, amount: u64) -> String {
        if self.bytes == 1 {
            amount.to_string()
        } else {
            format!("{:.1}", amount as f64 / self.bytes as f64)
        }
    }
}

/// A duration in a few characters: "7s", "2m05s", "1h02m".
pub fn short_duration(duration: Duration) -> String {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rows_show_name_bytes_rate_and_time_left() {
        type Case<'a> = (
            Direction,
            &'a str,
            &'a str,
            (u64, u64),
            Option<f64>,
            usize,
            &'a str,
        );
        let long = "n".repeat(100);
        let cases: &[Case] = &[
            (
                Direction::Sending,
                "report.pdf",
                "bob",
                (3 * MIB, 10 * MIB),
                Some(MIB as f64),
                80,
                "sending report.pdf to bob: 3.0/10.0 MiB (30%), 1.0 MiB/s, 7s left",
            ),
            (
                Direction::Receiving,
                "photos (12 files)",
                "ada",
                (512, 1000),
                Some(100.0),
                80,
                "receiving photos (12 files) from ada: 512/1000 B (51%), 100 B/s, 5s left",
            ),
            // No rate yet: no time left.
            (
                Direction::Receiving,
                "a.txt",
                "ada",
                (512, 2048),
                None,
                80,
                "receiving a.txt from ada: 0.5/2.0 KiB (25%)",
            ),
            // Done: no rate, no time left.
            (
                Direction::Sending,
                "x",
                "y",
                (10, 10),
                Some(5.0),
                80,
                "sending x to y: 10/10 B (100%)",
            ),
            // Nothing to send counts as done, not as a division by zero.
            (
                Direction::Sending,
                "empty",
                "y",
                (0, 0),
                None,
                80,
                "sending empty to y: 0/0 B (100%)",
            ),
            (
                Direction::Sending,
                "big",
                "y",
                (3 << 40, 5 << 40),
                Some(2.0 * (1u64 << 30) as f64),
                80,
                "sending big to y: 3.0/5.0 TiB (60%), 2.0 GiB/s, 17m04s left",
            ),
            // Long names are cut, the peer's name and the figures kept.
            (
                Direction::Receiving,
                &long,
                "ada",
                (0, 2048),
                None,
                50,
                "receiving nnnnnnnnnnn\u{2026} from ada: 0.0/2.0 KiB (0%)",
            ),
        ];
        for (direction, names, peer, bytes, rate, width, expected) in cases {
            let budget = screen::budget(*width);
            let shown = row(*direction, names, peer, *bytes, *rate, budget);
            assert_eq!(shown, *expected);
            assert!(screen::width(&shown) <= budget, "{shown}");
        }
    }

    #[test]
    fn rows_always_fit_and_never_start_like_a_peer_row() {
        for width in [1, 16, 20, 40, 80, 200] {
            let wide = "\u{65e5}".repeat(80);
            for names in ["[bob \u{2713}] hi", "\u{2502} x", &wide] {
                let budget = screen::budget(width);
                let shown = row(
                    Direction::Sending,
                    names,
                    names,
                    (1, u64::MAX),
                    Some(1e9),
                    budget,
                );
                assert!(screen::width(&shown) <= budget, "{shown}");
                assert!(shown.starts_with("sending "), "{shown}");
            }
        }
    }

    #[test]
    fn durations_are_short() {
        for (seconds, shown) in [
            (0.0, "0s"),
            (0.2, "1s"),
            (7.0, "7s"),
            (59.5, "1m00s"),
            (125.0, "2m05s"),
            (3600.0, "1h00m"),
            (3725.0, "1h02m"),
            (359_999.0, "99h59m"),
        ] {
            assert_eq!(short_duration(Duration::from_secs_f64(seconds)), shown);
        }
    }

    #[test]
    fn a_row_appears_after_a_while_and_is_drawn_at_most_four_times_a_second() {
        let t0 = Instant::now();
        let key = (1, Direction::Sending, 4);
        let mut transfers = Transfers::default();
        // Not added (or already over): ignored.
        assert!(!transfers.update(key, 5, t0));
        transfers.add(key, "big".into(), "bob".into(), 100 * MIB);
        assert!(!transfers.update(key, 0, t0));
        assert!(!transfers.update(key, MIB, t0 + ms(1000)));
        assert!(transfers.rows(t0 + ms(1000), 80).is_empty());
        // Shown from SHOW_AFTER on.
        assert!(transfers.update(key, 2 * MIB, t0 + SHOW_AFTER));
        let rows = transfers.rows(t0 + SHOW_AFTER, 80);
        assert_eq!(rows.len(), 1);
        assert!(
            rows[0].starts_with("sending big to bob: 2.0/100.0 MiB (2%), 1.3 MiB/s, "),
            "{rows:?}"
        );
        // Then once per REDRAW, however many updates come.
        let drawn = (1..=100u64)
            .filter(|i| {
                let now = t0 + SHOW_AFTER + ms(i * 10);
                let due = transfers.update(key, 2 * MIB + i * 10_000, now);
                if due {
                    transfers.rows(now, 80);
                }
                due
            })
            .count();
        assert_eq!(drawn, 4, "1 s of updates every 10 ms");
        // The last byte, at once.
        assert!(transfers.update(key, 100 * MIB, t0 + SHOW_AFTER + ms(1001)));
        let rows = transfers.rows(t0 + SHOW_AFTER + ms(1001), 80);
        assert_eq!(rows, ["sending big to bob: 100.0/100.0 MiB (100%)"]);
        assert!(!transfers.update(key, 100 * MIB, t0 + SHOW_AFTER + ms(1002)));
        // Over: the row goes.
        assert!(transfers.remove(key));
        assert!(transfers.rows(t0 + ms(3000), 80).is_empty());
        assert!(!transfers.update(key, 99 * MIB, t0 + ms(4000)));
    }

    #[test]
    fn a_transfer_that_ends_quickly_never_has_a_row() {
        let t0 = Instant::now();
        let key = (1, Direction::Receiving, 1);
        let mut transfers = Transfers::default();
        transfers.add(key, "small".into(), "ada".into(), MIB);
        assert!(!transfers.update(key, MIB / 2, t0));
        // Finished by the time it would show.
        assert!(!transfers.update(key, MIB, t0 + SHOW_AFTER * 2));
        assert!(!transfers.remove(key));
    }

    #[test]
    fn many_transfers_take_three_rows_and_end_with_their_conversation() {
        let t0 = Instant::now();
        let mut transfers = Transfers::default();
        for offer in 1..=5 {
            let key = (offer % 2, Direction::Receiving, offer);
            transfers.add(key, format!("f{offer}"), "ada".into(), 10 * MIB);
            transfers.update(key, 0, t0);
            transfers.update(key, MIB, t0 + SHOW_AFTER);
        }
        let rows = transfers.rows(t0 + SHOW_AFTER, 80);
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(rows[2], "and 3 more transfers");
        assert!(transfers.remove_conversation(1));
        let rows = transfers.rows(t0 + SHOW_AFTER, 80);
        assert_eq!(
            rows.len(),
            2,
            "conversation 0 keeps offers 2 and 4: {rows:?}"
        );
        assert!(rows[0].starts_with("receiving f2 from ada: "), "{rows:?}");
        assert!(!transfers.remove_conversation(1));
    }
}
