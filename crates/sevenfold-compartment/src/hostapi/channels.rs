//! `AllowedApplicationConnections`: message channels between apps, open only
//! when both manifests list each other.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use uuid::Uuid;

/// Messages waiting per app.
pub const MAX_QUEUED: usize = 64;
/// Largest message.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Why a message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelError {
    /// One of the two manifests does not list the other.
    Denied,
    /// No such app on this device.
    UnknownPeer,
    /// The peer's queue is full, or the message too large.
    Full,
}

#[derive(Debug, Default)]
struct Mailbox {
    peers: Vec<Uuid>,
    queue: VecDeque<(Uuid, Vec<u8>)>,
}

/// The device's channel switchboard.
#[derive(Debug, Default)]
pub struct ChannelHub {
    boxes: Mutex<HashMap<Uuid, Mailbox>>,
}

impl ChannelHub {
    /// An empty switchboard.
    pub fn new() -> ChannelHub {
        ChannelHub::default()
    }

    /// Registers an app and the peers its manifest lists (replacing an
    /// earlier registration, as on an update; waiting messages are kept).
    pub fn register(&self, app: Uuid, peers: &[Uuid]) {
        let mut boxes = self.boxes.lock().unwrap_or_else(PoisonError::into_inner);
        boxes.entry(app).or_default().peers = peers.to_vec();
    }

    /// Removes an app; messages waiting for it are dropped.
    pub fn unregister(&self, app: Uuid) {
        let mut boxes = self.boxes.lock().unwrap_or_else(PoisonError::into_inner);
        boxes.remove(&app);
    }

    /// Queues `message` from `from` for `to`.
    ///
    /// # Errors
    /// [`ChannelError`].
    pub fn send(&self, from: Uuid, to: Uuid, message: Vec<u8>) -> Result<(), ChannelError> {
        let mut boxes = self.boxes.lock().unwrap_or_else(PoisonError::into_inner);
        let sender_lists = boxes.get(&from).is_some_and(|b| b.peers.contains(&to));
        if !sender_lists {
            return Err(ChannelError::Denied);
        }
        let peer = boxes.get_mut(&to).ok_or(ChannelError::UnknownPeer)?;
        if !peer.peers.contains(&from) {
            return Err(ChannelError::Denied);
        }
        if peer.queue.len() >= MAX_QUEUED || message.len() > MAX_MESSAGE {
            return Err(ChannelError::Full);
        }
        peer.queue.push_back((from, message));
        Ok(())
    }

    /// Takes the oldest message for `app` if it fits in `room` bytes.
    /// `Err(len)` when the next message is larger than `room` (it stays queued).
    pub fn receive(&self, app: Uuid, room: usize) -> Result<Option<(Uuid, Vec<u8>)>, usize> {
        let mut boxes = self.boxes.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(mailbox) = boxes.get_mut(&app) else {
            return Ok(None);
        };
        match mailbox.queue.front() {
            None => Ok(None),
            Some((_, msg)) if msg.len() > room => Err(msg.len()),
            Some(_) => Ok(mailbox.queue.pop_front()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_need_both_sides() {
        let hub = ChannelHub::new();
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        hub.register(a, &[b, c]);
        hub.register(b, &[a]);
        hub.register(c, &[]);
        assert_eq!(hub.send(a, b, b"hi".to_vec()), Ok(()));
        assert_eq!(hub.receive(b, 16), Ok(Some((a, b"hi".to_vec()))));
        assert_eq!(hub.send(a, c, b"x".to_vec()), Err(ChannelError::Denied));
        assert_eq!(hub.send(c, a, b"x".to_vec()), Err(ChannelError::Denied));
        assert_eq!(hub.send(b, c, b"x".to_vec()), Err(ChannelError::Denied));
        hub.register(a, &[Uuid::from_u128(9)]);
        assert_eq!(
            hub.send(a, Uuid::from_u128(9), vec![]),
            Err(ChannelError::UnknownPeer)
        );
        hub.register(a, &[b]);
        hub.send(b, a, vec![0; 10]).unwrap();
        assert_eq!(hub.receive(a, 4), Err(10));
        assert_eq!(hub.receive(a, 10).unwrap().unwrap().1.len(), 10);
    }
}
