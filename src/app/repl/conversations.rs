//! The open conversations and where typed lines go.
//!
//! A conversation joins the registry when it opens and leaves when it ends.
//! The current target is the conversation a new line goes to; it may be no
//! one. An arrival becomes the target only when there is none, so a new
//! peer never takes the target from a user who is typing to someone else.
//! A line remembers whom it was begun for (its [`Addressee`]): text typed
//! while no one was connected is never sent to whoever connects next.

use std::sync::{Arc, Mutex};

use super::super::trust_policy::PeerView;
use super::screen;
use crate::net::conversation::Sender;

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
    /// Registers a conversation that is starting; it becomes the target if
    /// there is none.
    pub fn add(&mut self, view: Arc<Mutex<PeerView>>) -> Id {
        self.next_id += 1;
        let id = self.next_id;
        self.entries.push(Entry {
            id,
            view,
            sender: None,
        });
        if self.target.is_none() {
            self.target = Some(id);
        }
        id
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
            None => Addressee::NoOne,
        }
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
        let ada = conversations.add(view("ada"));
        assert_eq!(conversations.addressee(), Addressee::Conversation(ada));
        let _carol = conversations.add(view("carol"));
        assert_eq!(conversations.addressee(), Addressee::Conversation(ada));
        assert_eq!(conversations.get(ada).unwrap().name(), "ada");
        conversations.remove(ada);
        assert_eq!(conversations.addressee(), Addressee::NoOne);
        assert!(!conversations.is_empty());
    }
}
