//! The hub's channel: a ring of the last messages, read by every subscriber
//! at its own pace, and the subscribers' wake-ups, grouped by connection.
//!
//! Like a broadcast channel, with two differences that matter at 10 000
//! subscribers. A subscriber that is caught up registers its waker without a
//! lock shared with the others (a broadcast channel takes one for every
//! "nothing yet"), and a message wakes the subscribers one connection after
//! another: the streams of one HTTP/2 connection then run together and the
//! connection sends their frames in one write (see `server::conn`), instead
//! of the connections' streams interleaving over the whole fan-out.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use arc_swap::ArcSwapOption;
use futures_util::task::AtomicWaker;

/// What a subscriber receives.
#[derive(Debug, PartialEq)]
pub enum Received<T> {
    /// The next message.
    Message(T),
    /// Messages were overwritten before this subscriber read them; it goes
    /// on with the messages sent from now on.
    Lagged,
    /// The channel was closed and this subscriber has read everything.
    Closed,
}

/// The channel: every subscriber reads every message, in order, unless it
/// falls more than the ring's length behind.
#[derive(Debug)]
pub struct Fanout<T> {
    ring: Box<[ArcSwapOption<(u64, T)>]>,
    /// The sequence number the next message gets: messages `head - len ..
    /// head` are in the ring.
    head: AtomicU64,
    closed: AtomicBool,
    send: Mutex<()>,
    /// Each subscriber's waker by (group, subscriber number): woken in this
    /// order.
    wakers: Mutex<BTreeMap<(u64, u64), Arc<AtomicWaker>>>,
    next_subscriber: AtomicU64,
}

impl<T: Clone> Fanout<T> {
    /// A channel keeping the last `len` messages (at least one).
    pub fn new(len: usize) -> Fanout<T> {
        Fanout {
            ring: (0..len.max(1)).map(|_| ArcSwapOption::empty()).collect(),
            head: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            send: Mutex::new(()),
            wakers: Mutex::new(BTreeMap::new()),
            next_subscriber: AtomicU64::new(0),
        }
    }

    fn slot(&self, seq: u64) -> &ArcSwapOption<(u64, T)> {
        &self.ring[(seq % self.ring.len() as u64) as usize]
    }

    /// Puts `message` in the ring, after every message pushed before it;
    /// [`Self::wake_all`] then wakes the subscribers waiting for it. The two
    /// are apart so that a caller can push under its own lock (which orders
    /// the messages) and wake after releasing it.
    pub fn push(&self, message: T) {
        let _one_at_a_time = self.send.lock().unwrap_or_else(|p| p.into_inner());
        let seq = self.head.load(Ordering::Relaxed);
        self.slot(seq).store(Some(Arc::new((seq, message))));
        self.head.store(seq + 1, Ordering::Release);
    }

    /// Sends `message` to every subscriber: [`Self::push`], then
    /// [`Self::wake_all`].
    pub fn send(&self, message: T) {
        self.push(message);
        self.wake_all();
    }

    /// Closes the channel: each subscriber gets [`Received::Closed`] once it
    /// has read what was sent before.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake_all();
    }

    /// Wakes every waiting subscriber, one group after another. The wakers
    /// are woken after the subscriber map's lock is released: a waker may
    /// drop the task it wakes, and with it a subscriber, which takes that
    /// lock.
    pub fn wake_all(&self) {
        let wakers: Vec<Arc<AtomicWaker>> = self
            .wakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for w in wakers {
            w.wake();
        }
    }

    /// A subscriber receiving every message sent from now on; `group` is
    /// the subscribers woken together (their connection).
    pub fn subscribe(self: &Arc<Self>, group: u64) -> Subscriber<T> {
        let key = (group, self.next_subscriber.fetch_add(1, Ordering::Relaxed));
        let waker = Arc::new(AtomicWaker::new());
        self.wakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, waker.clone());
        Subscriber {
            next: self.head.load(Ordering::Acquire),
            fanout: self.clone(),
            key,
            waker,
        }
    }
}

/// One subscriber of a [`Fanout`].
#[derive(Debug)]
pub struct Subscriber<T: Clone> {
    fanout: Arc<Fanout<T>>,
    /// The sequence number of the next message to read.
    next: u64,
    key: (u64, u64),
    waker: Arc<AtomicWaker>,
}

impl<T: Clone> Subscriber<T> {
    /// The next message, or `Pending` (woken when one is sent).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Received<T>> {
        let mut registered = false;
        loop {
            // `closed` before `head`: what was sent before the close is then
            // seen in `head` (the close comes after those sends).
            let closed = self.fanout.closed.load(Ordering::Acquire);
            let head = self.fanout.head.load(Ordering::Acquire);
            if self.next < head {
                let slot = self.fanout.slot(self.next).load_full();
                return Poll::Ready(match slot {
                    Some(m) if m.0 == self.next => {
                        self.next += 1;
                        Received::Message(m.1.clone())
                    }
                    // Overwritten: go on from the newest.
                    _ => {
                        self.next = self.fanout.head.load(Ordering::Acquire);
                        Received::Lagged
                    }
                });
            }
            if closed {
                return Poll::Ready(Received::Closed);
            }
            if registered {
                return Poll::Pending;
            }
            // Registered before looking again: a message sent in between
            // is seen now or wakes this task.
            self.waker.register(cx.waker());
            registered = true;
        }
    }

    /// The next message.
    pub async fn recv(&mut self) -> Received<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }
}

impl<T: Clone> Drop for Subscriber<T> {
    fn drop(&mut self) {
        self.fanout
            .wakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::AtomicUsize,
        task::{Wake, Waker},
    };

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    #[test]
    fn every_subscriber_reads_every_message_in_order() {
        let f = Arc::new(Fanout::new(4));
        let mut a = f.subscribe(1);
        f.send(1);
        let mut b = f.subscribe(0);
        f.send(2);
        let (_, w) = counting();
        let mut cx = Context::from_waker(&w);
        assert_eq!(a.poll_recv(&mut cx), Poll::Ready(Received::Message(1)));
        assert_eq!(a.poll_recv(&mut cx), Poll::Ready(Received::Message(2)));
        assert_eq!(a.poll_recv(&mut cx), Poll::Pending);
        assert_eq!(
            b.poll_recv(&mut cx),
            Poll::Ready(Received::Message(2)),
            "a subscriber reads what is sent after it subscribed"
        );
    }

    #[test]
    fn a_waiting_subscriber_is_woken_by_a_send_and_by_close() {
        let f = Arc::new(Fanout::new(4));
        let mut s = f.subscribe(0);
        let (count, w) = counting();
        let mut cx = Context::from_waker(&w);
        assert_eq!(s.poll_recv(&mut cx), Poll::Pending);
        f.send("x");
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken by the send");
        assert_eq!(s.poll_recv(&mut cx), Poll::Ready(Received::Message("x")));
        assert_eq!(s.poll_recv(&mut cx), Poll::Pending);
        f.close();
        assert_eq!(count.0.load(Ordering::SeqCst), 2, "woken by the close");
        assert_eq!(s.poll_recv(&mut cx), Poll::Ready(Received::Closed));
    }

    #[test]
    fn what_was_sent_before_the_close_is_read_first_even_by_a_late_subscriber() {
        let f = Arc::new(Fanout::new(4));
        let mut s = f.subscribe(0);
        f.send(1);
        f.close();
        let mut late = f.subscribe(0);
        let (_, w) = counting();
        let mut cx = Context::from_waker(&w);
        assert_eq!(s.poll_recv(&mut cx), Poll::Ready(Received::Message(1)));
        assert_eq!(s.poll_recv(&mut cx), Poll::Ready(Received::Closed));
        assert_eq!(
            late.poll_recv(&mut cx),
            Poll::Ready(Received::Closed),
            "a subscriber after the close ends at once"
        );
    }

    #[test]
    fn a_close_racing_a_send_never_hides_the_message() {
        // The sender sends then closes; the subscriber must read the message
        // before it sees the close, however the two interleave.
        for _ in 0..2_000 {
            let f = Arc::new(Fanout::new(4));
            let mut s = f.subscribe(0);
            let sender = {
                let f = f.clone();
                std::thread::spawn(move || {
                    f.send(7);
                    f.close();
                })
            };
            let (_, w) = counting();
            let mut cx = Context::from_waker(&w);
            let mut got = Vec::new();
            loop {
                match s.poll_recv(&mut cx) {
                    Poll::Ready(Received::Message(m)) => got.push(m),
                    Poll::Ready(Received::Closed) => break,
                    Poll::Ready(Received::Lagged) => panic!("a ring of 4 never lags one message"),
                    Poll::Pending => std::hint::spin_loop(),
                }
            }
            sender.join().expect("sender");
            assert_eq!(got, [7]);
        }
    }

    #[test]
    fn a_subscriber_that_falls_a_ring_behind_lags_then_reads_what_follows() {
        let f = Arc::new(Fanout::new(2));
        let mut s = f.subscribe(0);
        for i in 0..5 {
            f.send(i);
        }
        let (_, w) = counting();
        let mut cx = Context::from_waker(&w);
        assert_eq!(s.poll_recv(&mut cx), Poll::Ready(Received::Lagged));
        assert_eq!(
            s.poll_recv(&mut cx),
            Poll::Pending,
            "caught up at the newest"
        );
        f.send(5);
        assert_eq!(s.poll_recv(&mut cx), Poll::Ready(Received::Message(5)));
    }

    /// A waker that records its number when woken.
    struct Record(u64, Arc<Mutex<Vec<u64>>>);

    impl Wake for Record {
        fn wake(self: Arc<Self>) {
            self.1.lock().unwrap().push(self.0);
        }
    }

    #[test]
    fn subscribers_are_woken_group_by_group_and_leave_when_dropped() {
        let f = Arc::new(Fanout::<u8>::new(2));
        let order = Arc::new(Mutex::new(Vec::new()));
        // Subscribed alternating between groups 2 and 1; each waker records
        // its group.
        let mut subs: Vec<_> = [2u64, 1, 2, 1]
            .iter()
            .map(|&g| (g, f.subscribe(g)))
            .collect();
        for (g, s) in &mut subs {
            let w = Waker::from(Arc::new(Record(*g, order.clone())));
            assert_eq!(s.poll_recv(&mut Context::from_waker(&w)), Poll::Pending);
        }
        f.send(1);
        assert_eq!(
            *order.lock().unwrap(),
            [1, 1, 2, 2],
            "one group, then the next"
        );
        drop(subs);
        assert!(f.wakers.lock().unwrap().is_empty());
    }
}
