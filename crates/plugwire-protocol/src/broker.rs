//! The bookkeeping of go-plugin's broker, without I/O: which side is which, which received
//! messages wait for which dialer, and which knocks wait for which acceptor. Time is an argument
//! (`now`), so every rule here is tested without sockets or sleeps; `plugwire-runtime` drives it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How long a dialer waits for an address or a knock acknowledgement, and how long an unclaimed
/// `ConnInfo` or knock is kept (go-plugin's 5 s).
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(5);

/// Which end of the plugin connection this side is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The host: gRPC and yamux client, opens the main stream.
    Host,
    /// The plugin: gRPC and yamux server.
    Plugin,
}

/// Received messages (`ConnInfo`s: addresses, knock acknowledgements) waiting for a dialer, by
/// id: at most one per id; extra ones are dropped, unclaimed ones are forgotten
/// [`BROKER_TIMEOUT`] after they arrived. Dialers that come first wait in line, each under a
/// [`Ticket`]: a message goes to the first of them, as in go-plugin (where the first of two
/// dials of one id succeeds and the second times out).
#[derive(Debug)]
pub struct Mailbox<M> {
    slots: HashMap<u32, Slot<M>>,
    next_ticket: u64,
}

impl<M> Default for Mailbox<M> {
    fn default() -> Self {
        Mailbox {
            slots: HashMap::new(),
            next_ticket: 0,
        }
    }
}

#[derive(Debug)]
enum Slot<M> {
    Held { message: M, expires: Instant },
    Waiting(VecDeque<Ticket>),
}

/// A dialer waiting in a [`Mailbox`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ticket(u64);

/// What [`Mailbox::deliver`] did with a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery<M> {
    /// It belongs to this waiting dialer (if that one gave up meanwhile, deliver it again).
    To(Ticket, M),
    /// Kept for a dialer to come.
    Held,
    /// Dropped: one is already waiting for that id.
    Dropped,
}

/// What [`Mailbox::claim`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim<M> {
    /// The message had already arrived.
    Ready(M),
    /// Not yet: it will be delivered to this ticket.
    Wait(Ticket),
}

impl<M> Mailbox<M> {
    /// A message for `id` arrived at `now`.
    pub fn deliver(&mut self, id: u32, message: M, now: Instant) -> Delivery<M> {
        self.purge(now);
        match self.slots.remove(&id) {
            Some(Slot::Waiting(mut line)) => match line.pop_front() {
                Some(ticket) => {
                    if !line.is_empty() {
                        self.slots.insert(id, Slot::Waiting(line));
                    }
                    Delivery::To(ticket, message)
                }
                None => self.hold(id, message, now),
            },
            Some(held @ Slot::Held { .. }) => {
                self.slots.insert(id, held);
                Delivery::Dropped
            }
            None => self.hold(id, message, now),
        }
    }

    fn hold(&mut self, id: u32, message: M, now: Instant) -> Delivery<M> {
        self.slots.insert(
            id,
            Slot::Held {
                message,
                expires: now + BROKER_TIMEOUT,
            },
        );
        Delivery::Held
    }

    /// A dialer wants the message for `id` at `now`.
    pub fn claim(&mut self, id: u32, now: Instant) -> Claim<M> {
        self.purge(now);
        match self.slots.remove(&id) {
            Some(Slot::Held { message, .. }) => Claim::Ready(message),
            waiting => {
                let ticket = Ticket(self.next_ticket);
                self.next_ticket += 1;
                let mut line = match waiting {
                    Some(Slot::Waiting(line)) => line,
                    _ => VecDeque::new(),
                };
                line.push_back(ticket);
                self.slots.insert(id, Slot::Waiting(line));
                Claim::Wait(ticket)
            }
        }
    }

    /// The dialer holding `ticket` for `id` stopped waiting.
    pub fn abandon(&mut self, id: u32, ticket: Ticket) {
        if let Some(Slot::Waiting(line)) = self.slots.get_mut(&id) {
            line.retain(|t| *t != ticket);
            if line.is_empty() {
                self.slots.remove(&id);
            }
        }
    }

    /// Forgets expired messages.
    pub fn purge(&mut self, now: Instant) {
        self.slots.retain(|_, slot| match slot {
            Slot::Held { expires, .. } => *expires > now,
            Slot::Waiting(line) => !line.is_empty(),
        });
    }

    /// How many ids have a message or a dialer waiting.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// Knocks received by the accepting side, by id: a knock for an id that is accepted opens the
/// door at once; one for an id not accepted yet waits (one per id) until it is, or
/// [`BROKER_TIMEOUT`] passes (the dialer has given up by then).
#[derive(Debug, Default)]
pub struct KnockBox {
    slots: HashMap<u32, KnockSlot>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KnockSlot {
    Accepting,
    Pending { expires: Instant },
}

impl KnockBox {
    /// A knock for `id` arrived; true when the door opens now.
    pub fn knock(&mut self, id: u32, now: Instant) -> bool {
        self.purge(now);
        match self.slots.get(&id) {
            Some(KnockSlot::Accepting) => true,
            Some(KnockSlot::Pending { .. }) => false,
            None => {
                self.slots.insert(
                    id,
                    KnockSlot::Pending {
                        expires: now + BROKER_TIMEOUT,
                    },
                );
                false
            }
        }
    }

    /// `id` is accepted from now on; true when a knock was already waiting (the door opens now).
    pub fn accept(&mut self, id: u32, now: Instant) -> bool {
        self.purge(now);
        let waiting = matches!(self.slots.get(&id), Some(KnockSlot::Pending { .. }));
        self.slots.insert(id, KnockSlot::Accepting);
        waiting
    }

    /// `id` is no longer accepted.
    pub fn stop(&mut self, id: u32) {
        self.slots.remove(&id);
    }

    /// Forgets knocks nobody accepted in time.
    pub fn purge(&mut self, now: Instant) {
        self.slots.retain(|_, slot| match slot {
            KnockSlot::Accepting => true,
            KnockSlot::Pending { expires } => *expires > now,
        });
    }

    /// How many ids are accepting or have a knock waiting.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Info {
        service_id: u32,
        address: String,
    }

    fn info(id: u32, address: &str) -> Info {
        Info {
            service_id: id,
            address: address.into(),
        }
    }

    impl Mailbox<Info> {
        fn deliver_info(&mut self, info: Info, now: Instant) -> Delivery<Info> {
            self.deliver(info.service_id, info, now)
        }
    }

    #[test]
    fn conninfo_before_dial_is_kept_one_per_id_then_expires() {
        let t0 = Instant::now();
        let mut mailbox = Mailbox::default();
        assert_eq!(mailbox.deliver_info(info(1, "/a"), t0), Delivery::Held);
        assert_eq!(mailbox.deliver_info(info(1, "/b"), t0), Delivery::Dropped);
        match mailbox.claim(1, t0 + Duration::from_secs(4)) {
            Claim::Ready(got) => assert_eq!(got.address, "/a", "the first one wins, as in Go"),
            Claim::Wait(_) => panic!("held message not found"),
        }
        // A ConnInfo for an id nobody dials is forgotten after 5 s.
        mailbox.deliver_info(info(7, "/x"), t0);
        mailbox.purge(t0 + BROKER_TIMEOUT);
        assert!(mailbox.is_empty());
        assert!(matches!(
            mailbox.claim(7, t0 + BROKER_TIMEOUT),
            Claim::Wait(_)
        ));
    }

    #[test]
    fn dial_before_conninfo_receives_it() {
        let t0 = Instant::now();
        let mut mailbox = Mailbox::default();
        let Claim::Wait(ticket) = mailbox.claim(3, t0) else {
            panic!("nothing arrived yet");
        };
        let info3 = info(3, "/c");
        assert_eq!(
            mailbox.deliver_info(info3.clone(), t0),
            Delivery::To(ticket, info3)
        );
        assert!(mailbox.is_empty());
        // An abandoned wait does not swallow a later message.
        let Claim::Wait(ticket) = mailbox.claim(4, t0) else {
            panic!("nothing arrived yet");
        };
        mailbox.abandon(4, ticket);
        assert_eq!(mailbox.deliver_info(info(4, "/d"), t0), Delivery::Held);
    }

    /// Two dialers of one id: the first in line gets the message, the second keeps waiting (and
    /// its giving up later does not disturb anything), as go-plugin's first `Dial` succeeds.
    #[test]
    fn two_dials_of_one_id_wait_in_line() {
        let t0 = Instant::now();
        let mut mailbox = Mailbox::default();
        let (Claim::Wait(first), Claim::Wait(second)) =
            (mailbox.claim(1, t0), mailbox.claim(1, t0))
        else {
            panic!("nothing arrived yet");
        };
        assert_ne!(first, second);
        let later = t0 + Duration::from_millis(50);
        let info1 = info(1, "/a");
        assert_eq!(
            mailbox.deliver_info(info1.clone(), later),
            Delivery::To(first, info1)
        );
        assert_eq!(mailbox.len(), 1, "the second dialer still waits");
        mailbox.abandon(1, first); // a late clean-up of the first one changes nothing
        assert_eq!(mailbox.len(), 1);
        let info2 = info(1, "/b");
        assert_eq!(
            mailbox.deliver_info(info2.clone(), later),
            Delivery::To(second, info2)
        );
        assert!(mailbox.is_empty());
        // The first gives up: the message goes to the second.
        let (Claim::Wait(first), Claim::Wait(second)) =
            (mailbox.claim(2, t0), mailbox.claim(2, t0))
        else {
            panic!("nothing arrived yet");
        };
        mailbox.abandon(2, first);
        let info3 = info(2, "/c");
        assert_eq!(
            mailbox.deliver_info(info3.clone(), later),
            Delivery::To(second, info3)
        );
    }

    #[test]
    fn knocks_wait_for_accept_and_expire() {
        let t0 = Instant::now();
        let mut knocks = KnockBox::default();
        assert!(!knocks.knock(1, t0), "not accepted yet: the knock waits");
        assert!(
            knocks.accept(1, t0 + Duration::from_secs(1)),
            "accept opens the waiting knock"
        );
        assert!(knocks.knock(1, t0), "accepted ids open at once");
        assert!(!knocks.knock(2, t0));
        knocks.purge(t0 + BROKER_TIMEOUT);
        assert!(
            !knocks.accept(2, t0 + BROKER_TIMEOUT),
            "the old knock expired"
        );
        knocks.stop(1);
        knocks.stop(2);
        assert!(knocks.is_empty());
    }
}
