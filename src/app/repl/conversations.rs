//! The open conversations and where typed lines go.
//!
//! A conversation joins the registry when it opens and leaves when it ends.
//! The current target is the conversation a new line goes to; it may be no
//! one. An arrival becomes the target only when there is none, so a new
//! peer never takes the target from a user who is typing to someone else.
//! A line remembers whom it was begun for (its [`Addressee`]): text typed
//! while no one was connected is never sent to whoever connects next.
//! `/to` chooses the target ([`Conversations::choose`]); when the target
//! ends, none is chosen until the user says (or until the next arrival, if
//! none is open).

use std::sync::{Arc, Mutex};

use super::super::routing::Open;
use super::super::trust_policy::PeerView;
use super::screen;
use crate::net::conversation::Sender;
use crate::net::slots::Slot;
use crate::protocol::CloseReason;

/// A conversation's number within this run of the program.
pub type Id = u64;

/// One open conversation.
pub struct Entry {
    /// Its number.
    pub id: Id,
    /// The peer as shown.
    pub view: Arc<Mutex<PeerView>>,
    /// For sending; `None` while the conversation is still starting.
    pub sender: Option<Sender>,
    /// Its place in `chat serve`'s conversation table, if it holds one.
    pub slot: Option<Arc<Slot>>,
    /// Why it had to give way to a newcomer, if it did.
    pub evicted: Option<CloseReason>,
}

impl Entry {
    /// The peer's name as shown.
    pub fn name(&self) -> String {
        screen::name(&self.view.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Whom a line (or a message of several lines) is for, fixed when the user
/// began typing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addressee {
    /// No conversation was open.
    NoOne,
    /// Conversations were open, and none was chosen.
    Unchosen,
    /// This conversation.
    Conversation(Id),
    /// The conversation it was for has ended (with the peer so named).
    Ended(String),
}

/// The registry.
#[derive(Default)]
pub struct Conversations {
    entries: Vec<Entry>,
    target: Option<Id>,
    next_id: Id,
}

impl Conversations {
    /// Registers a conversation that is starting, numbered `id` if given
    /// (its slot's number in `chat serve`), else the next number; it becomes
    /// the target if there is none.
    pub fn add(&mut self, view: Arc<Mutex<PeerView>>, slot: Option<Arc<Slot>>) -> Id {
        let id = match &slot {
            Some(slot) => slot.id(),
            None => self.next_id + 1,
        };
        self.next_id = self.next_id.max(id);
        self.entries.push(Entry {
            id,
            view,
            sender: None,
            slot,
            evicted: None,
        });
        if self.target.is_none() {
            self.target = Some(id);
        }
        id
    }

    /// Makes `id` the target; false if it is not open.
    pub fn choose(&mut self, id: Id) -> bool {
        let open = self.get(id).is_some();
        if open {
            self.target = Some(id);
        }
        open
    }

    /// The current target, if one is chosen.
    pub fn target(&self) -> Option<Id> {
        self.target
    }

    /// Records that conversation `id` gave way to a newcomer.
    pub fn evicted(&mut self, id: Id, reason: CloseReason) {
        if let Some(entry) = self.entries.iter_mut().find(|e| e.id == id) {
            entry.evicted = Some(reason);
        }
    }

    /// The open conversations by number and name, for [`routing`](super::super::routing).
    pub fn open(&self) -> Vec<Open> {
        self.entries
            .iter()
            .map(|e| Open {
                id: e.id,
                name: e.name(),
            })
            .collect()
    }

    /// The conversation has started: lines can be sent to it. False if it
    /// has already ended.
    pub fn started(&mut self, id: Id, sender: Sender) -> bool {
        match self.entries.iter_mut().find(|e| e.id == id) {
            Some(entry) => {
                entry.sender = Some(sender);
                true
            }
            None => false,
        }
    }

    /// The conversation has ended.
    pub fn remove(&mut self, id: Id) -> Option<Entry> {
        let at = self.entries.iter().position(|e| e.id == id)?;
        let entry = self.entries.remove(at);
        if self.target == Some(id) {
            self.target = None;
        }
        Some(entry)
    }

    /// An open conversation.
    pub fn get(&self, id: Id) -> Option<&Entry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// Whom a line begun now is for.
    pub fn addressee(&self) -> Addressee {
        match self.target {
            Some(id) => Addressee::Conversation(id),
            None if self.entries.is_empty() => Addressee::NoOne,
            None => Addressee::Unchosen,
        }
    }

    /// Whether another open conversation shows the same name as `id`: then
    /// its label and prompt carry its number too, which no peer's name can
    /// (a `#` in a name is shown escaped).
    pub fn shares_name(&self, id: Id) -> bool {
        let Some(name) = self.get(id).map(Entry::name) else {
            return false;
        };
        self.entries.iter().any(|e| e.id != id && e.name() == name)
    }

    /// Whether no conversation is open.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every open conversation.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::trust_policy::Standing;

    fn view(name: &str) -> Arc<Mutex<PeerView>> {
        Arc::new(Mutex::new(PeerView {
            key: crate::crypto::test_keys::initiator().public().clone(),
            nickname: name.into(),
            address: None,
            standing: Standing::Unverified,
            pinned_now: false,
            note: None,
        }))
    }

    #[test]
    fn an_arrival_takes_the_target_only_when_there_is_none() {
        let mut conversations = Conversations::default();
        assert_eq!(conversations.addressee(), Addressee::NoOne);
        let ada = conversations.add(view("ada"), None);
        assert_eq!(conversations.addressee(), Addressee::Conversation(ada));
        let carol = conversations.add(view("carol"), None);
        assert_eq!(conversations.addressee(), Addressee::Conversation(ada));
        assert_eq!(conversations.get(ada).unwrap().name(), "ada");
        conversations.remove(ada);
        // Carol is open, but no one chose her.
        assert_eq!(conversations.addressee(), Addressee::Unchosen);
        assert!(!conversations.is_empty());
        assert!(conversations.choose(carol));
        assert_eq!(conversations.addressee(), Addressee::Conversation(carol));
        assert!(!conversations.choose(ada));
        conversations.remove(carol);
        assert_eq!(conversations.addressee(), Addressee::NoOne);
        let dave = conversations.add(view("dave"), None);
        assert_eq!(conversations.addressee(), Addressee::Conversation(dave));
        assert!(!conversations.shares_name(dave));
        let other_dave = conversations.add(view("dave"), None);
        assert!(conversations.shares_name(dave) && conversations.shares_name(other_dave));
    }
}
