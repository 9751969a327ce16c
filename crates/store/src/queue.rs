//! The bound on a backend's write queue, counted in events, never in requests.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{QueueStatus, StoreError, StoreResult};

/// How many events may wait to be written. A request takes as many permits as it has events
/// (capped at the capacity, so one huge request can still pass an empty queue) and holds them
/// until it is answered.
#[derive(Debug)]
pub struct WriteQueue {
    permits: Arc<Semaphore>,
    capacity: usize,
}

impl WriteQueue {
    /// A queue for at most `capacity` events (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            permits: Arc::new(Semaphore::new(capacity)),
            capacity,
        }
    }

    /// Admits a request of `events` events, or refuses it at once with
    /// [`StoreError::Overloaded`] when the queue cannot hold it.
    pub fn admit(&self, events: usize) -> StoreResult<OwnedSemaphorePermit> {
        let wanted = events.min(self.capacity) as u32;
        self.permits
            .clone()
            .try_acquire_many_owned(wanted)
            .map_err(|_| StoreError::Overloaded)
    }

    /// How full the queue is.
    pub fn status(&self) -> QueueStatus {
        QueueStatus {
            depth: self.capacity - self.permits.available_permits(),
            capacity: self.capacity,
            index_lag: 0,
            index_max_lag: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_admitted_by_events_until_the_queue_is_full() {
        let queue = WriteQueue::new(10);
        let a = queue.admit(6).expect("fits");
        assert_eq!(queue.status().depth, 6);
        assert!(matches!(queue.admit(5), Err(StoreError::Overloaded)));
        let b = queue.admit(4).expect("fits exactly");
        drop(a);
        assert_eq!(queue.status().depth, 4);
        drop(b);
        // A request larger than the whole queue passes an empty one.
        let _big = queue.admit(1_000).expect("capped at the capacity");
        assert_eq!(queue.status().depth, 10);
    }
}
