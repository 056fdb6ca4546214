//! `next_batch` of `/search`: where the last page stopped in the chosen order, and for a
//! group's token the room or sender the group stands for. Written `r<rank>_<pos>` (by rank)
//! or `p<pos>` (most recent first), then `~R<roomId>` or `~S<userId>` for a group.

use std::fmt;

use trellis_core::{Error, Result};

/// The last result of a page, in the order of the search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Cursor {
    Rank { rank: f32, pos: i64 },
    Recent { pos: i64 },
}

/// What a group's token restricts the next page to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Only {
    Room(String),
    Sender(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SearchToken {
    pub cursor: Cursor,
    pub only: Option<Only>,
}

impl fmt::Display for SearchToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.cursor {
            Cursor::Rank { rank, pos } => write!(f, "r{rank}_{pos}")?,
            Cursor::Recent { pos } => write!(f, "p{pos}")?,
        }
        match &self.only {
            Some(Only::Room(room)) => write!(f, "~R{room}"),
            Some(Only::Sender(sender)) => write!(f, "~S{sender}"),
            None => Ok(()),
        }
    }
}

impl SearchToken {
    /// Parses a client's `next_batch`; `M_INVALID_PARAM` when it is not one of ours.
    pub fn parse(s: &str) -> Result<SearchToken> {
        let bad = || Error::invalid_param("invalid next_batch token");
        let (cursor, only) = match s.split_once('~') {
            Some((c, rest)) => {
                let only = match rest.split_at_checked(1) {
                    Some(("R", room)) if room.starts_with('!') => Only::Room(room.to_owned()),
                    Some(("S", user)) if user.starts_with('@') => Only::Sender(user.to_owned()),
                    _ => return Err(bad()),
                };
                (c, Some(only))
            }
            None => (s, None),
        };
        let cursor = if let Some(rest) = cursor.strip_prefix('r') {
            let (rank, pos) = rest.split_once('_').ok_or_else(bad)?;
            let rank: f32 = rank.parse().map_err(|_| bad())?;
            if !rank.is_finite() {
                return Err(bad());
            }
            Cursor::Rank { rank, pos: pos.parse().map_err(|_| bad())? }
        } else if let Some(pos) = cursor.strip_prefix('p') {
            Cursor::Recent { pos: pos.parse().map_err(|_| bad())? }
        } else {
            return Err(bad());
        };
        Ok(SearchToken { cursor, only })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for token in [
            SearchToken { cursor: Cursor::Rank { rank: 0.060_792_7, pos: 12 }, only: None },
            SearchToken { cursor: Cursor::Recent { pos: 7 }, only: Some(Only::Room("!a:b".into())) },
            SearchToken { cursor: Cursor::Recent { pos: 7 }, only: Some(Only::Sender("@u:b".into())) },
        ] {
            assert_eq!(SearchToken::parse(&token.to_string()).unwrap(), token);
        }
    }

    #[test]
    fn garbage_is_refused() {
        for bad in ["", "x1", "p", "pX", "r1", "rNaN_1", "p1~Xfoo", "p1~Rnoroom", "p1~S"] {
            assert!(SearchToken::parse(bad).is_err(), "{bad}");
        }
    }
}
