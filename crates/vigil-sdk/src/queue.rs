//! The bounded hand-off between the serving threads and the background sender.
//!
//! Callers push under a mutex (a few tens of nanoseconds); the sender swaps the whole queue out in
//! one step, so it never holds the lock while it encodes or talks to librdkafka. What the sender
//! has taken and not yet handed to librdkafka still counts against the capacity.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use vigil_events::{OutcomeEvent, PredictionEvent};

use crate::config::DropPolicy;

/// Where an event goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Topic {
    Predictions,
    Outcomes,
}

/// One logged event, waiting for the sender.
#[derive(Debug)]
pub(crate) enum Item {
    /// Moved from the caller; the sender encodes it.
    Prediction(PredictionEvent),
    Outcome(OutcomeEvent),
    /// Encoded in the caller's thread (the caller lent the event): the key's bytes, then the value's.
    Encoded {
        topic: Topic,
        key_len: usize,
        bytes: Vec<u8>,
    },
}

/// Why an event was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    Full,
    Closed,
}

/// Counters kept under the queue's lock (the push path holds it anyway).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct QueueCounts {
    pub enqueued: u64,
    pub dropped_queue_full: u64,
    pub dropped_oldest: u64,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Item>,
    closed: bool,
    counts: QueueCounts,
}

#[derive(Debug)]
pub(crate) struct Queue {
    state: Mutex<State>,
    /// Items the sender has taken and not yet handed over (read under the lock, written by the
    /// sender alone).
    in_hand: AtomicUsize,
    capacity: usize,
    policy: DropPolicy,
}

impl Queue {
    pub fn new(capacity: usize, policy: DropPolicy) -> Self {
        let state =
            State { items: VecDeque::with_capacity(Self::initial_room(capacity)), ..State::default() };
        Self { state: Mutex::new(state), in_hand: AtomicUsize::new(0), capacity, policy }
    }

    /// Room reserved up front in the queue and in the sender's batch, so the first bursts do not
    /// reallocate (and copy) the queue under its lock.
    pub fn initial_room(capacity: usize) -> usize {
        capacity.min(1024)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves the queue consistent (pushes and swaps are
        // single steps), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `item`, applying the drop policy when full. `Ok(Some(old))` is an evicted event for
    /// the caller to free after the lock is released.
    pub fn push(&self, item: Item) -> Result<Option<Item>, Refused> {
        let mut state = self.lock();
        if state.closed {
            drop(state);
            drop(item); // freed outside the lock
            return Err(Refused::Closed);
        }
        let mut evicted = None;
        let in_hand = self.in_hand.load(Ordering::Relaxed);
        if state.items.len() + in_hand >= self.capacity {
            match self.policy {
                DropPolicy::DropOldest => {
                    evicted = state.items.pop_front();
                    match evicted {
                        Some(_) => state.counts.dropped_oldest += 1,
                        // Every waiting event is in the sender's hands (for microseconds, or a
                        // batch's hand-over): take this one over the capacity; the queue is then
                        // no longer empty, so the next push evicts again. At most one over.
                        None => debug_assert!(in_hand > 0),
                    }
                }
                DropPolicy::DropNewest => {
                    state.counts.dropped_queue_full += 1;
                    drop(state);
                    drop(item);
                    return Err(Refused::Full);
                }
            }
        }
        state.items.push_back(item);
        state.counts.enqueued += 1;
        Ok(evicted)
    }

    /// Moves every queued item into `batch` (which must be empty), in order.
    pub fn take(&self, batch: &mut VecDeque<Item>) {
        debug_assert!(batch.is_empty());
        let mut state = self.lock();
        std::mem::swap(&mut state.items, batch);
        self.in_hand.store(batch.len(), Ordering::Relaxed);
    }

    /// The sender handed its whole batch over.
    pub fn batch_done(&self) {
        self.in_hand.store(0, Ordering::Relaxed);
    }

    /// Takes the oldest item alone (the sender's way while librdkafka is full).
    pub fn take_one(&self) -> Option<Item> {
        let mut state = self.lock();
        let item = state.items.pop_front();
        self.in_hand.store(usize::from(item.is_some()), Ordering::Relaxed);
        item
    }

    /// Returns an item from [`Queue::take_one`] to the front.
    pub fn put_back(&self, item: Item) {
        let mut state = self.lock();
        state.items.push_front(item);
        self.in_hand.store(0, Ordering::Relaxed);
    }

    /// Puts what the sender could not hand over back at the front, ahead of newer items, so the
    /// drop policy sees it again. Leaves `rest` empty.
    pub fn give_back(&self, rest: &mut VecDeque<Item>) {
        let mut state = self.lock();
        rest.append(&mut state.items);
        std::mem::swap(&mut state.items, rest);
        self.in_hand.store(0, Ordering::Relaxed);
    }

    /// Refuses further pushes.
    pub fn close(&self) {
        self.lock().closed = true;
    }

    pub fn counts(&self) -> QueueCounts {
        self.lock().counts
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: usize) -> Item {
        Item::Encoded { topic: Topic::Predictions, key_len: 0, bytes: vec![0; n] }
    }

    fn size(item: &Item) -> usize {
        match item {
            Item::Encoded { bytes, .. } => bytes.len(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn drop_newest_refuses_and_counts_once_full() {
        let queue = Queue::new(2, DropPolicy::DropNewest);
        assert!(queue.push(item(1)).unwrap().is_none());
        assert!(queue.push(item(2)).unwrap().is_none());
        assert_eq!(queue.push(item(3)).unwrap_err(), Refused::Full);
        assert_eq!(queue.counts(), QueueCounts { enqueued: 2, dropped_queue_full: 1, dropped_oldest: 0 });
        let mut batch = VecDeque::new();
        queue.take(&mut batch);
        assert_eq!(batch.iter().map(size).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn drop_oldest_evicts_the_front_and_keeps_the_new_event() {
        let queue = Queue::new(2, DropPolicy::DropOldest);
        queue.push(item(1)).unwrap();
        queue.push(item(2)).unwrap();
        let evicted = queue.push(item(3)).unwrap().expect("the oldest is evicted");
        assert_eq!(size(&evicted), 1);
        assert_eq!(queue.counts(), QueueCounts { enqueued: 3, dropped_queue_full: 0, dropped_oldest: 1 });
        let mut batch = VecDeque::new();
        queue.take(&mut batch);
        assert_eq!(batch.iter().map(size).collect::<Vec<_>>(), [2, 3]);
    }

    #[test]
    fn taken_items_count_against_the_capacity_until_handed_over() {
        let queue = Queue::new(2, DropPolicy::DropNewest);
        queue.push(item(1)).unwrap();
        queue.push(item(2)).unwrap();
        let mut batch = VecDeque::new();
        queue.take(&mut batch);
        assert_eq!(queue.len(), 0);
        assert_eq!(queue.push(item(3)).unwrap_err(), Refused::Full);
        assert_eq!(queue.counts().dropped_queue_full, 1);
        batch.clear();
        queue.batch_done();
        assert!(queue.push(item(4)).unwrap().is_none());
    }

    #[test]
    fn drop_oldest_never_refuses_and_goes_at_most_one_over_while_the_sender_holds_everything() {
        let queue = Queue::new(2, DropPolicy::DropOldest);
        queue.push(item(1)).unwrap();
        queue.push(item(2)).unwrap();
        let mut batch = VecDeque::new();
        queue.take(&mut batch);
        // Nothing left to evict: taken over the capacity.
        assert!(queue.push(item(3)).unwrap().is_none());
        // Now the queue has something to evict again.
        assert_eq!(size(&queue.push(item(4)).unwrap().unwrap()), 3);
        assert_eq!(queue.counts(), QueueCounts { enqueued: 4, dropped_queue_full: 0, dropped_oldest: 1 });
        queue.give_back(&mut batch);
        queue.take(&mut batch);
        assert_eq!(batch.iter().map(size).collect::<Vec<_>>(), [1, 2, 4]);
    }

    #[test]
    fn given_back_items_go_ahead_of_newer_ones() {
        let queue = Queue::new(10, DropPolicy::DropNewest);
        for n in 1..=3 {
            queue.push(item(n)).unwrap();
        }
        let mut batch = VecDeque::new();
        queue.take(&mut batch);
        batch.pop_front(); // handed over
        queue.push(item(4)).unwrap();
        queue.give_back(&mut batch);
        assert!(batch.is_empty());
        queue.take(&mut batch);
        assert_eq!(batch.iter().map(size).collect::<Vec<_>>(), [2, 3, 4]);
    }

    #[test]
    fn one_item_taken_at_a_time_leaves_the_rest_evictable() {
        let queue = Queue::new(3, DropPolicy::DropOldest);
        for n in 1..=3 {
            queue.push(item(n)).unwrap();
        }
        let first = queue.take_one().unwrap();
        assert_eq!(size(&first), 1);
        // Full (2 queued + 1 in hand): the oldest still queued is evicted.
        assert_eq!(size(&queue.push(item(4)).unwrap().unwrap()), 2);
        queue.put_back(first);
        let mut batch = VecDeque::new();
        queue.take(&mut batch);
        assert_eq!(batch.iter().map(size).collect::<Vec<_>>(), [1, 3, 4]);
    }

    #[test]
    fn a_closed_queue_refuses_everything() {
        let queue = Queue::new(10, DropPolicy::DropNewest);
        queue.close();
        assert_eq!(queue.push(item(1)).unwrap_err(), Refused::Closed);
        assert_eq!(queue.counts(), QueueCounts::default());
    }
}
