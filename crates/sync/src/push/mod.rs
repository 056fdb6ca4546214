//! Push: the user's push rules (stored, served, compiled and matched against events for many
//! users at once), evaluating them with the room's context, the notifier that records what
//! notifies (once per event where members are notified alike) and queues pushes, delivery to
//! push gateways, pushers, and unread counts.

pub(crate) mod delivery;
pub(crate) mod eval;
pub(crate) mod matching;
pub(crate) mod notifier;
pub(crate) mod pushers;
pub(crate) mod record;
pub(crate) mod rule_ops;
pub(crate) mod rules;
pub(crate) mod ruleset;
pub(crate) mod unread;
