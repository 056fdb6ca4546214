//! Stream tokens: the opaque `next_batch` / `since` / `prev_batch` / `from` / `end` strings.
//!
//! A token is a position in each of the server's streams: "everything up to and including
//! these positions has been seen". Positions are only announced once every lower position has
//! committed (the rooms service's stream tracker for events; a counter row updated inside the
//! writing transaction for the other streams), so a token never skips anything. The same token
//! works for `/sync` and `/messages` (which uses the events position), which is what makes
//! `prev_batch` interchangeable with pagination tokens.

use std::{fmt, str::FromStr};

use crate::error::Error;

/// A position in one stream.
pub type StreamPos = i64;

/// The server's streams, in the order their positions appear in a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    /// Room events (timelines and state), written by the rooms service.
    Events,
    /// Read receipts.
    Receipts,
    /// Typing notifications.
    Typing,
    /// Global and per-room account data (tags included).
    AccountData,
    /// Presence.
    Presence,
    /// Send-to-device messages.
    ToDevice,
    /// Device-list changes.
    DeviceLists,
}

impl Stream {
    pub const ALL: [Stream; 7] = [
        Stream::Events,
        Stream::Receipts,
        Stream::Typing,
        Stream::AccountData,
        Stream::Presence,
        Stream::ToDevice,
        Stream::DeviceLists,
    ];

    /// The row of `stream_positions` holding this stream's announced position.
    pub fn table_name(self) -> &'static str {
        match self {
            Stream::Events => "events",
            Stream::Receipts => "receipts",
            Stream::Typing => "typing",
            Stream::AccountData => "account_data",
            Stream::Presence => "presence",
            Stream::ToDevice => "to_device",
            Stream::DeviceLists => "device_lists",
        }
    }

    /// One-letter tag used on the bus.
    pub fn tag(self) -> char {
        match self {
            Stream::Events => 'e',
            Stream::Receipts => 'r',
            Stream::Typing => 't',
            Stream::AccountData => 'a',
            Stream::Presence => 'p',
            Stream::ToDevice => 'd',
            Stream::DeviceLists => 'l',
        }
    }

    pub fn from_tag(tag: char) -> Option<Stream> {
        Stream::ALL.into_iter().find(|s| s.tag() == tag)
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct StreamToken {
    /// The events position (what `/messages` pages by).
    pub events: StreamPos,
    rest: [StreamPos; 6],
}

impl StreamToken {
    /// A token at `events` in the events stream and the start of every other stream.
    pub fn new(events: StreamPos) -> StreamToken {
        StreamToken { events, rest: [0; 6] }
    }

    pub fn get(&self, stream: Stream) -> StreamPos {
        match stream.index() {
            0 => self.events,
            i => self.rest[i - 1],
        }
    }

    pub fn with(mut self, stream: Stream, pos: StreamPos) -> StreamToken {
        self.set(stream, pos);
        self
    }

    pub fn set(&mut self, stream: Stream, pos: StreamPos) {
        match stream.index() {
            0 => self.events = pos,
            i => self.rest[i - 1] = pos,
        }
    }

    /// Component-wise maximum.
    pub fn max(self, other: StreamToken) -> StreamToken {
        let mut out = self;
        for s in Stream::ALL {
            out.set(s, self.get(s).max(other.get(s)));
        }
        out
    }

    /// Whether any stream is ahead of `other`.
    pub fn is_ahead_of(&self, other: &StreamToken) -> bool {
        Stream::ALL.iter().any(|s| self.get(*s) > other.get(*s))
    }
}

impl fmt::Display for StreamToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Trailing zero positions are left out, so young tokens stay short ("s42").
        let last = self.rest.iter().rposition(|p| *p != 0).map_or(0, |i| i + 1);
        write!(f, "s{}", self.events)?;
        for p in &self.rest[..last] {
            write!(f, "_{p}")?;
        }
        Ok(())
    }
}

impl FromStr for StreamToken {
    type Err = Error;

    fn from_str(s: &str) -> Result<StreamToken, Error> {
        let bad = || Error::invalid_param("invalid stream token");
        let rest = s.strip_prefix('s').ok_or_else(bad)?;
        let mut token = StreamToken::default();
        for (i, part) in rest.split('_').enumerate() {
            let pos = part.parse::<StreamPos>().map_err(|_| bad())?;
            if pos < 0 {
                return Err(bad());
            }
            // Components of streams this version does not know are ignored.
            if let Some(stream) = Stream::ALL.get(i) {
                token.set(*stream, pos);
            }
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = StreamToken::new(42);
        assert_eq!(t.to_string(), "s42");
        assert_eq!("s42".parse::<StreamToken>().unwrap(), t);
        let full = StreamToken::new(1).with(Stream::Typing, 3).with(Stream::DeviceLists, 9);
        assert_eq!(full.to_string(), "s1_0_3_0_0_0_9");
        assert_eq!(full.to_string().parse::<StreamToken>().unwrap(), full);
        assert_eq!("s5_0_0_0_0_0_0_77".parse::<StreamToken>().unwrap().events, 5, "future streams ignored");
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "42", "s", "s-1", "sx", "t12", "s1_x", "s1_-2"] {
            assert!(bad.parse::<StreamToken>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ordering_helpers() {
        let a = StreamToken::new(5).with(Stream::Receipts, 1);
        let b = StreamToken::new(3).with(Stream::Receipts, 4);
        let m = a.max(b);
        assert_eq!((m.events, m.get(Stream::Receipts)), (5, 4));
        assert!(b.is_ahead_of(&a) && a.is_ahead_of(&b));
        assert!(!a.is_ahead_of(&m));
        for s in Stream::ALL {
            assert_eq!(Stream::from_tag(s.tag()), Some(s));
        }
    }
}
